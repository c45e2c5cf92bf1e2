"""The compiled programs of the streaming driver (:mod:`jee.infer.stream_driver`).

:class:`StreamPrograms` holds what runs on the device: the feed of a piece into queue 0, a step
per queue and partial size (take rows from its ring, run the subclass's kernel, append the
survivors to the queues they go to) and the direct feed (a piece run as queue 0's step
without passing through its ring). It builds the device state for a kind of input and runs
every program once on nothing, so that no later path of the stream compiles. The driver
decides which program runs next.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.policy_args import argument_signature
from jee.infer.stream_sched import Specs, feed_sizes, ring_append, ring_take


def int_rows(batch: int) -> jax.ShapeDtypeStruct:
    """The spec of a per-row int32 field (ids, aux, bit masks) of ``batch`` rows."""
    return jax.ShapeDtypeStruct((batch,), jnp.int32)


class StreamPrograms:
    """Mixin of :class:`~jee.infer.stream_driver.StreamDriver`: its compiled programs, their
    state on the device and the hooks a subclass fills in (see the module doc). ``device``:
    where the programs run and every argument they are given is committed (the first of
    ``jax.devices()``).

    ``assemble_max_bytes``: pushed chunks are copied together on the host into pieces of a
    batch when a batch of the input holds at most this many bytes, one feed a batch; larger
    inputs are fed as they were pushed, in pieces of ``feed_sizes`` rows (a program each),
    and gathered by queue 0's ring on the device. On an H100, copying chunks of 8 ImageNet
    images together into batches of 256 (154 MB in float32) took the host longer than the
    network's pass. The default is 8 MiB on accelerators and no limit on the CPU backend,
    whose device memory is the host's: the ring would copy the rows twice, where assembling
    copies them once. Set it on an engine before its first push.
    """

    feed_sizes: tuple[int, ...] = ()

    def _make_programs(self) -> None:
        # Every argument is committed to this device: jit compiles a program apart for
        # uncommitted arrays (host pieces, fresh state) and committed ones (device chunks,
        # outputs of programs given committed inputs), which would compile mid-stream.
        self.device = jax.devices()[0]
        self.assemble_max_bytes = (1 << 62) if self.device.platform == "cpu" else 8 << 20
        # A fed piece's count of real rows, one committed scalar per value: a transfer per
        # feed costs the host more than the feed program's dispatch.
        self._counts: dict[int, jax.Array] = {}
        # The lengths are not donated: the host may still read a program's back later.
        self._feed_fn = jax.jit(self._feed, donate_argnums=(0,))
        self._step_fns = {(k, size): jax.jit(functools.partial(self._step, k, size),
                                             donate_argnums=(1, 2))
                          for k in range(self.num_queues) for size in self.sizes}
        # One program per size: the direct feed's size is its piece's.
        self._direct_fn = jax.jit(self._direct, donate_argnums=(0, 1))

    # Subclass hooks.
    def _destinations(self, k: int) -> Sequence[int]:
        raise NotImplementedError

    def _queue_specs(self, example: jax.ShapeDtypeStruct, with_aux: bool
                     ) -> tuple[list[Specs], Specs]:
        """(fields of each queue, values emitted), as ``[batch, ...]`` shapes."""
        raise NotImplementedError

    def _kernel(self, k: int, rows: dict[str, jax.Array], params):
        """``(leave bool [b], exit, values, sends)`` for a batch of queue k, given the
        ``params`` of :meth:`_set_params`: ``exit`` is None (every row leaves at
        :meth:`_queue_exit`) or int32 ``[b]``, one per row; ``sends`` maps a destination j to
        ``(rows for queue j, bool [b] which go there)``."""
        raise NotImplementedError

    def _queue_exit(self, k: int) -> int:
        """The exit of every row a step of queue k emits, when its kernel gives no per-row one."""
        return k

    # Compiled programs.
    def _feed(self, queue, heads, lengths, fed, piece, count):
        self.traces += 1
        rows, valid = self._piece_rows(piece, count, fed)
        queue, length = ring_append(queue, heads[0], lengths[0], rows, valid)
        return queue, lengths.at[0].set(length), fed + count

    def _step(self, k, size, source, dests, heads, lengths, params):
        self.traces += 1
        rows, valid, take = ring_take(source, heads[k], lengths[k], size)
        heads = heads.at[k].set((heads[k] + take) % self.capacity)
        lengths = lengths.at[k].add(-take)
        return self._advance(k, rows, valid, dests, heads, lengths, params)

    def _direct(self, dests, heads, lengths, fed, piece, count, params):
        # A feed into an empty queue 0 and its step in one program: the piece never passes
        # through queue 0's buffer.
        self.traces += 1
        rows, valid = self._piece_rows(piece, count, fed)
        return (*self._advance(0, rows, valid, dests, heads, lengths, params), fed + count)

    def _piece_rows(self, piece, count, fed):
        """A fed piece as queue rows (ids in arrival order, after the ``fed`` rows before it)
        and which of them are real."""
        slots = jnp.arange(piece["h"].shape[0], dtype=jnp.int32)
        return dict(piece, ids=fed + slots), slots < count

    def _advance(self, k, rows, valid, dests, heads, lengths, params):
        leave, exits, values, sends = self._kernel(k, rows, params)
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
        self._state = self._put([queues, heads, lengths, np.int32(0)])
        self._input = key
        row_bytes = int(np.prod(example.shape[1:])) * example.dtype.itemsize
        self.feed_sizes = (feed_sizes(self.batch_size)
                           if row_bytes * self.batch_size > self.assemble_max_bytes
                           else (self.batch_size,))
        self._bounds.clear()
        self._compile_all()

    def _compile_all(self) -> None:
        """Runs every program once on nothing (a zero count, empty queues), so that whichever
        path a stream later takes compiles nothing; the state it donates comes back as it was.
        """
        try:
            self._state = self._run_all_on_nothing()
        except BaseException:
            # Buffers donated to a failed program are gone: the next push starts afresh.
            self._state = self._input = None
            raise

    def _run_all_on_nothing(self) -> list:
        example, with_aux = self._input
        queues, heads, lengths, fed = self._state

        def nothing(size):
            piece = {"h": np.zeros((size, *example.shape[1:]), example.dtype)}
            if with_aux:
                piece["aux"] = np.zeros(size, np.int32)
            return self._put(piece), self._count(0)

        for size in self.feed_sizes:
            queue, lengths, fed = self._feed_fn(queues[0], heads, lengths, fed, *nothing(size))
            queues = (queue, *queues[1:])
        for size in self.sizes:
            dests, heads, lengths, _, _, fed = self._direct_fn(
                self._dests(queues, 0), heads, lengths, fed, *nothing(size), self._params)
            queues = self._with_dests(queues, 0, dests)
            for k in range(self.num_queues):
                dests, heads, lengths, _, _ = self._step_fns[k, size](
                    queues[k], self._dests(queues, k), heads, lengths, self._params)
                queues = self._with_dests(queues, k, dests)
        return [queues, heads, lengths, fed]

    def _dests(self, queues, k: int) -> tuple:
        return tuple(queues[j] for j in self.destinations[k])

    def _with_dests(self, queues, k: int, dests) -> tuple:
        """``queues`` with those a step of queue k returned in place of the ones it took."""
        queues = list(queues)
        for j, queue in zip(self.destinations[k], dests, strict=True):
            queues[j] = queue
        return tuple(queues)

    def _set_params(self, params) -> None:
        """Makes ``params`` (a pytree) the argument of every step program from now on; as on
        the first push, programs for a new structure or shapes are compiled at once."""
        params = self._put(params)
        new = argument_signature(params) != argument_signature(self._params)
        if new and self._state is not None and self.in_flight():
            raise RuntimeError("flush() the engine before giving it a policy of another "
                               "structure: rows are in flight")
        self._params = params
        if new and self._state is not None:
            self._compile_all()

    def _put(self, tree):
        """``tree`` on the engine's device, committed (see ``_make_programs``)."""
        return jax.device_put(tree, self.device)

    def _put_piece(self, piece: dict) -> dict:
        """A fed piece on the device: arrays already committed there pass as they are, as
        ``device_put`` costs the host some 0.05-0.1 ms an array even when it copies nothing."""
        return {name: x if isinstance(x, jax.Array) and x.committed
                and x.devices() == {self.device} else self._put(x)
                for name, x in piece.items()}

    def _count(self, n: int) -> jax.Array:
        """The device scalar ``int32(n)`` (``0 <= n <= batch_size``), put there once."""
        count = self._counts.get(n)
        if count is None:
            count = self._counts[n] = self._put(np.int32(n))
        return count

    def cache_size(self) -> int:
        """Compiled programs held: a step and a direct feed per queue and partial size, plus
        the feed per feed size, per input kind seen."""
        return (self._feed_fn._cache_size() + self._direct_fn._cache_size()
                + sum(f._cache_size() for f in self._step_fns.values()))
