"""Synthetic exit policy: each example's exit is fixed in advance, for controlled benchmarks.

Speed-ups depend on how many examples leave at each exit. To measure an engine at a chosen
exit mix independently of any trained policy, :func:`synthetic_exits` assigns exits with
given fractions and :class:`SyntheticPolicy` replays them through ``aux``;
:func:`fractions_for_cost` picks a mix whose mean relative cost hits a target.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


class SyntheticPolicy:
    """``decide`` is ``aux == k``: ``aux`` holds every example's pre-assigned exit."""

    def decide(self, k: int, logits: jax.Array, conf: jax.Array,
               aux: jax.Array | None) -> jax.Array:
        if aux is None:
            raise ValueError("SyntheticPolicy needs the assigned exits as aux")
        return jnp.asarray(aux) == k


def synthetic_exits(num_examples: int, fractions: Sequence[float], seed: int = 0) -> np.ndarray:
    """Int32 ``[num_examples]`` exits with the given per-exit fractions, in shuffled order.

    Counts are exact up to rounding (largest remainders), not sampled, so a benchmark's mix
    does not drift with the seed; the seed only decides which examples leave where.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size == 0 or np.any(f < 0) or f.sum() <= 0:
        raise ValueError(f"fractions must be a non-empty non-negative vector, got {fractions}")
    quota = f / f.sum() * num_examples
    counts = np.floor(quota).astype(np.int64)
    short = num_examples - counts.sum()
    counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1
    exits = np.repeat(np.arange(f.size, dtype=np.int32), counts)
    return np.random.default_rng(seed).permutation(exits).astype(np.int32)


def mean_cost(fractions: Sequence[float], costs: Sequence[float]) -> float:
    f = np.asarray(fractions, dtype=np.float64)
    return float(np.dot(f / f.sum(), np.asarray(costs, dtype=np.float64)))


def fractions_for_cost(costs: Sequence[float], target: float, tol: float = 1e-9) -> np.ndarray:
    """Per-exit fractions with ``sum(f_k * costs_k) == target``, as even as that allows.

    Fractions are ``f_k ∝ exp(-t * costs_k)``: ``t = 0`` is the uniform mix, and the mean
    cost falls monotonically as ``t`` grows (its derivative is minus the cost variance), so a
    bisection on ``t`` finds the target. Targets at the cheapest or dearest exit put all
    examples there.
    """
    c = np.asarray(costs, dtype=np.float64)
    lo_cost, hi_cost = float(c.min()), float(c.max())
    if not lo_cost - tol <= target <= hi_cost + tol:
        raise ValueError(f"target {target} outside the exit costs' range [{lo_cost}, {hi_cost}]")
    if hi_cost - lo_cost <= tol:
        return np.full(c.size, 1.0 / c.size)
    if target <= lo_cost + tol or target >= hi_cost - tol:
        f = (np.abs(c - target) <= tol).astype(np.float64)
        return f / f.sum()

    def mix(t: float) -> np.ndarray:
        # Shifting by the minimum keeps exp() in range for large |t|.
        w = np.exp(-t * (c - lo_cost)) if t >= 0 else np.exp(-t * (c - hi_cost))
        return w / w.sum()

    scale = 1.0 / (hi_cost - lo_cost)
    lo_t, hi_t = -scale, scale
    while np.dot(mix(lo_t), c) < target:
        lo_t *= 2
    while np.dot(mix(hi_t), c) > target:
        hi_t *= 2
    for _ in range(200):
        mid = 0.5 * (lo_t + hi_t)
        if np.dot(mix(mid), c) > target:
            lo_t = mid
        else:
            hi_t = mid
        if hi_t - lo_t < 1e-12 * max(1.0, abs(mid)):
            break
    return mix(0.5 * (lo_t + hi_t))
