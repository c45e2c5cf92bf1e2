"""Tests of spans in the streaming engine (several segments per queue) and of the planner that
chooses them (jee.infer.stream_plan): results equal the masked mode's whatever the plan, and
the plan is the cheapest under its cost model, checked by hand and against brute force."""

import itertools

import jax
import numpy as np
import pytest

from jee.infer.benchmark import masked_exit_fractions
from jee.infer.compiles import CompileCounter
from jee.infer.server import Server
from jee.infer.stream import StreamEngine
from jee.infer.stream_plan import check_spans, hop_program, plan_spans, span_starts
from jee.infer.synthetic import SyntheticPolicy
from jee.infer.timing import repeated, single_calls
from tests.test_infer import NEAR, THRESHOLD, ThresholdPolicy, conv_segments
from tests.test_infer_stream import (
    BATCH,
    NUM_EXITS,
    SPLITS,
    check,
    chunks,
    masked_with_confidences,
    reached,
    synthetic_data,
    synthetic_engine,
)

PLANS = [(4,), (1, 3), (2, 2), (3, 1), (1, 1, 2), (2, 1, 1)]


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


@pytest.mark.parametrize("spans", PLANS)
@pytest.mark.parametrize("split", ["whole", "ragged"])
def test_spans_match_masked(data, spans, split):
    x, aux = data
    engine, exits, logits = synthetic_engine(data, spans=spans)
    assert engine.num_queues == len(spans) and engine.starts == span_starts(spans)
    check(engine.run(chunks(x, SPLITS[split], aux)), exits, logits)
    # A queue's step runs every row reaching its first segment, full batches but the last.
    want = reached(exits, NUM_EXITS)[list(engine.starts)]
    np.testing.assert_array_equal(engine.batches_run, -(-want // BATCH))
    np.testing.assert_array_equal(engine.partial_batches, want % BATCH > 0)


def test_pages_of_a_span_carry_each_rows_exit(data):
    x, aux = data
    engine, exits, _ = synthetic_engine(data, spans=(1, 3))
    engine.push(x[:300], aux[:300])
    pages = engine.drain()
    for page in pages:
        ids = np.asarray(page.ids)
        rows = ids >= 0
        if isinstance(page.exit, int):  # the single-segment span: exit 0 for every row
            assert page.exit == 0 and np.all(exits[ids[rows]] == 0)
        else:
            assert page.exit.dtype == np.int32 and page.exit.shape == ids.shape
            np.testing.assert_array_equal(np.asarray(page.exit)[rows], exits[ids[rows]])
    # Exits 1, 2 and 3 all came out of the one queue's pages.
    assert {1, 2, 3} <= set(np.concatenate([np.asarray(p.exit)[np.asarray(p.ids) >= 0]
                                            for p in pages if not isinstance(p.exit, int)]))


def test_spans_compile_once_and_threshold_policy_matches_masked():
    segments, batch = conv_segments(3), 8
    x = np.random.default_rng(5).standard_normal((45, 6, 6, 3)).astype(np.float32)
    exits, logits, conf = masked_with_confidences(segments, ThresholdPolicy(), x)
    comparable = np.all(np.abs(conf[:-1] - THRESHOLD) >= NEAR, axis=0)
    for spans in [(3,), (2, 1), (1, 2)]:
        engine = StreamEngine(segments, ThresholdPolicy(), batch_size=batch, spans=spans)
        check(engine.run(chunks(x, [7, 1, 30, 7])), exits, logits, comparable)
        # A step per queue, the direct feed and the feed, at the one size (8).
        assert engine.cache_size() == len(spans) + 2
        with CompileCounter() as compiles:
            result = engine.run(chunks(x, [1] * 5 + [40]))
        assert compiles.count == 0
        check(result, exits, logits, comparable)


def test_a_server_over_spans_answers_each_request(data):
    x, aux = data
    engine, exits, logits = synthetic_engine(data, spans=(2, 2))
    with Server(engine, max_wait_ms=5) as server:
        futures = [(a, server.submit(x[a:b], aux[a:b]))
                   for a, b in itertools.pairwise([0, 3, 40, 41, 200])]
        for a, future in futures:
            got_exits, got_logits = future.result(timeout=60)
            n = got_exits.shape[0]
            check((got_exits, got_logits), exits[a:a + n], logits[a:a + n])


def test_bad_spans_are_refused(data):
    for bad in [(), (2, 1), (0, 4), (5,), (2, -1, 3)]:
        with pytest.raises(ValueError, match="spans must be positive segment counts"):
            synthetic_engine(data, spans=bad)
    assert check_spans(None, 3) == (1, 1, 1)


def test_plan_by_hand():
    # Nobody leaves early: every hop is wasted, one queue.
    assert plan_spans([0, 0, 0, 1], [1, 1, 1, 1], [0.1] * 3) == (4,)
    # Half leave at exit 0, nobody at 1 or 2. The costs (reach x (segments + end hop)):
    # (1, 3): 1 x 1.1 + 0.5 x 3 = 2.6; (4,): 4; (1, 1, 2): 1.1 + 0.55 + 1.0 = 2.65;
    # (1, 1, 1, 1): 1.1 + 0.55 + 0.55 + 0.5 = 2.7.
    assert plan_spans([0.5, 0, 0, 0.5], [1, 1, 1, 1], [0.1] * 3) == (1, 3)
    # Free hops: splitting wherever anybody leaves, merging where nobody does (a tie, which
    # goes to fewer queues).
    assert plan_spans([0.3, 0, 0.3, 0.4], [1, 1, 1, 1], [0, 0, 0]) == (1, 2, 1)
    # Costly hops: one queue, though 30% leave at exit 0 (1 x 4 < 1 x 3 + 0.7 x 3).
    assert plan_spans([0.3, 0, 0, 0.7], [1, 1, 1, 1], [3, 3, 3]) == (4,)
    assert plan_spans([1.0], [2.0], []) == (1,)


def brute_force_cost(spans, fractions, times, hops):
    reach = 1 - np.concatenate([[0], np.cumsum(fractions)[:-1]])
    hops = np.concatenate([hops, [0]])
    return sum(reach[s] * (np.sum(times[s:s + n]) + hops[s + n - 1])
               for s, n in zip(span_starts(spans), spans, strict=True))


@pytest.mark.parametrize("seed", range(20))
def test_plan_is_the_cheapest_of_every_plan(seed):
    rng = np.random.default_rng(seed)
    e = int(rng.integers(1, 7))
    fractions = rng.dirichlet(np.full(e, 0.5)) * (rng.random(e) > 0.3)
    fractions[-1] = 1 - fractions[:-1].sum()
    times, hops = rng.uniform(0.1, 2, e), rng.uniform(0, 0.5, e - 1)
    plan = plan_spans(fractions, times, hops)
    assert sum(plan) == e
    every = [tuple(np.diff([0, *cuts, e])) for r in range(e)
             for cuts in itertools.combinations(range(1, e), r)]
    costs = [brute_force_cost(p, fractions, times, hops) for p in every]
    assert brute_force_cost(plan, fractions, times, hops) <= min(costs) + 1e-12


def test_plan_refuses_bad_input():
    with pytest.raises(ValueError, match="need 3 exit fractions"):
        plan_spans([0.5, 0.5], [1, 1, 1], [0, 0])
    with pytest.raises(ValueError, match=">= 0"):
        plan_spans([0.5, 0.5], [1, -1], [0])


def test_hop_program_moves_a_batch_between_rings():
    example = jax.ShapeDtypeStruct((4, 3), np.float32)
    program, source, dest = hop_program(example)
    source = dict(source, h=jax.device_put(np.arange(24, dtype=np.float32).reshape(8, 3)))
    source, dest = program(source, dest)
    # The batch at the head (rows 4..7 of the source) lands behind dest's tail (rows 4..7).
    np.testing.assert_array_equal(np.asarray(dest["h"])[4:], np.arange(12, 24).reshape(4, 3))
    np.testing.assert_array_equal(np.asarray(dest["h"])[:4], 0)


def test_masked_exit_fractions_replay_the_assigned_exits(data):
    x, aux = data
    engine, _, _ = synthetic_engine(data)
    batches = chunks(x, SPLITS["batches"], aux)
    fractions = masked_exit_fractions(engine.segments, SyntheticPolicy(), batches)
    # Batch by batch with a partial last batch (1000 = 62 x 16 + 8), every row counted once.
    np.testing.assert_allclose(fractions, np.bincount(aux, minlength=NUM_EXITS) / len(aux))
    with pytest.raises(ValueError, match="no examples to plan the stream from"):
        masked_exit_fractions(engine.segments, SyntheticPolicy(), [])


def test_single_calls_cover_backbone_segments_and_hops(data):
    x, _ = data
    engine, _, _ = synthetic_engine(data)
    calls, num_segments = single_calls(engine.segments, lambda h: h.sum(), x[:BATCH])
    # The backbone, each segment, each boundary's hop; each call runs and returns nothing.
    assert num_segments == NUM_EXITS and len(calls) == 2 * NUM_EXITS
    assert all(call() is None for call in calls)
    made = []
    repeated(lambda: made.append(1), 3)()
    assert made == [1, 1, 1]
