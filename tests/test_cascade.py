"""Network selection over a cascade: graph, paths, oracle, routing policies and their fit."""

import dataclasses
import json
import os

import numpy as np
import pytest

from jee.cascade.features import (
    FEATURE_NAMES,
    FEATURE_SETS,
    cascade_data,
    oracle_paths,
    path_outcomes,
)
from jee.cascade.fit import fit_cascade
from jee.cascade.graph import make_graph
from jee.cascade.members import cascade_members
from jee.cascade.paired import policy_from_pick
from jee.cascade.policy import STOP, FixedPathPolicy, ThresholdCascadePolicy
from jee.cascade.sweeps import cascade_report, operating_points
from jee.config import load_config
from jee.policy.budget import budget_table
from jee.policy.metrics import exit_metrics
from jee.policy.paired import with_paired_comparison
from jee.policy.sweeps import SELECTION_BUDGETS, curve_score

COSTS = (1.0, 3.0, 10.0)  # relative: 0.1, 0.3, 1.0


def test_default_graph_links_every_model_to_every_later_one():
    g = make_graph(3)
    assert g.successors == ((1, 2), (2,), ())
    assert g.paths() == ((0,), (0, 1), (0, 1, 2), (0, 2))
    np.testing.assert_allclose(g.path_costs(COSTS), [1.0, 4.0, 14.0, 11.0])
    table = g.path_index_table()
    assert table[0b001] == 0 and table[0b011] == 1 and table[0b111] == 2 and table[0b101] == 3
    assert table[0b010] == -1 and table[0b110] == -1


def test_chain_graph_and_bad_edges():
    assert make_graph(3, [(0, 1), (1, 2)]).paths() == ((0,), (0, 1), (0, 1, 2))
    with pytest.raises(ValueError, match="backward"):
        make_graph(3, [(1, 0)])
    with pytest.raises(ValueError, match="outside"):
        make_graph(3, [(0, 3)])
    with pytest.raises(ValueError, match=r"\[2\] cannot be reached"):
        make_graph(3, [(0, 1)])


def _logits(predicted, confidence, num_classes=4):
    """Logits whose argmax is ``predicted`` with max-prob rising with ``confidence``."""
    out = np.zeros((len(predicted), num_classes), np.float32)
    out[np.arange(len(predicted)), predicted] = confidence
    return out


def _three_kinds(n_per_kind=200, seed=0):
    """A hand-made problem with a known optimum for a small lambda.

    easy: model 0 is right and confident -> stop at 0 (cost 0.1);
    medium: model 0 wrong with middling confidence, models 1 and 2 right -> 0, 1 (0.4);
    hard: model 0 wrong and unsure, model 1 wrong, model 2 right -> jump 0, 2 (1.1) rather
    than 0, 1, 2 (1.4).
    """
    rng = np.random.default_rng(seed)
    kinds = np.repeat([0, 1, 2], n_per_kind)
    labels = rng.integers(0, 4, kinds.size)
    wrong = (labels + 1) % 4
    jitter = rng.uniform(-0.2, 0.2, kinds.size)
    conf0 = np.select([kinds == 0, kinds == 1], [6.0, 3.0], 0.5) + jitter
    pred0 = np.where(kinds == 0, labels, wrong)
    pred1 = np.where(kinds == 2, wrong, labels)
    conf1 = np.where(kinds == 2, 0.5, 6.0) + jitter
    logits = np.stack([_logits(pred0, conf0), _logits(pred1, conf1),
                       _logits(labels, 6.0 + jitter)])
    return cascade_data(logits, labels, COSTS), kinds


