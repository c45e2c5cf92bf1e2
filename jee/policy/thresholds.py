"""Threshold exit policies: leave at the first exit whose feature passes a threshold.

``eenet`` (confidence >= T, the EENet rule), ``max_prob`` (max softmax probability >= t) and
``entropy`` (entropy <= t) are one class with different static settings. The threshold is
either one scalar shared by all early exits or one value per early exit ``[E-1]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jee.policy.decisions import FeaturePolicy
from jee.policy.features import FEATURE_NAMES


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ThresholdPolicy(FeaturePolicy):
    """Exit at k when ``feature >= threshold_k`` (``exit_if_above``) or ``<= threshold_k``.

    thresholds: ``[]`` when shared, ``[E-1]`` when ``per_exit``; a leading batch axis is
    allowed for sweeps (index it away with ``policy[i]`` or ``jax.vmap``).
    """

    thresholds: jax.Array
    num_exits: int = jax.tree.static()
    feature: str = jax.tree.static()
    exit_if_above: bool = jax.tree.static()
    per_exit: bool = jax.tree.static(default=False)
    name: str = jax.tree.static(default="threshold")

    def decide_features(self, k: int, features: jax.Array) -> jax.Array:
        value = features[:, FEATURE_NAMES.index(self.feature)]
        t = self.thresholds[k] if self.per_exit else self.thresholds
        return value >= t if self.exit_if_above else value <= t

    @property
    def params(self) -> dict[str, Any]:
        t = np.asarray(self.thresholds, np.float64)
        return {
            "feature": self.feature,
            "rule": ">=" if self.exit_if_above else "<=",
            "threshold": t.tolist() if self.per_exit else float(t),
        }


def _thresholds(thresholds, num_exits: int) -> tuple[jax.Array, bool]:
    t = jnp.asarray(thresholds, jnp.float32)
    if t.ndim == 0:
        return t, False
    if t.shape != (num_exits - 1,):
        raise ValueError(f"per-exit thresholds must have shape [{num_exits - 1}], got {t.shape}")
    return t, True


def eenet_policy(num_exits: int, threshold=0.5) -> ThresholdPolicy:
    """EENet inference rule: first exit whose confidence reaches ``threshold``."""
    t, per_exit = _thresholds(threshold, num_exits)
    return ThresholdPolicy(t, num_exits, "conf", True, per_exit, "eenet")


def max_prob_policy(num_exits: int, threshold) -> ThresholdPolicy:
    """First exit whose max softmax probability reaches ``threshold`` (scalar or ``[E-1]``)."""
    t, per_exit = _thresholds(threshold, num_exits)
    return ThresholdPolicy(t, num_exits, "max_prob", True, per_exit, "max_prob")


def entropy_policy(num_exits: int, threshold) -> ThresholdPolicy:
    """First exit whose softmax entropy is at most ``threshold`` (scalar or ``[E-1]``)."""
    t, per_exit = _thresholds(threshold, num_exits)
    return ThresholdPolicy(t, num_exits, "entropy", False, per_exit, "entropy")
