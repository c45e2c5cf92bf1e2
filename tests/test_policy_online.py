"""Online ``decide`` (engine-style, on the surviving rows only) agrees with offline ``exits``."""

import jax
import numpy as np
import pytest

from jee.policy.bolukbasi import LEARNED, NEVER_EXIT, BolukbasiPolicy
from jee.policy.fixed import FixedExitPolicy
from jee.policy.synthetic import synthetic_exit_outputs
from jee.policy.thresholds import eenet_policy, entropy_policy, max_prob_policy

E, N, C = 3, 200, 10


# The policy is a pytree argument (its arrays traced, its settings static), k a static int.
_decide = jax.jit(lambda policy, logits_k, conf_k, k: policy.decide(k, logits_k, conf_k),
                  static_argnums=3)


def _run_online(policy, logits, conf):
    """What the inference engine does: after each segment, ask only the rows still alive."""
    alive = np.arange(logits.shape[1])
    exits = np.full(logits.shape[1], -1)
    for k in range(logits.shape[0]):
        leave = np.asarray(_decide(policy, logits[k, alive], conf[k, alive], k))
        exits[alive[leave]] = k
        alive = alive[~leave]
    assert alive.size == 0, "the last exit must take every remaining row"
    return exits


@pytest.fixture(scope="module")
def outputs():
    return synthetic_exit_outputs(E, N, C, seed=5)


def _policies():
    # A hand-set learned policy (agreement does not need a fitted one): exit 0 decides with
    # a real linear rule, exit 1 is forced to "never exit", so both kinds of decision run.
    rng = np.random.default_rng(0)
    bolukbasi = BolukbasiPolicy(
        coef=rng.normal(size=(E - 1, 4)).astype(np.float32),
        bias=np.array([0.0, 0.0], np.float32),
        mean=np.array([[0.3, 0.12, 1.9, 0.4]] * (E - 1), np.float32),
        scale=np.array([[0.1, 0.1, 0.2, 0.2]] * (E - 1), np.float32),
        mode=np.array([LEARNED, NEVER_EXIT], np.int32),
        lam=np.float32(0.1),
        num_exits=E,
    )
    return [
        eenet_policy(E, 0.6),
        max_prob_policy(E, [0.35, 0.45]),
        entropy_policy(E, [1.85, 1.6]),
        FixedExitPolicy(E, 1),
        bolukbasi,
    ]


def test_online_and_offline_agree(outputs):
    logits, conf, _, _ = outputs
    for policy in _policies():
        offline = np.asarray(policy.exits(logits, conf))
        assert offline.dtype == np.int32 and offline.shape == (N,)
        # Every policy but the fixed one must split the examples, or agreement is vacuous.
        assert policy.name == "single_exit" or len(np.unique(offline)) >= 2, policy.name
        np.testing.assert_array_equal(_run_online(policy, logits, conf), offline,
                                      err_msg=policy.name)


def test_offline_matches_numpy_threshold_rule(outputs):
    # An independent reading of "first exit whose confidence >= T, else the last".
    logits, conf, _, _ = outputs
    expected = np.where((conf[:-1] >= 0.6).any(0), (conf[:-1] >= 0.6).argmax(0), E - 1)
    np.testing.assert_array_equal(np.asarray(eenet_policy(E, 0.6).exits(logits, conf)), expected)


def test_fixed_exit_and_bad_inputs(outputs):
    logits, conf, _, _ = outputs
    np.testing.assert_array_equal(np.asarray(FixedExitPolicy(E, 1).exits(logits, conf)), 1)
    with pytest.raises(ValueError):
        max_prob_policy(E, [0.5, 0.5, 0.5])
    with pytest.raises(ValueError):
        eenet_policy(E).decide(E, logits[0], conf[0])
