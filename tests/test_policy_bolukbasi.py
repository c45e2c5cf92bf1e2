"""The learned (Bolukbasi et al.) policy: recovers a known optimum, trades cost for lambda."""

import jax
import numpy as np
import pytest

from jee.policy.bolukbasi import ALWAYS_EXIT, fit_bolukbasi
from jee.policy.features import exit_data
from jee.policy.metrics import exit_metrics
from jee.policy.synthetic import synthetic_exit_outputs

COSTS = np.array([0.3, 0.6, 1.1], np.float32)
# One sweep shape (3 exits, 600 examples, 12 lambdas) for every fit in this file and in
# test_policy_sweeps, so the fit compiles once per session.
N = 600
LAMBDAS = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0])


def _separable_problem(n=N, num_classes=5, seed=0):
    """3 exits; exit 0 right on 40% of examples, exit 1 on 70%, exit 2 on all. Each exit's
    confidence and softmax say cleanly whether that exit is right (conf ~0.95 and a peaked
    softmax when right; conf ~0.05 and a wrong class leading modestly when wrong)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    u = rng.uniform(size=n)
    correct = np.stack([u < 0.4, u < 0.7, np.ones(n, bool)])
    logits = 0.3 * rng.normal(size=(3, n, num_classes))
    wrong = (labels + 1 + rng.integers(0, num_classes - 1, n)) % num_classes
    rows = np.arange(n)
    for k in range(3):
        # Right: the label towers over the rest. Wrong: another class leads modestly and the
        # label is pushed down so noise cannot make it the argmax.
        logits[k, rows, labels] += np.where(correct[k], 4.0, -1.0)
        logits[k, rows, wrong] += np.where(correct[k], 0.0, 1.5)
    conf = 1 / (1 + np.exp(-np.where(correct, 3.0, -3.0) - 0.5 * rng.normal(size=(3, n))))
    return logits.astype(np.float32), conf.astype(np.float32), labels, correct


def test_recovers_known_optimum():
    logits, conf, labels, correct = _separable_problem()
    data = exit_data(logits, conf, labels, COSTS)
    np.testing.assert_array_equal(np.asarray(data.correct), correct)
    i = int(np.flatnonzero(LAMBDAS == 0.5)[0])
    lam = LAMBDAS[i]
    # Per-example optimum of err + lambda * cost, by brute force over exits. The features
    # reveal each exit's correctness, so a policy reading them can achieve it.
    optimum = np.argmin((1.0 - correct) + lam * COSTS[:, None], axis=0)
    assert np.bincount(optimum, minlength=3).min() > 100  # every exit matters
    policies, _ = fit_bolukbasi(data, LAMBDAS)
    exits = np.asarray(policies[i].exits(logits, conf))
    assert np.mean(exits == optimum) >= 0.95


@pytest.fixture(scope="module")
def noisy_fit():
    data = exit_data(*synthetic_exit_outputs(3, N, 10, seed=1))
    policies, objective = fit_bolukbasi(data, LAMBDAS)
    exits = jax.jit(jax.vmap(lambda p: p.exits_from_features(data.features)))(policies)
    return data, LAMBDAS, policies, np.asarray(objective), exits


def test_cost_falls_as_lambda_grows(noisy_fit):
    data, lambdas, policies, _, exits = noisy_fit
    cost = np.asarray(exit_metrics(exits, data)["relative_cost"])
    assert np.all(np.diff(cost) <= 0.01), cost
    # lambda = 0 buys accuracy with compute. Once lambda * (c_{k+1} - c_k) > 1 for every k
    # (lambda > 2.9 here) even a wrong exit beats any later one: every decision must be
    # "always exit".
    assert cost[0] > 0.6
    costs = np.asarray(data.costs)
    big = lambdas * np.diff(costs).min() > 1
    assert big.sum() >= 2
    np.testing.assert_allclose(cost[big], costs[0], rtol=1e-6)
    assert np.all(np.asarray(policies.mode)[big] == ALWAYS_EXIT)


def test_objective_matches_exits_and_beats_every_single_exit(noisy_fit):
    data, lambdas, _, objective, exits = noisy_fit
    metrics = exit_metrics(exits, data)
    # Two code paths: the fit's own running cost, and scoring the exits the policy takes.
    recomputed = (1 - np.asarray(metrics["accuracy"])) + lambdas * np.asarray(
        metrics["relative_cost"])
    np.testing.assert_allclose(objective, recomputed, atol=1e-5)
    # Each decision keeps the best of {always, never, learned} given the later ones, so by
    # induction from the back the policy is no worse than sending everyone to any one exit.
    err = 1 - np.asarray(data.correct, np.float64)
    single = err.mean(1)[None, :] + lambdas[:, None] * np.asarray(data.costs)[None, :]
    assert np.all(objective <= single.min(1) + 1e-5)


def test_params_are_json_ready(noisy_fit):
    import json

    _, lambdas, policies, _, _ = noisy_fit
    params = json.loads(json.dumps(policies[3].params))
    assert params["lambda"] == pytest.approx(lambdas[3])
    assert len(params["modes"]) == 2 and len(params["coef"]) == 2
