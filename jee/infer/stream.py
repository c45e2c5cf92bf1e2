"""Streaming early exit over a network: every segment run on full batches across inputs.

:class:`StreamEngine` puts an early-exit network (the contract of :mod:`jee.infer.interface`)
on the streaming driver (:mod:`jee.infer.stream_driver`): a queue of survivors per segment,
each step running one segment on a full batch of its queue, the rows that exit emitted and
the survivors appended to the next queue. It returns what the masked mode returns.

``spans`` (:mod:`jee.infer.stream_plan`) lets consecutive segments share a queue: a step then
runs all of them on its batch, emits the rows leaving at each of their exits (with a per-row
exit), and sends on the survivors of the last. Where few examples leave at an exit, this
saves the copy through a queue for the price of running those few rows a little further.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp

from jee.infer.interface import Policy, Segment, check_segments, exits_here
from jee.infer.stream_driver import StreamDriver
from jee.infer.stream_plan import check_spans, span_starts
from jee.infer.stream_programs import int_rows
from jee.infer.stream_sched import Scheduler


class StreamEngine(StreamDriver):
    """Streaming early exit over ``segments`` and an exit ``policy`` (see the module doc).

    ``run(batches, num_examples=None) -> (exit_index int32 [N], logits_at_exit float32
    [N, C])`` in arrival order, as the masked mode gives them; ``batches`` yields arrays
    ``[n, ...]`` or ``(x, aux)`` pairs of any sizes; ``num_examples`` stops after that many.
    ``spans``: segments per queue (default one each; see :func:`~jee.infer.stream_plan.
    plan_spans`); ``batches_run`` and ``partial_batches`` count steps per queue.
    ``partial_sizes``: see :func:`~jee.infer.stream_sched.partial_sizes` (``()``: B alone).
    """

    NO_VALUES = {"logits": jax.ShapeDtypeStruct((0,), jnp.float32)}  # C unknown

    def __init__(self, segments: Sequence[Segment], policy: Policy, *, batch_size: int,
                 capacity: int | None = None, scheduler: Scheduler | None = None,
                 partial_sizes: Sequence[int] | None = None,
                 spans: Sequence[int] | None = None):
        self.segments = check_segments(segments)
        self.policy = policy
        self.spans = check_spans(spans, len(self.segments))
        self.starts = span_starts(self.spans)
        super().__init__(len(self.spans), batch_size, capacity, scheduler, partial_sizes)

    def _destinations(self, k):
        return (k + 1,) if k + 1 < len(self.spans) else ()

    def _queue_specs(self, example, with_aux):
        specs, h = [], example
        for k, segment in enumerate(self.segments):
            if k in self.starts:
                fields = {"h": h}
                if with_aux:
                    fields["aux"] = int_rows(self.batch_size)
                specs.append(fields)
            h, logits, _ = jax.eval_shape(segment, h)
        return specs, {"logits": jax.ShapeDtypeStruct(logits.shape, jnp.float32)}

    def _queue_exit(self, k):
        return self.starts[k]

    def _kernel(self, q, rows, params):
        num_exits, first = len(self.segments), self.starts[q]
        h, left, exits, out = rows["h"], None, None, None
        for k in range(first, first + self.spans[q]):
            h, logits, conf = self.segments[k](h)
            leave = exits_here(self.policy, k, num_exits, logits, conf, rows.get("aux"))
            logits = logits.astype(jnp.float32)
            if left is None:
                left, out = leave, logits
                continue
            # Rows that left at an earlier exit of the span ran on, as in the masked mode;
            # they keep their first exit.
            now = leave & ~left
            exits = jnp.where(now, k, first if exits is None else exits)
            out = jnp.where(now[:, None], logits, out)
            left = left | leave
        if exits is not None:
            exits = exits.astype(jnp.int32)
        # ids and aux ride along with the features.
        last = first + self.spans[q] == num_exits
        sends = {} if last else {q + 1: (dict(rows, h=h), ~left)}
        return left, exits, {"logits": out}, sends

    def run(self, batches: Iterable, num_examples: int | None = None
            ) -> tuple[jax.Array, jax.Array]:
        out = self._run(batches, num_examples)
        return jax.device_put(out["exit"]), jax.device_put(out["logits"])
