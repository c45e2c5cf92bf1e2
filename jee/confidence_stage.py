"""The confidence stage: after the main training, only the confidence branches learn.

EENet confidences trained with the classifiers, on the classifiers' own training data, see
early exits that are almost always right there, so the loss settles on one constant
confidence per exit and every test example leaves at the same exit. This stage trains the
confidence branches alone, with the EENet loss, on a holdout carved from the training split
(``dataset.holdout_size``) that the classifiers never saw, so an exit's confidence learns from
the mistakes that exit really makes. The backbone, the classifier branches and the BatchNorm
statistics are frozen (the forward pass runs in inference mode, as at test time): only
parameters under a ``confidence`` module change, and the others stay bitwise equal.

The stage continues the run's step count (its steps follow the main stage's), so checkpoints,
``metrics.jsonl`` and resuming after a kill work as in the main stage; its checkpoints rank
above the main stage's when the best one is chosen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jee import losses, sharding
from jee.models import forward

KINDS = ("v1", "v2")


def _is_confidence(path) -> bool:
    # ``confidence`` and, with model.confidence_inputs=features+softmax, ``confidence_stats``.
    return any(str(getattr(key, "key", getattr(key, "name", ""))).startswith("confidence")
               for key in path)


def confidence_mask(params):
    """A pytree of bools like ``params``: True on the confidence branches' parameters."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _is_confidence(path), params)


def for_model(config):
    """``config`` as it applies to its model: a plain backbone (no early exit) has no
    confidence to train, so it gets no confidence stage and no holdout (the held-out images
    train it, as its comparison with the early-exit network should have it)."""
    if config.model.num_exits or not config.confidence_stage.epochs:
        return config
    config = config.copy_and_resolve_references()
    config.confidence_stage.epochs = 0.0
    config.dataset.holdout_size = 0.0
    return config


def check(config, ds) -> None:
    """Refuses a confidence stage that cannot run (one line naming the fix)."""
    stage = config.confidence_stage
    if stage.epochs < 0:
        raise ValueError(f"config.confidence_stage.epochs must be >= 0, got {stage.epochs}")
    if not stage.epochs:
        return
    if stage.kind not in KINDS:
        raise ValueError(f"unknown config.confidence_stage.kind {stage.kind!r}; choose one "
                         f"of {KINDS}")
    if "holdout" not in ds.splits:
        raise ValueError("config.confidence_stage.epochs > 0 needs held-out training data: "
                         "set config.dataset.holdout_size (e.g. 0.1 or 5000)")


def stage_lam(config) -> float:
    lam = float(config.confidence_stage.lam)
    return float(config.loss.lam) if lam < 0 else lam


def schedule(config, total_steps: int) -> optax.Schedule:
    """The stage's learning rate by its own step count (0 at its first step)."""
    return optax.cosine_decay_schedule(float(config.confidence_stage.learning_rate),
                                       max(total_steps, 1))


def _scale_by_fan_in() -> optax.GradientTransformation:
    """Divides each kernel's update by its fan-in (biases unchanged).

    Adam moves every weight by about the learning rate whatever its gradient, so a linear
    branch over F features shifts its logit by about lr x F x (mean feature) per step: for a
    ``plain`` head over a 28x28x8 feature map (F = 6,272) one step at 1e-2 saturates every
    confidence. Divided by F, the shift per step is about lr x (mean feature) for every head.
    """
    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: u / u.shape[0] if u.ndim == 2 else u, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config, total_steps: int) -> optax.GradientTransformation:
    return optax.chain(optax.scale_by_adam(), _scale_by_fan_in(),
                       optax.scale_by_learning_rate(schedule(config, total_steps)))


def init_state(state: dict, tx, reset: bool = True) -> dict:
    """The stage's train state from the main stage's last one: the same weights, except the
    confidence branches when ``reset`` (zeroed: every confidence starts at 0.5), and a fresh
    optimizer over the confidence parameters' updates.

    The reset matters: the main stage leaves the confidence logits saturated (sigmoid at 0 or
    1 for every example), where the loss has no gradient, so without it this stage learns
    nothing."""
    params = state["params"]
    if reset:
        params = jax.tree.map(lambda m, p: jnp.zeros_like(p) if m else p,
                              confidence_mask(params), params)
    return {"step": state["step"], "params": params,
            "batch_stats": state["batch_stats"], "opt_state": tx.init(state["params"]),
            "nan_step": state["nan_step"]}


def make_step(graphdef, tx, config, costs, mesh):
    """The jitted confidence step: (state, batch) -> (state, metrics); ``state`` is donated.

    The forward pass sees the frozen parameters through ``stop_gradient``, so XLA drops the
    backward pass through the backbone and the step costs about one inference pass.
    """
    costs = jnp.asarray(costs, jnp.float32)
    kind, lam = config.confidence_stage.kind, stage_lam(config)

    def step(state, batch):
        mask = confidence_mask(state["params"])

        def loss_fn(params):
            visible = jax.tree.map(lambda m, p: p if m else jax.lax.stop_gradient(p),
                                   mask, params)
            logits, conf, _ = forward(graphdef, visible, state["batch_stats"],
                                      batch["image"], False)
            loss, aux = losses.eenet_loss(kind, logits, conf, batch["label"], costs, lam=lam)
            return loss, (aux, logits, conf)

        (loss, (aux, logits, conf)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        # Frozen leaves are passed through, not updated by zero, so they stay bitwise equal.
        params = jax.tree.map(lambda m, p, u: p + u if m else p, mask, state["params"], updates)
        finite = jnp.isfinite(loss)
        nan_step = jnp.where((state["nan_step"] < 0) & ~finite, state["step"], state["nan_step"])
        correct = jnp.argmax(logits, -1) == batch["label"][None]
        exits = jax.nn.sigmoid(conf[:-1]) >= config.threshold
        metrics = {"loss": loss, "ce": aux["ce"], "cost": aux["cost"],
                   "exit_accuracy": jnp.mean(correct, axis=1),
                   "confident": jnp.mean(exits, axis=1)}
        new_state = {"step": state["step"] + 1, "params": params,
                     "batch_stats": state["batch_stats"], "opt_state": opt_state,
                     "nan_step": nan_step}
        return new_state, metrics

    repl = sharding.replicated(mesh)
    return jax.jit(step, in_shardings=(repl, sharding.batch_sharding(mesh)),
                   out_shardings=(repl, repl), donate_argnums=0)
