"""Per-exit features that exit policies look at, and the per-split container policies fit on.

After one forward pass over a split an early-exit network yields ``logits [E, N, C]`` and the
EENet confidence ``conf [E, N]``. Policies decide from a handful of scalars per exit and
example (``FEATURE_NAMES``); the same function computes them for one exit online
(``[B, C]``) and for all exits offline (``[E, N, C]``), so both paths agree.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

FEATURE_NAMES: tuple[str, ...] = ("max_prob", "margin", "entropy", "conf")


def exit_features(logits: jax.Array, conf: jax.Array) -> jax.Array:
    """Features ``[..., F]`` (order of ``FEATURE_NAMES``) from ``logits [..., C]``, ``conf [...]``.

    max_prob: largest softmax probability; margin: top-1 minus top-2 probability (top-1 when
    C == 1); entropy: Shannon entropy in nats; conf: the EENet confidence, passed through.
    """
    logits = jnp.asarray(logits, jnp.float32)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(log_p)
    top = jax.lax.top_k(p, min(2, p.shape[-1]))[0]
    max_prob = top[..., 0]
    second = top[..., 1] if p.shape[-1] > 1 else jnp.zeros_like(max_prob)
    # p * log_p is 0 * -inf = nan when a probability underflows; its limit is 0.
    plogp = jnp.where(p > 0, p * log_p, 0.0)
    entropy = -jnp.sum(plogp, axis=-1)
    conf = jnp.asarray(conf, jnp.float32)
    return jnp.stack([max_prob, max_prob - second, entropy, conf], axis=-1)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """Whether ``labels`` is among the ``k`` largest logits (k clipped to C): ``[...]`` bool.

    ``logits [..., C]`` and ``labels`` broadcastable to ``logits.shape[:-1]``.
    """
    k = max(1, min(k, logits.shape[-1]))
    labels = jnp.broadcast_to(jnp.asarray(labels), logits.shape[:-1])
    if k == 1:
        # argmax breaks ties toward the lower index, like top_k; kept separate as the cheap path.
        return jnp.argmax(logits, axis=-1) == labels
    idx = jax.lax.top_k(logits, k)[1]
    return jnp.any(idx == labels[..., None], axis=-1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Outcomes:
    """What the metrics, sweeps and budget picks read of one split: for each of K outcomes
    (exits of a network, paths of a cascade) which examples it gets right and what it costs,
    and the features policies decide from. A pytree, so it can be passed to jitted code.

    features [K', N, F] float32 (K' = K, except for paths, whose models hold the features),
    correct / correct_top5 [K, N] bool, costs [K] float32 (relative to the full network).
    """

    features: jax.Array
    correct: jax.Array
    correct_top5: jax.Array
    costs: jax.Array

    @property
    def num_exits(self) -> int:
        return self.correct.shape[0]

    @property
    def num_examples(self) -> int:
        return self.correct.shape[1]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ExitData(Outcomes):
    """Everything exit policies fit on and are scored with, for one split: the outcomes of
    leaving at each exit E; ``feature_names`` is static."""

    feature_names: tuple[str, ...] = jax.tree.static(default=FEATURE_NAMES)

    def feature(self, name: str) -> jax.Array:
        """One feature ``[E, N]`` by name."""
        return self.features[..., self.feature_names.index(name)]


@jax.jit
def _exit_data_arrays(logits, conf, labels):
    return (
        exit_features(logits, conf),
        topk_correct(logits, labels[None, :], 1),
        topk_correct(logits, labels[None, :], 5),
    )


def exit_data(logits, conf, labels, costs) -> ExitData:
    """Build the ``ExitData`` of a split from ``logits [E, N, C]``, ``conf [E, N]``,
    ``labels [N]`` and ``costs [E]``."""
    logits = jnp.asarray(logits)
    conf = jnp.asarray(conf)
    labels = jnp.asarray(labels)
    costs = jnp.asarray(costs, jnp.float32)
    if logits.ndim != 3 or conf.shape != logits.shape[:2] or labels.shape != logits.shape[1:2]:
        raise ValueError(
            f"expected logits [E,N,C], conf [E,N], labels [N]; got {logits.shape}, "
            f"{conf.shape}, {labels.shape}"
        )
    if costs.shape != logits.shape[:1]:
        raise ValueError(f"costs must be [E]={logits.shape[:1]}, got {costs.shape}")
    features, correct, correct_top5 = _exit_data_arrays(logits, conf, labels)
    return ExitData(features, correct, correct_top5, costs)
