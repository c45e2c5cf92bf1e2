"""Keeps freed host memory in the process, so XLA:CPU programs do not page-fault every call.

XLA's CPU runtime allocates each program's temporary buffer with ``malloc`` on every call.
glibc serves a block above its mmap threshold (32 MiB at most) with a fresh ``mmap`` and unmaps
it on ``free``, so every call of a program with that much scratch memory page-faults all of it
in again. On the 2-core CPU the plain ResNet-20 (Fashion-MNIST) at batch 256 took 9,415 page
faults (37 MiB) per call, 62 against 55 ms; its first segment, under the threshold, took 4.
Timed as they are by default, CPU benchmarks charge the plain network for faults the early-exit
segments avoid, which flatters early exit, and the stream's ideal by time.

:func:`keep_host_memory` tells glibc (``mallopt``) to serve every block from its heap and never
give the heap back, so the same memory is reused without faults, as accelerator runtimes and
production allocators (tcmalloc, jemalloc) do. Benchmarks call it before they time anything
and record what it returned; it changes no result, and costs what the process has freed
staying reserved to it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
# Largest value mallopt accepts for the threshold (an int): in effect, never trim.
_NEVER_TRIM = 2**31 - 1

KEPT = "kept (glibc mallopt: no mmap, no trim)"
_setting = ["glibc default (not changed by jee)"]


@functools.cache
def keep_host_memory() -> str:
    """Sets glibc's allocator to keep freed memory (see the module doc); returns what holds:
    :data:`KEPT`, or why the allocator was left as it is (not glibc, mallopt refused)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return f"left as it is (no glibc mallopt in {name!r})"
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)):
        return "left as it is (mallopt refused)"
    _setting[0] = KEPT
    return KEPT


def host_memory() -> str:
    """What holds for this process's allocator, for benchmark records."""
    return _setting[0]
