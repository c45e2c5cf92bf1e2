"""Pick a policy setting for a compute budget on validation, and report it on test.

Given a target mean relative cost, the chosen setting of a family is the most accurate one
whose *validation* cost is within the budget (ties: the cheaper); its test accuracy and cost
are what the budget buys. The converse, the cheapest setting reaching a validation accuracy,
gives a family's speed-up at a given accuracy loss. Selecting on test would overstate
accuracy. Under cross-fitting (``jee.policy.crossfit``) a sweep's validation rows are
out-of-fold figures, so a pick reads no example its policy was fitted on; the pick says so
(``selection``) and puts the refit's in-sample validation figures beside them. A budget pick
must then fit both ways: the refit on all of validation is the policy reported on test, and
it can behave unlike its folds' fits (a learned cascade policy near the send-everything
regime cost 0.78 out of fold and 1.078 refitted, on validation and test alike).
"""

from __future__ import annotations

from typing import Any

# Costs are float32 means; a setting exactly on the budget should count as within it.
_COST_SLACK = 1e-6


def select_under_budget(sweep: dict[str, Any], budget: float) -> dict[str, Any] | None:
    """Budget pick from a sweep ``{"family", "val": rows, "test": rows}`` (rows aligned).

    Returns ``{"family", "budget", "name", "params", "selection", "val_accuracy",
    "val_relative_cost", "test_accuracy", "test_top5", "test_relative_cost", "test_speedup",
    "test_exit_fractions"}`` (the val figures are the ones selected on: out-of-fold under
    cross-fitting, which adds ``val_insample_accuracy`` / ``val_insample_relative_cost``), or
    None when no setting's validation cost fits the budget (under cross-fitting, out of fold
    and refitted).
    """
    insample = sweep.get("val_insample")

    def fits(i, row):
        refit = row if insample is None else insample[i]
        return max(row["relative_cost"], refit["relative_cost"]) <= budget + _COST_SLACK

    best = _best_on_val(sweep, fits, lambda r: (r["accuracy"], -r["relative_cost"]))
    return None if best is None else {**_pick(sweep, best), "budget": float(budget)}


def select_for_accuracy(sweep: dict[str, Any], min_accuracy: float) -> dict[str, Any] | None:
    """The cheapest setting of a sweep whose *validation* accuracy is at least
    ``min_accuracy`` (ties: the more accurate), reported like ``select_under_budget`` with
    ``min_accuracy`` in place of ``budget``; None when no setting is accurate enough."""
    best = _best_on_val(sweep, lambda i, r: r["accuracy"] >= min_accuracy - _COST_SLACK,
                        lambda r: (-r["relative_cost"], r["accuracy"]))
    return None if best is None else {**_pick(sweep, best), "min_accuracy": float(min_accuracy)}


def _best_on_val(sweep: dict[str, Any], allowed, rank) -> int | None:
    """Index of the validation row that ``allowed(i, row)`` admits with the highest ``rank``."""
    feasible = [i for i, row in enumerate(sweep["val"]) if allowed(i, row)]
    return max(feasible, key=lambda i: rank(sweep["val"][i])) if feasible else None


def row_of_pick(sweep: dict[str, Any], pick: dict[str, Any], split: str) -> dict[str, Any]:
    """The ``split`` row of the setting a pick chose (matched by its parameters)."""
    for val_row, row in zip(sweep["val"], sweep[split], strict=True):
        if val_row["params"] == pick["params"]:
            return row
    raise KeyError(f"no setting with parameters {pick['params']} in the sweep")


def _pick(sweep: dict[str, Any], i: int) -> dict[str, Any]:
    val_row, test_row = sweep["val"][i], sweep["test"][i]
    extra = {}
    if "val_insample" in sweep:
        insample = sweep["val_insample"][i]
        extra = {"val_insample_accuracy": insample["accuracy"],
                 "val_insample_relative_cost": insample["relative_cost"]}
    return {
        "family": sweep.get("family", val_row["name"]),
        "name": val_row["name"],
        "params": val_row["params"],
        "selection": sweep.get("selection", "in-sample"),
        **extra,
        "val_accuracy": val_row["accuracy"],
        "val_relative_cost": val_row["relative_cost"],
        "test_accuracy": test_row["accuracy"],
        "test_top5": test_row["top5"],
        "test_relative_cost": test_row["relative_cost"],
        "test_speedup": test_row["speedup"],
        "test_exit_fractions": test_row["exit_fractions"],
    }


def budget_table(report: dict[str, Any], budgets) -> list[dict[str, Any]]:
    """One budget pick per (family of ``policy_report``, budget); infeasible pairs are listed
    as ``{"family", "budget", "feasible": False}`` so tables keep their shape."""
    table = []
    for budget in budgets:
        for family, curve in report["families"].items():
            pick = select_under_budget({"family": family, **curve}, budget)
            if pick is None:
                table.append({"family": family, "budget": float(budget), "feasible": False})
            else:
                table.append({**pick, "feasible": True})
    return table
