"""The trivial policy that sends every example to one fixed exit (the single-exit baselines)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jee.policy.decisions import FeaturePolicy


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FixedExitPolicy(FeaturePolicy):
    """Every example leaves at exit ``exit``.

    ``exit`` is an array leaf, not a static field, so all single-exit baselines share one
    compiled program.
    """

    num_exits: int = jax.tree.static()
    exit: jax.Array
    name: str = jax.tree.static(default="single_exit")

    def decide_features(self, k: int, features: jax.Array) -> jax.Array:
        return jnp.full(features.shape[:1], k >= self.exit)

    @property
    def params(self) -> dict[str, Any]:
        return {"exit": int(self.exit)}
