"""The streaming driver: a survivor queue per step, every step run on full batches.

The bucketed engine re-batches the survivors of one input batch, so late segments run on the
few rows that reach them. Here each queue (a segment, a span of segments, or a cascade's
model) owns a device-resident ring (a static ``capacity`` rows, default ``3 * batch_size``)
holding the rows waiting for it: their features (the inputs for queue 0), their ids (arrival
order) and their ``aux``. A step runs one queue's program on exactly ``batch_size`` rows taken
from the head of its queue, with one compiled program per queue (and partial size); the rows
that exit are emitted (id, exit, values) and the survivors are appended, in order, to the
queues they go to. Only a flush (input exhausted, or ``step(force=True)``) runs a partial
batch, at the smallest of a few static sizes that holds it (``partial_sizes``), padded with
copies of a real row whose outputs are dropped. A feed of a full batch into an empty queue 0
(the common case when input arrives in batches) runs queue 0's step on it in the same
program, so the input is not copied through queue 0's buffer. Every program is compiled when
the first input of a kind is pushed, whichever path the stream takes later.

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

import functools
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.stream_lengths import LengthBounds
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
    ring_append,
    ring_take,
)


def int_rows(batch: int) -> jax.ShapeDtypeStruct:
    """The spec of a per-row int32 field (ids, aux, bit masks) of ``batch`` rows."""
    return jax.ShapeDtypeStruct((batch,), jnp.int32)


class StreamDriver:
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
        self._state = None  # (queues, heads [Q], lengths [Q]) on device
        self._empty = dict(self.NO_VALUES)  # per-row shapes of the values, for empty results
        # Bounds on the device's queue lengths, read back only when a choice needs them.
        self._bounds = LengthBounds(num_queues)
        self._pushed = self._fed = 0
        # The lengths are not donated: the host may still read a program's back later.
        self._feed_fn = jax.jit(self._feed, donate_argnums=(0,))
        self._step_fns = {(k, size): jax.jit(functools.partial(self._step, k, size),
                                             donate_argnums=(1, 2))
                          for k in range(num_queues) for size in self.sizes}
        # One program per size: the direct feed's size is its piece's.
        self._direct_fn = jax.jit(self._direct, donate_argnums=(0, 1))

    # Subclass hooks.
    def _destinations(self, k: int) -> Sequence[int]:
        raise NotImplementedError

    def _queue_specs(self, example: jax.ShapeDtypeStruct, with_aux: bool
                     ) -> tuple[list[Specs], Specs]:
        """(fields of each queue, values emitted), as ``[batch, ...]`` shapes."""
        raise NotImplementedError

    def _kernel(self, k: int, rows: dict[str, jax.Array]):
        """``(leave bool [b], exit, values, sends)`` for a batch of queue k: ``exit`` is None
        (every row leaves at :meth:`_queue_exit`) or int32 ``[b]``, one per row; ``sends``
        maps a destination j to ``(rows for queue j, bool [b] which go there)``."""
        raise NotImplementedError

    def _queue_exit(self, k: int) -> int:
        """The exit of every row a step of queue k emits, when its kernel gives no per-row one."""
        return k

    # Compiled programs.
    def _feed(self, queue, heads, lengths, piece, count, first_id):
        self.traces += 1
        rows, valid = self._piece_rows(piece, count, first_id)
        queue, length = ring_append(queue, heads[0], lengths[0], rows, valid)
        return queue, lengths.at[0].set(length)

    def _step(self, k, size, source, dests, heads, lengths):
        self.traces += 1
        rows, valid, take = ring_take(source, heads[k], lengths[k], size)
        heads = heads.at[k].set((heads[k] + take) % self.capacity)
        lengths = lengths.at[k].add(-take)
        return self._advance(k, rows, valid, dests, heads, lengths)

    def _direct(self, dests, heads, lengths, piece, count, first_id):
        # A feed into an empty queue 0 and its step in one program: the piece never passes
        # through queue 0's buffer.
        self.traces += 1
        rows, valid = self._piece_rows(piece, count, first_id)
        return self._advance(0, rows, valid, dests, heads, lengths)

    def _piece_rows(self, piece, count, first_id):
        """A fed piece as queue rows (ids in arrival order) and which of them are real."""
        slots = jnp.arange(piece["h"].shape[0], dtype=jnp.int32)
        return dict(piece, ids=first_id + slots), slots < count

    def _advance(self, k, rows, valid, dests, heads, lengths):
        leave, exits, values, sends = self._kernel(k, rows)
        ids = jnp.where(valid & leave, rows["ids"], -1)
        new_dests = []
        for j, queue in zip(self.destinations[k], dests, strict=True):
            sent, goes = sends[j]
            queue, length = ring_append(queue, heads[j], lengths[j], sent, valid & goes)
            lengths = lengths.at[j].set(length)
            new_dests.append(queue)
        return tuple(new_dests), heads, lengths, ids, (exits, values)

    # Host side.
    def _init(self, key) -> None:
        example, with_aux = key
        specs, values = self._queue_specs(example, with_aux)
        self._empty = {name: jax.ShapeDtypeStruct(s.shape[1:], s.dtype)
                       for name, s in values.items()}
        # Zeros made on the host and copied over: jnp.zeros would compile a program per shape.
        queues = tuple({name: np.zeros((self.capacity, *s.shape[1:]), s.dtype)
                        for name, s in {**fields, "ids": int_rows(self.batch_size)}.items()}
                       for fields in specs)
        heads, lengths = (np.zeros(self.num_queues, np.int32) for _ in range(2))
        self._state, self._input = jax.device_put([queues, heads, lengths]), key
        self._bounds.clear()
        try:
            self._compile_all()
        except BaseException:
            # Buffers donated to a failed program are gone: the next push starts afresh.
            self._state = self._input = None
            raise

    def _compile_all(self) -> None:
        """Runs every program once on nothing (a zero count, empty queues), so that whichever
        path a stream later takes compiles nothing; the state it donates comes back as it was.
        """
        example, with_aux = self._input
        queues, heads, lengths = self._state
        for size in self.sizes:
            piece = {"h": np.zeros((size, *example.shape[1:]), example.dtype)}
            if with_aux:
                piece["aux"] = np.zeros(size, np.int32)
            args = jax.device_put((piece, np.int32(0), np.int32(0)))
            if size == self.batch_size:
                queue, lengths = self._feed_fn(queues[0], heads, lengths, *args)
                queues = (queue, *queues[1:])
            dests, heads, lengths, _, _ = self._direct_fn(self._dests(queues, 0), heads,
                                                          lengths, *args)
            queues = self._with_dests(queues, 0, dests)
            for k in range(self.num_queues):
                dests, heads, lengths, _, _ = self._step_fns[k, size](
                    queues[k], self._dests(queues, k), heads, lengths)
                queues = self._with_dests(queues, k, dests)
        self._state = [queues, heads, lengths]

    def _dests(self, queues, k: int) -> tuple:
        return tuple(queues[j] for j in self.destinations[k])

    def _with_dests(self, queues, k: int, dests) -> tuple:
        """``queues`` with those a step of queue k returned in place of the ones it took."""
        queues = list(queues)
        for j, queue in zip(self.destinations[k], dests, strict=True):
            queues[j] = queue
        return tuple(queues)

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
        dtype = jax.dtypes.canonicalize_dtype(x.dtype)
        key = (jax.ShapeDtypeStruct((self.batch_size, *x.shape[1:]), dtype), aux is not None)
        if key != self._input:
            if self.in_flight():
                raise ValueError(f"input {key} differs from the stream's {self._input}")
            self._init(key)
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

    def in_flight(self) -> int:
        """Examples pushed and not yet emitted."""
        self._bounds.read_all()
        return self._backlog.rows + int(self._bounds.low.sum())

    def view(self, force: bool = False, exact: bool = True) -> QueueView:
        """The queues as the scheduler sees them; ``exact``: the lengths read back first."""
        if exact:
            self._bounds.read_all()
        return QueueView(tuple(int(n) for n in self._bounds.low), self._backlog.rows,
                         self.batch_size, self.capacity, self.destinations, force,
                         tuple(int(n) for n in self._bounds.high))

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
        # Only the direct feed runs at a partial size: the plain one appends to a queue.
        size = fitting_size(self.sizes, min(limit, self._backlog.rows)) if direct \
            else self.batch_size
        x, aux, count = self._backlog.take(min(limit, size), size, example, with_aux)
        piece = {"h": x} if aux is None else {"h": x, "aux": aux}
        # Explicit, so host pieces and device chunks reach the program as the same argument
        # types (one jit cache entry) and a transfer guard sees every copy the engine makes.
        args = jax.device_put((piece, np.int32(count), np.int32(self._fed)))
        self._fed += count
        queues, heads, lengths = self._state
        known = np.zeros(self.num_queues, np.int64)
        if direct:
            outputs = self._direct_fn(self._dests(queues, 0), heads, lengths, *args)
            self._finish_step(0, count, known, *outputs)
            return
        queue, lengths = self._feed_fn(queues[0], heads, lengths, *args)
        self._state = [(queue, *queues[1:]), heads, lengths]
        known[0] = count
        self._bounds.account(lengths, known, np.zeros_like(known))

    def _run_queue(self, k: int) -> None:
        # The rows taken must be known: a full batch surely waiting, or an exact length.
        bounds = self._bounds
        while bounds.low[k] < self.batch_size and bounds.low[k] != bounds.high[k]:
            bounds.read_oldest()
        queues, heads, lengths = self._state
        take = min(self.batch_size, int(bounds.low[k]))
        known = np.zeros(self.num_queues, np.int64)
        known[k] = -take
        step = self._step_fns[k, fitting_size(self.sizes, take)]
        self._finish_step(k, take, known, *step(queues[k], self._dests(queues, k), heads,
                                                 lengths))

    def _finish_step(self, k, take, known, dests, heads, lengths, ids, emitted) -> None:
        self._state = [self._with_dests(self._state[0], k, dests), heads, lengths]
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

    def pop_emitted(self) -> list[Emitted]:
        """The pages emitted since the last call, oldest first."""
        pages, self._pages = self._pages, []
        return pages

    def drain(self) -> list[Emitted]:
        """:meth:`flush`, then :meth:`pop_emitted`."""
        self.flush()
        return self.pop_emitted()

    def reset(self) -> None:
        """Restarts ids at 0 and drops the emitted pages; the engine must be idle."""
        if self.in_flight():
            raise RuntimeError("reset() needs an idle engine; flush() the stream first")
        self._pages, self._pushed, self._fed = [], 0, 0

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

    def cache_size(self) -> int:
        """Compiled programs held: a step and a direct feed per queue and partial size, plus
        the feed, per input kind seen."""
        return (self._feed_fn._cache_size() + self._direct_fn._cache_size()
                + sum(f._cache_size() for f in self._step_fns.values()))
