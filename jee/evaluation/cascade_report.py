"""``evaluate.py --config configs/*_cascade.py``: every routing policy of a cascade, fitted on
validation, scored on test, with the oracle, each model alone and the operating points.

Writes to ``ROOT/eval`` (``cascade.root``, or ``--workdir``) the same files as the early-exit
report, with path fractions in place of exit fractions: ``report.json``, ``report_full.json``,
``report.csv``, ``budgets.json``, ``comparison.json`` (the learned routing policy against
max-probability, paired on test), ``accuracy_vs_cost.png`` and ``path_histograms.png``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jee.cascade.features import path_outcomes
from jee.cascade.graph import CascadeGraph
from jee.cascade.paired import policy_from_pick
from jee.cascade.sweeps import cascade_report, operating_points, with_paths
from jee.evaluation.cascade_inputs import cascade_inputs
from jee.evaluation.comparison import (
    learned_against_max_prob,
    print_comparison,
    print_feature_selection,
)
from jee.evaluation.options import BUDGETS, ReportOptions
from jee.evaluation.report_files import policy_rows, with_standard_errors, write_report_files
from jee.outputs import is_writer, write_json
from jee.policy import plots
from jee.policy.budget import budget_table, row_of_pick


def flat_report(report, outputs, graph: CascadeGraph, data, split: str,
                losses: tuple[float, ...]) -> dict[str, Any]:
    """The documented ``report.json`` of a cascade on ``split``."""
    rows = policy_rows(report, split)
    models = [{"index": k, "name": name, "macs": float(outputs.macs[k]),
               "relative_cost": float(data.costs[k]),
               "accuracy": float(np.mean(np.asarray(data.correct[k]))),
               "top5": float(np.mean(np.asarray(data.correct_top5[k])))}
              for k, name in enumerate(outputs.names)]
    return with_paths({
        "dataset": outputs.dataset, "split": split, "num_examples": int(data.num_examples),
        "models": models,
        "edges": [[k, j] for k, succ in enumerate(graph.successors) for j in succ],
        "paths": report["paths"], "operating_points": operating_points(report, losses),
        "selection": report["selection"], "feature_selection": report["feature_selection"],
        "policies": rows})


def _print_summary(flat, budgets) -> None:
    print(f"{flat['dataset']} {flat['split']} ({flat['num_examples']} examples), cascade of "
          f"{len(flat['models'])} models")
    for m in flat["models"]:
        print(f"  {m['name']:>10}: relative cost {m['relative_cost']:.3f}, accuracy "
              f"{m['accuracy']:.4f}")
    print_feature_selection(flat["feature_selection"])
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
    print(f"settings selected on validation, {flat['selection']}")
    print(f"{'budget':>6} {'policy':>10} {'val acc':>8} {'test acc':>9} {'+-se':>6} "
          f"{'test cost':>9}")
    for b in budgets:
        if b["feasible"]:
            print(f"{b['budget']:>6.2f} {b['family']:>10} {b['val_accuracy']:>8.4f} "
                  f"{b['test_accuracy']:>9.4f} {b.get('test_accuracy_se', 0):>6.4f} "
                  f"{b['test_relative_cost']:>9.3f}")
    oracle = next(r for r in flat["policies"] if r["family"] == "oracle")
    print(f"oracle: accuracy {oracle['accuracy']:.4f}, relative cost "
          f"{oracle['relative_cost']:.3f}")


def run(config, options: ReportOptions, out: str) -> dict[str, Any]:
    """The report of the cascade ``config``, written to ``out``."""
    split = options.split
    outputs, graph, data = cascade_inputs(config)
    report = cascade_report(data["val"], data["test"], graph, outputs.names,
                            features=options.features, crossfit_folds=options.crossfit_folds)
    flat = flat_report(report, outputs, graph, data[split], split, config.cascade.losses)
    budgets = with_paths(with_standard_errors(budget_table(report, BUDGETS),
                                              int(data["test"].num_examples)))
    write_report_files(out, flat, with_paths(report), budgets, "path_fractions", full_indent=2)
    comparison = with_paths(learned_against_max_prob(
        report, path_outcomes(data["test"], graph),
        rebuild=lambda pick: policy_from_pick(pick, graph)))
    write_json(out, "comparison.json", comparison)
    if is_writer():
        plots.plot_accuracy_vs_cost(report, f"{out}/accuracy_vs_cost.png", split=split,
                                    title=f"{outputs.dataset} cascade: accuracy vs relative cost")
        picks = [report["oracle"][split]] + [
            {**row_of_pick(report["families"]["bolukbasi"], p, split),
             "name": f"bolukbasi, loss {p['loss']:g}"}
            for p in flat["operating_points"]["points"]
            if p["feasible"] and p["family"] == "bolukbasi" and p["selected_on"] == "val"]
        ticks = [" > ".join(p["models"]) for p in report["paths"]]
        plots.plot_exit_histograms(picks, f"{out}/path_histograms.png", xlabel="path",
                                   ticks=ticks)
        _print_summary(flat, budgets)
        print_comparison(comparison)
        print(f"wrote {out}/report.json, report.csv, budgets.json, accuracy_vs_cost.png, "
              "path_histograms.png")
    return flat