def test_learned_policy_finds_the_known_optimum_with_the_jump():
    data, kinds = _three_kinds()
    graph = make_graph(3)
    policies, objective = fit_cascade(data, graph, [0.1])
    paths = np.asarray(policies[0].paths_from_features(data.features))
    expected = np.select([kinds == 0, kinds == 1], [0, 1], 3)  # (0,), (0, 1), (0, 2)
    np.testing.assert_array_equal(paths, expected)
    # The optimum's objective by hand: medium 0.1 * 0.4, hard 0.1 * 1.1, easy 0.1 * 0.1.
    np.testing.assert_allclose(float(objective[0]), 0.1 * (0.1 + 0.4 + 1.1) / 3, rtol=1e-5)
    # It is the oracle here: every example ends correct on its cheapest correct path.
    outcomes = path_outcomes(data, graph)
    np.testing.assert_array_equal(paths, np.asarray(oracle_paths(outcomes)))


def test_without_the_jump_hard_examples_go_through_the_middle_model():
    data, kinds = _three_kinds()
    graph = make_graph(3, [(0, 1), (1, 2)])
    policies, _ = fit_cascade(data, graph, [0.1])
    paths = np.asarray(policies[0].paths_from_features(data.features))
    np.testing.assert_array_equal(paths, np.select([kinds == 0, kinds == 1], [0, 1], 2))


def test_large_lambda_stops_everything_at_the_cheapest_model():
    data, _ = _three_kinds()
    policies, _ = fit_cascade(data, make_graph(3), [0.0, 5.0])
    paths = np.asarray(policies[1].paths_from_features(data.features))
    assert np.all(paths == 0)
    # lambda 0 ignores cost: every example must end correct.
    outcomes = path_outcomes(data, make_graph(3))
    m = exit_metrics(policies[0].paths_from_features(data.features), outcomes)
    assert float(m["accuracy"]) == 1.0


def _random_problem(seed, n=400, models=3, classes=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(models, n, classes)).astype(np.float32)
    # Later models are more often right, so the trade-off is real.
    for k in range(models):
        boost = rng.random(n) < 0.4 + 0.25 * k
        logits[k, np.arange(n), labels] += 3.0 * boost
    return cascade_data(logits, labels, np.geomspace(1, 10, models))


@pytest.mark.parametrize("seed", [0, 1])
def test_no_policy_beats_the_oracle(seed):
    data = _random_problem(seed)
    graph = make_graph(3)
    outcomes = path_outcomes(data, graph)
    oracle = np.asarray(oracle_paths(outcomes))
    path_cost = np.asarray(outcomes.costs)
    correct = np.asarray(outcomes.correct)
    n = np.arange(data.num_examples)
    learned, _ = fit_cascade(data, graph, np.geomspace(1e-3, 3, 8))
    policies = [learned[i] for i in range(8)]
    policies += [ThresholdCascadePolicy(np.float32(t), graph) for t in (0.3, 0.6, 0.9)]
    policies += [FixedPathPolicy(graph, p) for p in graph.paths()]
    oracle_right = correct[oracle, n]
    assert oracle_right.sum() == np.any(correct, axis=0).sum()
    for policy in policies:
        paths = np.asarray(policy.paths_from_features(data.features))
        right = correct[paths, n]
        assert right.sum() <= oracle_right.sum()
        # Where the policy is right, the oracle is right at no more cost.
        assert np.all(path_cost[oracle[right]] <= path_cost[paths[right]] + 1e-6)


def test_fixed_paths_and_thresholds_route_as_specified():
    data = _random_problem(3)
    graph = make_graph(3)
    for i, path in enumerate(graph.paths()):
        got = np.asarray(FixedPathPolicy(graph, path).paths_from_features(data.features))
        assert np.all(got == i), path
    # A max-prob cascade walks 0 -> 1 -> 2, stopping at the first confident model.
    t = 0.5
    policy = ThresholdCascadePolicy(np.float32(t), graph)
    max_prob = np.asarray(data.features[..., 0])
    expected = np.where(max_prob[0] >= t, 0, np.where(max_prob[1] >= t, 1, 2))
    np.testing.assert_array_equal(np.asarray(policy.paths_from_features(data.features)),
                                  expected)
    assert int(policy.route_features(2, data.features[2])[0]) == STOP


