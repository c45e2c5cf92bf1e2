"""``evaluate.py --workdir DIR``: every exit policy of a trained run, fitted on val, scored on test.

Loads the best checkpoint, runs one masked forward pass over the validation and test splits,
fits/sweeps every policy family on validation, and writes ``DIR/eval/report.json``,
``report.csv``, ``budgets.json`` and PNG plots.
"""

from __future__ import annotations

import csv
import json
import os

import jax
import numpy as np

from jee import exit_eval, sharding
from jee.models import split as split_model
from jee.policy import plots
from jee.policy.budget import budget_table
from jee.policy.features import exit_data
from jee.policy.sweeps import policy_report

BUDGETS = (0.3, 0.5, 0.7)


def split_outputs(config, workdir: str, which: str | int = "best"):
    """(dataset, model, costs, {split: ExitData}, state) of a checkpoint of a run (``which``:
    'best' by validation accuracy, 'latest' or a step)."""
    from jee.train_lib import restore_trained

    ds, model, state = restore_trained(config, workdir, which)
    costs, out = exit_data_by_split(config, ds, model, state)
    return ds, model, costs, out, state


def exit_data_by_split(config, ds, model, state):
    """(costs, {'val', 'test': ExitData}) of a restored network: one masked pass per split."""
    graphdef = split_model(model)[0]
    costs = model.costs().relative_costs()
    mesh = sharding.make_mesh()
    out = {}
    for name in ("val", "test"):
        logits, conf_logit, labels = exit_eval.collect_outputs(
            graphdef, state["params"], state["batch_stats"], ds, name,
            batch_size=config.eval_batch_size, mesh=mesh)
        out[name] = exit_data(logits, jax.nn.sigmoid(conf_logit), labels, costs)
    return costs, out


def flat_report(report: dict, ds, split: str, data) -> dict:
    """The documented ``report.json``: one row per sweep point, the oracle and EENet T=0.5."""
    rows = []
    for family, curve in report["families"].items():
        for row in curve[split]:
            rows.append({**row, "family": family})
    rows.append({**report["oracle"][split], "family": "oracle"})
    rows.append({**report["eenet_default"][split], "family": "eenet_default"})
    exits = [{"index": k, "relative_cost": float(data.costs[k]),
              "accuracy": float(np.mean(np.asarray(data.correct[k])))}
             for k in range(data.num_exits)]
    return {"dataset": ds.name, "split": split, "num_examples": int(data.num_examples),
            "exits": exits, "policies": rows}


def write_csv(path: str, rows, fractions_key: str = "exit_fractions") -> None:
    """One line per report row; lists and dicts as JSON."""
    keys = ["family", "name", "params", "accuracy", "top5", "relative_cost", "speedup",
            fractions_key]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            w.writerow([json.dumps(r[k]) if isinstance(r[k], (dict, list)) else r[k]
                        for k in keys])


def _print_table(flat: dict, budgets) -> None:
    print(f"{flat['dataset']} {flat['split']} ({flat['num_examples']} examples)")
    for e in flat["exits"]:
        print(f"  exit {e['index']}: relative cost {e['relative_cost']:.3f}, "
              f"accuracy {e['accuracy']:.4f}")
    print(f"{'budget':>6} {'policy':>18} {'test acc':>9} {'test cost':>9} {'val cost':>8}")
    for b in budgets:
        if not b.get("feasible", True):
            continue
        print(f"{b['budget']:>6.2f} {b['family']:>18} {b['test_accuracy']:>9.4f} "
              f"{b['test_relative_cost']:>9.3f} {b['val_relative_cost']:>8.3f}")
    for r in flat["policies"]:
        if r["family"] in ("oracle", "eenet_default"):
            print(f"{r['family']:>25}: accuracy {r['accuracy']:.4f}, relative cost "
                  f"{r['relative_cost']:.3f}, exits {np.round(r['exit_fractions'], 3).tolist()}")


def run(config, flags) -> dict:
    from jee.evaluation import _eval_dir

    split = flags.split
    if split not in ("val", "test"):
        raise ValueError(f"--split must be val or test, got {split!r}")
    ds, _, _, data, state = split_outputs(config, flags.workdir, flags.step)
    report = policy_report(data["val"], data["test"], eenet_threshold=config.threshold)
    flat = flat_report(report, ds, split, data[split])
    budgets = budget_table(report, BUDGETS)
    out = _eval_dir(flags.workdir)
    if jax.process_index() == 0:
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump(flat, f, indent=2)
        with open(os.path.join(out, "report_full.json"), "w") as f:
            json.dump(report, f)
        with open(os.path.join(out, "budgets.json"), "w") as f:
            json.dump(budgets, f, indent=2)
        write_csv(os.path.join(out, "report.csv"), flat["policies"])
        plots.plot_accuracy_vs_cost(report, os.path.join(out, "accuracy_vs_cost.png"),
                                    split=split, title=f"{ds.name}: accuracy vs relative cost")
        picks = [report["oracle"][split], report["eenet_default"][split]] + [
            b for b in (_budget_row(report, fam, 0.5, split) for fam in report["families"])
            if b is not None]
        plots.plot_exit_histograms(picks, os.path.join(out, "exit_histograms.png"))
        _print_table(flat, budgets)
        print(f"wrote {out}/report.json, report.csv, budgets.json, accuracy_vs_cost.png, "
              "exit_histograms.png")
    return flat


def _budget_row(report, family, budget, split):
    """The test row of a family's setting chosen on validation for a budget (or None)."""
    from jee.policy.budget import row_of_pick, select_under_budget

    curve = {"family": family, **report["families"][family]}
    pick = select_under_budget(curve, budget)
    if pick is None:
        return None
    return {**row_of_pick(curve, pick, split), "name": f"{family}@{budget}"}
