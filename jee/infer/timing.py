"""Timing primitives of the benchmarks: calls timed round-robin, and the single calls of a
network's backbone, segments and hops that its ideal by time and a stream's plan are made of.

Calls are taken in turn, round after round (:func:`time_rounds`), so that the drift of a
shared machine hits every timed thing alike; compilations during timed calls are counted (a
path that recompiles in steady state is a bug).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jee.infer.compiles import CompileCounter
from jee.infer.interface import Segment
from jee.infer.stream_plan import hop_program

# Rounds of single calls timed ahead of any pass (a stream's plan): at least this many.
MIN_SEGMENT_ROUNDS = 7
# Single calls of the backbone, each segment and each hop per round of a dataset benchmark's
# passes: the mean of a few steadies a round's figure at little cost next to a pass.
CALLS_PER_ROUND = 5


def warm_up(fn: Callable, args: tuple) -> tuple:
    """``(output, seconds, compilations)`` of a first call, compilation included."""
    with CompileCounter() as compiles:
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        first = time.perf_counter() - start
    return out, first, compiles.count


def time_rounds(calls: Sequence[tuple[Callable, tuple]], repeats: int
                ) -> tuple[np.ndarray, list[int]]:
    """``(seconds [repeats, len(calls)], compilations per call)``: every call once per round,
    round after round, so that a shared machine's drift hits them alike."""
    times = np.zeros((repeats, len(calls)))
    counters = [CompileCounter() for _ in calls]
    for r in range(repeats):
        for i, ((fn, args), counter) in enumerate(zip(calls, counters, strict=True)):
            with counter:
                start = time.perf_counter()
                jax.block_until_ready(fn(*args))
                times[r, i] = time.perf_counter() - start
    return times, [c.count for c in counters]


def time_calls(fn: Callable, args: tuple, repeats: int):
    """(first output, first-call seconds, steady-state seconds [repeats], warm-up compiles,
    compiles during the timed calls)."""
    out, first, warm = warm_up(fn, args)
    times, steady = time_rounds([(fn, args)], repeats)
    return out, first, times[:, 0], warm, steady[0]


def single_calls(segments: Sequence[Segment], full_fn: Callable, x: jax.Array
                 ) -> tuple[list[Callable[[], None]], int]:
    """``(calls, num_segments)``: zero-argument calls, each running one compiled program once
    and waiting for it: the plain backbone on ``x``, then each segment alone at ``x``'s batch
    size, segment k fed the features segments 0..k-1 compute from ``x`` (real intermediate
    features, whoever exits), then each hop between segments (a batch of those features moved
    through a queue, :func:`~jee.infer.stream_plan.hop_program`). Every program is compiled
    here, before any timing."""
    def once(fn, arg):
        def call():
            jax.block_until_ready(fn(arg))
        return call

    full = jax.jit(full_fn)
    jax.block_until_ready(full(x))
    calls, hops, h = [once(full, x)], [], x
    for k, segment in enumerate(segments):
        fn = jax.jit(segment)
        calls.append(once(fn, h))
        h = jax.block_until_ready(fn(h))[0]
        if k + 1 < len(segments):
            program, *rings = hop_program(jax.ShapeDtypeStruct(h.shape, h.dtype))
            hops.append(_hop_call(program, jax.block_until_ready(program(*rings))))
    return calls + hops, len(segments)


def _hop_call(program: Callable, rings) -> Callable[[], None]:
    def call():
        nonlocal rings
        rings = jax.block_until_ready(program(*rings))  # it donates its rings
    return call


def split_times(seconds: Sequence[float], num_segments: int
                ) -> tuple[float, list[float], list[float]]:
    """Seconds of :func:`single_calls` as ``(plain backbone, [segments], [hops])``."""
    seconds = [float(t) for t in seconds]
    return seconds[0], seconds[1:num_segments + 1], seconds[num_segments + 1:]


def segment_times(segments: Sequence[Segment], full_fn: Callable, x: jax.Array,
                  repeats: int) -> tuple[float, list[float], list[float]]:
    """Median seconds of each of :func:`single_calls`: ``(plain backbone, [segments],
    [hops])``.

    The calls are timed round-robin, so the drift of a shared machine hits them alike, over
    at least ``MIN_SEGMENT_ROUNDS`` rounds: one call is cheap next to a pass, and the median of
    a few calls moved the ideal by time by a third on the 2-core CPU.
    """
    calls, num_segments = single_calls(segments, full_fn, x)
    return median_times(calls, num_segments, repeats)


def median_times(calls: Sequence[Callable[[], None]], num_segments: int, repeats: int
                 ) -> tuple[float, list[float], list[float]]:
    """:func:`segment_times` of calls :func:`single_calls` made."""
    times, _ = time_rounds([(call, ()) for call in calls], max(MIN_SEGMENT_ROUNDS, repeats))
    return split_times(np.median(times, axis=0), num_segments)


def repeated(call: Callable[[], None], count: int) -> Callable[[], None]:
    """``call`` made ``count`` times in a row, each waited for: an entry of
    :func:`time_rounds` whose time over ``count`` is one call's."""
    def calls():
        for _ in range(count):
            call()
    return calls
