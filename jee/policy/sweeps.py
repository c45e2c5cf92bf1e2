"""Accuracy/cost curves of each policy family: fitted or set on validation, scored on both splits.

A family is a one-parameter set of policies: threshold policies over quantiles of their
feature on the validation split (shared across exits, or per exit), the Bolukbasi policy over
a lambda grid. Each sweep is a batched policy, so all its settings are evaluated in one
vmapped call. ``policy_report`` gathers every family plus the reference points (oracle, each
single exit, the default EENet threshold) into the dict the plots and budget tables read.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jee.policy.bolukbasi import fit_bolukbasi
from jee.policy.features import ExitData
from jee.policy.fixed import FixedExitPolicy
from jee.policy.metrics import report_row, report_rows
from jee.policy.oracle import OraclePolicy
from jee.policy.thresholds import ThresholdPolicy, eenet_policy

# family -> (feature, exit_if_above, per_exit)
THRESHOLD_FAMILIES: dict[str, tuple[str, bool, bool]] = {
    "eenet": ("conf", True, False),
    "max_prob": ("max_prob", True, False),
    "max_prob_per_exit": ("max_prob", True, True),
    "entropy": ("entropy", False, False),
    "entropy_per_exit": ("entropy", False, True),
}
DEFAULT_QUANTILES = np.linspace(0.0, 1.0, 21)
# lambda trades one unit of error against one unit of relative cost; 0 ignores cost and
# values past 1 / (smallest cost gap) make even wrong early exits worth taking.
DEFAULT_LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 10.0, 31)])


@jax.jit
def _batched_exits(policies, features):
    return jax.vmap(lambda p: p.exits_from_features(features))(policies)


def threshold_grid(data: ExitData, feature: str, quantiles, per_exit: bool) -> jax.Array:
    """Thresholds at ``quantiles`` of ``feature`` over the early exits of ``data``:
    ``[G]`` pooled over exits, or ``[G, E-1]`` per exit."""
    values = data.feature(feature)[:-1]
    q = jnp.asarray(quantiles, jnp.float32)
    if per_exit:
        return jnp.quantile(values, q, axis=1)
    return jnp.quantile(values.reshape(-1), q)


def threshold_policies(family: str, data: ExitData, quantiles=DEFAULT_QUANTILES):
    """The batched ``ThresholdPolicy`` of ``family`` (a key of ``THRESHOLD_FAMILIES``)."""
    feature, above, per_exit = THRESHOLD_FAMILIES[family]
    thresholds = threshold_grid(data, feature, quantiles, per_exit)
    return ThresholdPolicy(thresholds, data.num_exits, feature, above, per_exit, family)


def sweep_rows(policies, val: ExitData, test: ExitData) -> dict[str, list[dict[str, Any]]]:
    """Report rows of every setting of a batched policy on both splits."""
    return {
        split: report_rows(policies, _batched_exits(policies, data.features), data)
        for split, data in (("val", val), ("test", test))
    }


def threshold_sweep(family: str, val: ExitData, test: ExitData, quantiles=DEFAULT_QUANTILES):
    """``{"family", "val": rows, "test": rows}`` over validation quantile thresholds."""
    rows = sweep_rows(threshold_policies(family, val, quantiles), val, test)
    for split_rows in rows.values():
        for q, row in zip(np.asarray(quantiles).tolist(), split_rows, strict=True):
            row["params"]["quantile"] = q
    return {"family": family, **rows}


def bolukbasi_sweep(val: ExitData, test: ExitData, lambdas=DEFAULT_LAMBDAS, **fit_kwargs):
    """``{"family": "bolukbasi", "val", "test"}``: one policy per lambda, fitted on ``val``."""
    policies, _ = fit_bolukbasi(val, lambdas, **fit_kwargs)
    return {"family": "bolukbasi", **sweep_rows(policies, val, test)}


def single_policy_rows(policy, val: ExitData, test: ExitData) -> dict[str, dict[str, Any]]:
    """Rows of one (unbatched) feature policy on both splits."""
    return {
        split: report_row(policy, policy.exits_from_features(data.features), data)
        for split, data in (("val", val), ("test", test))
    }


def policy_report(
    val: ExitData,
    test: ExitData,
    *,
    families: tuple[str, ...] = (*THRESHOLD_FAMILIES, "bolukbasi"),
    quantiles=DEFAULT_QUANTILES,
    lambdas=DEFAULT_LAMBDAS,
    eenet_threshold: float = 0.5,
    **fit_kwargs,
) -> dict[str, Any]:
    """Every family's curve and the reference points, JSON-serialisable::

        {"families": {family: {"val": [row], "test": [row]}},
         "oracle": {"val": row, "test": row},
         "single_exits": {"val": [row per exit], "test": [...]},
         "eenet_default": {"val": row, "test": row}}
    """
    curves = {}
    for family in families:
        if family == "bolukbasi":
            sweep = bolukbasi_sweep(val, test, lambdas, **fit_kwargs)
        else:
            sweep = threshold_sweep(family, val, test, quantiles)
        curves[family] = {"val": sweep["val"], "test": sweep["test"]}
    oracle = OraclePolicy()
    singles = [single_policy_rows(FixedExitPolicy(val.num_exits, k), val, test)
               for k in range(val.num_exits)]
    return {
        "families": curves,
        "oracle": {s: report_row(oracle, oracle.exits_from_data(d), d)
                   for s, d in (("val", val), ("test", test))},
        "single_exits": {s: [rows[s] for rows in singles] for s in ("val", "test")},
        "eenet_default": single_policy_rows(
            eenet_policy(val.num_exits, eenet_threshold), val, test
        ),
    }
