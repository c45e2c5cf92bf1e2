"""``evaluate.py --workdir DIR``: every exit policy of a trained run, fitted on val, scored on
test.

Loads a checkpoint (the best by validation accuracy unless told otherwise), runs one masked
forward pass over the validation and test splits, fits/sweeps every policy family on
validation (settings selected on out-of-fold figures, ``ReportOptions.crossfit_folds``; the
learned policy's feature set per ``ReportOptions.features``), and writes
``DIR/eval/report.json``, ``report_full.json``, ``report.csv``, ``budgets.json`` and PNG plots.
"""

from __future__ import annotations

import jax
import numpy as np

from jee import scoring, sharding
from jee.evaluation.comparison import (
    learned_against_max_prob,
    print_comparison,
    print_feature_selection,
)
from jee.evaluation.options import BUDGETS, ReportOptions
from jee.evaluation.report_files import policy_rows, with_standard_errors, write_report_files
from jee.models import split as split_model
from jee.outputs import is_writer, write_json
from jee.policy import plots
from jee.policy.budget import budget_table, row_of_pick, select_under_budget
from jee.policy.features import exit_data
from jee.policy.sweeps import policy_report
from jee.runs import restore_trained
from jee.tensorboard_log import log_image


def exit_data_by_split(config, ds, model, state):
    """(costs, {'val', 'test': ExitData}) of a restored network: one masked pass per split."""
    graphdef = split_model(model)[0]
    costs = model.costs().relative_costs()
    mesh = sharding.make_mesh()
    out = {}
    for name in ("val", "test"):
        logits, conf_logit, labels = scoring.collect_outputs(
            graphdef, state["params"], state["batch_stats"], ds, name,
            batch_size=config.eval_batch_size, mesh=mesh)
        out[name] = exit_data(logits, jax.nn.sigmoid(conf_logit), labels, costs)
    return costs, out


def flat_report(report: dict, ds, split: str, data) -> dict:
    """The documented ``report.json``: one row per sweep point, the oracle and EENet T=0.5."""
    exits = [{"index": k, "relative_cost": float(data.costs[k]),
              "accuracy": float(np.mean(np.asarray(data.correct[k])))}
             for k in range(data.num_exits)]
    return {"dataset": ds.name, "split": split, "num_examples": int(data.num_examples),
            "exits": exits, "selection": report["selection"],
            "feature_selection": report.get("feature_selection"),
            "policies": policy_rows(report, split, ("oracle", "eenet_default"))}


def _print_table(flat: dict, budgets) -> None:
    print(f"{flat['dataset']} {flat['split']} ({flat['num_examples']} examples)")
    for e in flat["exits"]:
        print(f"  exit {e['index']}: relative cost {e['relative_cost']:.3f}, "
              f"accuracy {e['accuracy']:.4f}")
    print_feature_selection(flat.get("feature_selection"))
    print(f"settings selected on validation, {flat['selection']}")
    print(f"{'budget':>6} {'policy':>18} {'val acc':>8} {'test acc':>9} {'+-se':>6} "
          f"{'val cost':>8} {'test cost':>9}")
    for b in budgets:
        if not b.get("feasible", True):
            continue
        print(f"{b['budget']:>6.2f} {b['family']:>18} {b['val_accuracy']:>8.4f} "
              f"{b['test_accuracy']:>9.4f} {b.get('test_accuracy_se', 0):>6.4f} "
              f"{b['val_relative_cost']:>8.3f} {b['test_relative_cost']:>9.3f}")
    for r in flat["policies"]:
        if r["family"] in ("oracle", "eenet_default"):
            print(f"{r['family']:>25}: accuracy {r['accuracy']:.4f}, relative cost "
                  f"{r['relative_cost']:.3f}, exits {np.round(r['exit_fractions'], 3).tolist()}")


def _budget_row(report, family, budget, split):
    """The test row of a family's setting chosen on validation for a budget (or None)."""
    curve = {"family": family, **report["families"][family]}
    pick = select_under_budget(curve, budget)
    if pick is None:
        return None
    return {**row_of_pick(curve, pick, split), "name": f"{family}@{budget}"}


def run(config, options: ReportOptions, out: str) -> dict:
    """The report of the run in ``options.workdir``, written to ``out``."""
    split = options.split
    ds, model, state = restore_trained(config, options.workdir, options.step)
    _, data = exit_data_by_split(config, ds, model, state)
    report = policy_report(data["val"], data["test"], eenet_threshold=config.threshold,
                           features=options.features, crossfit_folds=options.crossfit_folds)
    flat = flat_report(report, ds, split, data[split])
    budgets = with_standard_errors(budget_table(report, BUDGETS),
                                   int(data["test"].num_examples))
    write_report_files(out, flat, report, budgets)
    comparison = learned_against_max_prob(report, data["test"])
    write_json(out, "comparison.json", comparison)
    print_comparison(comparison)
    if is_writer():
        plots.plot_accuracy_vs_cost(report, f"{out}/accuracy_vs_cost.png", split=split,
                                    title=f"{ds.name}: accuracy vs relative cost")
        picks = [report["oracle"][split], report["eenet_default"][split]] + [
            b for b in (_budget_row(report, fam, 0.5, split) for fam in report["families"])
            if b is not None]
        plots.plot_exit_histograms(picks, f"{out}/exit_histograms.png")
        if config.get("tensorboard", False):
            # Next to the training curves, at the step of the checkpoint it scores.
            log_image(options.workdir, "eval/accuracy_vs_cost", f"{out}/accuracy_vs_cost.png",
                      int(state["step"]))
        _print_table(flat, budgets)
        print(f"wrote {out}/report.json, report.csv, budgets.json, accuracy_vs_cost.png, "
              "exit_histograms.png")
    return flat
