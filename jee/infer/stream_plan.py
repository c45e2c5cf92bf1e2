"""Which segments of an early-exit network share a queue in the streaming engine.

A stream gives each queue its own step; between two queues the survivors are copied out of
one step's batch into the next queue's ring and gathered back from it (a *hop*). Where almost
no example leaves at an exit, that hop buys nothing: the segments on both sides can run as
one step (a *span*) that computes the exit in between, emits the few rows that leave there,
and sends on only the survivors of the span's last exit, as the masked mode does over the
whole network. A plan is ``spans``: how many consecutive segments each queue's step runs.

:func:`plan_spans` picks the plan of least expected time from the fraction of examples
leaving at each exit (measured on data the benchmark does not score, e.g. validation) and the
time of each segment and of each hop at the batch size (:func:`hop_program`, timed by
:func:`jee.infer.timing.segment_times`): a span starting at segment s runs every row that
reaches s through all of its segments, plus one hop at its end.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.stream_sched import ring_append, ring_take


def check_spans(spans: Sequence[int] | None, num_segments: int) -> tuple[int, ...]:
    """``spans`` as a tuple of positive counts summing to ``num_segments``; None: one
    segment per queue."""
    if spans is None:
        return (1,) * num_segments
    spans = tuple(int(s) for s in spans)
    if not spans or min(spans) < 1 or sum(spans) != num_segments:
        raise ValueError(f"spans must be positive segment counts summing to the network's "
                         f"{num_segments} segments, got {list(spans)}")
    return spans


def span_starts(spans: Sequence[int]) -> tuple[int, ...]:
    """The first segment of each span."""
    return tuple(int(s) for s in np.cumsum((0, *spans[:-1])))


def plan_spans(exit_fractions: Sequence[float], segment_seconds: Sequence[float],
               hop_seconds: Sequence[float]) -> tuple[int, ...]:
    """The spans minimising ``sum over spans [s, e) of reach[s] * (sum(segment_seconds[s:e])
    + hop_seconds[e - 1])`` (no hop after the last segment), where ``reach[s]`` is the
    fraction of examples not leaving before segment s.

    ``exit_fractions [E]``: fraction of examples leaving at each exit; ``segment_seconds
    [E]``: each segment's time at the batch size; ``hop_seconds [E - 1]``: the time of
    moving a batch of the features between segments b and b + 1 through a queue. Ties go to
    the plan with fewer queues.
    """
    fractions = np.asarray(exit_fractions, np.float64)
    times = np.asarray(segment_seconds, np.float64)
    hops = np.asarray(hop_seconds, np.float64)
    e = times.shape[0]
    if fractions.shape != (e,) or hops.shape != (max(e - 1, 0),):
        raise ValueError(f"need {e} exit fractions, {e} segment times and {e - 1} hop times, "
                         f"got {fractions.shape}, {times.shape}, {hops.shape}")
    if np.any(fractions < 0) or np.any(times < 0) or np.any(hops < 0):
        raise ValueError("exit fractions and times must be >= 0")
    reach = np.clip(1.0 - np.concatenate([[0.0], np.cumsum(fractions)[:-1]]), 0.0, 1.0)
    ends_hop = np.concatenate([hops, [0.0]])  # the hop after segment k; none after the last
    # best[j]: (least cost of segments 0..j-1, queues used, the last span's start).
    best = [(0.0, 0, -1)] + [(np.inf, 0, -1)] * e
    for end in range(1, e + 1):
        for start in range(end):
            cost = best[start][0] + reach[start] * (times[start:end].sum() + ends_hop[end - 1])
            queues = best[start][1] + 1
            if (cost, queues) < best[end][:2]:
                best[end] = (cost, queues, start)
    spans, end = [], e
    while end:
        start = best[end][2]
        spans.append(end - start)
        end = start
    return tuple(reversed(spans))


def hop_program(example: jax.ShapeDtypeStruct):
    """``(program, source, dest)``: a compiled hop of ``example.shape[0]`` rows of
    ``example``'s features, as a stream step pays around its segment (a gather from the head
    of one ring, a scatter behind the tail of another), and two rings to call it on;
    ``program(source, dest) -> (source, dest)`` donates both, so pass it what it returned."""
    batch = example.shape[0]

    def ring():
        return {"h": np.zeros((2 * batch, *example.shape[1:]), example.dtype),
                "ids": np.zeros(2 * batch, np.int32)}

    def hop(source, dest):
        rows, valid, _ = ring_take(source, jnp.int32(batch), jnp.int32(batch), batch)
        dest, _ = ring_append(dest, jnp.int32(0), jnp.int32(batch), rows, valid)
        return source, dest

    return jax.jit(hop, donate_argnums=(0, 1)), *jax.device_put((ring(), ring()))
