"""The oracle: each example leaves at the cheapest exit that classifies it correctly.

It needs the labels, so it exists only offline; it bounds what any policy can reach on a split
(no policy is both more accurate and cheaper).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jee.policy.features import ExitData, topk_correct


def oracle_exits(correct: jax.Array, costs: jax.Array) -> jax.Array:
    """Cheapest correct exit per example, the last exit when none is: ``int32 [N]``.

    ``correct [E, N]`` bool, ``costs [E]``. Costs need not be monotone; ties go to the
    earlier exit.
    """
    masked = jnp.where(correct, jnp.asarray(costs, jnp.float32)[:, None], jnp.inf)
    cheapest = jnp.argmin(masked, axis=0)
    last = correct.shape[0] - 1
    return jnp.where(jnp.any(correct, axis=0), cheapest, last).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class OraclePolicy:
    """Offline-only policy object, so the oracle appears in reports like any other policy."""

    name: str = "oracle"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def decide(self, k, logits_k, conf_k, aux=None):
        raise NotImplementedError("the oracle needs labels; it has no online decision rule")

    def exits(self, logits: jax.Array, labels: jax.Array, costs: jax.Array) -> jax.Array:
        """Oracle exits from ``logits [E, N, C]``, ``labels [N]`` and ``costs [E]``."""
        return oracle_exits(topk_correct(logits, jnp.asarray(labels)[None, :], 1), costs)

    def exits_from_data(self, data: ExitData) -> jax.Array:
        return oracle_exits(data.correct, data.costs)
