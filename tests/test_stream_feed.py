"""Tests of how pushed input reaches a stream's queue 0: copied together on the host into
pieces of a batch (small rows), or fed as pushed, in power-of-two pieces gathered by queue 0's
ring on the device (rows too large to copy on the host, ``assemble_max_bytes``). Either way
every example is emitted once with the masked mode's exit and logits, and nothing compiles
after the first push."""

import jax
import numpy as np
import pytest

from jee.infer.compiles import CompileCounter
from jee.infer.stream_sched import Backlog, feed_sizes
from tests.test_infer_stream import (
    BATCH,
    NUM_EXITS,
    N,
    cascade_setup,
    check,
    check_cascade,
    chunks,
    ragged_sizes,
    synthetic_data,
    synthetic_engine,
)

SPEC = jax.ShapeDtypeStruct((BATCH, 3), np.float32)


def test_feed_sizes_by_hand():
    assert feed_sizes(1) == (1,)
    assert feed_sizes(16) == (1, 2, 4, 8, 16)
    assert feed_sizes(100) == (1, 2, 4, 8, 16, 32, 64, 100)


def test_take_view_cuts_the_first_chunk_without_copying():
    backlog = Backlog()
    x = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    aux = np.arange(7, dtype=np.int32)
    backlog.push(x, aux)
    backlog.push(x[:2], aux[:2])
    taken = [backlog.take_view(16, feed_sizes(BATCH), SPEC) for _ in range(4)]
    # 7 rows go as 4 + 2 + 1, the next chunk's 2 as one piece: views of the pushed arrays.
    assert [n for _, _, n in taken] == [4, 2, 1, 2]
    starts = [0, 4, 6, 0]
    for (piece, piece_aux, n), start in zip(taken, starts, strict=True):
        assert np.shares_memory(piece, x) and np.shares_memory(piece_aux, aux)
        np.testing.assert_array_equal(piece, x[start:start + n])
        np.testing.assert_array_equal(piece_aux, aux[start:start + n])
    assert backlog.rows == 0 and backlog.assembled == 0
    # The limit (room in queue 0) caps a piece: 5 rows of room take 4.
    backlog.push(x, None)
    assert backlog.take_view(5, feed_sizes(BATCH), SPEC)[2] == 4


def test_take_view_passes_whole_device_chunks_and_reads_back_the_rest():
    backlog = Backlog()
    whole = jax.device_put(np.ones((8, 3), np.float32))
    backlog.push(whole, None)
    piece, _, n = backlog.take_view(16, feed_sizes(BATCH), SPEC)
    assert piece is whole and n == 8
    backlog.push(jax.device_put(np.arange(9 * 3, dtype=np.float32).reshape(9, 3)), None)
    first, _, n = backlog.take_view(16, feed_sizes(BATCH), SPEC)
    second, _, m = backlog.take_view(16, feed_sizes(BATCH), SPEC)
    # 9 rows: 8 then 1, read back once and sliced on the host.
    assert (n, m) == (8, 1) and isinstance(first, np.ndarray)
    assert first.base is not None and first.base is second.base
    np.testing.assert_array_equal(second, [[24, 25, 26]])


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


@pytest.fixture(scope="module")
def fed_as_pushed(data):
    engine, exits, logits = synthetic_engine(data)
    engine.assemble_max_bytes = 0  # every input counts as large
    return engine, exits, logits


@pytest.mark.parametrize("on_device", [False, True])
def test_fed_as_pushed_matches_masked_and_compiles_once(fed_as_pushed, data, on_device):
    engine, exits, logits = fed_as_pushed
    x, aux = data
    put = jax.device_put if on_device else (lambda a: a)
    engine.run((put(a), put(b)) for a, b in chunks(x, [5], aux))  # compiles every program
    assert engine.feed_sizes == feed_sizes(BATCH)
    # A step and a direct feed per queue and partial size, plus a feed per feed size.
    programs = (NUM_EXITS + 1) * len(engine.sizes) + len(feed_sizes(BATCH))
    assert engine.cache_size() == programs
    splits = ([N], [1] * 9 + [3, N - 12], [15, 2, 17, N - 34], ragged_sizes(N, 3), [8] * 125)
    with CompileCounter() as compiles:
        for sizes in splits:
            before = engine.assembled
            check(engine.run((put(a), put(b)) for a, b in chunks(x, sizes, aux)),
                  exits, logits)
            # Only a partial piece at the final flush may be copied together on the host.
            assert engine.assembled - before <= 1, sizes
    assert compiles.count == 0 and engine.cache_size() == programs


def test_small_rows_are_assembled_into_batches(data):
    engine, exits, logits = synthetic_engine(data)
    x, aux = data
    check(engine.run(chunks(x, [8] * 125, aux)), exits, logits)
    assert engine.feed_sizes == (BATCH,)
    # 1000 rows in chunks of 8 reach queue 0 as ceil(1000 / 16) pieces copied together.
    assert engine.assembled == -(-N // BATCH)


def test_cascade_fed_as_pushed_matches_masked_cascade():
    engine, x, reference = cascade_setup()
    engine.assemble_max_bytes = 0
    check_cascade(engine.run(chunks(x, [1, 7, 256, 136])), reference)
    assert len(engine.feed_sizes) > 1
