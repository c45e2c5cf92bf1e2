"""The host's knowledge of a stream's queue lengths while its steps run on the device.

A stream's programs keep the exact queue lengths on the device. The host must choose the
next step from them, but reading them back after every step would leave the device idle
while the host chooses and dispatches the next one (on a GPU, longer than a small step
runs). So the host keeps bounds: what it knows for sure (rows it fed, rows a step took) and,
for each step still unread, the most rows it may have appended to each of its destination
queues. It reads the lengths back only when a choice depends on the difference, oldest
programs first, so that the programs after them keep the device busy meanwhile.
"""

from __future__ import annotations

import collections
import dataclasses

import jax
import numpy as np


@dataclasses.dataclass
class _Unread:
    """Programs not read back: ``lengths`` (int32 [Q], on device) after the last of them;
    ``known``, the rows they surely added to each queue (less those they took); ``maybe``,
    the most rows their steps may have appended besides."""

    lengths: jax.Array
    known: np.ndarray
    maybe: np.ndarray
    last: int  # the number of programs dispatched up to the last of them


class LengthBounds:
    """``low[k] <= length of queue k <= high[k]``, as of every program dispatched."""

    def __init__(self, num_queues: int, host_resident: bool = False):
        # On a device whose arrays live in host memory (the CPU backend) a read copies
        # nothing: no copy is started ahead, and the array is read as it is, which costs the
        # host a tenth of jax.device_get (about 5 against 50 us a read).
        self._host_resident = host_resident
        self.low = np.zeros(num_queues, np.int64)
        self.high = np.zeros(num_queues, np.int64)
        self._read = np.zeros(num_queues, np.int64)  # after the last programs read back
        self._unread: collections.deque[_Unread] = collections.deque()
        self.reads = 0  # lengths read back from the device
        # Reads of the last program dispatched, nothing queued behind it: unless it is done
        # by then, the device idles from its end until the host dispatches the next.
        self.drains = 0
        self._dispatched = 0

    def clear(self) -> None:
        self.low[:] = self.high[:] = self._read[:] = 0
        self._unread.clear()

    @property
    def exact(self) -> bool:
        return not self._unread

    def account(self, lengths: jax.Array, known: np.ndarray, maybe: np.ndarray) -> None:
        """A dispatched program left ``lengths`` on the device: ``known`` rows more in each
        queue (fed, or taken by a step, negative), and up to ``maybe`` more (survivors)."""
        self.low += known
        self.high += known + maybe
        self._dispatched += 1
        if maybe.any():
            self._prefetch(lengths)
            self._unread.append(_Unread(lengths, known, maybe, self._dispatched))
        elif self._unread:
            # Reading the later lengths accounts for both programs.
            last = self._unread[-1]
            self._prefetch(lengths)
            last.lengths, last.known, last.last = lengths, last.known + known, self._dispatched
        else:
            self._read += known

    def read_oldest(self) -> None:
        """Reads back the lengths after the oldest unread programs: the rows they appended
        become known."""
        if not self._unread:
            raise RuntimeError("the queue lengths are exact: nothing to read")
        unread = self._unread.popleft()
        self.drains += unread.last == self._dispatched
        lengths = np.asarray(unread.lengths if self._host_resident
                             else jax.device_get(unread.lengths), np.int64)
        self.reads += 1
        appended = lengths - self._read - unread.known
        if np.any(appended < 0) or np.any(appended > unread.maybe):
            raise RuntimeError(f"queue lengths {lengths.tolist()} outside the bounds the host "
                               f"kept ({self._read.tolist()} + {unread.known.tolist()} + at "
                               f"most {unread.maybe.tolist()})")
        self.low += appended
        self.high -= unread.maybe - appended
        self._read = lengths

    def _prefetch(self, lengths: jax.Array) -> None:
        if not self._host_resident:
            lengths.copy_to_host_async()

    def read_all(self) -> None:
        while self._unread:
            self.read_oldest()
