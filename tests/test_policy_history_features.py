"""History features: hand-computed values, and the same decisions online (one exit at a time,
inside the bucketed engine, the state carried by ``carry_history``) as offline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee.infer.bucketed import BucketedEngine
from jee.policy.bolukbasi import LEARNED, fit_bolukbasi
from jee.policy.features import (
    ALL_FEATURE_NAMES,
    FEATURE_NAMES,
    all_exit_features,
    exit_data,
    exit_features,
    history_step,
    initial_state,
)
from jee.policy.history import carry_history, strip_history
from jee.policy.synthetic import synthetic_exit_outputs

E, N, C = 4, 256, 10


def _col(name):
    return ALL_FEATURE_NAMES.index(name)


def test_history_features_hand_computed():
    # Two examples, three exits, three classes. Example 0 says class 2, 2, 2 (agreeing from
    # exit 1 on, a streak of 1 then 2); example 1 says 0, 1, 1.
    logits = np.array([
        [[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]],
        [[0.0, 0.0, 2.0], [0.0, 1.5, 0.0]],
        [[1.0, 0.0, 4.0], [0.0, 3.0, 2.5]],
    ], np.float32)
    conf = np.full((3, 2), 0.5, np.float32)
    got = np.asarray(all_exit_features(logits, conf))
    assert got.shape == (3, 2, len(ALL_FEATURE_NAMES))
    np.testing.assert_array_equal(got[..., _col("agrees_prev")], [[0, 0], [1, 0], [1, 1]])
    np.testing.assert_array_equal(got[..., _col("agree_streak")], [[0, 0], [1, 0], [2, 1]])
    max_prob = np.asarray(exit_features(logits, conf))[..., 0]
    np.testing.assert_allclose(got[..., _col("prev_max_prob")],
                               np.concatenate([np.zeros((1, 2)), max_prob[:-1]]), rtol=1e-6)
    # logit_gap = top-1 minus top-2 logit: 3-1, 2-0 / 2-0, 1.5-0 / 4-1, 3-2.5.
    np.testing.assert_allclose(got[..., _col("logit_gap")], [[2, 2], [2, 1.5], [3, 0.5]])
    # The basic columns are exactly the basic features.
    np.testing.assert_array_equal(got[..., :len(FEATURE_NAMES)], np.asarray(
        exit_features(logits, conf)))


def _table_segments(table, num_exits, num_classes, h_dtype=jnp.float32):
    """Segments that read each example's precomputed outputs from its row of ``table``
    ``[N, E*C + E]`` (logits of every exit, then confidences): exact, batch-size free."""
    def segment(k):
        def run(h):
            h32 = h.astype(jnp.float32)
            logits = h32[:, k * num_classes:(k + 1) * num_classes]
            conf = h32[:, num_exits * num_classes + k]
            return (None if k == num_exits - 1 else h.astype(h_dtype)), logits, conf
        return run
    return [segment(k) for k in range(num_exits)]


@pytest.fixture(scope="module")
def fitted():
    logits, conf, labels, costs = synthetic_exit_outputs(E, N, C, seed=21)
    data = exit_data(logits, conf, labels, costs)
    policies, _ = fit_bolukbasi(data, np.geomspace(0.02, 2.0, 8), features=ALL_FEATURE_NAMES)
    return logits, conf, policies


def _mixed_policies(policies, logits, conf):
    """Fitted history policies whose exits are spread out (agreement would be vacuous
    otherwise) and that use a learned rule somewhere."""
    out = []
    for i in range(policies.lam.shape[0]):
        p = policies[i]
        exits = np.asarray(p.exits(logits, conf))
        if len(np.unique(exits)) >= 3 and (np.asarray(p.mode) == LEARNED).any():
            out.append((p, exits))
    assert out, "no fitted policy spreads the examples over the exits"
    return out[:2]  # two are enough; each costs a compile of the engine


@pytest.mark.parametrize("h_dtype", [jnp.float32, jnp.bfloat16])
def test_bucketed_engine_matches_offline(fitted, h_dtype):
    logits, conf, policies = fitted
    if h_dtype == jnp.bfloat16:
        # The table must survive the trip through bf16 feature maps unchanged.
        logits = np.asarray(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32))
        conf = np.asarray(jnp.asarray(conf, jnp.bfloat16).astype(jnp.float32))
    table = np.concatenate([logits.transpose(1, 0, 2).reshape(N, E * C), conf.T], axis=1)
    x = jnp.asarray(table)
    segments = carry_history(_table_segments(table, E, C, h_dtype), x)
    for policy, offline in _mixed_policies(policies, logits, conf):
        assert policy.uses_history
        for carry in ("compact", "rows"):
            engine = BucketedEngine(segments, policy, ladder=(16, 64, 128), carry=carry)
            exit_index, at_exit = engine(x)
            np.testing.assert_array_equal(np.asarray(exit_index), offline)
            np.testing.assert_array_equal(np.asarray(strip_history(at_exit)),
                                          logits[offline, np.arange(N)])


def test_decide_one_exit_at_a_time_matches_offline(fitted):
    # The engines' contract by hand: only the rows still alive reach decide at exit k, each
    # with the state of its own earlier exits appended to its logits.
    logits, conf, policies = fitted
    decide = jax.jit(lambda p, lg, cf, k: p.decide(k, lg, cf), static_argnums=3)
    for policy, offline in _mixed_policies(policies, logits, conf):
        state = initial_state(N)
        alive = np.arange(N)
        exits = np.full(N, -1)
        for k in range(E):
            with_state = jnp.concatenate([logits[k, alive], state[alive]], axis=-1)
            leave = np.asarray(decide(policy, with_state, conf[k, alive], k))
            state = state.at[alive].set(history_step(state[alive], logits[k, alive],
                                                     conf[k, alive])[1])
            exits[alive[leave]] = k
            alive = alive[~leave]
        np.testing.assert_array_equal(exits, offline)


def test_basic_policies_need_no_carried_state(fitted):
    logits, conf, _ = fitted
    data = exit_data(logits, conf, np.zeros(N, int), np.linspace(0.3, 1.1, E))
    basic, _ = fit_bolukbasi(data, [0.1])
    assert not basic.uses_history
    assert basic[0].params["features"] == list(FEATURE_NAMES)
