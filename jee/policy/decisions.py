"""The two ways every exit policy is used, and the glue between them.

Online, the compiled inference engines ask ``policy.decide(k, logits_k, conf_k, aux)`` after
segment k for the rows still alive (the contract of :mod:`jee.infer.interface`, which these
policies meet directly; they ignore ``aux``); offline, ``policy.exits(logits, conf)``
returns the exit each example takes after one pass over all exits. ``FeaturePolicy`` derives
both from a single per-exit rule on the features of ``jee.policy.features``, so they cannot
drift apart. A policy reading history features (``uses_history``) gets, online, the state of
the earlier exits as ``STATE_SIZE`` extra columns at the end of ``logits_k``: what the
segments wrapped by ``jee.policy.history.carry_history`` hand the engine.
Policies are frozen pytree dataclasses: arrays are leaves (closable in ``jax.jit``, batchable
with ``jax.vmap``), names and shapes are static.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp

from jee.infer.interface import Policy
from jee.policy.features import (
    STATE_SIZE,
    all_exit_features,
    exit_features,
    history_step,
)


class ExitPolicy(Policy, Protocol):
    """What the reports need from an exit policy, on top of the engines' online ``decide``."""

    name: str

    @property
    def params(self) -> dict[str, Any]: ...

    def exits(self, logits: jax.Array, conf: jax.Array) -> jax.Array: ...


def first_exit(decisions: jax.Array) -> jax.Array:
    """Index of the first True along axis 0 of ``decisions [E, ...]``, the last exit if none."""
    forced = decisions.at[-1].set(True)
    return jnp.argmax(forced, axis=0).astype(jnp.int32)


class FeaturePolicy:
    """Mixin for policies whose decision at exit k reads only the features of exit k.

    Subclasses are registered pytree dataclasses (``exits`` passes them through ``jax.jit``)
    with a static ``num_exits``, and implement
    ``decide_features(k, features [B, F]) -> bool [B]`` for early exits k < num_exits - 1.
    A batched policy (leading axis on every array leaf) is indexed with ``policy[i]``.
    """

    num_exits: int

    @property
    def uses_history(self) -> bool:
        """Whether the rule reads features past ``FEATURE_NAMES`` (earlier exits' outputs)."""
        return False

    def decide_features(self, k: int, features: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _check_exit(self, k: int) -> None:
        if not 0 <= k < self.num_exits:
            raise ValueError(f"exit {k} out of range for a {self.num_exits}-exit policy")

    def decide(self, k: int, logits_k: jax.Array, conf_k: jax.Array,
               aux: jax.Array | None = None) -> jax.Array:
        """Whether each of the ``B`` rows reaching exit ``k`` (static int) leaves there."""
        self._check_exit(k)
        if k == self.num_exits - 1:
            return jnp.ones(logits_k.shape[:1], bool)
        if self.uses_history:
            state = logits_k[:, -STATE_SIZE:]
            return self.decide_features(k, history_step(state, logits_k[:, :-STATE_SIZE],
                                                        conf_k)[0])
        return self.decide_features(k, exit_features(logits_k, conf_k))

    def exits_from_features(self, features: jax.Array) -> jax.Array:
        """Exit taken ``int32 [N]`` from precomputed ``features [E, N, F]``."""
        if features.shape[0] != self.num_exits:
            raise ValueError(f"features have {features.shape[0]} exits, policy {self.num_exits}")
        return _exits_from_features(self, features)

    def exits(self, logits: jax.Array, conf: jax.Array) -> jax.Array:
        """Exit taken ``int32 [N]`` given all exits' ``logits [E, N, C]`` and ``conf [E, N]``."""
        return _exits_from_outputs(self, logits, conf)

    def __getitem__(self, i):
        return jax.tree.map(lambda leaf: leaf[i], self)


def _offline_exits(policy: FeaturePolicy, features: jax.Array) -> jax.Array:
    rows = [policy.decide_features(k, features[k]) for k in range(policy.num_exits - 1)]
    rows.append(jnp.ones(features.shape[1:2], bool))
    return first_exit(jnp.stack(rows))


# Jitted once per policy type and shape (the policy is a pytree argument, not a constant):
# called eagerly, the per-exit Python loop would otherwise dispatch and compile op by op.
# Inside a caller's jit these simply inline.
_exits_from_features = jax.jit(_offline_exits)
_exits_from_outputs = jax.jit(lambda policy, logits, conf: _offline_exits(
    policy, (all_exit_features if policy.uses_history else exit_features)(logits, conf)))
