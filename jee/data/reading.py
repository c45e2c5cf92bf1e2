"""How grain reads: the thread count shared by the statistics pass and the batch pipelines,
and the read options of the batch pipelines."""

from __future__ import annotations

import os

import grain


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _read_options() -> grain.ReadOptions:
    threads = _default_threads()
    # The elements are whole batches, so a small buffer already hides the per-batch latency
    # without holding hundreds of batches in memory (grain's default buffer is 500).
    return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)
