"""Per-exit features that exit policies look at, and the per-split container policies fit on.

After one forward pass over a split an early-exit network yields ``logits [E, N, C]`` and the
EENet confidence ``conf [E, N]``. Policies decide from a handful of scalars per exit and
example (``FEATURE_NAMES``); the same function computes them for one exit online
(``[B, C]``) and for all exits offline (``[E, N, C]``), so both paths agree.

The ``"history"`` feature set adds what earlier exits said (``HISTORY_NAMES``). Those need a
small per-example state carried from exit to exit: ``history_step`` maps (state, exit k's
outputs) to (exit k's features, the next state), and is the one function both the offline
path (a loop over all exits) and the online path (``jee.policy.history``) call.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

FEATURE_NAMES: tuple[str, ...] = ("max_prob", "margin", "entropy", "conf")
# logit_gap: top-1 minus top-2 logit (log p1 - log p2), a non-linear reading of the margin
# that a linear rule cannot build from max_prob and margin; prev_max_prob: exit k-1's
# max_prob; agrees_prev: exit k's top class is exit k-1's; agree_streak: how many exits in a
# row before k named k's top class. The cost already spent is not a feature: every example
# reaching exit k has spent the same, so it is constant per exit (per-exit rules ignore it).
# At exit 0 the three history features are 0.
HISTORY_NAMES: tuple[str, ...] = ("logit_gap", "prev_max_prob", "agrees_prev", "agree_streak")
ALL_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES + HISTORY_NAMES
FEATURE_SETS: dict[str, tuple[str, ...]] = {"basic": FEATURE_NAMES, "history": ALL_FEATURE_NAMES}
# The carried state per example: (top class of the last exit seen, its max_prob, its streak).
STATE_SIZE = 3


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


def initial_state(batch: int) -> jax.Array:
    """The history state ``[batch, STATE_SIZE]`` before exit 0 (top class -1: no exit seen)."""
    return jnp.zeros((batch, STATE_SIZE), jnp.float32).at[:, 0].set(-1.0)


def history_step(state: jax.Array, logits: jax.Array, conf: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """``(features [B, len(ALL_FEATURE_NAMES)], next state [B, STATE_SIZE])`` at one exit from
    the state carried from the exits before it, ``logits [B, C]`` and ``conf [B]``."""
    logits = jnp.asarray(logits, jnp.float32)
    basic = exit_features(logits, conf)
    top = jax.lax.top_k(logits, min(2, logits.shape[-1]))[0]
    gap = top[:, 0] - top[:, 1] if logits.shape[-1] > 1 else jnp.zeros_like(top[:, 0])
    # Class indices as float32 are exact below 2**24 classes, so the comparison is exact.
    cls = jnp.argmax(logits, axis=-1).astype(jnp.float32)
    prev_cls, prev_max_prob, prev_streak = state[:, 0], state[:, 1], state[:, 2]
    agrees = (cls == prev_cls).astype(jnp.float32)
    streak = agrees * (prev_streak + 1.0)
    features = jnp.concatenate(
        [basic, jnp.stack([gap, prev_max_prob, agrees, streak], axis=-1)], axis=-1)
    return features, jnp.stack([cls, basic[:, 0], streak], axis=-1)


def all_exit_features(logits: jax.Array, conf: jax.Array) -> jax.Array:
    """Every feature of ``ALL_FEATURE_NAMES``, ``[E, N, F]``, from all exits' ``logits
    [E, N, C]`` and ``conf [E, N]``: ``history_step`` run exit by exit, as online."""
    state = initial_state(logits.shape[1])
    rows = []
    for k in range(logits.shape[0]):
        features, state = history_step(state, logits[k], conf[k])
        rows.append(features)
    return jnp.stack(rows)


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
    leaving at each exit E; ``feature_names`` is static (a prefix of ``ALL_FEATURE_NAMES``,
    so a policy's column indices mean the same in every ``ExitData``)."""

    feature_names: tuple[str, ...] = jax.tree.static(default=FEATURE_NAMES)

    def feature(self, name: str) -> jax.Array:
        """One feature ``[E, N]`` by name."""
        return self.features[..., self.feature_names.index(name)]

    def has_features(self, names) -> bool:
        return set(names) <= set(self.feature_names)


@jax.jit
def _exit_data_arrays(logits, conf, labels):
    return (
        all_exit_features(logits, conf),
        topk_correct(logits, labels[None, :], 1),
        topk_correct(logits, labels[None, :], 5),
    )


def exit_data(logits, conf, labels, costs) -> ExitData:
    """Build the ``ExitData`` of a split from ``logits [E, N, C]``, ``conf [E, N]``,
    ``labels [N]`` and ``costs [E]``, with every feature of ``ALL_FEATURE_NAMES``."""
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
    return ExitData(features, correct, correct_top5, costs, ALL_FEATURE_NAMES)
