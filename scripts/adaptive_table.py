"""Markdown tables of early-exit runs against their plain backbones, from each run's own files.

For every ``LABEL=WORKDIR`` of an early-exit run: the figures train.py wrote to
``test_metrics.json`` (the scored checkpoint: accuracy at the config's threshold, relative
cost, the share of the test set at each exit, the final exit's accuracy) and the recipe from
``config.json``; each is compared with the plain backbone named by ``--plain LABEL=WORKDIR``
(one per group, the group being the part of the label before the first ``/``). With
``--budgets``, a second table compares the learned exit policy with max-probability at each
budget of every run's ``eval/budgets.json`` (``evaluate.py --workdir``), validation-predicted
next to test.

    python scripts/adaptive_table.py --plain r20=runs/fm_plain20 r20/adaptive=runs/fm_eenet20 \\
        r20/onestage=runs/fm_eenet20_onestage --budgets
"""

from __future__ import annotations

import argparse
import json
import os


def _load(path: str):
    with open(path) as f:
        return json.load(f)


def _pairs(items):
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"give LABEL=WORKDIR, not {item!r}")
        out.append((label, path))
    return out


def _recipe(config) -> str:
    stage = config.get("confidence_stage", {})
    parts = [f"{config['model']['exit_type']} heads",
             f"exit grad x{config['loss'].get('exit_grad_scale', 1.0):g}"]
    if stage.get("epochs"):
        lam = stage["lam"] if stage["lam"] >= 0 else config["loss"]["lam"]
        parts.append(f"confidence stage {stage['epochs']:g} ep, lam {lam:g}, holdout "
                     f"{config['dataset']['holdout_size']:g}")
    else:
        parts.append("one stage")
    return ", ".join(parts)


def run_table(runs, plains) -> str:
    rows = ["| run | recipe | plain backbone | final exit (vs plain) | at T=0.5 (vs plain) | "
            "relative cost | test share per exit | largest share |",
            "|---|---|---|---|---|---|---|---|"]
    for label, path in runs:
        group = label.split("/", 1)[0]
        plain = _load(os.path.join(plains[group], "test_metrics.json"))["accuracy"]
        m = _load(os.path.join(path, "test_metrics.json"))
        config = _load(os.path.join(path, "config.json"))
        shares = m["exit_fractions"]
        rows.append(
            f"| {label} | {_recipe(config)} | {100 * plain:.2f} | "
            f"{100 * m['final_accuracy']:.2f} ({100 * (m['final_accuracy'] - plain):+.2f}) | "
            f"{100 * m['accuracy']:.2f} ({100 * (m['accuracy'] - plain):+.2f}) | "
            f"{m['relative_cost']:.3f} | {' / '.join(f'{100 * s:.1f}' for s in shares)} | "
            f"{100 * max(shares):.1f}% |")
    return "\n".join(rows)


def _pick(budgets, family, budget):
    for row in budgets:
        if row.get("budget") == budget and row.get("family") == family:
            return row
    return None


def budget_table(runs) -> str:
    rows = ["| run | budget | max-prob: val-predicted / test | learned: val-predicted / test | "
            "learned - max-prob (test) | 1 s.e. |", "|---|---|---|---|---|---|"]
    for label, path in runs:
        file = os.path.join(path, "eval", "budgets.json")
        if not os.path.exists(file):
            continue
        budgets = _load(file)
        budgets = budgets.get("budgets", budgets) if isinstance(budgets, dict) else budgets
        for budget in sorted({b["budget"] for b in budgets}):
            mp, bk = _pick(budgets, "max_prob", budget), _pick(budgets, "bolukbasi", budget)
            if mp is None or bk is None:
                continue
            cells = [f"{100 * r['val_accuracy']:.2f} / {100 * r['test_accuracy']:.2f} "
                     f"(cost {r['test_relative_cost']:.3f})" for r in (mp, bk)]
            se = max(mp.get("test_accuracy_se", 0.0), bk.get("test_accuracy_se", 0.0))
            rows.append(f"| {label} | {budget:g} | {cells[0]} | {cells[1]} | "
                        f"{100 * (bk['test_accuracy'] - mp['test_accuracy']):+.2f} | "
                        f"{100 * se:.2f} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=WORKDIR of early-exit runs")
    p.add_argument("--plain", action="append", default=[], help="GROUP=WORKDIR")
    p.add_argument("--budgets", action="store_true")
    a = p.parse_args()
    runs, plains = _pairs(a.runs), dict(_pairs(a.plain))
    missing = {label.split("/", 1)[0] for label, _ in runs} - set(plains)
    if missing:
        raise SystemExit(f"no --plain for group(s) {sorted(missing)}")
    print(run_table(runs, plains))
    if a.budgets:
        print()
        print(budget_table(runs))


if __name__ == "__main__":
    main()
