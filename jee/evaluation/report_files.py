"""The files every policy report writes, for the exits of one network and for a cascade:
``report.json`` (one row per point of every policy's sweep), ``report_full.json`` (the
validation and test curves), ``budgets.json`` and ``report.csv``."""

from __future__ import annotations

import math

from jee.outputs import write_csv, write_json


def policy_rows(report: dict, split: str, references=("oracle",)) -> list[dict]:
    """Every family's sweep on ``split``, then the reference points, each with its family.

    A family's row also carries the validation figures its setting is selected on,
    ``val_accuracy`` / ``val_relative_cost`` (out-of-fold under cross-fitting: the
    validation-predicted figures, beside the ``split`` ones), and how they were obtained
    (``selection``).
    """
    rows = []
    for family, curve in report["families"].items():
        selection = curve.get("selection", "in-sample")
        for row, val_row in zip(curve[split], curve["val"], strict=True):
            rows.append({**row, "family": family, "selection": selection,
                         "val_accuracy": val_row["accuracy"],
                         "val_relative_cost": val_row["relative_cost"]})
    return rows + [{**report[name][split], "family": name} for name in references]


def with_standard_errors(budgets: list, num_test: int) -> list:
    """Budget picks with ``test_accuracy_se``, the binomial standard error of their test
    accuracy on ``num_test`` examples (how far apart two picks must be to mean anything)."""
    out = []
    for b in budgets:
        if b.get("feasible", True) and "test_accuracy" in b:
            a = b["test_accuracy"]
            b = {**b, "test_accuracy_se": math.sqrt(max(a * (1 - a), 0.0) / num_test)}
        out.append(b)
    return out


def write_report_files(out: str, flat: dict, full: dict, budgets: list,
                       fractions_key: str = "exit_fractions", full_indent: int | None = None
                       ) -> None:
    write_json(out, "report.json", flat)
    write_json(out, "report_full.json", full, indent=full_indent)
    write_json(out, "budgets.json", budgets)
    write_csv(f"{out}/report.csv", flat["policies"], fractions_key)
