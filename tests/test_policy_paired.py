"""Paired comparison of budget picks (jee/policy/paired.py): the rebuilt picks score what the
report says, and the paired standard error matches a hand computation."""

import math

import numpy as np
import pytest

from jee.policy.budget import budget_table
from jee.policy.features import exit_data
from jee.policy.paired import paired_difference, policy_from_pick, with_paired_comparison
from jee.policy.sweeps import SELECTION_BUDGETS, policy_report
from jee.policy.synthetic import synthetic_exit_outputs

E, N, C = 3, 600, 10
LAMBDAS = np.geomspace(0.005, 20.0, 12)


def test_paired_difference_by_hand():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 0, 1, 1], bool)
    diff, se = paired_difference(a, b)
    # d = [0, 1, 0, -1, 0]: mean 0, sample variance 2/4, se sqrt(0.5 / 5).
    assert diff == 0.0
    assert se == pytest.approx(math.sqrt(0.5 / 5))


@pytest.fixture(scope="module")
def picks():
    val = exit_data(*synthetic_exit_outputs(E, N, C, seed=1))
    test = exit_data(*synthetic_exit_outputs(E, N, C, seed=2))
    report = policy_report(val, test, lambdas=LAMBDAS, quantiles=np.linspace(0, 1, 11))
    return test, budget_table(report, SELECTION_BUDGETS)


def test_every_pick_rebuilds_to_its_reported_accuracy(picks):
    test, table = picks
    rebuilt = 0
    for b in table:
        if b["feasible"]:
            assert policy_from_pick(b, E) is not None, b["family"]
            rebuilt += 1
    assert rebuilt > 20
    # with_paired_comparison raises if a rebuilt pick scores differently from the report.
    compared = with_paired_comparison(table, test)
    learned = [b for b in compared if "vs_max_prob" in b and b["family"] == "bolukbasi"]
    assert learned
    by_budget = {b["budget"]: b for b in compared if b["family"] == "max_prob" and b["feasible"]}
    for b in learned:
        vs = b["vs_max_prob"]
        # The mean paired difference is the difference of the two test accuracies...
        assert vs["difference"] == pytest.approx(
            b["test_accuracy"] - by_budget[b["budget"]]["test_accuracy"], abs=1e-6)
        # ...and pairing never gives a larger error than two independent samples would.
        a1, a2 = b["test_accuracy"], by_budget[b["budget"]]["test_accuracy"]
        independent = math.sqrt((a1 * (1 - a1) + a2 * (1 - a2)) / test.num_examples)
        assert vs["paired_se"] <= independent + 1e-9
    assert all("vs_max_prob" not in b for b in compared if b["family"] == "max_prob")
