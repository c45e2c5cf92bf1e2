"""Tests of the model cascade engines (jee.infer.cascade) on tiny linear models.

Both engines must reproduce what a plain NumPy walk of every row through the cascade gives
(which models it visits, where it stops, the logits it ends with), including jumps over models,
inputs where nobody or everybody stops at model 0, batch sizes that are not ladder sizes and a
custom ladder. The bucketed engine must compile once per input shape and never run a model
that no row is routed to.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee.infer.cascade import STOP, CascadeEngine, MaskedCascadeEngine

DIM, NUM_CLASSES = 8, 5
# Model 0: stop at confidence >= STOP_ROOT, jump straight to model 2 below JUMP, else model 1.
# Later models: stop if confident (>= STOP_LATER) and agreeing with model 0's class, jump to
# the last model below JUMP_LATER, else go to the next one.
STOP_ROOT, JUMP, STOP_LATER, JUMP_LATER = 0.5, 0.35, 0.6, 0.45
NEAR = 1e-4  # decisions this close to a threshold could flip with rounding; the walk refuses
# Input scales: confident everywhere (everybody stops at model 0), diffident everywhere (nobody
# does), and in between (every kind of path).
MIXED, ALL_STOP, NONE_STOP = 1.5, 100.0, 0.3


def make_weights(num_nodes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((DIM, NUM_CLASSES)).astype(np.float32) * (0.5 + 0.2 * k)
            for k in range(num_nodes)]


def linear_models(weights):
    return [lambda x, w=w: x @ w for w in map(jnp.asarray, weights)]


def make_inputs(batch, scale, seed=4):
    x = np.random.default_rng(seed).standard_normal((batch, DIM)) * scale
    return jnp.asarray(x, jnp.float32)


class ConfidenceRoutes:
    def __init__(self, num_nodes):
        self.last = num_nodes - 1

    def route(self, k, logits, root_logits):
        conf = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
        if k == 0:
            return jnp.where(conf >= STOP_ROOT, STOP, jnp.where(conf < JUMP, 2, 1))
        agree = jnp.argmax(logits, axis=-1) == jnp.argmax(root_logits, axis=-1)
        return jnp.where(agree & (conf >= STOP_LATER), STOP,
                         jnp.where(conf < JUMP_LATER, self.last, k + 1))


def at_least(value, threshold):
    assert abs(value - threshold) > NEAR, "a decision too close to its threshold"
    return value >= threshold


def numpy_route(k, last, logits, root):
    probs = np.exp(logits - logits.max())
    conf = (probs / probs.sum()).max()
    if k == 0:
        return STOP if at_least(conf, STOP_ROOT) else (1 if at_least(conf, JUMP) else 2)
    top_two = np.sort(logits)[-2:]
    assert top_two[1] - top_two[0] > NEAR, "a near tie for the top class"
    if np.argmax(logits) == np.argmax(root) and at_least(conf, STOP_LATER):
        return STOP
    return k + 1 if at_least(conf, JUMP_LATER) else last


def numpy_walk(weights, x):
    """``(final, logits, visited)`` by walking each row through the cascade on its own."""
    x, last = np.asarray(x, np.float64), len(weights) - 1
    final = np.zeros(len(x), np.int32)
    logits = np.zeros((len(x), NUM_CLASSES))
    visited = np.zeros((len(x), len(weights)), bool)
    for n, row in enumerate(x):
        root = row @ weights[0]
        k, logits_k = 0, root
        while True:
            visited[n, k] = True
            nxt = STOP if k == last else numpy_route(k, last, logits_k, root)
            if nxt == STOP:
                break
            assert k < nxt <= last
            k, logits_k = nxt, row @ weights[nxt]
        final[n], logits[n] = k, logits_k
    return final, logits, visited


def check(result, expected):
    final, logits, visited = jax.device_get(result)
    assert final.dtype == np.int32 and logits.dtype == np.float32 and visited.dtype == bool
    np.testing.assert_array_equal(final, expected[0])
    np.testing.assert_array_equal(visited, expected[2])
    np.testing.assert_allclose(logits, expected[1], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def weights():
    return make_weights(4)


@pytest.fixture(scope="module")
def engines(weights):
    """Shared by the tests below, so each input shape compiles once per module."""
    models, policy = linear_models(weights), ConfidenceRoutes(len(weights))
    return CascadeEngine(models, policy), MaskedCascadeEngine(models, policy)


@pytest.mark.parametrize("batch", [37, 1, 64])
def test_both_engines_match_the_numpy_walk(weights, engines, batch):
    x = make_inputs(batch, MIXED)
    expected = numpy_walk(weights, x)
    bucketed, masked = (engine(x) for engine in engines)
    check(bucketed, expected)
    check(masked, expected)
    # The bucketed engine and its reference agree on what the argmax sees, not just closely.
    final, logits, visited = jax.device_get(bucketed)
    final_m, logits_m, visited_m = jax.device_get(masked)
    np.testing.assert_array_equal(final, final_m)
    np.testing.assert_array_equal(visited, visited_m)
    np.testing.assert_array_equal(logits.argmax(-1), logits_m.argmax(-1))


def test_mixed_inputs_take_every_kind_of_path(weights):
    visited = numpy_walk(weights, make_inputs(37, MIXED))[2]
    paths = {tuple(int(k) for k in np.flatnonzero(v)) for v in visited}
    assert {(0,), (0, 1), (0, 1, 2), (0, 2), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3)} <= paths


def test_nobody_stops_at_model_0(weights, engines):
    x = make_inputs(37, NONE_STOP)
    expected = numpy_walk(weights, x)
    assert expected[0].min() > 0 and expected[2][:, 1].any() and not expected[2][:, 1].all()
    for engine in engines:
        check(engine(x), expected)


def test_everybody_stops_at_model_0(weights, engines):
    x = make_inputs(37, ALL_STOP)
    for engine in engines:
        final, logits, visited = jax.device_get(engine(x))
        np.testing.assert_array_equal(final, np.zeros(37))
        np.testing.assert_array_equal(visited, np.arange(4)[None, :].repeat(37, 0) == 0)
        np.testing.assert_allclose(logits, np.asarray(x) @ weights[0], rtol=1e-5, atol=1e-4)


def counting_models(weights, calls):
    """Linear models that count their executions (not their traces) in ``calls``."""
    def model(k, w):
        def count(_):
            calls[k] += 1

        def apply(x):
            jax.debug.callback(count, x[0, 0])
            return x @ w
        return apply
    return [model(k, jnp.asarray(w)) for k, w in enumerate(weights)]


def test_models_that_nobody_reaches_never_run(weights):
    calls = [0] * len(weights)
    policy = ConfidenceRoutes(len(weights))
    models = counting_models(weights, calls)
    bucketed, masked = CascadeEngine(models, policy), MaskedCascadeEngine(models, policy)
    for engine, scale, expected in [(bucketed, ALL_STOP, [1, 0, 0, 0]),
                                    (bucketed, MIXED, [1, 1, 1, 1]),
                                    (masked, ALL_STOP, [1, 1, 1, 1])]:
        calls[:] = [0] * len(weights)
        jax.block_until_ready(engine(make_inputs(37, scale)))
        jax.effects_barrier()
        assert calls == expected, (scale, calls)


def test_custom_ladder(weights):
    engine = CascadeEngine(linear_models(weights), ConfidenceRoutes(len(weights)),
                           ladder=(4, 16))  # fitted to (4, 16, 37)
    x = make_inputs(37, MIXED)
    check(engine(x), numpy_walk(weights, x))


def test_three_and_one_model_cascades():
    weights = make_weights(3, seed=2)
    x = make_inputs(37, MIXED)
    expected = numpy_walk(weights, x)
    assert (expected[2][:, 2] & ~expected[2][:, 1]).any()  # someone jumps from 0 to 2
    for engine in (CascadeEngine, MaskedCascadeEngine):
        check(engine(linear_models(weights), ConfidenceRoutes(3))(x), expected)
        check(engine(linear_models(weights[:1]), ConfidenceRoutes(1))(x),
              numpy_walk(weights[:1], x))


def test_engine_compiles_once_per_shape(weights):
    # A two-size ladder, as compiling every bucket of the default one adds nothing here.
    engine = CascadeEngine(linear_models(weights), ConfidenceRoutes(len(weights)),
                           ladder=lambda batch: (batch // 4,))
    for seed, scale in [(4, MIXED), (5, MIXED), (6, ALL_STOP), (6, NONE_STOP)]:
        x = make_inputs(37, scale, seed)
        check(engine(x), numpy_walk(weights, x))
    assert (engine.traces, engine.cache_size()) == (1, 1)
    engine(make_inputs(64, MIXED))
    assert (engine.traces, engine.cache_size()) == (2, 2)