def test_cascade_crossfit_changes_only_what_selection_reads():
    # Every family of the cascade report is cross-fitted like the early-exit ones: the refit
    # (test rows, in-sample validation rows) is the in-sample report's, and a fold's learned
    # fit never reads the examples it holds out.
    val, test = _random_problem(4, n=200), _random_problem(5, n=200)
    graph = make_graph(3)
    names = ["a", "b", "c"]
    lambdas = np.geomspace(1e-2, 3, 5)
    off = cascade_report(val, test, graph, names, lambdas=lambdas, crossfit_folds=0)
    on = cascade_report(val, test, graph, names, lambdas=lambdas, crossfit_folds=4)
    assert off["selection"] == "in-sample" and on["selection"] == "crossfit-4"
    for family, curve in on["families"].items():
        assert curve["test"] == off["families"][family]["test"], family
        assert curve["val_insample"] == off["families"][family]["val"], family
    points = operating_points(on)["points"]
    assert {p["selection"] for p in points if p["feasible"]} <= {"crossfit-4", "test"}
    weights = np.ones(200, np.float32)
    weights[:50] = 0
    scrambled = _random_problem(6, n=200)
    mixed = dataclasses.replace(
        val, features=np.concatenate([scrambled.features[:, :50], val.features[:, 50:]], 1),
        correct=np.concatenate([scrambled.correct[:, :50], val.correct[:, 50:]], 1))
    a = fit_cascade(val, graph, lambdas, weights=weights)[0]
    b = fit_cascade(mixed, graph, lambdas, weights=weights)[0]
    np.testing.assert_array_equal(np.asarray(a.coef), np.asarray(b.coef))
    np.testing.assert_array_equal(np.asarray(a.mode), np.asarray(b.mode))


def test_cascade_budget_picks_rebuild_and_pair_with_max_prob():
    # Each pick is rebuilt from the parameters the report stores (JSON-able lists, the
    # learned policy's per-node coefficients padded back to [M, D]); with_paired_comparison
    # raises if a rebuilt pick scores differently on test from the report's figure.
    val, test = _random_problem(7, n=300), _random_problem(8, n=300)
    graph = make_graph(3)
    report = cascade_report(val, test, graph, ["a", "b", "c"],
                            lambdas=np.geomspace(1e-3, 3, 8), crossfit_folds=3)
    outcomes = path_outcomes(test, graph)
    table = json.loads(json.dumps(budget_table(report, SELECTION_BUDGETS)))
    compared = with_paired_comparison(table, outcomes,
                                      rebuild=lambda pick: policy_from_pick(pick, graph))
    # Both feature sets of the learned policy are compared: the chosen one and the other.
    other = "bolukbasi_" + next(n for n in FEATURE_SETS
                                if n != report["feature_selection"]["chosen"])
    assert {b["family"] for b in compared if "vs_max_prob" in b} == {
        "margin", "entropy", "bolukbasi", other}
    learned = [b for b in compared if "vs_max_prob" in b and b["family"] == "bolukbasi"]
    assert learned
    reference = {b["budget"]: b for b in compared if b["family"] == "max_prob"}
    for b in learned:
        assert b["vs_max_prob"]["difference"] == pytest.approx(
            b["test_accuracy"] - reference[b["budget"]]["test_accuracy"], abs=1e-6)
    # The rebuilt learned policy routes exactly as the fitted one at the same lambda, with
    # either feature set.
    for family in ("bolukbasi", other):
        pick = next(b for b in table if b["family"] == family and b["feasible"])
        fitted, _ = fit_cascade(val, graph, np.geomspace(1e-3, 3, 8),
                                features=tuple(pick["params"]["features"]))
        i = int(np.argmin(np.abs(np.asarray(fitted.lam) - pick["params"]["lambda"])))
        np.testing.assert_array_equal(
            np.asarray(policy_from_pick(pick, graph).paths_from_features(test.features)),
            np.asarray(fitted[i].paths_from_features(test.features)))


