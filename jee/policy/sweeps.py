"""Accuracy/cost curves of each policy family: fitted or set on validation, scored on both splits.

A family is a one-parameter set of policies: threshold policies over quantiles of their
feature on the validation split (shared across exits, or per exit), the Bolukbasi policy over
a lambda grid. Each sweep is a batched policy, so all its settings are evaluated in one
vmapped call. Every family is fitted and selected the same way (``jee.policy.crossfit``): by
default its ``val`` rows are out-of-fold figures of 5-fold cross-fitting, so a budget pick
never reads the data its policy was fitted on. The learned policy is fitted once per feature
set (``FEATURE_SETS``); ``"auto"`` keeps, as family ``bolukbasi``, the set whose out-of-fold
curve is best over ``SELECTION_BUDGETS``. ``policy_report`` gathers every family plus the
reference points (oracle, each single exit, the default EENet threshold) into the dict the
plots and budget tables read.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jee.policy.bolukbasi import fit_bolukbasi
from jee.policy.budget import select_under_budget
from jee.policy.crossfit import (
    DEFAULT_FOLDS,
    DEFAULT_SEED,
    batched_exits,
    crossfit_sweep,
    selection_name,
)
from jee.policy.features import FEATURE_SETS, ExitData
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
# "auto" or a key of FEATURE_SETS.
FEATURE_CHOICES = ("auto", *FEATURE_SETS)
# The budgets a feature set's out-of-fold curve is judged at under "auto".
SELECTION_BUDGETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def threshold_grid(data: ExitData, feature: str, quantiles, per_exit: bool,
                   weights=None) -> jax.Array:
    """Thresholds at ``quantiles`` of ``feature`` over the early exits of ``data``:
    ``[G]`` pooled over exits, or ``[G, E-1]`` per exit. ``weights [N]``: only the examples
    of positive weight count (the fit part of a cross-fitting fold)."""
    values = data.feature(feature)[:-1]
    q = jnp.asarray(quantiles, jnp.float32)
    if weights is None:
        if per_exit:
            return jnp.quantile(values, q, axis=1)
        return jnp.quantile(values.reshape(-1), q)
    # Held-out examples become NaN, which nanquantile skips: one shape for every fold.
    values = jnp.where(jnp.asarray(weights)[None, :] > 0, values, jnp.nan)
    if per_exit:
        return jnp.nanquantile(values, q, axis=1)
    return jnp.nanquantile(values.reshape(-1), q)


def threshold_policies(family: str, data: ExitData, quantiles=DEFAULT_QUANTILES, weights=None):
    """The batched ``ThresholdPolicy`` of ``family`` (a key of ``THRESHOLD_FAMILIES``)."""
    feature, above, per_exit = THRESHOLD_FAMILIES[family]
    thresholds = threshold_grid(data, feature, quantiles, per_exit, weights)
    return ThresholdPolicy(thresholds, data.num_exits, feature, above, per_exit, family)


def sweep_rows(policies, val, test) -> dict[str, list[dict[str, Any]]]:
    """Report rows of every setting of a batched policy on both splits (no cross-fitting)."""
    return {
        split: report_rows(policies, batched_exits(policies, data.features), data)
        for split, data in (("val", val), ("test", test))
    }


def add_quantiles(sweep: dict[str, Any], quantiles) -> dict[str, Any]:
    """Name each row's quantile in its parameters (every row list of the sweep)."""
    for key in ("val", "test", "val_insample"):
        for q, row in zip(np.asarray(quantiles).tolist(), sweep.get(key, []), strict=False):
            row["params"]["quantile"] = q
    return sweep


def threshold_sweep(family: str, val: ExitData, test: ExitData, quantiles=DEFAULT_QUANTILES,
                    *, folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED):
    """``{"family", "val", "test", "selection", ...}`` over quantile thresholds, the grid
    taken from the part of validation each fit may read (``jee.policy.crossfit``)."""
    sweep = crossfit_sweep(lambda w: threshold_policies(family, val, quantiles, w), val, test,
                           folds=folds, seed=seed)
    return {"family": family, **add_quantiles(sweep, quantiles)}


def bolukbasi_sweep(val: ExitData, test: ExitData, lambdas=DEFAULT_LAMBDAS, *,
                    features: tuple[str, ...] = FEATURE_SETS["basic"],
                    folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED, **fit_kwargs):
    """``{"family": "bolukbasi", "val", "test", "selection", ...}``: one policy per lambda."""
    def fit(weights):
        return fit_bolukbasi(val, lambdas, features=features, weights=weights, **fit_kwargs)[0]
    return {"family": "bolukbasi", **crossfit_sweep(fit, val, test, folds=folds, seed=seed)}


