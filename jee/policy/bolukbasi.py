"""The learned exit policy of Bolukbasi et al. (ICML 2017), fitted for a whole lambda sweep.

Objective per example: error of the exit taken + lambda * its relative cost. Following the
paper it is reduced to one weighted binary problem per early exit, solved from the last early
exit back to the first with the later decisions already fixed. At exit k an example costs
C_exit = err_k + lambda * c_k if it leaves, and C_cont = err_j + lambda * c_j if it goes on,
j being the exit the fitted later policy sends it to. The label is "exit" when
C_exit <= C_cont and the weight |C_exit - C_cont| is what a wrong decision costs. Each exit
fits a weighted logistic regression on its standardised features, then keeps whichever of
{always exit, never exit, the regression} has the lowest training objective, so a decision
never does worse on the fit split than the constant policies.

All lambdas are fitted in one compiled call (``jax.vmap`` over lambda); the backward
recursion over exits is a ``lax.scan``. Optional per-example weights (0 drops an example) let
cross-fitting (``jee.policy.crossfit``) fit every fold at fixed shapes, ``jax.vmap``-ed over
the folds; without them the arithmetic is exactly the unweighted fit's.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jee.policy.decisions import FeaturePolicy
from jee.policy.features import ALL_FEATURE_NAMES, FEATURE_NAMES, ExitData
from jee.policy.logistic import fit_weighted_logistic

# Candidate order doubles as the tie-break: on equal objective the simpler constant wins.
ALWAYS_EXIT, NEVER_EXIT, LEARNED = 0, 1, 2
MODE_NAMES = ("always_exit", "never_exit", "learned")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LinearDecisions:
    """The arrays of a set of learned binary decisions (one weighted logistic regression
    each): a decision is ``((f - mean) / scale) . coef + bias >= 0`` unless ``mode`` fixes it
    to always / never; ``lam`` is the cost weight they were fitted at."""

    coef: jax.Array
    bias: jax.Array
    mean: jax.Array
    scale: jax.Array
    mode: jax.Array
    lam: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BolukbasiPolicy(LinearDecisions, FeaturePolicy):
    """Per early exit k < E-1: exit iff ((f_k - mean_k) / scale_k) . coef_k + bias_k >= 0,
    unless ``mode_k`` fixes the decision to always / never exit.

    Arrays: coef, mean, scale [E-1, F']; bias, mode [E-1]; lam []. A sweep returns them with a
    leading lambda axis; ``policy[i]`` is the i-th policy. ``feature_idx`` selects the columns
    of ``ALL_FEATURE_NAMES`` used; past ``FEATURE_NAMES`` the policy reads history features.
    """

    num_exits: int = jax.tree.static()
    feature_idx: tuple[int, ...] = jax.tree.static(default=tuple(range(len(FEATURE_NAMES))))
    name: str = jax.tree.static(default="bolukbasi")

    @property
    def uses_history(self) -> bool:
        return max(self.feature_idx) >= len(FEATURE_NAMES)

    def decide_features(self, k: int, features: jax.Array) -> jax.Array:
        z = (features[:, list(self.feature_idx)] - self.mean[k]) / self.scale[k]
        return apply_mode(self.mode[k], linear_score(z, self.coef[k], self.bias[k]) >= 0)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "lambda": float(self.lam),
            "features": [ALL_FEATURE_NAMES[i] for i in self.feature_idx],
            "modes": [MODE_NAMES[m] for m in np.asarray(self.mode).tolist()],
            "coef": np.asarray(self.coef, np.float64).tolist(),
            "bias": np.asarray(self.bias, np.float64).tolist(),
            "mean": np.asarray(self.mean, np.float64).tolist(),
            "scale": np.asarray(self.scale, np.float64).tolist(),
        }


def linear_score(z, coef, bias):
    """``z [..., F] . coef [F] + bias``."""
    # Elementwise product + sum rather than a matvec keeps the online and offline paths on
    # the same arithmetic (a dot may be lowered differently for different batch shapes).
    return jnp.sum(z * coef, axis=-1) + bias


def apply_mode(mode, learned):
    """A fitted binary decision: ``learned`` unless ``mode`` fixes it to always / never."""
    return jnp.where(mode == ALWAYS_EXIT, True, jnp.where(mode == NEVER_EXIT, False, learned))


def weighted_mean(x, weights):
    """Mean of ``x [..., N]`` over its last axis weighted by ``weights [N]``, or the plain
    mean (the same arithmetic as before weights existed) when ``weights`` is None."""
    if weights is None:
        return jnp.mean(x, axis=-1)
    return jnp.sum(x * weights, axis=-1) / jnp.sum(weights)


def standardisation(x, weights=None):
    """Per-row mean and scale of ``x [K, N, F]`` over the N examples (weighted by ``weights
    [N]`` when given): ``[K, F]`` each."""
    if weights is None:
        mean = jnp.mean(x, axis=1)
        std = jnp.std(x, axis=1)
    else:
        w = weights[:, None]
        mean = jnp.sum(x * w, axis=1) / jnp.sum(weights)
        std = jnp.sqrt(jnp.sum(w * (x - mean[:, None]) ** 2, axis=1) / jnp.sum(weights))
    # A constant feature carries no information; scale 1 avoids dividing by ~0.
    return mean, jnp.where(std > 1e-6, std, 1.0)


def fit_binary_decision(z, c_take, c_other, l2, steps: int, weights=None):
    """One weighted binary decision: take an option costing ``c_take [N]`` per example, or
    the alternative costing ``c_other [N]``, from standardised features ``z [N, F]``.

    The label is "take" where ``c_take <= c_other``, the weight the cost of deciding wrong
    (times ``weights [N]`` when given). Returns ``(coef, bias, mode, take [N] bool)``: of
    {always take, never take, the regression}, the candidate with the lowest (weighted) mean
    cost on these examples.
    """
    label = (c_take <= c_other).astype(jnp.float32)
    w = jnp.abs(c_take - c_other)
    if weights is not None:
        # All-zero weights make the regression fall back to uniform ones: uniform over the
        # examples being fitted, never over those left out.
        w = jnp.where(jnp.sum(w * weights) > 0, w * weights, weights)
    coef, bias = fit_weighted_logistic(z, label, w, l2, steps)
    learned = linear_score(z, coef, bias) >= 0
    always = jnp.ones_like(learned)
    candidates = jnp.stack([always, ~always, learned])
    objective = weighted_mean(jnp.where(candidates, c_take, c_other), weights)
    mode = jnp.argmin(objective).astype(jnp.int32)
    return coef, bias, mode, candidates[mode]


@functools.partial(jax.jit, static_argnames=("feature_idx", "steps"))
def _fit_sweep(features, correct, costs, lambdas, l2, weights, feature_idx, steps):
    x = features[:-1][..., list(feature_idx)]
    mean, scale = standardisation(x, weights)
    z = (x - mean[:, None]) / scale[:, None]
    err = 1.0 - correct.astype(jnp.float32)
    costs = costs.astype(jnp.float32)

    def fit_one(lam):
        def decide_exit(c_cont, exit_k):
            z_k, err_k, cost_k = exit_k
            c_exit = err_k + lam * cost_k
            coef, bias, mode, leave = fit_binary_decision(z_k, c_exit, c_cont, l2, steps,
                                                          weights)
            return jnp.where(leave, c_exit, c_cont), (coef, bias, mode)

        # Backward over the early exits; a scan (not an unrolled loop) so the logistic fit is
        # compiled once, not once per exit. reverse=True keeps outputs indexed by exit.
        c_last = err[-1] + lam * costs[-1]
        c_first, (coef, bias, mode) = jax.lax.scan(
            decide_exit, c_last, (z, err[:-1], costs[:-1]), reverse=True
        )
        # c_first is the cost of the whole policy from exit 0: its mean is the objective.
        return coef, bias, mode, weighted_mean(c_first, weights)

    coef, bias, mode, objective = jax.vmap(fit_one)(lambdas)
    num_lambdas = lambdas.shape[0]
    mean = jnp.broadcast_to(mean, (num_lambdas, *mean.shape))
    scale = jnp.broadcast_to(scale, (num_lambdas, *scale.shape))
    return coef, bias, mean, scale, mode, objective


def fit_bolukbasi(
    data: ExitData,
    lambdas,
    *,
    features: tuple[str, ...] = FEATURE_NAMES,
    l2: float = 1e-3,
    steps: int = 20,
    weights=None,
) -> tuple[BolukbasiPolicy, jax.Array]:
    """Fit one policy per lambda on ``data`` in one compiled call.

    ``features``: names of ``ALL_FEATURE_NAMES`` the policy reads (``data`` must hold them).
    ``weights [N]``: per-example weights (0 leaves an example out of the fit), for
    cross-fitting; jit- and vmap-able over ``weights``.
    Returns ``(policies, objective)``: a batched ``BolukbasiPolicy`` with leading axis
    ``[L]`` (``policies[i]`` is the policy for ``lambdas[i]``) and the training objective
    ``[L]`` (mean error + lambda * relative cost on ``data``, weighted).
    """
    unknown = set(features) - set(ALL_FEATURE_NAMES)
    if unknown or not data.has_features(features):
        raise ValueError(f"features {features}: ExitData has {data.feature_names}")
    if data.num_exits < 2:
        raise ValueError("a learned exit policy needs at least one early exit")
    columns = tuple(data.feature_names.index(f) for f in features)
    feature_idx = tuple(ALL_FEATURE_NAMES.index(f) for f in features)
    lambdas = jnp.atleast_1d(jnp.asarray(lambdas, jnp.float32))
    if weights is not None:
        weights = jnp.asarray(weights, jnp.float32)
    coef, bias, mean, scale, mode, objective = _fit_sweep(
        data.features, data.correct, data.costs, lambdas, jnp.float32(l2), weights, columns,
        steps)
    policy = BolukbasiPolicy(
        coef, bias, mean, scale, mode, lambdas, data.num_exits, feature_idx, "bolukbasi"
    )
    return policy, objective
