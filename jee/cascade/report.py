"""``evaluate.py --config configs/*_cascade.py``: every routing policy of a cascade, fitted on
validation, scored on test, with the oracle, each model alone and the operating points.

Writes to ``ROOT/eval`` (``cascade.root``, or ``--workdir``) the same files as the early-exit
report, with path fractions in place of exit fractions: ``report.json``, ``report_full.json``,
``report.csv``, ``budgets.json``, ``accuracy_vs_cost.png`` and ``path_histograms.png``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jee.cascade.data import FEATURE_NAMES, PathOutcomes, cascade_data, oracle_paths, path_outcomes
from jee.cascade.fit import fit_cascade
from jee.cascade.graph import CascadeGraph, make_graph
from jee.cascade.members import cascade_members, member_outputs
from jee.cascade.policy import ThresholdCascadePolicy
from jee.policy import plots
from jee.policy.budget import budget_table, row_of_pick, select_for_accuracy
from jee.policy.metrics import report_row
from jee.policy.oracle import OraclePolicy
from jee.policy.sweeps import DEFAULT_LAMBDAS, DEFAULT_QUANTILES, sweep_rows

# family -> (feature, stop_if_above)
THRESHOLD_FAMILIES = {"max_prob": ("max_prob", True), "margin": ("margin", True),
                      "entropy": ("entropy", False)}
BUDGETS = (0.3, 0.5, 0.7)
# Accuracy given up against the best single model (on validation) at the operating points.
LOSSES = (0.0, 0.01)


def threshold_policies(family: str, val: PathOutcomes, graph: CascadeGraph,
                       quantiles=DEFAULT_QUANTILES) -> ThresholdCascadePolicy:
    """Batched threshold cascade over quantiles of the feature on the models that can hand
    over (all but the last)."""
    feature, above = THRESHOLD_FAMILIES[family]
    values = val.features[:-1, :, FEATURE_NAMES.index(feature)].reshape(-1)
    thresholds = jnp.quantile(values, jnp.asarray(quantiles, jnp.float32))
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
                   quantiles=DEFAULT_QUANTILES, learned=None, **fit_kwargs) -> dict[str, Any]:
    """Curves and reference points of a cascade (``val`` / ``test``: ``CascadeData``)::

        {"families": {family: {"val": [row], "test": [row]}},
         "oracle": {split: row}, "single_models": {split: [row per model]},
         "paths": [{"index", "models", "relative_cost"}]}

    Rows as in ``jee.policy.sweeps``, their ``exit_fractions`` over the paths. ``learned``:
    the policies of ``fit_cascade(val, graph, lambdas)`` when the caller already has them.
    """
    outcomes = {"val": path_outcomes(val, graph), "test": path_outcomes(test, graph)}
    families = {}
    for family in THRESHOLD_FAMILIES:
        policies = threshold_policies(family, outcomes["val"], graph, quantiles)
        rows = sweep_rows(policies, outcomes["val"], outcomes["test"])
        for split_rows in rows.values():
            for q, row in zip(np.asarray(quantiles).tolist(), split_rows, strict=True):
                row["params"]["quantile"] = q
        families[family] = rows
    if learned is None:
        learned, _ = fit_cascade(val, graph, lambdas, **fit_kwargs)
    families["bolukbasi"] = sweep_rows(learned, outcomes["val"], outcomes["test"])
    oracle = OraclePolicy()
    singles = {"val": _single_model_rows(val, names), "test": _single_model_rows(test, names)}
    costs = graph.path_costs(np.asarray(val.costs))
    return {
        "families": families,
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
                sweep = {"family": family, "val": curve[selected_on], "test": curve["test"]}
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


def _with_paths(obj):
    """Rename the shared ``*exit_fractions`` keys to ``*path_fractions`` for the files."""
    if isinstance(obj, list):
        return [_with_paths(o) for o in obj]
    if isinstance(obj, dict):
        return {k.replace("exit_fractions", "path_fractions"): _with_paths(v)
                for k, v in obj.items()}
    return obj


def flat_report(report, outputs, graph: CascadeGraph, data, split: str) -> dict[str, Any]:
    """The documented ``report.json`` of a cascade on ``split``."""
    rows = [{**row, "family": family}
            for family, curve in report["families"].items() for row in curve[split]]
    rows.append({**report["oracle"][split], "family": "oracle"})
    models = [{"index": k, "name": name, "macs": float(outputs.macs[k]),
               "relative_cost": float(data.costs[k]),
               "accuracy": float(np.mean(np.asarray(data.correct[k]))),
               "top5": float(np.mean(np.asarray(data.correct_top5[k])))}
              for k, name in enumerate(outputs.names)]
    return _with_paths({
        "dataset": outputs.dataset, "split": split, "num_examples": int(data.num_examples),
        "models": models,
        "edges": [[k, j] for k, succ in enumerate(graph.successors) for j in succ],
        "paths": report["paths"], "operating_points": operating_points(report),
        "policies": rows})


def _print_summary(flat, budgets) -> None:
    print(f"{flat['dataset']} {flat['split']} ({flat['num_examples']} examples), cascade of "
          f"{len(flat['models'])} models")
    for m in flat["models"]:
        print(f"  {m['name']:>10}: relative cost {m['relative_cost']:.3f}, accuracy "
              f"{m['accuracy']:.4f}")
    ops = flat["operating_points"]
    print(f"reference: {ops['reference']['model']} (test accuracy "
          f"{ops['reference']['test_accuracy']:.4f})")
    print(f"{'loss':>5} {'chosen on':>9} {'policy':>10} {'test acc':>9} {'change':>8} "
          f"{'test cost':>9} {'speed-up':>8}")
    for p in ops["points"]:
        if p["feasible"]:
            print(f"{p['loss']:>5.2f} {p['selected_on']:>9} {p['family']:>10} "
                  f"{p['test_accuracy']:>9.4f} "
                  f"{p['test_accuracy_change']:>+8.4f} {p['test_relative_cost']:>9.3f} "
                  f"{p['test_speedup_vs_reference']:>8.2f}")
    print(f"{'budget':>6} {'policy':>10} {'test acc':>9} {'test cost':>9}")
    for b in budgets:
        if b["feasible"]:
            print(f"{b['budget']:>6.2f} {b['family']:>10} {b['test_accuracy']:>9.4f} "
                  f"{b['test_relative_cost']:>9.3f}")
    oracle = next(r for r in flat["policies"] if r["family"] == "oracle")
    print(f"oracle: accuracy {oracle['accuracy']:.4f}, relative cost "
          f"{oracle['relative_cost']:.3f}")


def cascade_inputs(config, members=None, restored=None):
    """(outputs, graph, {split: CascadeData}) of a cascade config's trained members."""
    outputs = member_outputs(members or cascade_members(config), restored)
    graph = make_graph(len(outputs.names), tuple(config.cascade.edges))
    data = {s: cascade_data(outputs.logits[s], outputs.labels[s], outputs.macs)
            for s in ("val", "test")}
    return outputs, graph, data


