"""Markdown tables of early-exit runs against their plain backbones, from each run's own files.

For every ``LABEL=WORKDIR`` of an early-exit run: the figures train.py wrote to
``test_metrics.json`` (the scored checkpoint: accuracy at the config's threshold, relative
cost, the share of the test set at each exit, the final exit's accuracy) and the recipe from
``config.json``; each is compared with the plain backbone named by ``--plain LABEL=WORKDIR``
(one per group, the group being the part of the label before the first ``/``). With
``--budgets``, a second table compares the learned exit policy with max-probability at each
budget 0.3-0.9 of every run's ``eval/comparison.json`` (``evaluate.py --workdir``):
validation-predicted next to test, and their difference on test with its paired standard
error.

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
    if config["model"].get("confidence_inputs", "features") != "features":
        parts.append(f"confidence reads {config['model']['confidence_inputs']}")
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


def budget_table(runs) -> str:
    """The learned policy against max-probability from each run's ``eval/comparison.json``."""
    rows = ["| run | budget | max-prob: val-predicted / test (cost) | learned: val-predicted / "
            "test (cost) | learned - max-prob on test | paired s.e. |",
            "|---|---|---|---|---|---|"]
    for label, path in runs:
        file = os.path.join(path, "eval", "comparison.json")
        if not os.path.exists(file):
            continue
        picks = _load(file)
        reference = {b["budget"]: b for b in picks
                     if b["family"] == "max_prob" and b.get("feasible", True)}
        for b in picks:
            vs = b.get("vs_max_prob")
            if b["family"] != "bolukbasi" or vs is None:
                continue
            mp = reference[b["budget"]]
            cells = [f"{100 * r['val_accuracy']:.2f} / {100 * r['test_accuracy']:.2f} "
                     f"({r['test_relative_cost']:.3f})" for r in (mp, b)]
            rows.append(f"| {label} | {b['budget']:g} | {cells[0]} | {cells[1]} | "
                        f"{100 * vs['difference']:+.2f} | {100 * vs['paired_se']:.2f} |")
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