def curve_score(sweep: dict[str, Any], budgets=SELECTION_BUDGETS) -> float:
    """Mean over ``budgets`` of the best ``val`` accuracy within each (0 where none fits):
    how a family does on the figures budget picks read."""
    picks = [select_under_budget(sweep, b) for b in budgets]
    return float(np.mean([0.0 if p is None else p["val_accuracy"] for p in picks]))


def learned_sweeps(val: ExitData, test: ExitData, lambdas=DEFAULT_LAMBDAS, *,
                   features: str = "auto", folds: int = DEFAULT_FOLDS,
                   seed: int = DEFAULT_SEED, budgets=SELECTION_BUDGETS, **fit_kwargs
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The learned policy's curves per feature set and which set is family ``bolukbasi``.

    ``features``: a key of ``FEATURE_SETS``, or ``"auto"``: every set ``val`` holds is fitted,
    the one with the highest ``curve_score`` (ties: the earlier, simpler set) becomes
    ``bolukbasi``, the others ``bolukbasi_<set>``. Returns ``(curves, {"chosen", "scores",
    "budgets"})``.
    """
    if features not in FEATURE_CHOICES:
        raise ValueError(f"features must be one of {FEATURE_CHOICES}, got {features!r}")
    names = [n for n in FEATURE_SETS if val.has_features(FEATURE_SETS[n])]
    names = names if features == "auto" else [features]
    sweeps = {n: bolukbasi_sweep(val, test, lambdas, features=FEATURE_SETS[n], folds=folds,
                                 seed=seed, **fit_kwargs) for n in names}
    return choose_feature_set(sweeps, budgets)


def choose_feature_set(sweeps: dict[str, dict[str, Any]], budgets=SELECTION_BUDGETS
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(curves, selection)`` from the learned policy's sweep per feature set (in order,
    simplest first): the set with the highest ``curve_score`` (ties: the simpler) becomes
    family ``bolukbasi``, the others ``bolukbasi_<set>``."""
    names = list(sweeps)
    scores = {n: curve_score({"family": "bolukbasi", **s}, budgets) for n, s in sweeps.items()}
    chosen = max(names, key=lambda n: (scores[n], -names.index(n)))
    curves = {"bolukbasi": {**sweeps[chosen], "family": "bolukbasi", "feature_set": chosen}}
    curves.update({f"bolukbasi_{n}": {**sweeps[n], "family": f"bolukbasi_{n}", "feature_set": n}
                   for n in names if n != chosen})
    return curves, {"chosen": chosen, "scores": scores, "budgets": list(budgets)}


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
    features: str = "auto",
    crossfit_folds: int = DEFAULT_FOLDS,
    seed: int = DEFAULT_SEED,
    **fit_kwargs,
) -> dict[str, Any]:
    """Every family's curve and the reference points, JSON-serialisable::

        {"families": {family: {"val": [row], "test": [row], "selection", ...}},
         "selection": "crossfit-K" | "in-sample",
         "feature_selection": {"chosen", "scores", "budgets"} (with "bolukbasi"),
         "oracle": {"val": row, "test": row},
         "single_exits": {"val": [row per exit], "test": [...]},
         "eenet_default": {"val": row, "test": row}}

    A family's ``val`` rows are its out-of-fold figures when ``crossfit_folds`` >= 2
    (``val_insample`` then holds the refit's in-sample ones); ``features`` picks the learned
    policy's feature set (``learned_sweeps``).
    """
    curves = {}
    feature_selection = None
    for family in families:
        if family == "bolukbasi":
            learned, feature_selection = learned_sweeps(
                val, test, lambdas, features=features, folds=crossfit_folds, seed=seed,
                **fit_kwargs)
            curves.update({k: {n: v for n, v in c.items() if n != "family"}
                           for k, c in learned.items()})
        else:
            sweep = threshold_sweep(family, val, test, quantiles, folds=crossfit_folds,
                                    seed=seed)
            curves[family] = {k: v for k, v in sweep.items() if k != "family"}
    oracle = OraclePolicy()
    singles = [single_policy_rows(FixedExitPolicy(val.num_exits, k), val, test)
               for k in range(val.num_exits)]
    report = {
        "families": curves,
        "selection": selection_name(crossfit_folds),
        "oracle": {s: report_row(oracle, oracle.exits_from_data(d), d)
                   for s, d in (("val", val), ("test", test))},
        "single_exits": {s: [rows[s] for rows in singles] for s in ("val", "test")},
        "eenet_default": single_policy_rows(
            eenet_policy(val.num_exits, eenet_threshold), val, test
        ),
    }
    if feature_selection is not None:
        report["feature_selection"] = feature_selection
    return report
