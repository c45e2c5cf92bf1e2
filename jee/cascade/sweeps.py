"""Accuracy/cost curves of a cascade's routing policies: threshold families and the learned
policy swept on validation and scored on test, with the oracle, each model alone, and the
operating points (the cheapest setting within a given accuracy loss of the best model).
Every family is fitted and selected as the early-exit ones are (``jee.policy.crossfit``): by
default its ``val`` rows are 5-fold out-of-fold figures."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jee.cascade.features import (
    FEATURE_NAMES,
    FEATURE_SETS,
    PathOutcomes,
    oracle_paths,
    path_outcomes,
)
from jee.cascade.fit import fit_cascade
from jee.cascade.graph import CascadeGraph
from jee.cascade.policy import ThresholdCascadePolicy
from jee.policy.budget import row_of_pick, select_for_accuracy
from jee.policy.crossfit import DEFAULT_FOLDS, DEFAULT_SEED, crossfit_sweep, selection_name
from jee.policy.metrics import report_row
from jee.policy.oracle import OraclePolicy
from jee.policy.sweeps import (
    DEFAULT_LAMBDAS,
    DEFAULT_QUANTILES,
    add_quantiles,
    choose_feature_set,
)

# family -> (feature, stop_if_above)
THRESHOLD_FAMILIES = {"max_prob": ("max_prob", True), "margin": ("margin", True),
                      "entropy": ("entropy", False)}
FEATURE_CHOICES = ("auto", *FEATURE_SETS)
# Accuracy given up against the best single model (on validation) at the operating points.
LOSSES = (0.0, 0.01)


def threshold_policies(family: str, val: PathOutcomes, graph: CascadeGraph,
                       quantiles=DEFAULT_QUANTILES, weights=None) -> ThresholdCascadePolicy:
    """Batched threshold cascade over quantiles of the feature on the models that can hand
    over (all but the last); ``weights [N]``: only examples of positive weight count."""
    feature, above = THRESHOLD_FAMILIES[family]
    values = val.features[:-1, :, FEATURE_NAMES.index(feature)]
    q = jnp.asarray(quantiles, jnp.float32)
    if weights is None:
        thresholds = jnp.quantile(values.reshape(-1), q)
    else:
        # Held-out examples become NaN, skipped by nanquantile: one shape for every fold.
        values = jnp.where(jnp.asarray(weights)[None, :] > 0, values, jnp.nan)
        thresholds = jnp.nanquantile(values.reshape(-1), q)
    return ThresholdCascadePolicy(thresholds, graph, feature, above, family)


def _single_model_rows(data, names):
    correct, correct_top5 = np.asarray(data.correct), np.asarray(data.correct_top5)
    costs = np.asarray(data.costs)
    rows = []
    for k, name in enumerate(names):
        cost = float(costs[k])
        rows.append({"name": f"{name} alone", "params": {"model": name},
                     "accuracy": float(np.mean(correct[k])),
                     "top5": float(np.mean(correct_top5[k])),
                     "relative_cost": cost, "speedup": 1.0 / cost, "exit_fractions": []})
    return rows


def cascade_report(val, test, graph: CascadeGraph, names, *, lambdas=DEFAULT_LAMBDAS,
                   quantiles=DEFAULT_QUANTILES, features: str = "auto",
                   crossfit_folds=DEFAULT_FOLDS, seed=DEFAULT_SEED, **fit_kwargs
                   ) -> dict[str, Any]:
    """Curves and reference points of a cascade (``val`` / ``test``: ``CascadeData``)::

        {"families": {family: {"val": [row], "test": [row], "selection", ...}},
         "selection": "crossfit-K" | "in-sample",
         "feature_selection": {"chosen", "scores", "budgets"},
         "oracle": {split: row}, "single_models": {split: [row per model]},
         "paths": [{"index", "models", "relative_cost"}]}

    Rows as in ``jee.policy.sweeps``, their ``exit_fractions`` over the paths; ``val`` rows
    are out-of-fold figures when ``crossfit_folds`` >= 2. ``features``: the learned policy's
    feature set (a key of ``FEATURE_SETS``), or ``"auto"``: every set is fitted and the best
    out of fold is family ``bolukbasi``, the others ``bolukbasi_<set>``, as for early exits.
    """
    if features not in FEATURE_CHOICES:
        raise ValueError(f"features must be one of {FEATURE_CHOICES}, got {features!r}")
    outcomes = {"val": path_outcomes(val, graph), "test": path_outcomes(test, graph)}
    families = {}
    for family in THRESHOLD_FAMILIES:
        def fit_threshold(weights, family=family):
            return threshold_policies(family, outcomes["val"], graph, quantiles, weights)
        families[family] = add_quantiles(crossfit_sweep(
            fit_threshold, outcomes["val"], outcomes["test"], folds=crossfit_folds,
            seed=seed), quantiles)

    sweeps = {}
    for name in FEATURE_SETS if features == "auto" else [features]:
        def fit_learned(weights, name=name):
            return fit_cascade(val, graph, lambdas, weights=weights,
                               features=FEATURE_SETS[name], **fit_kwargs)[0]
        sweeps[name] = crossfit_sweep(fit_learned, outcomes["val"], outcomes["test"],
                                      folds=crossfit_folds, seed=seed)
    learned, feature_selection = choose_feature_set(sweeps)
    families.update({family: {k: v for k, v in curve.items() if k != "family"}
                     for family, curve in learned.items()})
    oracle = OraclePolicy()
    singles = {"val": _single_model_rows(val, names), "test": _single_model_rows(test, names)}
    costs = graph.path_costs(np.asarray(val.costs))
    return {
        "families": families,
        "selection": selection_name(crossfit_folds),
        "feature_selection": feature_selection,
        "oracle": {s: report_row(oracle, oracle_paths(o), o) for s, o in outcomes.items()},
        "single_models": singles,
        "paths": [{"index": i, "models": [names[k] for k in p], "relative_cost": float(c)}
                  for i, (p, c) in enumerate(zip(graph.paths(), costs, strict=True))],
    }


def operating_points(report: dict[str, Any], losses=LOSSES) -> dict[str, Any]:
    """Per family and accuracy loss: the cheapest setting whose validation accuracy is
    within ``loss`` of the best single model's, with its test speed-up over that model
    (``"selected_on": "val"``, the honest operating point).

    Validation accuracies of settings this close differ by less than the sampling noise of
    the split, so such a point can lose more than ``loss`` on test. For comparison each is
    paired with the cheapest setting within ``loss`` of that model on *test*
    (``"selected_on": "test"``): chosen after the fact, the best the family could have done.
    """
    singles = report["single_models"]
    ref = max(range(len(singles["val"])),
              key=lambda k: (singles["val"][k]["accuracy"], -singles["val"][k]["relative_cost"]))
    ref_val, ref_test = singles["val"][ref], singles["test"][ref]
    points = []
    for loss in losses:
        for selected_on, ref_row in (("val", ref_val), ("test", ref_test)):
            for family, curve in report["families"].items():
                # Choosing on test: the test curve plays both parts.
                sweep = {"family": family, "val": curve[selected_on], "test": curve["test"],
                         "selection": (curve.get("selection", "in-sample")
                                       if selected_on == "val" else "test")}
                pick = select_for_accuracy(sweep, ref_row["accuracy"] - loss)
                if pick is None:
                    points.append({"family": family, "loss": loss, "selected_on": selected_on,
                                   "feasible": False})
                    continue
                if selected_on == "test":
                    val_row = row_of_pick(curve, pick, "val")
                    pick["val_accuracy"] = val_row["accuracy"]
                    pick["val_relative_cost"] = val_row["relative_cost"]
                points.append({
                    **pick, "loss": loss, "selected_on": selected_on, "feasible": True,
                    "test_accuracy_change": pick["test_accuracy"] - ref_test["accuracy"],
                    "test_speedup_vs_reference": ref_test["relative_cost"]
                    / pick["test_relative_cost"]})
    return {"reference": {"model": ref_val["params"]["model"],
                          "val_accuracy": ref_val["accuracy"],
                          "test_accuracy": ref_test["accuracy"],
                          "relative_cost": ref_val["relative_cost"]},
            "points": points}


def with_paths(obj):
    """Rename the shared ``*exit_fractions`` keys to ``*path_fractions`` for the files."""
    if isinstance(obj, list):
        return [with_paths(o) for o in obj]
    if isinstance(obj, dict):
        return {k.replace("exit_fractions", "path_fractions"): with_paths(v)
                for k, v in obj.items()}
    return obj
