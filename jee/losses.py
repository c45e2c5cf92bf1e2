"""Training losses over every exit at once (masked batch mode).

Inputs for E exits, batch B, C classes: ``logits [E, B, C]``, confidence logits
``conf_logit [E, B]`` (the EENet confidence is ``sigmoid(conf_logit)``), integer labels
``[B]`` and the relative cost of each exit ``costs [E]``.

EENet (Demir & Akbas): with exit i's class probabilities p_i and confidence h_i, and the
last exit's confidence fixed to 1, the prediction and cost of "the network from exit i on" are

    P_i = h_i p_i + (1 - h_i) P_{i+1},   P_{E-1} = p_{E-1}
    K_i = h_i c_i + (1 - h_i) K_{i+1},   K_{E-1} = c_{E-1}

- ``v1``: L = CE(P_0, y) + lambda * K_0                      (one mixture over all exits)
- ``v2``: L = sum_i [CE(P_i, y) + lambda * K_i]              (every suffix mixture; fairer to
  the late exits, the paper's better-performing variant)
- ``v0``: L = sum_i CE(p_i, y)                               (warm-up / first of two stages)
- ``weighted``: L = sum_i w_i CE(p_i, y)                     (SDN-style weighted sum)

The mixtures are computed in log space: log P_i(y) = logaddexp(log h_i + log p_i(y),
log(1 - h_i) + log P_{i+1}(y)), with log h from ``log_sigmoid``, so confident exits whose
probabilities underflow in float32 still give finite losses and gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

LOSSES = ("v0", "v1", "v2", "weighted")


def _label_log_probs(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """log p_i(y) for every exit: [E, B]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, labels[None, :, None], axis=-1)[..., 0]


def suffix_mixtures(logits, conf_logit, labels, costs):
    """log P_i(y) [E, B] and K_i [E, B] for every suffix of exits (see module docstring)."""
    lp = _label_log_probs(logits, labels)
    log_h = jax.nn.log_sigmoid(conf_logit.astype(jnp.float32))
    log_not_h = jax.nn.log_sigmoid(-conf_logit.astype(jnp.float32))
    h = jnp.exp(log_h)
    costs = jnp.asarray(costs, jnp.float32)
    num_exits = logits.shape[0]
    log_mix = [lp[-1]]
    cost_mix = [jnp.broadcast_to(costs[-1], lp[-1].shape)]
    for i in range(num_exits - 2, -1, -1):
        log_mix.append(jnp.logaddexp(log_h[i] + lp[i], log_not_h[i] + log_mix[-1]))
        cost_mix.append(h[i] * costs[i] + (1 - h[i]) * cost_mix[-1])
    return jnp.stack(log_mix[::-1]), jnp.stack(cost_mix[::-1])


def _mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean over the batch axis (last), counting only unmasked examples."""
    if mask is None:
        return jnp.mean(x, axis=-1)
    m = mask.astype(x.dtype)
    return jnp.sum(x * m, axis=-1) / jnp.maximum(jnp.sum(m), 1.0)


def eenet_loss(kind: str, logits, conf_logit, labels, costs, *, lam: float = 1.0,
               exit_weights: Sequence[float] = (), mask=None):
    """Returns (loss, aux) where aux has 'ce' (classification part) and 'cost' (expected cost).

    ``mask [B]`` (optional) drops padded examples from the means.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")
    num_exits = logits.shape[0]
    if kind in ("v1", "v2"):
        log_mix, cost_mix = suffix_mixtures(logits, conf_logit, labels, costs)
        ce = _mean(-log_mix, mask)          # [E]
        cost = _mean(cost_mix, mask)        # [E]
        if kind == "v1":
            ce, cost = ce[0], cost[0]
        else:
            ce, cost = jnp.sum(ce), jnp.sum(cost)
        return ce + lam * cost, {"ce": ce, "cost": cost}
    per_exit = _mean(-_label_log_probs(logits, labels), mask)  # [E]
    if kind == "v0":
        weights = jnp.ones((num_exits,), jnp.float32)
    else:
        weights = jnp.asarray(exit_weights or [1.0] * num_exits, jnp.float32)
        if weights.shape != (num_exits,):
            raise ValueError(f"loss.exit_weights has {weights.shape[0]} entries but the model has "
                             f"{num_exits} exits (early exits + final)")
    ce = jnp.sum(weights * per_exit)
    return ce, {"ce": ce, "cost": jnp.zeros((), jnp.float32)}
