"""Writes docs/RESULTS.md from the files jee's own commands produced (see reproduce.sh).

    python scripts/results_doc.py RUNS_DIR > docs/RESULTS.md

Reads, for each experiment, the EENet run and its plain-backbone run (``test_metrics.json``),
the EENet run's policy report (``eval/report.json``, ``eval/budgets.json``) and benchmarks
(``eval/benchmark.json``); copies the accuracy-vs-cost plots next to the document. Nothing
here is typed in by hand: every figure comes from those files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

EXPERIMENTS = [
    ("digits", "ResNet-20, 2 exits (scikit-learn digits)", "digits", "digits_plain"),
    ("fashion_mnist", "EENet-8, 4 filters, plain exits (Fashion-MNIST)", "fm_eenet8", "fm_plain"),
]
BENCHMARKS = [
    ("bench110_b256", "ResNet-110, 8 exits, random init, synthetic policy (cost 0.5)"),
    ("digits", "digits ResNet-20, trained, EENet policy T=0.5"),
    ("fm_eenet8", "Fashion-MNIST EENet-8, trained, EENet policy T=0.5"),
]


def _load(path):
    with open(path) as f:
        return json.load(f)


def _pct(x):
    return f"{100 * x:.2f}"


def backbone_table(runs: str) -> list[str]:
    out = ["| experiment | plain backbone test acc. | EENet final exit | EENet at T=0.5 | "
           "mean relative cost at T=0.5 | per-exit test acc. | exit distribution |",
           "|---|---|---|---|---|---|---|"]
    for _, label, ee, plain in EXPERIMENTS:
        try:
            e = _load(os.path.join(runs, ee, "test_metrics.json"))
            p = _load(os.path.join(runs, plain, "test_metrics.json"))
        except FileNotFoundError:
            continue
        out.append(f"| {label} | {_pct(p['final_accuracy'])} | {_pct(e['final_accuracy'])} | "
                   f"{_pct(e['accuracy'])} | {e['relative_cost']:.3f} | "
                   f"{', '.join(_pct(a) for a in e['exit_accuracy'])} | "
                   f"{', '.join(f'{f:.3f}' for f in e['exit_fractions'])} |")
    return out


def budget_tables(runs: str, docs: str) -> list[str]:
    out = []
    for name, label, ee, _ in EXPERIMENTS:
        path = os.path.join(runs, ee, "eval")
        try:
            budgets = _load(os.path.join(path, "budgets.json"))
            report = _load(os.path.join(path, "report.json"))
        except FileNotFoundError:
            continue
        out += [f"### {label}", "",
                "Best setting of each policy family whose *validation* cost fits the budget; "
                "test accuracy and test cost of that setting.", "",
                "| budget | policy | test acc. | test cost | val. cost |", "|---|---|---|---|---|"]
        for b in budgets:
            if b.get("feasible", True):
                out.append(f"| {b['budget']:.1f} | {b['family']} | {_pct(b['test_accuracy'])} | "
                           f"{b['test_relative_cost']:.3f} | {b['val_relative_cost']:.3f} |")
        for row in report["policies"]:
            if row["family"] in ("oracle", "eenet_default"):
                out.append(f"| - | {row['family']} | {_pct(row['accuracy'])} | "
                           f"{row['relative_cost']:.3f} | - |")
        plot = os.path.join(path, "accuracy_vs_cost.png")
        if os.path.exists(plot):
            target = f"{name}_accuracy_vs_cost.png"
            shutil.copy(plot, os.path.join(docs, target))
            out += ["", f"![accuracy vs relative cost, {label}]({target})"]
        out.append("")
    return out


def benchmark_table(runs: str) -> list[str]:
    out = ["| network | batch | ladder | ideal speed-up | bucketed speed-up | efficiency | "
           "host speed-up | eager images/s | bucketed images/s | bucketed / eager | "
           "recompiles | agreement |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run, label in BENCHMARKS:
        path = os.path.join(runs, run, "eval", "benchmark.json")
        if not os.path.exists(path):
            continue
        b = _load(path)
        m = b["modes"]
        bk, eager = m["bucketed"], m.get("eager")
        ratio = f"{bk['images_per_s'] / eager['images_per_s']:.1f}x" if eager else "-"
        out.append(
            f"| {label} | {b['batch_size']} | {len(b.get('ladder', []))} sizes | "
            f"{b['ideal_speedup']:.2f} | {bk['speedup']:.2f} | {bk['efficiency']:.2f} | "
            f"{m['host']['speedup']:.2f} | {eager['images_per_s']:.1f} | "
            f"{bk['images_per_s']:.1f} | {ratio} | {bk['recompiles_after_warmup']} | "
            f"{b['agreement']:.4f} |")
    return out


def main() -> None:
    runs = sys.argv[1] if len(sys.argv) > 1 else "runs/results"
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
    os.makedirs(docs, exist_ok=True)
    lines = ["## EENet against its plain backbone (test split)", ""]
    lines += backbone_table(runs)
    lines += ["", "## Exit policies at matched budgets", ""]
    lines += budget_tables(runs, docs)
    lines += ["## Wall-clock speed-up of compiled early exit (this 2-core CPU)", ""]
    lines += benchmark_table(runs)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
