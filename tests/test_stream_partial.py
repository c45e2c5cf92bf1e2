"""Tests of the streaming engines' partial sizes: a partial batch runs at the smallest static
size that holds it, with the same results as the masked mode and nothing compiled after the
first push."""

import pytest

from jee.infer.compiles import CompileCounter
from jee.infer.stream_sched import assemble, fitting_size, partial_sizes
from tests.test_infer_stream import (
    BATCH,
    NUM_EXITS,
    check,
    chunks,
    reached,
    synthetic_data,
    synthetic_engine,
)

SIZES = (1, 4)  # with BATCH = 16: partial batches of 1, 2-4 and 5-16 rows


def test_default_partial_sizes_by_hand():
    assert partial_sizes(4) == (4,)  # below the smallest partial size: the batch alone
    assert partial_sizes(16) == (16,)  # 16 / 4 = 4 < 8
    assert partial_sizes(32) == (8, 32)
    assert partial_sizes(256) == (16, 64, 256)
    assert partial_sizes(1000) == (16, 63, 250, 1000)  # rounded up
    assert partial_sizes(16, [4, 1, 4]) == (1, 4, 16)  # the batch size is always one
    assert partial_sizes(256, ()) == (256,)
    for bad in ([0], [17], [-3, 8]):
        with pytest.raises(ValueError, match="partial sizes must lie in 1..16"):
            partial_sizes(16, bad)
    assert [fitting_size((1, 4, 16), n) for n in (1, 2, 4, 5, 16)] == [1, 4, 4, 16, 16]


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


@pytest.fixture(scope="module")
def small(data):
    return synthetic_engine(data, partial_sizes=SIZES)


@pytest.mark.parametrize("total", [1, 3, 7, 999, 1000])
def test_partial_batches_run_at_the_smallest_fitting_size(small, data, total):
    engine, exits, logits = small
    x, aux = data
    engine.reset()
    engine.push(x[:total], aux[:total])
    pages = engine.drain()
    # Each segment runs full batches, then at most one partial batch at the final flush: at
    # the smallest size holding what is left of the rows that reach it.
    want = reached(exits[:total], NUM_EXITS)
    for k in range(NUM_EXITS):
        sizes = [p.ids.shape[0] for p in pages if p.exit == k]
        tail = [fitting_size(engine.sizes, want[k] % BATCH)] if want[k] % BATCH else []
        assert sorted(sizes) == sorted([BATCH] * (want[k] // BATCH) + tail), k
    engine.reset()
    check(engine.run(chunks(x[:total], [total], aux[:total])), exits[:total], logits[:total])


def test_ragged_input_matches_masked_and_compiles_once(small, data):
    engine, exits, logits = small
    x, aux = data
    engine.run(chunks(x, [5], aux))  # the first push compiles every program
    # A step and a direct feed per queue and size, plus the feed at the full batch.
    assert engine.cache_size() == (NUM_EXITS + 1) * 3 + 1
    with CompileCounter() as compiles:
        results = [engine.run(chunks(x, sizes, aux))
                   for sizes in ([1000], [1] * 9 + [3, 988], [15, 2, 17, 966])]
    assert compiles.count == 0 and engine.cache_size() == (NUM_EXITS + 1) * 3 + 1
    for result in results:
        check(result, exits, logits)


def test_forced_steps_run_small_programs(small, data):
    """A server's deadline forces out a few rows: they run at a small size, not padded to a
    full batch."""
    engine, exits, logits = small
    x, aux = data
    engine.reset()
    engine.push(x[:3], aux[:3])
    assert engine.step() and not engine.step()  # unforced, fed into queue 0, where they wait
    while engine.step(force=True):
        pass
    pages = engine.pop_emitted()
    # Queue 0 runs its three rows at 4, not 16; deeper queues get at most three.
    assert pages[0].ids.shape[0] == 4
    assert all(p.ids.shape[0] in SIZES for p in pages)
    assert engine.in_flight() == 0


def test_pop_emitted_keeps_the_newest_pages(small, data):
    engine, exits, logits = small
    x, aux = data
    engine.reset()
    before = int(engine.batches_run.sum())  # the engine is shared: earlier tests ran it
    engine.push(x[:3], aux[:3])
    while engine.step(force=True):
        pass
    steps = int(engine.batches_run.sum()) - before
    assert steps >= 2
    older = engine.pop_emitted(keep=1)
    assert len(older) == steps - 1
    newest = engine.pop_emitted(keep=5)  # fewer pages than kept: none given
    assert newest == []
    last = engine.pop_emitted()
    assert len(last) == 1 and engine.pop_emitted() == []
    out = assemble(older + last, 3, {})
    check((out["exit"], out["logits"]), exits[:3], logits[:3])
