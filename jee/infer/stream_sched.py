"""The parts of the streaming engines (:mod:`jee.infer.stream`) that know nothing of networks.

- **Ring queues.** A queue is a dict of device buffers with ``capacity`` rows each (features,
  ids, ...) plus a head and a length held in small int32 vectors. :func:`ring_take` gathers a
  static ``batch`` of rows from the head, :func:`ring_append` scatters chosen rows behind the
  tail in their stable order. Neither moves the rows already waiting, whatever the counts.
- **Schedulers.** Before every step the engine shows the scheduler a :class:`QueueView` (host
  integers only: bounds on the queue lengths while steps are in flight) and runs what it
  answers: a queue's index, :data:`FEED` (move pushed input into queue 0) or ``None`` (nothing
  worth running now). :func:`deepest_full_first` is the default.
- **The backlog.** Input pushed by the caller waits on the host until it is fed, a piece of at
  most ``batch`` rows at a time, padded to ``batch`` rows so that feeding never recompiles.
- **Partial sizes.** A partial batch (a flush, or a caller's deadline) runs at the smallest of
  a few static sizes that holds it (:func:`partial_sizes`), not padded to the full batch.
- **Results.** Each step emits a page (:class:`Emitted`) of ``batch`` rows on device, ids -1
  where a row did not leave; :func:`assemble` puts the pages of a run in arrival order.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

FEED = -1
Queue = dict[str, jax.Array]
Specs = dict[str, jax.ShapeDtypeStruct]


class Uncertain(Exception):
    """A question about the queues that the host cannot answer until it reads back the lengths
    of a step still in flight; the engine reads them and asks the scheduler again."""


@dataclasses.dataclass(frozen=True)
class QueueView:
    """What a scheduler sees before each step.

    ``lengths[k]``: rows surely waiting in queue k; ``upper[k]``: rows that may be waiting
    (None: as many as ``lengths``). They differ while a step that may append to queue k is
    still running: the engine does not wait for its count before choosing the next step, so
    a step can be queued on the device while the last one runs. ``pending``: rows pushed but
    not yet fed into queue 0; ``destinations[k]``: the queues a step of queue k may append
    to; ``force``: run partial batches (the input is exhausted, or a caller's deadline has
    passed; the lengths are then exact). The predicates below answer what holds for every
    length within the bounds, or raise :class:`Uncertain`.
    """

    lengths: tuple[int, ...]
    pending: int
    batch_size: int
    capacity: int
    destinations: tuple[tuple[int, ...], ...]
    force: bool = False
    upper: tuple[int, ...] | None = None

    @property
    def exact(self) -> bool:
        return self.upper is None or self.upper == self.lengths

    def _high(self) -> tuple[int, ...]:
        return self.lengths if self.upper is None else self.upper

    def has_room(self, k: int, rows: int) -> bool:
        """Every queue a step of queue k may append to has room for ``rows`` more."""
        return self._room(k, rows, rows)

    def _room(self, k: int, rows_low: int, rows_high: int) -> bool:
        high = self._high()
        if all(high[j] + rows_high <= self.capacity for j in self.destinations[k]):
            return True
        if any(self.lengths[j] + rows_low > self.capacity for j in self.destinations[k]):
            return False
        raise Uncertain(f"room behind queue {k}")

    def can_run(self, k: int) -> bool:
        """Queue k has rows and every queue it may append to has room for all of them."""
        low, high = self.lengths[k], self._high()[k]
        if high == 0:
            return False
        if low == 0:
            raise Uncertain(f"whether queue {k} holds rows")
        return self._room(k, min(low, self.batch_size), min(high, self.batch_size))

    def can_feed(self) -> bool:
        if self.pending == 0 or self.lengths[0] >= self.capacity:
            return False
        if self._high()[0] < self.capacity:
            return True
        raise Uncertain("room in queue 0")

    def feeds_direct(self) -> bool:
        """A feed may run queue 0's step on its piece at once: queue 0 is empty, the piece is
        a full batch (or partial batches may run), and queue 0's step would have room."""
        piece = min(self.batch_size, self.pending)
        if self.lengths[0] > 0 or not (self.force or piece == self.batch_size):
            return False
        if self._high()[0] > 0:
            raise Uncertain("whether queue 0 is empty")
        return self.has_room(0, piece)


Scheduler = Callable[[QueueView], int | None]

# Partial sizes shrink by this factor down to this size: three sizes for a batch of 256.
PARTIAL_SHRINK, SMALLEST_PARTIAL = 4, 8


