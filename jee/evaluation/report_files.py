"""The files every policy report writes, for the exits of one network and for a cascade:
``report.json`` (one row per point of every policy's sweep), ``report_full.json`` (the
validation and test curves), ``budgets.json`` and ``report.csv``."""

from __future__ import annotations

from jee.outputs import write_csv, write_json


def policy_rows(report: dict, split: str, references=("oracle",)) -> list[dict]:
    """Every family's sweep on ``split``, then the reference points, each with its family."""
    rows = [{**row, "family": family}
            for family, curve in report["families"].items() for row in curve[split]]
    return rows + [{**report[name][split], "family": name} for name in references]


def write_report_files(out: str, flat: dict, full: dict, budgets: list,
                       fractions_key: str = "exit_fractions", full_indent: int | None = None
                       ) -> None:
    write_json(out, "report.json", flat)
    write_json(out, "report_full.json", full, indent=full_indent)
    write_json(out, "budgets.json", budgets)
    write_csv(f"{out}/report.csv", flat["policies"], fractions_key)
