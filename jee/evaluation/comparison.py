"""``eval/comparison.json``: the learned policy against max-probability at budgets 0.3-0.9,
paired over the same test examples (``jee.policy.paired``), for early-exit networks and
cascades alike, its printed table, and the printed choice of the learned policy's features."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jee.policy.budget import budget_table
from jee.policy.paired import REFERENCE, with_paired_comparison
from jee.policy.sweeps import SELECTION_BUDGETS


def learned_against_max_prob(report, test, rebuild: Callable[[dict], Any] | None = None
                             ) -> list[dict]:
    """The learned policy's picks (every feature set) and max-probability's at each budget
    0.3-0.9, each learned one with its paired difference to max-probability on test;
    ``rebuild`` as in ``with_paired_comparison``."""
    families = [f for f in report["families"] if f == REFERENCE or f.startswith("bolukbasi")]
    picks = [b for b in budget_table(report, SELECTION_BUDGETS) if b["family"] in families]
    return with_paired_comparison(picks, test, rebuild=rebuild)


def print_comparison(comparison) -> None:
    print(f"learned policy against {REFERENCE} on test (paired over the same examples)")
    print(f"{'budget':>6} {'policy':>18} {'test acc':>9} {'test cost':>9} {'difference':>11} "
          f"{'paired se':>9}")
    for b in comparison:
        vs = b.get(f"vs_{REFERENCE}")
        if vs is not None:
            print(f"{b['budget']:>6.2f} {b['family']:>18} {b['test_accuracy']:>9.4f} "
                  f"{b['test_relative_cost']:>9.3f} {vs['difference']:>+11.4f} "
                  f"{vs['paired_se']:>9.4f}")


def print_feature_selection(selection: dict[str, Any] | None) -> None:
    """One line: the learned policy's feature set and every set's out-of-fold score."""
    if selection:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in selection["scores"].items())
        print(f"learned policy features: {selection['chosen']} (mean validation accuracy over "
              f"budgets {selection['budgets']}: {scores})")
