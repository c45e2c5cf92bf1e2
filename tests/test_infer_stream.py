"""Tests of the streaming engines (jee.infer.stream) on tiny random networks and cascades.

The reference is the masked mode (every example through every segment, the exit chosen
afterwards) and the masked cascade: whatever the input chunking, batch size or scheduler, the
streaming engines must emit every example exactly once with the reference's exit and logits,
run every batch but one per queue at full size, and compile nothing after the first run.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee.infer.cascade import MaskedCascadeEngine
from jee.infer.compiles import CompileCounter
from jee.infer.masked import MaskedEngine, masked_forward
from jee.infer.stream import StreamEngine
from jee.infer.stream_cascade import StreamCascadeEngine
from jee.infer.stream_sched import FEED, QueueView, assemble, deepest_full_first
from jee.infer.synthetic import SyntheticPolicy, synthetic_exits
from tests.test_infer import NEAR, THRESHOLD, ThresholdPolicy, conv_segments, normal
from tests.test_infer_cascade import DIM, ConfidenceRoutes, make_weights
from tests.test_infer_cascade import linear_models as cascade_models

NUM_CLASSES, WIDTH, BATCH, NUM_EXITS = 5, 12, 16, 4
N = 1000
FRACTIONS = [0.4, 0.2, 0.15, 0.25]


def dense_segments(seed, num_exits=NUM_EXITS):
    rng = np.random.default_rng(seed)
    segments = []
    for k in range(num_exits):
        w = normal(rng, WIDTH, WIDTH, scale=1 / np.sqrt(WIDTH))
        head, conf_w = normal(rng, WIDTH, NUM_CLASSES), normal(rng, WIDTH, scale=2.0)
        last = k == num_exits - 1

        def segment(h, w=w, head=head, conf_w=conf_w, last=last):
            z = jnp.tanh(h @ w)
            return None if last else z, z @ head, jax.nn.sigmoid(z @ conf_w)
        segments.append(segment)
    return segments


def chunks(x, sizes, aux=None):
    """Consecutive chunks of ``x`` (and ``aux``) with the given sizes."""
    bounds = np.cumsum([0, *sizes])
    assert bounds[-1] <= len(x)
    for a, b in itertools.pairwise(bounds):
        yield x[a:b] if aux is None else (x[a:b], aux[a:b])


def ragged_sizes(total, seed):
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(total - sum(sizes), rng.choice([1, 2, 7, 15, 16, 17, 40, 300]))))
    return sizes


SPLITS = {  # N = 1000 cut in various ways
    "whole": [N],
    "ones_then_rest": [1] * 40 + [7] * 20 + [256] * 3 + [N - 40 - 140 - 768],
    "batches": [BATCH] * (N // BATCH) + [N % BATCH],
    "ragged": ragged_sizes(N, 0),
}


def synthetic_data():
    """(x [N, WIDTH], aux [N]): inputs and assigned exits for the synthetic policy."""
    x = np.random.default_rng(1).standard_normal((N, WIDTH)).astype(np.float32)
    return x, synthetic_exits(N, FRACTIONS, seed=2)


def synthetic_engine(data, **engine_kwargs):
    """(stream engine, masked exits, masked logits) for the synthetic policy on ``data``."""
    x, aux = data
    segments = dense_segments(0)
    exits, logits = MaskedEngine(segments, SyntheticPolicy())(jnp.asarray(x), jnp.asarray(aux))
    engine = StreamEngine(segments, SyntheticPolicy(), batch_size=BATCH, **engine_kwargs)
    return engine, np.asarray(exits), np.asarray(logits)


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


@pytest.fixture(scope="module")
def synthetic(data):
    """The stream engine with its masked reference (``synthetic_engine``), built once."""
    return synthetic_engine(data)


def masked_with_confidences(segments, policy, x):
    """The masked mode's (exits, logits) and every exit's confidence [E, n], one program."""
    def reference(x):
        h, conf = x, []
        for segment in segments:
            h, _, c = segment(h)
            conf.append(c)
        return masked_forward(segments, policy, x), jnp.stack(conf)
    (exits, logits), conf = jax.device_get(jax.jit(reference)(jnp.asarray(x)))
    return exits, logits, conf


def check(result, exits, logits, rows=slice(None)):
    got_exits, got_logits = (np.asarray(a) for a in result)
    assert got_exits.dtype == np.int32 and got_logits.dtype == np.float32
    assert got_exits.shape == exits.shape and got_logits.shape == logits.shape
    np.testing.assert_array_equal(got_exits[rows], exits[rows])
    np.testing.assert_array_equal(got_logits[rows].argmax(-1), logits[rows].argmax(-1))
    np.testing.assert_allclose(got_logits[rows], logits[rows], rtol=1e-5, atol=1e-5)


def reached(exits, num_exits):
    """Rows that reach each segment."""
    return np.array([np.sum(exits >= k) for k in range(num_exits)])


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_synthetic_policy_matches_masked_for_any_chunking(synthetic, data, split):
    engine, exits, logits = synthetic
    x, aux = data
    assert np.array_equal(exits, aux)  # the masked mode replays the assigned exits
    before = engine.batches_run.copy(), engine.partial_batches.copy()
    check(engine.run(chunks(x, SPLITS[split], aux)), exits, logits)
    # Every batch at full size but the last of each segment, padded at the final flush.
    want = reached(exits, NUM_EXITS)
    np.testing.assert_array_equal(engine.batches_run - before[0], -(-want // BATCH))
    np.testing.assert_array_equal(engine.partial_batches - before[1], want % BATCH > 0)


@pytest.mark.parametrize("total", [1, 7, 256, 999])
def test_totals_that_are_not_batch_multiples(synthetic, data, total):
    engine, exits, logits = synthetic
    x, aux = data
    sizes = ragged_sizes(total, total)
    check(engine.run(chunks(x, sizes, aux)), exits[:total], logits[:total])


def test_no_compilation_after_warmup(synthetic, data):
    engine, exits, logits = synthetic
    x, aux = data
    engine.run(chunks(x, [300, 300], aux))  # warm-up (a no-op if other tests ran first)
    traces, cached = engine.traces, engine.cache_size()
    assert cached == NUM_EXITS + 2  # one program per segment plus the two feeds
    # A second data set of another size, cut differently, with device chunks among them:
    # one of exactly a batch goes straight in, another is read back. The first is committed
    # to a device (as arrays put on a named device are), the second is not: jit keeps apart
    # programs for the two, so the engine must commit what it passes.
    n = 517
    x2 = np.random.default_rng(7).standard_normal((n, WIDTH)).astype(np.float32)
    aux2 = synthetic_exits(n, [0.1, 0.3, 0.3, 0.3], seed=8)
    exits2, logits2 = MaskedEngine(engine.segments, SyntheticPolicy())(x2, aux2)
    device = jax.devices()[0]
    head = [(jax.device_put(x2[:BATCH], device), jax.device_put(aux2[:BATCH], device)),
            (jax.device_put(x2[BATCH:BATCH + 5]), jax.device_put(aux2[BATCH:BATCH + 5]))]
    splits = [ragged_sizes(n - BATCH - 5, 3), [1] * 50 + [7] * 30 + [n - 260 - BATCH - 5]]
    with CompileCounter() as compiles:
        results = [engine.run(itertools.chain(head, chunks(x2[BATCH + 5:], sizes,
                                                           aux2[BATCH + 5:])))
                   for sizes in splits]
        results.append(engine.run(chunks(x, [3, 40], aux)))
    assert compiles.count == 0
    assert (engine.traces, engine.cache_size()) == (traces, cached)
    for result in results[:2]:
        check(result, np.asarray(exits2), np.asarray(logits2))
    check(results[2], exits[:43], logits[:43])


def test_threshold_policy_on_a_conv_net_matches_masked():
    segments, batch = conv_segments(3), 8
    x = np.random.default_rng(5).standard_normal((45, 6, 6, 3)).astype(np.float32)
    exits, logits, conf = masked_with_confidences(segments, ThresholdPolicy(), x)
    assert len(np.unique(exits)) == len(segments)  # a real mix of exits
    comparable = np.all(np.abs(conf[:-1] - THRESHOLD) >= NEAR, axis=0)
    assert comparable.mean() > 0.95
    engine = StreamEngine(segments, ThresholdPolicy(), batch_size=batch)
    check(engine.run(chunks(x, [7, 1, 30, 7])), exits, logits, comparable)
    with CompileCounter() as compiles:
        result = engine.run(chunks(x, [1] * 5 + [40]))
    assert compiles.count == 0
    check(result, exits, logits, comparable)


def test_every_transfer_is_explicit(synthetic, data):
    """The engine copies input pieces in, a length vector out per step and the results at
    the end, all explicitly, so a guard refusing implicit transfers lets a whole run through
    (on CPU it sees host-to-device copies only: reading a CPU array back copies nothing)."""
    engine, exits, logits = synthetic
    x, aux = data
    with jax.transfer_guard("disallow"):
        result = engine.run(chunks(x, [100, 3, 97], aux))
    check(result, exits[:200], logits[:200])


def test_device_chunks_of_a_batch_cost_no_transfer(synthetic, data):
    """Fed device chunks of exactly a batch, a warm engine copies nothing to the device: no
    per-feed scalars (the row count is a cached device scalar, the next id a device counter)."""
    engine, exits, logits = synthetic
    x, aux = data
    device = jax.devices()[0]
    batches = [jax.device_put((x[i:i + BATCH], aux[i:i + BATCH]), device)
               for i in range(0, 3 * BATCH, BATCH)]
    engine.run(batches)  # warm-up: compiles, and puts the counts it needs
    engine.reset()
    # run() returns its results as device arrays: the stream itself is guarded.
    with jax.transfer_guard_host_to_device("disallow_explicit"):
        for x_batch, aux_batch in batches:
            engine.push(x_batch, aux_batch)
        engine.flush()
    out = assemble(engine.pop_emitted(), 3 * BATCH, {})
    check((out["exit"], out["logits"]), exits[:3 * BATCH], logits[:3 * BATCH])


def test_empty_input():
    engine = StreamEngine(dense_segments(0), ThresholdPolicy(), batch_size=4)
    exits, logits = engine.run([])
    assert exits.shape == (0,) and logits.shape[0] == 0 and engine.traces == 0
    # Zero-row chunks still tell the engine the input's shape, hence the number of classes.
    exits, logits = engine.run([np.zeros((0, WIDTH), np.float32)] * 3)
    assert exits.shape == (0,) and logits.shape == (0, NUM_CLASSES)
    assert exits.dtype == jnp.int32 and logits.dtype == jnp.float32


def test_num_examples_takes_a_prefix_of_an_endless_input(synthetic, data):
    engine, exits, logits = synthetic
    x, aux = data
    endless = itertools.cycle(list(chunks(x, [30, 30], aux)))
    # The cycle repeats the first 60 examples.
    check(engine.run(endless, num_examples=100), np.r_[exits[:60], exits[:40]],
          np.r_[logits[:60], logits[:40]])
    with pytest.raises(ValueError, match="num_examples"):
        engine.run(chunks(x, [10], aux), num_examples=20)


def test_server_style_push_step_force_drain(synthetic, data):
    engine, exits, logits = synthetic
    x, aux = data
    engine.reset()
    ids = [engine.push(*chunk) for chunk in chunks(x, [5, 100, 3, 92], aux)]
    assert ids[0] == range(0, 5) and ids[3] == range(108, 200)
    partial = engine.partial_batches.copy()
    while engine.step():
        pass
    # Unforced, the engine runs full batches only and leaves less than a batch per queue.
    np.testing.assert_array_equal(engine.partial_batches, partial)
    view = engine.view()
    assert view.pending == 0 and all(0 <= n < BATCH for n in view.lengths)
    assert engine.in_flight() == sum(view.lengths) > 0
    # A deadline: one forced step runs the shallowest non-empty queue's partial batch.
    shallowest = next(k for k, n in enumerate(view.lengths) if n)
    assert engine.step(force=True)
    assert engine.partial_batches[shallowest] == partial[shallowest] + 1
    pages = engine.drain()
    assert engine.in_flight() == 0 and not engine.step(force=True)
    emitted = np.concatenate([np.asarray(p.ids) for p in pages])
    np.testing.assert_array_equal(np.sort(emitted[emitted >= 0]), np.arange(200))
    out = assemble(pages, 200, {})
    check((out["exit"], out["logits"]), exits[:200], logits[:200])


def test_deepest_full_first_hand_worked():
    def view(lengths, pending=0, force=False):  # batch 4, capacity 8, a chain of 3 queues
        return QueueView(lengths, pending, 4, 8, ((1,), (2,), ()), force)

    assert deepest_full_first(view((4, 4, 3))) == 1
    assert deepest_full_first(view((4, 3, 4), pending=9)) == 2
    assert deepest_full_first(view((3, 3, 3), pending=5)) == FEED
    assert deepest_full_first(view((3, 3, 3))) is None  # partial batches wait for a force
    # A feed runs queue 0's step at once only into an empty queue 0, with a full piece (or
    # forced) and room downstream for it.
    assert view((0, 3, 0), pending=9).feeds_direct()
    assert not view((1, 3, 0), pending=9).feeds_direct()
    assert not view((0, 3, 0), pending=3).feeds_direct()
    assert view((0, 3, 0), pending=3, force=True).feeds_direct()
    assert not view((0, 5, 0), pending=9).feeds_direct()  # 5 + 4 > capacity 8
    assert deepest_full_first(view((0, 3, 3), force=True)) == 1  # the shallowest non-empty
    assert deepest_full_first(view((0, 0, 0), force=True)) is None
    # Queue 0 is full but queue 1 lacks room for a batch: queue 1, fuller, goes first.
    assert not view((4, 5, 0)).can_run(0) and deepest_full_first(view((4, 5, 0))) == 1
    assert view((7, 0, 0), pending=3).can_feed() and not view((8, 0, 0), pending=3).can_feed()


def eager_scheduler(view: QueueView):
    """Within-batch order, as the bucketed mode runs: the deepest non-empty queue, partial or
    not, else feed."""
    runnable = [k for k in range(len(view.lengths)) if view.can_run(k)]
    return runnable[-1] if runnable else FEED if view.can_feed() else None


def test_other_schedulers_and_capacities_give_the_same_results(synthetic, data):
    engine, exits, logits = synthetic
    x, aux = data
    sizes = ragged_sizes(200, 9)
    # The scheduler is host-side only: swapping it needs no new program.
    engine.scheduler, partial = eager_scheduler, engine.partial_batches.sum()
    try:
        check(engine.run(chunks(x, sizes, aux)), exits[:200], logits[:200])
    finally:
        engine.scheduler = deepest_full_first
    assert engine.partial_batches.sum() - partial > 2 * NUM_EXITS  # it ran partial batches
    roomy = StreamEngine(engine.segments, SyntheticPolicy(), batch_size=8, capacity=50)
    check(roomy.run(chunks(x, sizes, aux)), exits[:200], logits[:200])


def test_misuse_is_refused(data):
    x, aux = data
    segments = dense_segments(0)
    with pytest.raises(ValueError, match="capacity"):
        StreamEngine(segments, SyntheticPolicy(), batch_size=8, capacity=15)
    engine = StreamEngine(segments, SyntheticPolicy(), batch_size=8,
                          scheduler=lambda view: NUM_EXITS - 1)  # runs an empty queue
    engine.push(x[:3], aux[:3])
    with pytest.raises(ValueError, match="cannot run"):
        engine.step()
    with pytest.raises(ValueError, match="differs"):
        engine.push(x[:3])  # no aux while rows with aux are in flight
    assert deepest_full_first(engine.view()) == FEED


# Cascades: the linear models and confidence routes of test_infer_cascade.
def linear_models(num_nodes, seed=0):
    return cascade_models(make_weights(num_nodes, seed))


def cascade_setup():
    """(stream cascade engine, inputs, the masked cascade's (final, logits, visited))."""
    models, policy = linear_models(4), ConfidenceRoutes(4)
    x = (1.5 * np.random.default_rng(4).standard_normal((400, DIM))).astype(np.float32)
    reference = [np.asarray(a) for a in MaskedCascadeEngine(models, policy)(jnp.asarray(x))]
    return StreamCascadeEngine(models, policy, batch_size=BATCH), x, reference


@pytest.fixture(scope="module")
def cascade():
    return cascade_setup()


def check_cascade(result, reference):
    final, logits, visited = (np.asarray(a) for a in result)
    assert final.dtype == np.int32 and logits.dtype == np.float32 and visited.dtype == bool
    np.testing.assert_array_equal(final, reference[0])
    np.testing.assert_array_equal(visited, reference[2])
    np.testing.assert_allclose(logits, reference[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sizes", [[400], [1, 7, 256, 136], ragged_sizes(400, 1)])
def test_cascade_matches_masked_cascade(cascade, sizes):
    engine, x, reference = cascade
    paths = {tuple(np.flatnonzero(v)) for v in reference[2]}
    assert {(0,), (0, 1), (0, 2), (0, 1, 3), (0, 2, 3)} <= paths  # jumps and stops
    before = engine.batches_run.copy(), engine.partial_batches.copy()
    check_cascade(engine.run(chunks(x, sizes)), reference)
    # Each model runs full batches but for one partial batch at the final flush.
    visits = reference[2].sum(0)
    np.testing.assert_array_equal(engine.batches_run - before[0], -(-visits // BATCH))
    np.testing.assert_array_equal(engine.partial_batches - before[1], visits % BATCH > 0)


def test_cascade_compiles_nothing_after_warmup(cascade):
    engine, x, reference = cascade
    engine.run(chunks(x, [400]))
    traces, cached = engine.traces, engine.cache_size()
    with CompileCounter() as compiles:
        results = [engine.run(chunks(x, sizes)) for sizes in ([3, 397], [100, 7, 93])]
    assert compiles.count == 0 and (engine.traces, engine.cache_size()) == (traces, cached)
    check_cascade(results[0], reference)
    check_cascade(results[1], [a[:200] for a in reference])


def test_one_model_cascade_and_refused_aux():
    models = linear_models(1)
    x = np.random.default_rng(0).standard_normal((21, DIM)).astype(np.float32)
    engine = StreamCascadeEngine(models, ConfidenceRoutes(1), batch_size=8)
    final, logits, visited = engine.run(chunks(x, [10, 11]))
    np.testing.assert_array_equal(np.asarray(final), 0)
    assert np.asarray(visited).shape == (21, 1) and np.asarray(visited).all()
    np.testing.assert_allclose(np.asarray(logits), x @ np.asarray(models[0](jnp.eye(DIM))),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="aux"):
        engine.push(x, np.zeros(21, np.int32))
