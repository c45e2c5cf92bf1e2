"""Tests of the inference engines (jee.infer) on tiny random early-exit networks.

Every engine must reproduce the exits and logits that a plain NumPy reading of the per-exit
outputs gives (first exit whose confidence reaches the threshold), for mixed, all-early and
no-early exit patterns and for batch sizes that are not ladder sizes.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee.infer.benchmark import compare_outputs, run_benchmark
from jee.infer.bucketed import BucketedEngine, survivor_order
from jee.infer.compiles import CompileCounter
from jee.infer.eager import EagerEngine, PerExampleEngine
from jee.infer.host import HostEngine
from jee.infer.ladder import bucket_for, fit_ladder, make_ladder
from jee.infer.masked import MaskedEngine
from jee.infer.synthetic import SyntheticPolicy, fractions_for_cost, mean_cost, synthetic_exits

NUM_CLASSES = 5
THRESHOLD = 0.5
NEAR = 1e-4  # rows this close to the threshold may flip with the batch size; not compared


class ThresholdPolicy:
    def decide(self, k, logits, conf, aux):
        return conf >= THRESHOLD


WIDTH = 16
# Steer values (the inputs' last column) and the survivor pattern each one forces.
STEERS = {"mixed": 0.0, "all_exit_first": 50.0, "none_exit_early": -50.0}


def normal(rng, *shape, scale=1.0):
    # NumPy draws: jax.random compiles a program per shape, seconds each on a busy CPU.
    return jnp.asarray(scale * rng.standard_normal(shape), jnp.float32)


def dense_segments(seed, num_exits=4, width=WIDTH):
    """Dense segments on ``[b, width + 1]`` inputs.

    The last input column, the *steer*, rides along unchanged and is added to every exit's
    confidence logit (bounded by |tanh| <= 1 times the head's weights): +50 makes every
    example exit first, -50 keeps every example to the last exit, 0 lets the data decide.
    Survivor patterns are thus inputs, not separate programs to compile.
    """
    rng = np.random.default_rng(seed)
    segments = []
    for k in range(num_exits):
        w = normal(rng, width, width, scale=1 / np.sqrt(width))
        head = normal(rng, width, NUM_CLASSES)
        conf_w = normal(rng, width)
        last = k == num_exits - 1

        def segment(h, w=w, head=head, conf_w=conf_w, last=last):
            features, steer = h[:, :-1], h[:, -1:]
            z = jnp.tanh(features @ w)
            h_next = None if last else jnp.concatenate([z, steer], axis=1)
            return h_next, z @ head, jax.nn.sigmoid(z @ conf_w + steer[:, 0])
        segments.append(segment)
    return segments


def steered_inputs(seed, batch, steer):
    x = np.random.default_rng(seed).standard_normal((batch, WIDTH + 1))
    x[:, -1] = steer
    return jnp.asarray(x, jnp.float32)


def conv_segments(seed, channels=(4, 6, 8)):
    """Conv segments on NHWC images, pooled heads; the middle one downsamples."""
    rng = np.random.default_rng(seed)
    segments, c_in = [], 3
    for k, c in enumerate(channels):
        w = normal(rng, 3, 3, c_in, c, scale=1 / np.sqrt(9 * c_in))
        head = normal(rng, c, NUM_CLASSES)
        conf_w = normal(rng, c, scale=4.0)
        last, stride = k == len(channels) - 1, 2 if k == 1 else 1
        c_in = c

        def segment(h, w=w, head=head, conf_w=conf_w, last=last, stride=stride):
            h = jnp.tanh(jax.lax.conv_general_dilated(
                h, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
            pooled = h.mean((1, 2))
            return None if last else h, pooled @ head, jax.nn.sigmoid(pooled @ conf_w)
        segments.append(segment)
    return segments


def per_exit_outputs(segments, x):
    """NumPy logits [E, B, C] and confidences [E, B] of every exit, whole batch, eager."""
    h, all_logits, all_conf = x, [], []
    for segment in segments:
        h, logits, conf = segment(h)
        all_logits.append(np.asarray(logits))
        all_conf.append(np.asarray(conf))
    return np.stack(all_logits), np.stack(all_conf)


def expected_threshold_exits(segments, x):
    """(exits [B], logits at exit [B, C], comparable rows [B]) read off the per-exit outputs."""
    logits, conf = per_exit_outputs(segments, x)
    num_exits, batch = conf.shape
    exits = np.full(batch, num_exits - 1)
    for i in range(batch):
        for k in range(num_exits - 1):
            if conf[k, i] >= THRESHOLD:
                exits[i] = k
                break
    comparable = np.all(np.abs(conf[:-1] - THRESHOLD) >= NEAR, axis=0)
    return exits, logits[exits, np.arange(batch)], comparable


def geometric(batch):
    return make_ladder(batch, "geometric", min_size=5, growth=3.0)  # 5, 15, 37 for 37 rows


ENGINES = {
    "masked": MaskedEngine,
    "bucketed": BucketedEngine,
    "bucketed_rows": functools.partial(BucketedEngine, carry="rows"),
    # A short ladder: each (segment, bucket) pair the host engine meets costs a compilation.
    "host": functools.partial(HostEngine, ladder=(4, 16)),
    "per_example": PerExampleEngine,
    "eager": EagerEngine,
}


@functools.cache
def engines_for(policy_name):
    """Engines built once per policy, so that tests share their compiled programs."""
    segments = dense_segments(0)
    policy = ThresholdPolicy() if policy_name == "threshold" else SyntheticPolicy()
    if policy_name == "threshold":
        return segments, {name: make(segments, policy) for name, make in ENGINES.items()}
    # The synthetic policy runs the finer ladder; the default ones have the threshold tests.
    engines = {name: ENGINES[name](segments, policy)
               for name in ("masked", "per_example", "eager")}
    engines["bucketed_geometric"] = BucketedEngine(segments, policy, ladder=geometric)
    engines["host_geometric"] = HostEngine(segments, policy, ladder=geometric)
    return segments, engines


def check_against(expected, result):
    exits, logits, comparable = expected
    got_exits, got_logits = (np.asarray(a) for a in result)
    assert got_exits.dtype == np.int32 and got_logits.dtype == np.float32
    assert got_logits.shape == logits.shape
    np.testing.assert_array_equal(got_exits[comparable], exits[comparable])
    np.testing.assert_array_equal(got_logits[comparable].argmax(-1),
                                  logits[comparable].argmax(-1))
    np.testing.assert_allclose(got_logits[comparable], logits[comparable], rtol=1e-5, atol=1e-5)


def check_engines(engines, expected, *args):
    for name, engine in engines.items():
        try:
            check_against(expected, engine(*args))
        except AssertionError as err:
            raise AssertionError(f"engine {name}") from err


@pytest.mark.parametrize("pattern", sorted(STEERS))
@pytest.mark.parametrize("batch", [37, 1])
def test_every_engine_matches_first_confident_exit(pattern, batch):
    segments, engines = engines_for("threshold")
    x = steered_inputs(batch, batch, STEERS[pattern])
    expected = expected_threshold_exits(segments, x)
    if pattern == "all_exit_first":
        assert np.all(expected[0] == 0)
    elif pattern == "none_exit_early":
        assert np.all(expected[0] == 3)
    elif batch == 37:
        assert len(np.unique(expected[0])) == 4  # a real mix of survivors
    if batch == 1:  # one row has a single bucket: the carries cannot differ
        engines = {name: e for name, e in engines.items() if name != "bucketed_rows"}
    check_engines(engines, expected, x)


def test_conv_segments_through_the_batched_engines():
    segments = conv_segments(3)
    x = normal(np.random.default_rng(2), 21, 6, 6, 3)
    expected = expected_threshold_exits(segments, x)
    assert len(np.unique(expected[0])) == 3
    # One bucket below the batch keeps compilation short; the conv case is about shapes.
    engines = {"masked": MaskedEngine(segments, ThresholdPolicy()),
               "host": HostEngine(segments, ThresholdPolicy(), ladder=(8,))}
    for carry in ("compact", "rows"):
        engines[carry] = BucketedEngine(segments, ThresholdPolicy(), ladder=(8,), carry=carry)
    check_engines(engines, expected, x)


def test_synthetic_policy_exits_are_the_assigned_ones():
    segments, engines = engines_for("synthetic")
    x = steered_inputs(4, 37, 0.0)
    aux = synthetic_exits(37, [0.4, 0.1, 0.2, 0.3], seed=5)
    logits, _ = per_exit_outputs(segments, x)
    for name, engine in engines.items():
        got_exits, got_logits = engine(x, jnp.asarray(aux))
        np.testing.assert_array_equal(np.asarray(got_exits), aux, err_msg=name)
        np.testing.assert_allclose(np.asarray(got_logits), logits[aux, np.arange(37)],
                                   rtol=1e-5, atol=1e-5, err_msg=name)


def assert_no_compilation(engine, calls):
    """Runs ``engine`` on each argument tuple; nothing may compile or trace. Returns exits."""
    traces, cached = engine.traces, engine.cache_size()
    with CompileCounter() as compiles:
        exits = [engine(*args)[0] for args in calls]
    assert compiles.count == 0
    assert (engine.traces, engine.cache_size()) == (traces, cached)
    return [np.asarray(e) for e in exits]


def test_bucketed_compiles_once_as_assigned_survivor_counts_change():
    _, engines = engines_for("synthetic")
    engine = engines["bucketed_geometric"]
    x = steered_inputs(6, 37, 0.0)
    rng = np.random.default_rng(0)
    # Survivor counts after segment 0 of 37, 0, 1, 8, 9 and random ones.
    patterns = [np.full(37, 3), np.zeros(37), np.r_[3, np.zeros(36)],
                np.r_[np.ones(8), np.zeros(29)], np.r_[np.full(9, 2), np.zeros(28)],
                rng.integers(0, 4, 37), rng.integers(0, 4, 37)]
    patterns = [jax.device_put(p.astype(np.int32)) for p in patterns]
    engine(x, patterns[0])
    exits = assert_no_compilation(engine, [(x, aux) for aux in patterns])
    for got, aux in zip(exits, patterns, strict=True):
        np.testing.assert_array_equal(got, np.asarray(aux))


@pytest.mark.parametrize("name", ["bucketed", "bucketed_rows"])
def test_bucketed_compiles_once_as_confident_survivor_counts_change(name):
    segments, engines = engines_for("threshold")
    engine = engines[name]
    inputs = [steered_inputs(seed, 37, steer)
              for seed, steer in enumerate((0.0, 50.0, -50.0, 1.0, -1.0, 2.5, -2.5))]
    expected = [expected_threshold_exits(segments, x) for x in inputs]
    survivors = {int(np.sum(exits > 0)) for exits, _, _ in expected}
    assert {0, 37} <= survivors and len(survivors) >= 5
    engine(inputs[0])
    exits = assert_no_compilation(engine, [(x,) for x in inputs])
    for got, (want, _, comparable) in zip(exits, expected, strict=True):
        np.testing.assert_array_equal(got[comparable], want[comparable])
    if name == "bucketed":
        traces, cached = engine.traces, engine.cache_size()
        engine(steered_inputs(0, 2, 0.0))  # a new batch shape: exactly one more program
        assert (engine.traces, engine.cache_size()) == (traces + 1, cached + 1)


def test_host_engine_compiles_each_segment_and_bucket_once():
    segments = dense_segments(0)
    engine = HostEngine(segments, SyntheticPolicy())
    x = steered_inputs(7, 37, 0.0)
    # 30 rows pass exit 0 (bucket 32), 10 pass exit 1 (bucket 16), 5 reach the last (8).
    aux = np.r_[np.zeros(7), np.ones(20), np.full(5, 2), np.full(5, 3)].astype(np.int32)
    shuffled = jax.device_put(np.random.default_rng(0).permutation(aux))
    engine(x, jax.device_put(aux))
    assert engine.cache_size() == 4
    with CompileCounter() as compiles:
        exits, _ = engine(x, shuffled)
    assert compiles.count == 0 and engine.cache_size() == 4
    np.testing.assert_array_equal(np.asarray(exits), np.asarray(shuffled))


def test_make_ladder_hand_worked():
    assert make_ladder(256) == (8, 16, 32, 64, 128, 256)
    assert make_ladder(37) == (8, 16, 32, 37)
    assert make_ladder(32) == (8, 16, 32)
    assert make_ladder(8) == (8,)
    assert make_ladder(5) == (5,)
    assert make_ladder(1) == (1,)
    assert make_ladder(100, min_size=6) == (8, 16, 32, 64, 100)
    # 8, 12, 18, 27, ceil(40.5) = 41, ceil(61.5) = 62, 93, then the batch.
    assert make_ladder(100, "geometric", growth=1.5) == (8, 12, 18, 27, 41, 62, 93, 100)
    # ceil(1.25 * s) but at least s + 1: 2, 3, 4, 5, 7, 9.
    assert make_ladder(10, "geometric", min_size=2, growth=1.25) == (2, 3, 4, 5, 7, 9, 10)
    # Rounded up to multiples of 8, duplicates merged, nothing at or past the batch.
    # 8, 10, 13, 17, 22, 28, 35, 44, 55 round to 8, 16, 16, 24, 24, 32, 40, 48, 56.
    assert make_ladder(64, "geometric", growth=1.25, multiple=8) == (8, 16, 24, 32, 40, 48, 56, 64)
    with pytest.raises(ValueError):
        make_ladder(64, "fibonacci")
    with pytest.raises(ValueError):
        make_ladder(64, "geometric", growth=1.0)


def test_fit_ladder_and_bucket_for():
    assert fit_ladder((8, 16, 32, 64), 37) == (8, 16, 32, 37)
    assert fit_ladder((64, 8, 16, 8), 64) == (8, 16, 64)
    assert fit_ladder((8, 16), 1) == (1,)
    ladder = (8, 16, 32, 37)
    assert [bucket_for(n, ladder) for n in (0, 1, 8, 9, 32, 33, 37)] == [0, 8, 8, 16, 32, 37, 37]


def test_survivor_order_lists_alive_rows_in_order():
    alive = np.random.default_rng(1).random(50) < 0.3
    order, count = jax.jit(survivor_order)(jnp.asarray(alive))
    live = np.flatnonzero(alive)
    assert int(count) == live.size
    np.testing.assert_array_equal(np.asarray(order)[:live.size], live)
    np.testing.assert_array_equal(np.asarray(order)[live.size:], 0)


def test_synthetic_exits_have_exact_counts():
    exits = synthetic_exits(100, [0.5, 0.25, 0.25], seed=3)
    assert exits.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(exits, minlength=3), [50, 25, 25])
    # 10 * (1/3) each: one example left over goes to the largest remainder (the first).
    np.testing.assert_array_equal(np.bincount(synthetic_exits(10, [1, 1, 1])), [4, 3, 3])
    assert not np.array_equal(exits, synthetic_exits(100, [0.5, 0.25, 0.25], seed=4))


def test_fractions_for_cost_hit_the_target():
    costs = np.array([0.2, 0.45, 0.7, 1.0])
    np.testing.assert_allclose(fractions_for_cost(costs, costs.mean()), 0.25)
    for target in (0.3, 0.5, 0.9):
        f = fractions_for_cost(costs, target)
        assert f.sum() == pytest.approx(1.0) and np.all(f > 0)
        assert mean_cost(f, costs) == pytest.approx(target, abs=1e-9)
        # Cheaper targets tilt the mix towards early exits, monotonically.
        assert np.all(np.diff(f) < 0) if target < costs.mean() else np.all(np.diff(f) > 0)
    np.testing.assert_allclose(fractions_for_cost(costs, 0.2), [1, 0, 0, 0])
    with pytest.raises(ValueError):
        fractions_for_cost(costs, 1.5)


def heavy_head_segments(seed, width=256, num_exits=3):
    """Dense segments whose exit heads cost about as much as the trunk, and the backbone.

    The masked mode runs 6 such matrix products where the backbone runs 4, so its measured
    speed-up stays clearly below 1 despite timing noise.
    """
    rng = np.random.default_rng(seed)
    trunk = [normal(rng, width, width, scale=1 / np.sqrt(width)) for _ in range(num_exits)]
    heads = [(normal(rng, width, width, scale=1 / np.sqrt(width)), normal(rng, width, NUM_CLASSES),
              normal(rng, width)) for _ in range(num_exits)]

    def segment(k, h):
        z = jnp.tanh(h @ trunk[k])
        hidden, to_logits, to_conf = heads[k]
        u = jnp.tanh(z @ hidden)
        return None if k == num_exits - 1 else z, u @ to_logits, jax.nn.sigmoid(u @ to_conf)

    def full_fn(x):
        for w in trunk:
            x = jnp.tanh(x @ w)
        hidden, to_logits, _ = heads[-1]
        return jnp.tanh(x @ hidden) @ to_logits

    return [functools.partial(segment, k) for k in range(num_exits)], full_fn


def test_benchmark_reports_sane_figures():
    segments, full_fn = heavy_head_segments(7)
    batch, costs = 128, np.array([0.4, 0.7, 1.0])
    aux = synthetic_exits(batch, [0.5, 0.25, 0.25], seed=0)
    x = normal(np.random.default_rng(8), batch, 256)
    modes = ("full", "masked", "bucketed", "host", "per_example", "eager")
    result = run_benchmark(segments, full_fn, SyntheticPolicy(), x, aux, costs=costs,
                           ladder=(32,), modes=modes, repeats=5, eager_examples=4,
                           eager_repeats=1)
    assert result["agreement"] == result["exit_agreement"] == 1.0
    assert result["ideal_speedup"] == pytest.approx(1 / (0.5 * 0.4 + 0.25 * 0.7 + 0.25 * 1.0))
    np.testing.assert_allclose(result["exit_fractions"], [0.5, 0.25, 0.25])
    for mode in modes:
        stats = result[mode]
        assert {"images_per_s", "ms_per_batch_median", "ms_per_batch_p90", "compile_s",
                "speedup", "efficiency", "recompiles_after_warmup"} <= stats.keys()
        assert stats["images_per_s"] > 0 and stats["compile_s"] >= 0
        assert stats["ms_per_batch_p90"] >= stats["ms_per_batch_median"] > 0
        assert stats["efficiency"] == pytest.approx(stats["speedup"] / result["ideal_speedup"])
        assert stats["recompiles_after_warmup"] == 0, mode
        if mode != "full":
            assert stats.get("agreement") in (None, 1.0)
    assert result["full"]["speedup"] == pytest.approx(1.0)
    assert result["masked"]["speedup"] <= 1.1
    assert result["eager"]["timed_examples"] == 4
    assert result["bucketed"]["compiles_at_warmup"] >= 1


def test_compare_outputs_by_hand():
    reference = (np.array([0, 1, 2, 2]), np.array([[3.0, 1.0], [0.0, 2.0], [1.0, 0.0],
                                                    [5.0, 4.0]], np.float32))
    # Row 1 leaves elsewhere; row 2's prediction flips by a 1.5 move; row 3's logits move 0.25.
    result = (np.array([0, 2, 2, 2]), np.array([[3.0, 1.0], [9.0, 9.0], [1.0, 1.5],
                                                [5.25, 4.0]], np.float32))
    ok, figures = compare_outputs(result, reference)
    np.testing.assert_array_equal(ok, [True, False, False, True])
    # The logit difference counts only rows whose exits agree (row 1's 9s are ignored).
    assert figures == {"agreement": 0.5, "exit_agreement": 0.75, "max_abs_logit_diff": 1.5}
