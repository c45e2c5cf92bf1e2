"""The streaming driver: a survivor queue per step, every step run on full batches.

The bucketed engine re-batches the survivors of one input batch, so late segments run on the
few rows that reach them. Here each queue (a segment, a span of segments, or a cascade's
model) owns a device-resident ring (``capacity`` rows, default ``3 * batch_size``) of the
rows waiting for it: features (the inputs for queue 0), ids (arrival order) and ``aux``. A
step runs one queue's program on exactly ``batch_size`` rows from the head of its queue; the
rows that exit are emitted (id, exit, values), the survivors appended, in order, to the
queues they go to. Only a flush (input exhausted, or ``step(force=True)``) runs a partial
batch, at the smallest of a few static sizes that holds it (``partial_sizes``), padded with
copies of a real row whose outputs are dropped. A full batch fed into an empty queue 0 runs
queue 0's step in the same program, not copied through queue 0's ring. Pushed chunks are
copied together on the host into pieces of a batch, or, where a batch of the input is large
on an accelerator, fed as pushed in power-of-two pieces that queue 0's ring gathers
(``assemble_max_bytes``). Every program (one per queue and size) is compiled when the first
input of a kind is pushed.

The host decides what runs next with a scheduler (:mod:`jee.infer.stream_sched`) that sees
only bounds on the queue lengths (:mod:`jee.infer.stream_lengths`): a step is dispatched
without waiting for the one before, and the lengths (one int32 vector) are read back only
when a choice depends on rows a step still running may have appended, the only
device-to-host transfer before the results. Features never leave the device; emitted pages
stay there until a run (or a server) collects them.

The engines: :class:`~jee.infer.stream.StreamEngine` (an early-exit network) and
:class:`~jee.infer.stream_cascade.StreamCascadeEngine` (a cascade of models). For a server:
:meth:`~StreamDriver.push` chunks as they arrive (it returns their ids),
:meth:`~StreamDriver.step` until it returns False, ``step(force=True)`` once a deadline
passes, and :meth:`~StreamDriver.pop_emitted` to collect results, all from one thread (an
engine holds no lock).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.stream_lengths import LengthBounds
from jee.infer.stream_programs import StreamPrograms
from jee.infer.stream_sched import (
    FEED,
    Backlog,
    Emitted,
    QueueView,
    Scheduler,
    Specs,
    Uncertain,
    assemble,
    choose,
    deepest_full_first,
    fitting_size,
    partial_sizes,
)


class StreamDriver(StreamPrograms):
    """Queues, backlog, scheduling and result collection shared by the streaming engines.

    A subclass names the queues each step may append to (``_destinations``), the fields each
    queue holds (``_queue_specs``) and what a step computes (``_kernel``). ``traces`` counts
    traces of the compiled programs: a step and a direct feed per queue and partial size, plus
    the feed, per input kind, all compiled when the first input of a kind is pushed.
    ``NO_VALUES`` gives the per-row shapes of the emitted values before any input was seen.
    """

    NO_VALUES: Specs = {}

    def __init__(self, num_queues: int, batch_size: int, capacity: int | None,
                 scheduler: Scheduler | None, sizes: Sequence[int] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # The third batch of room lets the host queue a step before it reads back how many
        # rows the one before appended (see stream_lengths); 2 * batch_size saves memory
        # and reads the lengths after nearly every step.
        capacity = 3 * batch_size if capacity is None else int(capacity)
        if capacity < 2 * batch_size:
            # Below this a full queue can find its destination too full to take a batch
            # while that destination holds less than a batch: nothing could run.
            raise ValueError(f"capacity must be >= 2 * batch_size, got {capacity}")
        self.num_queues, self.batch_size, self.capacity = num_queues, batch_size, capacity
        self.sizes = partial_sizes(batch_size, sizes)
        self.scheduler = deepest_full_first if scheduler is None else scheduler
        self.destinations = tuple(tuple(self._destinations(k)) for k in range(num_queues))
        self.traces = 0
        self.batches_run = np.zeros(num_queues, np.int64)
        self.partial_batches = np.zeros(num_queues, np.int64)
        self._backlog = Backlog()
        self._pages: list[Emitted] = []
        self._input = None  # (example spec [batch, ...], with_aux) the state was built for
        self._kind = None  # (shape[1:], dtype, with_aux) of the last push, of that spec
        # On device: queues, heads [Q], lengths [Q] and the rows fed so far (the next id).
        self._state = None
        self._empty = dict(self.NO_VALUES)  # per-row shapes of the values, for empty results
        self._params = None  # passed to every step program (a policy); see _set_params
        self._make_programs()
        # Bounds on the device's queue lengths, read back only when a choice needs them.
        self._bounds = LengthBounds(num_queues, host_resident=self.device.platform == "cpu")
        self._pushed = 0

    def push(self, x, aux=None) -> range:
        """Queues ``x [n, ...]`` (and ``aux int32 [n]``) for the stream; returns their ids.

        Every push of a stream must have the same per-example shape and dtype, and give aux
        always or never; a new kind of input is accepted once nothing is in flight.
        """
        if not isinstance(x, jax.Array):
            x = np.asarray(x)
        if aux is not None:
            if not (isinstance(aux, jax.Array) and aux.dtype == jnp.int32):
                aux = np.asarray(aux, np.int32)
            if aux.shape != x.shape[:1]:
                raise ValueError(f"aux must be [{x.shape[0]}], got {aux.shape}")
        # A server pushes many small chunks of one kind: the spec is built only for a new one.
        kind = (x.shape[1:], x.dtype, aux is not None)
        if kind != self._kind or self._input is None:
            dtype = jax.dtypes.canonicalize_dtype(x.dtype)
            key = (jax.ShapeDtypeStruct((self.batch_size, *x.shape[1:]), dtype),
                   aux is not None)
            if key != self._input:
                if self.in_flight():
                    raise ValueError(f"input {key} differs from the stream's {self._input}")
                self._init(key)
            self._kind = kind
        self._backlog.push(x, aux)
        ids = range(self._pushed, self._pushed + x.shape[0])
        self._pushed += x.shape[0]
        return ids

    @property
    def reads(self) -> int:
        """Times the queue lengths were read back from the device (one int32 vector each)."""
        return self._bounds.reads

    @property
    def drains(self) -> int:
        """Reads of the last program dispatched, none queued behind it: unless that program
        is done by then, the device idles while the host chooses and dispatches the next."""
        return self._bounds.drains

    @property
    def assembled(self) -> int:
        """Pieces of input copied together on the host (see ``assemble_max_bytes``)."""
        return self._backlog.assembled

    def in_flight(self) -> int:
        """Examples pushed and not yet emitted."""
        self._bounds.read_all()
        return self._backlog.rows + int(self._bounds.low.sum())

    def view(self, force: bool = False, exact: bool = True) -> QueueView:
        """The queues as the scheduler sees them; ``exact``: the lengths read back first."""
        if exact:
            self._bounds.read_all()
        return QueueView(tuple(self._bounds.low.tolist()), self._backlog.rows,
                         self.batch_size, self.capacity, self.destinations, force,
                         tuple(self._bounds.high.tolist()))

    def step(self, force: bool = False) -> bool:
        """Runs what the scheduler picks (a queue's batch or a feed); False if it picks nothing.

        ``force`` lets it run partial batches: at the end of the input, or past a deadline.
        The step is dispatched, not waited for: the lengths it leaves are read back only when
        a later choice depends on them.
        """
        if self._state is None:
            return False
        if force:
            self._bounds.read_all()  # partial batches are chosen on exact lengths
        while True:
            try:
                action, direct = choose(self.scheduler, self.view(force, exact=False))
                break
            except Uncertain:
                self._bounds.read_oldest()
        if action is None:
            return False
        if action == FEED:
            self._feed_piece(direct)
        else:
            self._run_queue(action)
        return True

    def _feed_piece(self, direct: bool) -> None:
        example, with_aux = self._input
        # No step appends to queue 0: its length is exact.
        limit = min(self.batch_size, self.capacity - int(self._bounds.high[0]))
        rows = min(limit, self._backlog.rows)
        if len(self.feed_sizes) > 1 and not (direct and rows < self.batch_size):
            # Large rows go as they were pushed; queue 0's ring gathers them on the device.
            x, aux, count = self._backlog.take_view(limit, self.feed_sizes, example)
            direct = direct and count == self.batch_size
        else:
            # Only the direct feed runs at a partial size: the plain one appends to a queue.
            size = fitting_size(self.sizes, rows) if direct else self.batch_size
            x, aux, count = self._backlog.take(min(limit, size), size, example, with_aux)
        piece = {"h": x} if aux is None else {"h": x, "aux": aux}
        # Explicit and committed, so host pieces and device chunks reach the program as the
        # same argument types (one jit cache entry) and a transfer guard sees every copy.
        args = self._put_piece(piece), self._count(count)
        queues, heads, lengths, fed = self._state
        known = np.zeros(self.num_queues, np.int64)
        if direct:
            *outputs, fed = self._direct_fn(self._dests(queues, 0), heads, lengths, fed,
                                            *args, self._params)
            self._state[3] = fed
            self._finish_step(0, count, known, *outputs)
            return
        queue, lengths, fed = self._feed_fn(queues[0], heads, lengths, fed, *args)
        self._state = [(queue, *queues[1:]), heads, lengths, fed]
        known[0] = count
        self._bounds.account(lengths, known, np.zeros_like(known))

    def _run_queue(self, k: int) -> None:
        # The rows taken must be known: a full batch surely waiting, or an exact length.
        bounds = self._bounds
        while bounds.low[k] < self.batch_size and bounds.low[k] != bounds.high[k]:
            bounds.read_oldest()
        queues, heads, lengths, _ = self._state
        take = min(self.batch_size, int(bounds.low[k]))
        known = np.zeros(self.num_queues, np.int64)
        known[k] = -take
        step = self._step_fns[k, fitting_size(self.sizes, take)]
        self._finish_step(k, take, known, *step(queues[k], self._dests(queues, k), heads,
                                                 lengths, self._params))

    def _finish_step(self, k, take, known, dests, heads, lengths, ids, emitted) -> None:
        self._state[:3] = self._with_dests(self._state[0], k, dests), heads, lengths
        exits, values = emitted
        self._pages.append(Emitted(self._queue_exit(k) if exits is None else exits, ids,
                                   values))
        self.batches_run[k] += 1
        self.partial_batches[k] += take < self.batch_size
        maybe = np.zeros(self.num_queues, np.int64)
        maybe[list(self.destinations[k])] = take
        self._bounds.account(lengths, known, maybe)

    def flush(self) -> int:
        """Runs everything in flight to its exit, partial batches included; returns steps."""
        steps = 0
        while self.step(force=True):
            steps += 1
        if self.in_flight():
            raise RuntimeError(f"the scheduler stalled with {self.in_flight()} rows in flight: "
                               f"{self.view(True)}")
        return steps

    def pop_emitted(self, keep: int = 0) -> list[Emitted]:
        """The pages emitted since the last call, oldest first, but the newest ``keep``,
        left for a later call: reading a page waits for its step, and a server reads the
        pages of earlier steps while the newest still runs."""
        cut = max(len(self._pages) - keep, 0)
        pages, self._pages = self._pages[:cut], self._pages[cut:]
        return pages

    def drain(self) -> list[Emitted]:
        """:meth:`flush`, then :meth:`pop_emitted`."""
        self.flush()
        return self.pop_emitted()

    def reset(self) -> None:
        """Restarts ids at 0 and drops the emitted pages; the engine must be idle."""
        if self.in_flight():
            raise RuntimeError("reset() needs an idle engine; flush() the stream first")
        self._pages, self._pushed = [], 0
        if self._state is not None:
            self._state[3] = self._count(0)

    def _run(self, batches: Iterable, num_examples: int | None) -> dict[str, np.ndarray]:
        self.reset()
        batches, exhausted, hungry = iter(batches), False, False
        while True:
            # Keep at least a batch waiting, so the scheduler can always feed a full piece.
            while not exhausted and (hungry or self._backlog.rows < self.batch_size):
                hungry = False
                done = num_examples is not None and self._pushed >= num_examples
                item = None if done else next(batches, None)
                if item is None:
                    exhausted = True
                    break
                x, aux = item if isinstance(item, tuple) else (item, None)
                if num_examples is not None and self._pushed + len(x) > num_examples:
                    keep = num_examples - self._pushed
                    x, aux = np.asarray(x)[:keep], None if aux is None else np.asarray(aux)[:keep]
                self.push(x, aux)
            if self.step(force=exhausted):
                continue
            if exhausted:
                break
            hungry = True
        self.flush()
        if num_examples is not None and self._pushed != num_examples:
            raise ValueError(f"num_examples={num_examples} but the input held {self._pushed}")
        return assemble(self.pop_emitted(), self._pushed, self._empty)