def output_dir(config, flags) -> str:
    path = os.path.join(flags.workdir or config.cascade.root, "eval")
    os.makedirs(path, exist_ok=True)
    return path


def run(config, flags) -> dict[str, Any]:
    from jee.report_cli import write_csv

    split = flags.split
    if split not in ("val", "test"):
        raise ValueError(f"--split must be val or test, got {split!r}")
    outputs, graph, data = cascade_inputs(config)
    report = cascade_report(data["val"], data["test"], graph, outputs.names)
    flat = flat_report(report, outputs, graph, data[split], split)
    budgets = _with_paths(budget_table(report, BUDGETS))
    out = output_dir(config, flags)
    if jax.process_index() == 0:
        for name, obj in (("report.json", flat), ("report_full.json", _with_paths(report)),
                          ("budgets.json", budgets)):
            with open(os.path.join(out, name), "w") as f:
                json.dump(obj, f, indent=2)
        write_csv(os.path.join(out, "report.csv"), flat["policies"], "path_fractions")
        plots.plot_accuracy_vs_cost(report, os.path.join(out, "accuracy_vs_cost.png"),
                                    split=split,
                                    title=f"{outputs.dataset} cascade: accuracy vs relative cost")
        picks = [report["oracle"][split]] + [
            {**row_of_pick(report["families"]["bolukbasi"], p, split),
             "name": f"bolukbasi, loss {p['loss']:g}"}
            for p in flat["operating_points"]["points"]
            if p["feasible"] and p["family"] == "bolukbasi" and p["selected_on"] == "val"]
        ticks = [" > ".join(p["models"]) for p in report["paths"]]
        plots.plot_exit_histograms(picks, os.path.join(out, "path_histograms.png"),
                                   xlabel="path", ticks=ticks)
        _print_summary(flat, budgets)
        print(f"wrote {out}/report.json, report.csv, budgets.json, accuracy_vs_cost.png, "
              "path_histograms.png")
    return flat
