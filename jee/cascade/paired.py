"""A cascade's budget picks rebuilt as routing policies, for the paired comparison of
``jee.policy.paired`` (its paths play the exits): from the parameters each pick stores, the
learned policy's per-node coefficients or a threshold family's threshold."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jee.cascade.graph import CascadeGraph
from jee.cascade.policy import LearnedCascadePolicy, ThresholdCascadePolicy
from jee.cascade.sweeps import THRESHOLD_FAMILIES
from jee.policy.bolukbasi import MODE_NAMES


def policy_from_pick(pick: dict[str, Any], graph: CascadeGraph):
    """The routing policy a cascade budget pick describes, or None for a kind that is not a
    routing policy (a fixed path)."""
    p = pick["params"]
    if "threshold" in p:
        family = pick["family"]
        feature, above = THRESHOLD_FAMILIES[family]
        return ThresholdCascadePolicy(jnp.asarray(p["threshold"], jnp.float32), graph, feature,
                                      above, family)
    if "coef" not in p:
        return None
    # Nodes have one decision per successor; the unused slots of [M, D] are never read.
    width = max(len(s) for s in graph.successors)
    shape = (graph.num_models, width)
    coef = np.zeros((*shape, len(p["features"])), np.float32)
    bias = np.zeros(shape, np.float32)
    mode = np.zeros(shape, np.int32)
    for k in range(graph.num_models):
        for d in range(len(p["coef"][k])):
            coef[k, d] = p["coef"][k][d]
            bias[k, d] = p["bias"][k][d]
            mode[k, d] = MODE_NAMES.index(p["modes"][k][d])
    return LearnedCascadePolicy(
        coef=jnp.asarray(coef), bias=jnp.asarray(bias), mean=jnp.asarray(p["mean"], jnp.float32),
        scale=jnp.asarray(p["scale"], jnp.float32), mode=jnp.asarray(mode),
        lam=jnp.asarray(p["lambda"], jnp.float32), graph=graph, name=pick["family"],
        features=tuple(p["features"]))
