"""Tests of the in-process servers (jee.infer.server) on tiny dense networks.

Requests of 1, 8 and 32 images come from several threads at once; whatever the interleaving,
every future must resolve to the masked mode's exits and logits for its own rows. A lone
request must be answered by a forced partial batch soon after ``max_wait_ms``; close() must
answer what is in flight; an exception inside a segment must fail the futures, never hang them.
"""

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jee.infer.bucketed import BucketedEngine
from jee.infer.cascade import STOP, MaskedCascadeEngine
from jee.infer.compiles import CompileCounter
from jee.infer.masked import MaskedEngine
from jee.infer.server import PerRequestServer, Server, full_network
from jee.infer.stream import StreamEngine
from jee.infer.stream_cascade import StreamCascadeEngine
from jee.infer.synthetic import SyntheticPolicy, synthetic_exits

CLASSES, WIDTH, EXITS, BATCH = 5, 12, 4, 16
SIZES = (1, 8, 32)
N = 400
WAIT = 30.0  # generous: every result() below would otherwise hang a broken server forever


def broken(h):
    raise FloatingPointError("segment 1 is broken")


def broken_on_data(h):
    # Zeros pass: the stream compiles (and runs) its programs on empty queues first.
    if np.any(h):
        broken(h)
    return h


def dense_segments(seed, fail_at=None, fail_when="run"):
    """EXITS tanh-dense segments; segment ``fail_at`` raises when traced (``fail_when=
    "trace"``) or, through a host callback, each time it runs on rows that are not all zero
    (``"run"``)."""
    rng = np.random.default_rng(seed)
    segments = []
    for k in range(EXITS):
        w = jnp.asarray(rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH), jnp.float32)
        head = jnp.asarray(rng.standard_normal((WIDTH, CLASSES)), jnp.float32)
        conf_w = jnp.asarray(2 * rng.standard_normal(WIDTH), jnp.float32)

        def segment(h, w=w, head=head, conf_w=conf_w, k=k):
            if k == fail_at and fail_when == "trace":
                broken(h)
            if k == fail_at:
                h = jax.pure_callback(broken_on_data, jax.ShapeDtypeStruct(h.shape, h.dtype), h)
            z = jnp.tanh(h @ w)
            return None if k == EXITS - 1 else z, z @ head, jax.nn.sigmoid(z @ conf_w)
        segments.append(segment)
    return segments


class ThresholdPolicy:
    def decide(self, k, logits, conf, aux):
        return conf >= 0.5


@pytest.fixture(scope="module")
def data():
    x = np.random.default_rng(1).standard_normal((N, WIDTH)).astype(np.float32)
    return x, synthetic_exits(N, [0.4, 0.2, 0.15, 0.25], seed=2)


@pytest.fixture(scope="module")
def network(data):
    """(segments, masked exits, masked logits) under the synthetic policy."""
    x, aux = data
    segments = dense_segments(0)
    exits, logits = jax.device_get(MaskedEngine(segments, SyntheticPolicy())(x, aux))
    return segments, exits, logits


@pytest.fixture(scope="module")
def stream_engine(network):
    """One engine for the tests that need no other: each server resets it, and its compiled
    programs carry over."""
    return StreamEngine(network[0], SyntheticPolicy(), batch_size=BATCH)


def request_plan(num_threads=4, per_thread=6):
    """Per thread, a list of (start, size) slices of the data, sizes cycling through SIZES."""
    plan, start = [], 0
    for t in range(num_threads):
        mine = []
        for j in range(per_thread):
            size = SIZES[(t + j) % len(SIZES)]
            mine.append((start % (N - size), size))
            start += size
        plan.append(mine)
    return plan