def partial_sizes(batch: int, sizes=None) -> tuple[int, ...]:
    """The static sizes, ascending and ending with ``batch``, that a step may run at.

    By default ``batch``, ``batch / 4``, ``batch / 16``, ... (rounded up) while at least 8: a
    few rows left at a flush, or forced out by a server's deadline, run on a small program
    instead of a full batch of padding; each size costs one more compiled program per queue.
    """
    if sizes is None:
        sizes, size = [], batch
        while size >= SMALLEST_PARTIAL and size not in sizes:
            sizes.append(size)
            size = -(-size // PARTIAL_SHRINK)
    sizes = {int(s) for s in sizes} | {batch}
    if min(sizes) < 1 or max(sizes) > batch:
        raise ValueError(f"partial sizes must lie in 1..{batch} (the batch size), got "
                         f"{sorted(sizes)}")
    return tuple(sorted(sizes))


def feed_sizes(batch: int) -> tuple[int, ...]:
    """The sizes of the pieces that feed chunks into queue 0 as they were pushed: the powers
    of two below ``batch``, and ``batch``. A chunk of any size goes in at most
    log2(batch) + 1 pieces, the common request sizes (1, 8, 32, ...) in one."""
    sizes, size = [], 1
    while size < batch:
        sizes.append(size)
        size *= 2
    return (*sizes, batch)


def fitting_size(sizes: Sequence[int], rows: int) -> int:
    """The smallest of ``sizes`` (ascending) that holds ``rows``."""
    return next(s for s in sizes if s >= rows)


def deepest_full_first(view: QueueView) -> int | None:
    """Run the deepest queue surely holding a full batch, else feed input, else (when forced)
    run the shallowest non-empty queue on a partial batch.

    Deepest first frees room downstream, so with ``capacity >= 2 * batch_size`` the queue it
    picks can always run once the lengths are exact: a step appends at most a batch to queues
    that are not full. While a step is in flight, a queue it may have filled waits for the
    next read of the lengths, and a feed may go first. Flushing the shallowest queue first
    lets its survivors top up deeper queues, so a run of a finite input pads at most one batch
    per queue.
    """
    for k in reversed(range(len(view.lengths))):
        if view.lengths[k] >= view.batch_size and view.can_run(k):
            return k
    if view.can_feed():
        return FEED
    if view.force:
        for k in range(len(view.lengths)):
            if view.can_run(k):
                return k
    return None


def choose(scheduler: Scheduler, view: QueueView) -> tuple[int | None, bool]:
    """``(action, direct)``: what ``scheduler`` runs next, checked against ``view``, and
    whether a feed runs queue 0's step on its piece at once; raises :class:`Uncertain` where
    the answer depends on lengths not read back yet ("nothing to run" included)."""
    action = scheduler(view)
    if action is None:
        if not view.exact:
            raise Uncertain("nothing surely runnable")
        return None, False
    if action == FEED:
        if not view.can_feed():
            raise ValueError(f"scheduler chose to feed, but cannot: {view}")
        return FEED, view.feeds_direct()
    if not (0 <= action < len(view.lengths) and view.can_run(action)):
        raise ValueError(f"scheduler chose {action!r}, which cannot run: {view}")
    return int(action), False


def ring_take(queue: Queue, head: jax.Array, length: jax.Array, batch: int
              ) -> tuple[Queue, jax.Array, jax.Array]:
    """``(rows, valid bool [batch], take)``: the first ``min(length, batch)`` rows of a ring.

    Padding slots re-read the head row, a real example (the caller never takes from an empty
    queue), so segments see no garbage; the caller drops their outputs.
    """
    capacity = queue["ids"].shape[0]
    take = jnp.minimum(length, batch)
    slots = jnp.arange(batch, dtype=jnp.int32)
    valid = slots < take
    pos = (head + jnp.where(valid, slots, 0)) % capacity
    rows = {name: buf.at[pos].get(mode="promise_in_bounds") for name, buf in queue.items()}
    return rows, valid, take


def ring_append(queue: Queue, head: jax.Array, length: jax.Array, rows: Queue,
                keep: jax.Array) -> tuple[Queue, jax.Array]:
    """``(queue, new length)``: the rows where ``keep`` appended behind the tail, in order.

    The caller guarantees the room (the schedulers' ``can_run``/``can_feed``).
    """
    capacity, batch = queue["ids"].shape[0], keep.shape[0]
    keep32 = keep.astype(jnp.int32)
    position = jnp.cumsum(keep32) - 1
    # Rows not kept get distinct out-of-range targets, as in bucketed.survivor_order: dropped,
    # and the scatter indices stay unique.
    spare = capacity + jnp.arange(batch, dtype=jnp.int32)
    target = jnp.where(keep, (head + length + position) % capacity, spare)
    queue = {name: buf.at[target].set(rows[name].astype(buf.dtype), mode="drop",
                                      unique_indices=True)
             for name, buf in queue.items()}
    return queue, length + jnp.sum(keep32)


class Backlog:
    """Chunks pushed by the caller and not yet fed into queue 0, oldest first, on the host.

    :meth:`take` copies chunks of any size together into pieces of at most ``batch`` rows,
    padded to ``batch`` rows, so queue 0 is fed by one compiled program. :meth:`take_view`
    cuts the first chunk into pieces of :func:`feed_sizes` rows without a copy, for inputs
    too large to copy on the host. A device array taken whole goes through as it is; other
    device arrays are read back once, as slicing them on device would compile a program per
    offset.
    """

    def __init__(self):
        self._chunks: collections.deque[list] = collections.deque()  # [x, aux, start]
        self.rows = 0
        self.assembled = 0  # pieces copied together on the host

    def push(self, x, aux) -> None:
        if x.shape[0]:
            self._chunks.append([x, aux, 0])
            self.rows += x.shape[0]

    def clear(self) -> None:
        self._chunks.clear()
        self.rows = 0

    def take(self, limit: int, batch: int, example: jax.ShapeDtypeStruct, with_aux: bool
             ) -> tuple[object, object, int]:
        """``(x [batch, ...], aux [batch] or None, count)``: the next ``count <= limit`` rows."""
        x, aux, start = self._chunks[0]
        if (isinstance(x, jax.Array) and start == 0 and x.shape[0] == batch <= limit
                and x.dtype == example.dtype):
            self._chunks.popleft()
            self.rows -= batch
            return x, aux, batch
        self.assembled += 1
        # A fresh buffer per piece: the transfer to the device may still read it later.
        piece = np.zeros((batch, *example.shape[1:]), example.dtype)
        aux_piece = np.zeros(batch, np.int32) if with_aux else None
        count = 0
        while count < limit and self._chunks:
            entry = self._chunks[0]
            x, _ = self._on_host(entry)
            start = entry[2]
            n = min(limit - count, x.shape[0] - start)
            piece[count:count + n] = x[start:start + n]
            if with_aux:
                aux_piece[count:count + n] = entry[1][start:start + n]
            count += n
            entry[2] += n
            if entry[2] == x.shape[0]:
                self._chunks.popleft()
        self.rows -= count
        return piece, aux_piece, count

    @staticmethod
    def _on_host(entry: list, dtype=None) -> tuple[np.ndarray, np.ndarray | None]:
        """A chunk's ``(x, aux)`` as host arrays, kept in its entry: a device chunk is read
        back once, however many pieces are cut from it."""
        entry[0] = np.asarray(entry[0], dtype)
        if entry[1] is not None:
            entry[1] = np.asarray(entry[1])
        return entry[0], entry[1]

    def take_view(self, limit: int, sizes: Sequence[int], example: jax.ShapeDtypeStruct
                  ) -> tuple[object, object, int]:
        """``(x [n, ...], aux [n] or None, n)``: the first chunk's next rows as they are, no
        copy on the host; ``n`` is the largest of ``sizes`` (ascending, from 1) within
        ``limit`` and the rows the chunk has left. A device chunk taken whole goes as it is;
        other device chunks are read back once, as :meth:`take` does."""
        entry = self._chunks[0]
        x, aux, start = entry
        left = x.shape[0] - start
        n = max(s for s in sizes if s <= min(limit, left))
        if not (isinstance(x, jax.Array) and start == 0 and n == left
                and x.dtype == example.dtype):
            x, aux = self._on_host(entry, example.dtype)
            x = x[start:start + n]
            aux = None if aux is None else aux[start:start + n]
        entry[2] += n
        if entry[2] == entry[0].shape[0]:
            self._chunks.popleft()
        self.rows -= n
        return x, aux, n


class Emitted(NamedTuple):
    """One step's results, on device: rows with ``ids >= 0`` left at ``exit`` (an exit or
    model index, or int32 ``[batch]``, one per row, for a step spanning several exits);
    ``values`` maps names (``"logits"``, ...) to ``[batch, ...]`` arrays aligned with ``ids``."""

    exit: int | jax.Array
    ids: jax.Array
    values: dict[str, jax.Array]


def read_rows(pages: Sequence[Emitted]) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(ids, exits, values)`` on the host: the emitted rows of ``pages`` in page order,
    read back in one transfer and filtered once (a pass emits a page per step)."""
    ids, exits, values = jax.device_get(([p.ids for p in pages], [p.exit for p in pages],
                                         [p.values for p in pages]))
    exits = np.concatenate([np.broadcast_to(np.asarray(e, np.int32), i.shape)
                            for e, i in zip(exits, ids, strict=True)])
    ids = np.concatenate(ids)
    keep = ids >= 0
    return (ids[keep], exits[keep],
            {name: np.concatenate([v[name] for v in values])[keep] for name in values[0]})


def assemble(pages: Sequence[Emitted], num_examples: int, empty: Specs) -> dict[str, np.ndarray]:
    """Per-example results in id order: ``"exit"`` int32 ``[N]`` and each value ``[N, ...]``.

    One transfer of every page; raises unless each id below ``num_examples`` appears exactly
    once. ``empty`` gives the per-row shapes of the values when there are no pages.
    """
    if not pages:
        if num_examples:
            raise RuntimeError(f"{num_examples} examples pushed but nothing emitted")
        return {"exit": np.zeros(0, np.int32),
                **{name: np.zeros((0, *s.shape), s.dtype) for name, s in empty.items()}}
    ids, exits, values = read_rows(pages)
    if ids.size != num_examples or np.any(np.bincount(ids, minlength=num_examples) != 1):
        raise RuntimeError(f"expected ids 0..{num_examples - 1} emitted once each, got "
                           f"{ids.size} rows")
    out = {"exit": np.empty(num_examples, np.int32)}
    out["exit"][ids] = exits
    for name, stacked in values.items():
        out[name] = np.empty((num_examples, *stacked.shape[1:]), stacked.dtype)
        out[name][ids] = stacked
    return out