def test_history_features_are_the_roots_statistics():
    logits = np.random.default_rng(3).normal(size=(3, 50, 6)).astype(np.float32)
    data = cascade_data(logits, np.zeros(50, np.int32), COSTS)
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum(-1, keepdims=True)
    top = np.sort(probs, -1)
    margin, entropy = top[:, -1] - top[:, -2], -np.sum(probs * np.log(probs), -1)
    features = np.asarray(data.features)
    for k in range(3):  # every model's decision sees the root's outputs
        np.testing.assert_allclose(features[k, :, FEATURE_NAMES.index("root_max_prob")],
                                   top[:, -1], rtol=1e-5)
        np.testing.assert_allclose(features[k, :, FEATURE_NAMES.index("root_margin")], margin,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(features[k, :, FEATURE_NAMES.index("root_entropy")],
                                   entropy, rtol=1e-4, atol=1e-6)
    # A policy on the basic set cannot read them: scrambling them changes nothing it learns.
    scrambled = dataclasses.replace(data, features=np.concatenate(
        [features[..., :5], np.random.default_rng(4).normal(size=(3, 50, 2))], -1))
    lambdas = np.geomspace(1e-2, 1, 4)
    a, b = (fit_cascade(d, make_graph(3), lambdas)[0] for d in (data, scrambled))
    assert a.features == b.features == FEATURE_SETS["basic"]
    np.testing.assert_array_equal(np.asarray(a.coef), np.asarray(b.coef))
    with pytest.raises(ValueError, match="unknown cascade features"):
        fit_cascade(data, make_graph(3), lambdas, features=("max_prob", "depth"))


def test_report_keeps_the_feature_set_that_is_better_out_of_fold():
    val, test = _random_problem(9, n=300), _random_problem(10, n=300)
    graph = make_graph(3)
    kwargs = dict(lambdas=np.geomspace(1e-3, 3, 6), crossfit_folds=3)
    auto = cascade_report(val, test, graph, ["a", "b", "c"], **kwargs)
    selection = auto["feature_selection"]
    scores = {n: curve_score({"family": "bolukbasi", **auto["families"][f]})
              for n, f in ((selection["chosen"], "bolukbasi"),
                           *((n, f"bolukbasi_{n}") for n in FEATURE_SETS
                             if n != selection["chosen"]))}
    assert scores == pytest.approx(selection["scores"])
    assert selection["chosen"] == max(FEATURE_SETS, key=lambda n: (
        scores[n], -list(FEATURE_SETS).index(n)))
    for family, curve in auto["families"].items():
        if family.startswith("bolukbasi"):
            assert all(row["params"]["features"] == list(FEATURE_SETS[curve["feature_set"]])
                       for row in curve["val"])
    only = cascade_report(val, test, graph, ["a", "b", "c"], features="history", **kwargs)
    assert [f for f in only["families"] if f.startswith("bolukbasi")] == ["bolukbasi"]
    assert only["families"]["bolukbasi"]["test"] == auto["families"][
        "bolukbasi" if selection["chosen"] == "history" else "bolukbasi_history"]["test"]
    with pytest.raises(ValueError, match="features must be one of"):
        cascade_report(val, test, graph, ["a", "b", "c"], features="all", **kwargs)


def test_cascade_losses_are_checked_with_the_members():
    spec = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "configs", "digits_cascade.py")
    config = load_config(f"{spec}:smoke")
    assert tuple(config.cascade.losses) == (0.0, 0.01)
    assert [m.name for m in cascade_members(config)] == list(config.cascade.names)
    for bad in ((), (1.5,), (-0.01,), ("1pt",)):
        config.cascade.losses = bad
        with pytest.raises(ValueError, match=r"cascade.losses must be accuracy losses"):
            cascade_members(config)
