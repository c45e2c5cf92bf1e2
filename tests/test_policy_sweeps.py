"""Metrics, sweeps over every policy family, budget selection and the plots."""

import json

import numpy as np
import pytest

from jee.policy.budget import budget_table, select_under_budget
from jee.policy.features import ExitData, exit_data
from jee.policy.metrics import exit_metrics, report_row
from jee.policy.oracle import OraclePolicy
from jee.policy.plots import plot_accuracy_vs_cost, plot_exit_histograms
from jee.policy.sweeps import policy_report
from jee.policy.synthetic import synthetic_exit_outputs

# Same shapes and lambda count as the fits in test_policy_bolukbasi, so its compiled fit is
# reused when both files run in one session.
E, N, C = 3, 600, 10
LAMBDAS = np.geomspace(0.005, 20.0, 12)


def test_metrics_hand_computed():
    correct = np.array([[1, 0, 0, 1], [1, 1, 0, 1], [1, 1, 1, 0]], bool)
    top5 = np.ones((3, 4), bool)
    top5[0, 2] = False
    data = ExitData(np.zeros((3, 4, 4), np.float32), correct, top5,
                    np.array([0.2, 0.5, 1.1], np.float32))
    exits = np.array([0, 1, 2, 0])
    m = exit_metrics(exits, data)
    # Exits taken: right, right, right, right -> 1.0; costs 0.2, 0.5, 1.1, 0.2 -> mean 0.5.
    assert float(m["accuracy"]) == pytest.approx(1.0)
    assert float(m["relative_cost"]) == pytest.approx(0.5)
    assert float(m["speedup"]) == pytest.approx(2.0)
    np.testing.assert_allclose(np.asarray(m["exit_fractions"]), [0.5, 0.25, 0.25])
    # Everyone at exit 0: right on examples 0 and 3; top-5 misses only example 2.
    m0 = exit_metrics(np.zeros(4, int), data)
    assert float(m0["accuracy"]) == pytest.approx(0.5)
    assert float(m0["top5"]) == pytest.approx(0.75)
    row = report_row(OraclePolicy(), np.zeros(4, int), data)
    assert row == json.loads(json.dumps(row))
    assert set(row) == {"name", "params", "accuracy", "top5", "relative_cost", "speedup",
                        "exit_fractions"}


@pytest.fixture(scope="module")
def report():
    val = exit_data(*synthetic_exit_outputs(E, N, C, seed=1))
    test = exit_data(*synthetic_exit_outputs(E, N, C, seed=2))
    return policy_report(val, test, lambdas=LAMBDAS, quantiles=np.linspace(0, 1, 11))


def test_no_policy_beats_the_oracle(report):
    for split in ("val", "test"):
        oracle = report["oracle"][split]
        rows = [r for curve in report["families"].values() for r in curve[split]]
        rows += report["single_exits"][split] + [report["eenet_default"][split]]
        # Two learned families: the chosen feature set (bolukbasi) and the other one.
        assert len(rows) == 5 * 11 + 2 * len(LAMBDAS) + E + 1
        for r in rows:
            assert r["accuracy"] <= oracle["accuracy"] + 1e-6, r
            assert not (r["accuracy"] > oracle["accuracy"]
                        and r["relative_cost"] < oracle["relative_cost"]), r


def test_threshold_curves_are_monotone(report):
    # Raising a ">=" threshold (or lowering a "<=" one) can only push examples later.
    for family, sign in (("eenet", 1), ("max_prob", 1), ("max_prob_per_exit", 1),
                         ("entropy", -1), ("entropy_per_exit", -1)):
        cost = np.array([r["relative_cost"] for r in report["families"][family]["val"]])
        assert np.all(sign * np.diff(cost) >= -1e-6), family
    # Quantile 0 of a ">=" feature sends everyone to exit 0 on the data it was taken
    # from (out of fold, an example below its fit part's minimum goes on).
    first = report["families"]["max_prob"]["val_insample"][0]
    assert first["exit_fractions"][0] == pytest.approx(1.0)


def test_budget_picks_most_accurate_setting_within_budget(report):
    for family, curve in report["families"].items():
        sweep = {"family": family, **curve}
        for budget in (0.4, 0.6, 0.8):
            pick = select_under_budget(sweep, budget)
            feasible = [i for i, r in enumerate(curve["val"]) if r["relative_cost"] <= budget]
            if not feasible:
                assert pick is None
                continue
            assert pick["val_relative_cost"] <= budget + 1e-6
            assert pick["val_accuracy"] == max(curve["val"][i]["accuracy"] for i in feasible)
            i = next(i for i in feasible if curve["val"][i]["params"] == pick["params"])
            assert pick["test_accuracy"] == curve["test"][i]["accuracy"]
            assert pick["test_relative_cost"] == curve["test"][i]["relative_cost"]
    # Cheaper than the cheapest exit is infeasible for everyone.
    table = budget_table(report, [0.01, 0.6])
    assert len(table) == 2 * len(report["families"])
    assert not any(r["feasible"] for r in table if r["budget"] == 0.01)
    assert all(r["feasible"] for r in table if r["budget"] == 0.6)


def _row(name, accuracy, cost):
    return {"name": name, "params": {"name": name}, "accuracy": accuracy, "relative_cost": cost,
            "top5": accuracy, "speedup": 1 / cost, "exit_fractions": [1.0]}


def test_budget_pick_under_crossfitting_needs_the_refit_to_fit_too():
    # Out of fold, "a" is the most accurate within 0.8, but its refit on all of validation
    # costs 1.078: the pick is "b", the best setting that fits both ways.
    sweep = {"family": "f", "selection": "crossfit-5",
             "val": [_row("a", 0.925, 0.78), _row("b", 0.922, 0.75), _row("c", 0.93, 0.9)],
             "val_insample": [_row("a", 0.927, 1.078), _row("b", 0.923, 0.76),
                              _row("c", 0.93, 0.9)],
             "test": [_row("a", 0.92, 1.078), _row("b", 0.921, 0.74), _row("c", 0.93, 0.9)]}
    pick = select_under_budget(sweep, 0.8)
    assert pick["name"] == "b" and pick["test_relative_cost"] == 0.74
    assert pick["val_insample_relative_cost"] == 0.76 and pick["val_relative_cost"] == 0.75
    assert select_under_budget(sweep, 1.1)["name"] == "c"
    assert select_under_budget(sweep, 0.7) is None
    # In-sample sweeps (no refit rows) select on their validation rows alone.
    del sweep["val_insample"]
    assert select_under_budget(sweep, 0.8)["name"] == "a"


def test_report_is_json_and_plots_are_written(report, tmp_path):
    assert json.loads(json.dumps(report)) == report
    curve_png = plot_accuracy_vs_cost(report, tmp_path / "acc_cost.png")
    rows = [curve["test"][5] for curve in report["families"].values()]
    hist_png = plot_exit_histograms(rows, tmp_path / "exits.png")
    for path in (curve_png, hist_png):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
