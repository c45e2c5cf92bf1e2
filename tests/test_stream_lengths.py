"""Tests of the host's bounds on a stream's queue lengths (jee.infer.stream_lengths) and of
the pipelining they allow: steps queued on the device before the lengths of the step before
are read back, with results unchanged."""

import jax
import numpy as np
import pytest

from jee.infer.stream_lengths import LengthBounds
from jee.infer.stream_sched import QueueView, Uncertain
from tests.test_infer_stream import (
    BATCH,
    SPLITS,
    N,
    check,
    chunks,
    synthetic_data,
    synthetic_engine,
)


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


def on_device(*lengths):
    return jax.device_put(np.asarray(lengths, np.int32))


def vec(*values):
    return np.asarray(values, np.int64)


# Both ways of reading the lengths back: jax.device_get (an accelerator's) and the array as it
# is (the CPU backend's, where device arrays live in host memory).
READS = pytest.mark.parametrize("host_resident", [False, True])


@READS
def test_bounds_by_hand(host_resident):
    b = LengthBounds(3, host_resident)
    # A feed of 16 rows into queue 0: known, nothing to read.
    b.account(on_device(16, 0, 0), vec(16, 0, 0), vec(0, 0, 0))
    assert b.exact and b.low.tolist() == b.high.tolist() == [16, 0, 0]
    # Queue 0's step takes them; up to 16 survivors go to queue 1.
    b.account(on_device(0, 7, 0), vec(-16, 0, 0), vec(0, 16, 0))
    assert not b.exact and b.low.tolist() == [0, 0, 0] and b.high.tolist() == [0, 16, 0]
    # Another feed, dispatched before that step's count is read: folded into it.
    b.account(on_device(16, 7, 0), vec(16, 0, 0), vec(0, 0, 0))
    assert b.low.tolist() == [16, 0, 0] and b.high.tolist() == [16, 16, 0]
    b.read_oldest()  # one read: 7 survivors, after both programs
    assert b.exact and b.low.tolist() == b.high.tolist() == [16, 7, 0]
    assert b.reads == 1 and b.drains == 1  # nothing was queued behind the feed
    with pytest.raises(RuntimeError, match="exact"):
        b.read_oldest()


@READS
def test_bounds_read_oldest_first_and_count_drains(host_resident):
    b = LengthBounds(2, host_resident)
    b.account(on_device(0, 3), vec(0, 0), vec(0, 4))
    b.account(on_device(0, 5), vec(0, 0), vec(0, 4))
    assert b.low.tolist() == [0, 0] and b.high.tolist() == [0, 8]
    b.read_oldest()  # the second program is still queued behind the first: no drain
    assert b.low.tolist() == [0, 3] and b.high.tolist() == [0, 7] and b.drains == 0
    b.read_oldest()
    assert b.low.tolist() == b.high.tolist() == [0, 5] and b.drains == 1


@READS
def test_bounds_refuse_lengths_they_do_not_allow(host_resident):
    b = LengthBounds(2, host_resident)
    b.account(on_device(0, 5), vec(0, 0), vec(0, 4))  # at most 4 appended, 5 read back
    with pytest.raises(RuntimeError, match="outside the bounds"):
        b.read_oldest()


def test_view_answers_only_what_the_bounds_decide():
    def view(low, high, pending=0):  # batch 4, capacity 12, a chain of 3 queues
        return QueueView(low, pending, 4, 12, ((1,), (2,), ()), False, high)

    assert view((4, 0, 0), (4, 8, 0)).can_run(0)  # 8 + 4 <= 12 whatever survived
    assert not view((4, 9, 0), (4, 12, 0)).can_run(0)  # 9 + 4 > 12 in any case
    with pytest.raises(Uncertain):
        view((4, 6, 0), (4, 10, 0)).can_run(0)  # fits at 6, not at 10
    with pytest.raises(Uncertain):
        view((0, 0, 0), (0, 3, 0)).can_run(1)  # queue 1 may be empty
    assert not view((0, 0, 0), (0, 0, 0)).can_run(1)
    assert view((0, 0, 0), (0, 8, 0), pending=5).feeds_direct()
    with pytest.raises(Uncertain):
        view((0, 2, 0), (0, 10, 0), pending=5).feeds_direct()
    assert view((0, 0, 0), (0, 3, 0)).exact is False and view((1, 2, 0), (1, 2, 0)).exact


def test_default_capacity_queues_steps_ahead_with_the_same_results(data):
    x, aux = data
    tight, exits, logits = synthetic_engine(data, capacity=2 * BATCH)
    roomy, _, _ = synthetic_engine(data)
    assert roomy.capacity == 3 * BATCH
    for engine in (tight, roomy):
        check(engine.run(chunks(x, SPLITS["ragged"], aux)), exits, logits)
    # With two batches of room, a step appending to a queue that holds any rows leaves no
    # room certain for the next: the host reads the lengths of the program it just
    # dispatched, with nothing queued behind it. With three it reads them while the next
    # step runs; the drains left are the flush's, whose partial batches need exact lengths.
    steps = int(roomy.batches_run.sum())
    assert tight.batches_run.sum() == steps and steps > N // BATCH
    assert tight.drains > 4 * roomy.drains
    assert roomy.drains < 0.1 * steps and roomy.reads > 0
