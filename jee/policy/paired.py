"""Paired comparison of budget picks: is one policy more accurate than another on test?

Two picks are scored on the same test examples, so their accuracies are not independent: the
standard error of their difference comes from the per-example differences d_i = correct_a(i)
- correct_b(i), SE = std(d) / sqrt(N), which is far smaller than either accuracy's binomial
error when the two policies agree on most examples. Each pick is rebuilt from the parameters
its budget row stores (thresholds; the learned policy's coefficients), its exits recomputed on
the test outcomes, and the rebuilt pick's accuracy checked against the stored one, so the
comparison is of exactly the settings the report chose.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jee.policy.bolukbasi import MODE_NAMES, BolukbasiPolicy
from jee.policy.decisions import FeaturePolicy
from jee.policy.features import ALL_FEATURE_NAMES, ExitData
from jee.policy.thresholds import ThresholdPolicy

REFERENCE = "max_prob"


def policy_from_pick(pick: dict[str, Any], num_exits: int) -> FeaturePolicy | None:
    """The policy a budget pick describes, or None for a kind this module cannot rebuild."""
    p = pick["params"]
    if "threshold" in p:
        t = jnp.asarray(p["threshold"], jnp.float32)
        return ThresholdPolicy(t, num_exits, p["feature"], p["rule"] == ">=", t.ndim == 1,
                               pick["name"])
    if "coef" in p:
        return BolukbasiPolicy(
            coef=jnp.asarray(p["coef"], jnp.float32), bias=jnp.asarray(p["bias"], jnp.float32),
            mean=jnp.asarray(p["mean"], jnp.float32), scale=jnp.asarray(p["scale"], jnp.float32),
            mode=jnp.asarray([MODE_NAMES.index(m) for m in p["modes"]], jnp.int32),
            lam=jnp.asarray(p["lambda"], jnp.float32), num_exits=num_exits,
            feature_idx=tuple(ALL_FEATURE_NAMES.index(f) for f in p["features"]),
            name=pick["name"])
    return None


def correct_per_example(policy: FeaturePolicy, data: ExitData) -> np.ndarray:
    """Whether each example of ``data`` is right at the exit ``policy`` sends it to: ``[N]``."""
    exits = np.asarray(policy.exits_from_features(data.features))
    return np.asarray(data.correct)[exits, np.arange(data.num_examples)]


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean of a - b, its standard error) over paired per-example outcomes."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
    return float(d.mean()), se


def with_paired_comparison(budgets: list[dict[str, Any]], test: ExitData,
                           reference: str = REFERENCE,
                           rebuild: Callable[[dict[str, Any]], Any] | None = None
                           ) -> list[dict[str, Any]]:
    """Budget picks with ``vs_<reference>``: ``{"difference", "paired_se"}`` on test, for
    every feasible pick of a budget where ``reference`` has one too. ``rebuild(pick)`` gives
    a pick's policy (default: an early-exit network's, ``policy_from_pick``); a cascade passes
    its own, its paths playing the exits of ``test``."""
    if rebuild is None:
        def rebuild(pick):
            return policy_from_pick(pick, test.num_exits)
    correct: dict[int, np.ndarray] = {}
    for i, b in enumerate(budgets):
        policy = rebuild(b) if b.get("feasible", True) else None
        if policy is None:
            continue
        c = correct_per_example(policy, test)
        if not math.isclose(float(c.mean()), b["test_accuracy"], abs_tol=1e-6):
            raise AssertionError(f"the rebuilt {b['family']} pick at budget {b['budget']} scores "
                                 f"{c.mean():.6f}, the report {b['test_accuracy']:.6f}")
        correct[i] = c
    refs = {b["budget"]: correct[i] for i, b in enumerate(budgets)
            if b.get("family") == reference and i in correct}
    out = []
    for i, b in enumerate(budgets):
        ref = refs.get(b.get("budget"))
        if i in correct and ref is not None and b.get("family") != reference:
            diff, se = paired_difference(correct[i], ref)
            b = {**b, f"vs_{reference}": {"difference": diff, "paired_se": se}}
        out.append(b)
    return out
