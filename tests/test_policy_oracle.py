"""The oracle against a brute-force search over exits."""

import numpy as np

from jee.policy.features import exit_data
from jee.policy.oracle import OraclePolicy, oracle_exits


def _brute_force(correct, costs):
    exits = []
    for n in range(correct.shape[1]):
        best = None
        for k in range(correct.shape[0]):
            if correct[k, n] and (best is None or costs[k] < costs[best]):
                best = k
        exits.append(correct.shape[0] - 1 if best is None else best)
    return np.array(exits)


def test_oracle_matches_brute_force():
    rng = np.random.default_rng(0)
    correct = rng.uniform(size=(4, 300)) < 0.4
    costs = np.array([0.2, 0.45, 0.7, 1.05], np.float32)
    np.testing.assert_array_equal(np.asarray(oracle_exits(correct, costs)),
                                  _brute_force(correct, costs))
    # Non-monotone costs: "cheapest" is not "first".
    odd = np.array([0.5, 0.3, 0.9, 1.2], np.float32)
    np.testing.assert_array_equal(np.asarray(oracle_exits(correct, odd)),
                                  _brute_force(correct, odd))


def test_oracle_from_logits_and_from_data_agree():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 100, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 100)
    costs = [0.3, 0.6, 1.1]
    data = exit_data(logits, np.full((3, 100), 0.5, np.float32), labels, costs)
    oracle = OraclePolicy()
    from_logits = np.asarray(oracle.exits(logits, labels, costs))
    np.testing.assert_array_equal(from_logits, np.asarray(oracle.exits_from_data(data)))
    np.testing.assert_array_equal(from_logits, _brute_force(logits.argmax(-1) == labels, costs))
