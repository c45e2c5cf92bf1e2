"""Learning a cascade's routing policy (Bolukbasi et al., ICML 2017), a whole lambda sweep at once.

Objective per example: error of the prediction the path ends with + lambda * the path's cost
(relative to the most expensive model). Fitted node by node in reverse topological order, so
everything downstream of a node is already decided: V_k, the cost still to come from node k
on (its final error plus lambda times the models run after k), is known for every example and
every later node. At node k the options cost err_k (stop) and lambda * c_j + V_j (go to
successor j). The chain of binary decisions (``jee.cascade.policy``) is fitted from its last
link back, each a weighted logistic regression (``fit_binary_decision``, shared with the
early-exit policy) between one option and the options after it, the latter already resolved.

Like the early-exit policy, every node is fitted on every example of the split, not only on
those the upstream policy would send there (which is not fitted yet). The graph is static and
small, so the nodes are unrolled; ``jax.vmap`` runs the lambda sweep in one compiled call.
Per-example weights (0 = left out) serve cross-fitting (``jee.policy.crossfit``), as for the
early-exit policy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jee.cascade.features import FEATURE_SETS, CascadeData, feature_columns
from jee.cascade.graph import CascadeGraph
from jee.cascade.policy import LearnedCascadePolicy
from jee.policy.bolukbasi import (
    NEVER_EXIT,
    fit_binary_decision,
    standardisation,
    weighted_mean,
)


@functools.partial(jax.jit, static_argnames=("graph", "steps"))
def _fit_sweep(features, correct, costs, lambdas, l2, weights, graph: CascadeGraph, steps: int):
    mean, scale = standardisation(features, weights)
    z = (features - mean[:, None]) / scale[:, None]
    err = 1.0 - correct.astype(jnp.float32)
    num_models, num_features = features.shape[0], features.shape[-1]
    max_decisions = max(1, *(len(s) for s in graph.successors))

    def fit_one(lam):
        coef = jnp.zeros((num_models, max_decisions, num_features), jnp.float32)
        bias = jnp.zeros((num_models, max_decisions), jnp.float32)
        mode = jnp.full((num_models, max_decisions), NEVER_EXIT, jnp.int32)
        to_come = [None] * num_models  # V_k [N]
        for k in reversed(range(num_models)):
            successors = graph.successors[k]
            options = [err[k]] + [lam * costs[j] + to_come[j] for j in successors]
            rest = options[-1]
            for d in reversed(range(len(successors))):
                c, b, m, take = fit_binary_decision(z[k], options[d], rest, l2, steps,
                                                   weights)
                coef, bias, mode = coef.at[k, d].set(c), bias.at[k, d].set(b), mode.at[k, d].set(m)
                rest = jnp.where(take, options[d], rest)
            to_come[k] = rest
        return coef, bias, mode, weighted_mean(lam * costs[0] + to_come[0], weights)

    coef, bias, mode, objective = jax.vmap(fit_one)(lambdas)
    lead = (lambdas.shape[0],)
    return (coef, bias, jnp.broadcast_to(mean, lead + mean.shape),
            jnp.broadcast_to(scale, lead + scale.shape), mode, objective)


def fit_cascade(data: CascadeData, graph: CascadeGraph, lambdas, *, l2: float = 1e-3,
                steps: int = 20, weights=None, features=FEATURE_SETS["basic"]
                ) -> tuple[LearnedCascadePolicy, jax.Array]:
    """One routing policy per lambda, fitted on ``data`` in one compiled call (``weights
    [N]``: per-example weights, 0 leaves an example out; jit- and vmap-able over them).

    Returns ``(policies, objective)``: a batched ``LearnedCascadePolicy`` (``policies[i]`` is
    the one for ``lambdas[i]``) and the objective ``[L]`` on ``data`` (mean error + lambda *
    mean relative path cost).
    """
    if graph.num_models != data.num_models:
        raise ValueError(f"graph has {graph.num_models} models, data {data.num_models}")
    lambdas = jnp.atleast_1d(jnp.asarray(lambdas, jnp.float32))
    if weights is not None:
        weights = jnp.asarray(weights, jnp.float32)
    columns = list(feature_columns(features))
    coef, bias, mean, scale, mode, objective = _fit_sweep(
        data.features[..., columns], data.correct, data.costs, lambdas, jnp.float32(l2),
        weights, graph, steps)
    return LearnedCascadePolicy(coef, bias, mean, scale, mode, lambdas, graph,
                                features=tuple(features)), objective