def submit_from_threads(server, x, aux, plan):
    """Every thread submits its slices (without waiting); returns [(start, size, future)]."""
    out, lock = [], threading.Lock()

    def client(slices):
        for start, size in slices:
            future = server.submit(x[start:start + size], aux[start:start + size])
            with lock:
                out.append((start, size, future))

    threads = [threading.Thread(target=client, args=(s,)) for s in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def check(result, exits, logits, start, size):
    got_exits, got_logits = result
    assert got_exits.dtype == np.int32 and got_logits.dtype == np.float32
    assert got_exits.shape == (size,) and got_logits.shape == (size, CLASSES)
    np.testing.assert_array_equal(got_exits, exits[start:start + size])
    np.testing.assert_array_equal(got_logits.argmax(-1), logits[start:start + size].argmax(-1))
    np.testing.assert_allclose(got_logits, logits[start:start + size], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["stream", "stream_fed_as_pushed", "bucketed"])
def test_concurrent_requests_match_masked_and_compile_once(network, stream_engine, data, kind):
    segments, exits, logits = network
    x, aux = data
    if kind == "stream":
        server = Server(stream_engine, max_wait_ms=5)
    elif kind == "stream_fed_as_pushed":
        # As on an accelerator with large images: requests go into queue 0 as pushed.
        engine = StreamEngine(segments, SyntheticPolicy(), batch_size=BATCH)
        engine.assemble_max_bytes = 0
        server = Server(engine, max_wait_ms=5)
    else:
        server = PerRequestServer(BucketedEngine(segments, SyntheticPolicy()))
    with server:
        # Warm-up: every request size, and (among the 32) rows reaching every segment.
        assert set(aux[:32]) == set(range(EXITS))
        server.warm_up([(x[:size], aux[:size]) for size in SIZES], timeout=WAIT)
        with CompileCounter() as compiles:
            for _ in range(2):  # two rounds: thread interleavings differ
                for start, size, future in submit_from_threads(server, x, aux, request_plan()):
                    check(future.result(WAIT), exits, logits, start, size)
        assert compiles.count == 0
    if kind != "bucketed":
        engine = server.engine
        assert engine.in_flight() == 0
        if kind == "stream_fed_as_pushed":
            # Only a forced partial batch fed straight into queue 0's step is copied together.
            assert engine.assembled <= server.stats["forced_steps"]
        else:
            assert engine.assembled > 0
        # The rows of different requests shared batches: segment 0 ran fewer batches than
        # there were requests, most of them full.
        assert engine.batches_run[0] < server.stats["requests"]
        assert engine.partial_batches[0] < engine.batches_run[0] / 2


def test_threshold_policy_without_aux(data):
    x, _ = data
    segments = dense_segments(3)
    policy = ThresholdPolicy()

    def reference(x):
        h, confs = x, []
        for segment in segments:
            h, _, conf = segment(h)
            confs.append(conf)
        return MaskedEngine(segments, policy)(x), jnp.stack(confs[:-1])

    (exits, logits), conf = jax.device_get(jax.jit(reference)(x))
    assert len(np.unique(exits)) == EXITS
    away_from_ties = np.all(np.abs(conf - 0.5) > 1e-4, axis=0)
    with Server(StreamEngine(segments, policy, batch_size=BATCH), max_wait_ms=5) as server:
        futures = [(s, n, server.submit(x[s:s + n])) for s, n in [(0, 32), (32, 1), (33, 8)]]
        for start, size, future in futures:
            keep = away_from_ties[start:start + size]
            got_exits, got_logits = future.result(WAIT)
            np.testing.assert_array_equal(got_exits[keep], exits[start:start + size][keep])
            np.testing.assert_allclose(got_logits[keep], logits[start:start + size][keep],
                                       rtol=1e-5, atol=1e-5)


def test_lone_request_is_answered_by_a_forced_partial_batch(network, stream_engine, data):
    segments, exits, logits = network
    x, aux = data
    max_wait_ms = 20.0
    with Server(stream_engine, max_wait_ms=max_wait_ms) as server:
        server.warm_up([(x[:32], aux[:32])], timeout=WAIT)  # compile outside the timing
        partial, forced = server.engine.partial_batches.sum(), server.stats["forced_steps"]
        row = int(np.flatnonzero(aux == EXITS - 1)[0])  # one that visits every segment
        start = time.perf_counter()
        result = server.submit(x[row:row + 1], aux[row:row + 1]).result(timeout=5.0)
        elapsed = time.perf_counter() - start
        check(result, exits, logits, row, 1)
        # A lone row never fills a batch: it waits for its deadline, then is forced through.
        assert elapsed >= 0.9 * max_wait_ms / 1e3
        assert server.stats["forced_steps"] > forced
        assert server.engine.partial_batches.sum() - partial == EXITS


def test_forced_pass_starts_early_enough_to_answer_by_max_wait(data):
    # Segments that take SLEEP_S each: a forced pass for a lone row takes EXITS * SLEEP_S.
    # Once a pass was measured, the next lone request's pass starts that much before its
    # deadline, so it is answered at about max_wait, not max_wait plus the pass.
    x, aux = data
    sleep_s, max_wait_s = 0.04, 0.2
    pass_s = EXITS * sleep_s

    def slow(h):
        time.sleep(sleep_s)
        return h

    segments = [lambda h, f=f: f(jax.pure_callback(
        slow, jax.ShapeDtypeStruct(h.shape, h.dtype), h)) for f in dense_segments(3)]
    with Server(StreamEngine(segments, SyntheticPolicy(), batch_size=BATCH),
                max_wait_ms=max_wait_s * 1e3) as server:
        deep = np.full(1, EXITS - 1, np.int32)  # every segment runs
        server.warm_up([(x[:1], deep)], timeout=WAIT)  # compiles, and measures a forced pass
        start = time.perf_counter()
        server.submit(x[1:2], deep).result(timeout=WAIT)
        elapsed = time.perf_counter() - start
    assert server.stats["forced_steps"] >= 2 * EXITS
    assert 0.9 * (max_wait_s - pass_s) <= elapsed < max_wait_s + pass_s / 2


@pytest.mark.parametrize("max_wait_ms", [0.0, 20.0])
def test_rows_left_in_the_step_still_running_are_answered(network, data, max_wait_ms):
    # The server reads a step's page only after it dispatched the next, so a request can be
    # overdue while all of its rows have left in that unread page and no queue holds any: one
    # queue for the whole network, requests of a full batch, and a deadline already past
    # (max_wait 0) or reached under load.
    segments, exits, logits = network
    x, aux = data
    engine = StreamEngine(segments, SyntheticPolicy(), batch_size=BATCH, spans=(EXITS,))
    with Server(engine, max_wait_ms=max_wait_ms) as server:
        for start in range(0, 4 * BATCH, BATCH):  # one at a time: each finds the engine idle
            check(server.submit(x[start:start + BATCH], aux[start:start + BATCH]).result(WAIT),
                  exits, logits, start, BATCH)
        plan = [[(start, BATCH) for start in range(t * 6 * BATCH, (t + 1) * 6 * BATCH, BATCH)]
                for t in range(3)]
        for start, size, future in submit_from_threads(server, x, aux, plan):
            check(future.result(WAIT), exits, logits, start, size)
    assert server.error is None


def test_close_answers_requests_in_flight(network, stream_engine, data):
    segments, exits, logits = network
    x, aux = data
    # No deadline will pass: only close() can push the partial batches through.
    server = Server(stream_engine, max_wait_ms=600_000)
    futures = [(s, n, server.submit(x[s:s + n], aux[s:s + n]))
               for s, n in [(0, 1), (1, 8), (9, 32), (41, 1)]]
    server.close(timeout=WAIT)
    assert server.stats["forced_steps"] == 0 and server.error is None
    for start, size, future in futures:
        assert future.done()
        check(future.result(0), exits, logits, start, size)
    with pytest.raises(RuntimeError, match="closed"):
        server.submit(x[:1], aux[:1])
    server.close()  # idempotent


@pytest.mark.parametrize("fail_when", ["run", "trace"])
def test_segment_error_fails_pending_futures(data, fail_when):
    x, aux = data
    deep = np.full(N, EXITS - 1, np.int32)  # every row reaches the broken segment 1
    server = Server(StreamEngine(dense_segments(0, fail_at=1, fail_when=fail_when),
                                 SyntheticPolicy(), batch_size=BATCH), max_wait_ms=5)
    futures = [server.submit(x[:n], deep[:n]) for n in (32, 1, 8)]
    for future in futures:
        # At run time JAX reports the callback's error as a JaxRuntimeError quoting it.
        with pytest.raises(Exception, match="segment 1 is broken"):
            future.result(WAIT)
    if fail_when == "run":
        # The engine's state is lost with the failed step: the server stops for good.
        assert server.error is not None
        with pytest.raises(RuntimeError, match="failed"):
            server.submit(x[:1], aux[:1])
    else:
        # The engine traces its segments when it takes the first input (push): that request
        # is refused on its own and the engine holds nothing to lose.
        assert server.error is None
    server.close(timeout=WAIT)


def test_per_request_server_survives_a_failing_request(data):
    x, aux = data
    calls = []

    def engine(x, aux):
        calls.append(x.shape[0])
        if x.shape[0] == 3:
            raise ValueError("no requests of 3")
        return np.zeros(x.shape[0], np.int32), np.ones((x.shape[0], CLASSES), np.float32)

    with PerRequestServer(engine) as server:
        bad, good = server.submit(x[:3]), server.submit(x[:2])
        with pytest.raises(ValueError, match="of 3"):
            bad.result(WAIT)
        assert good.result(WAIT)[1].shape == (2, CLASSES)
    assert calls == [3, 2] and server.error is None


def test_bad_request_fails_alone_and_full_network_engine(network, stream_engine, data):
    segments, exits, logits = network
    x, aux = data
    # A long wait keeps the good request in flight, so the engine sees two kinds of input.
    with Server(stream_engine, max_wait_ms=600_000) as server:
        good = server.submit(x[:8], aux[:8])
        wrong_width = server.submit(np.zeros((2, WIDTH + 1), np.float32), aux[:2])
        with pytest.raises(ValueError, match="differs"):
            wrong_width.result(WAIT)
    check(good.result(0), exits, logits, 0, 8)  # answered by close()
    with pytest.raises(ValueError, match="at least one"):
        server.submit(x[:0])

    def full(x):
        h = x
        for segment in segments:
            h, out, _ = segment(h)
        return out

    rows = np.flatnonzero(exits == EXITS - 1)[:8]  # where the masked logits are the last's
    with PerRequestServer(full_network(full, EXITS)) as server:
        got_exits, got_logits = server.submit(x[rows]).result(WAIT)
    np.testing.assert_array_equal(got_exits, EXITS - 1)
    np.testing.assert_allclose(got_logits, logits[rows], rtol=1e-5, atol=1e-5)


class RouteOnConfidence:
    def route(self, k, logits, root_logits):
        conf = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
        return jnp.where(conf >= 0.5, STOP, jnp.where(conf < 0.35, 2, k + 1))


def test_cascade_engine_behind_the_server():
    rng = np.random.default_rng(4)
    weights = [jnp.asarray(rng.standard_normal((WIDTH, CLASSES)) * (0.5 + 0.2 * k), jnp.float32)
               for k in range(3)]
    models = [lambda x, w=w: x @ w for w in weights]
    x = (1.5 * rng.standard_normal((60, WIDTH))).astype(np.float32)
    final, logits, visited = jax.device_get(MaskedCascadeEngine(models, RouteOnConfidence())(x))
    assert len(np.unique(final)) == 3
    with Server(StreamCascadeEngine(models, RouteOnConfidence(), batch_size=8),
                max_wait_ms=5) as server:
        futures = [(s, n, server.submit(x[s:s + n])) for s, n in [(0, 1), (1, 32), (33, 8)]]
        for start, size, future in futures:
            got_final, got_logits, got_visited = future.result(WAIT)
            rows = slice(start, start + size)
            np.testing.assert_array_equal(got_final, final[rows])
            np.testing.assert_array_equal(got_visited, visited[rows])
            np.testing.assert_allclose(got_logits, logits[rows], rtol=1e-5, atol=1e-5)
