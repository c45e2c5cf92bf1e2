"""Bucket ladders: the fixed set of batch sizes that survivors are padded up to.

Re-batching the examples still alive after an exit can only use static shapes, so the
survivors are padded to the smallest size of a ladder that holds them. A coarse ladder (powers
of two) compiles few programs but wastes up to half of each bucket on padding; a finer
geometric ladder wastes less but compiles more branches. The last size is always the batch
size itself, so every survivor count fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

LADDER_KINDS = ("pow2", "geometric")

# What engines accept as a ladder: sizes, a function of the batch size, or None (the default).
Ladder = Sequence[int] | Callable[[int], Sequence[int]] | None


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def make_ladder(batch_size: int, kind: str = "pow2", min_size: int = 8, growth: float = 2.0,
                multiple: int = 1) -> tuple[int, ...]:
    """Sorted bucket sizes ending at ``batch_size``.

    ``pow2``: the powers of two from ``min_size`` (rounded up to a power of two) below the
    batch size, then the batch size. ``geometric``: ``min_size``, then each size times
    ``growth`` rounded up (always at least one more), below the batch size, then the batch
    size. ``multiple`` rounds every size but the last up to a multiple (e.g. 8 for TPU
    sublanes); sizes that round to the batch size or beyond are dropped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if min_size < 1 or multiple < 1:
        raise ValueError(f"min_size and multiple must be >= 1, got {min_size}, {multiple}")
    if kind == "pow2":
        size, step = 1 << (min_size - 1).bit_length(), lambda s: 2 * s
    elif kind == "geometric":
        if growth <= 1.0:
            raise ValueError(f"growth must be > 1, got {growth}")
        size, step = min_size, lambda s: max(s + 1, math.ceil(s * growth))
    else:
        raise ValueError(f"unknown ladder kind {kind!r}; expected one of {LADDER_KINDS}")
    sizes = []
    while size < batch_size:
        rounded = _round_up(size, multiple)
        if rounded >= batch_size:
            break
        if not sizes or rounded > sizes[-1]:
            sizes.append(rounded)
        size = step(size)
    return (*sizes, batch_size)


def fit_ladder(ladder: Sequence[int], batch_size: int) -> tuple[int, ...]:
    """``ladder`` restricted to sizes below ``batch_size``, then ``batch_size``.

    Lets one ladder (say, made for the serving batch size) serve a smaller last batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(int(s) < 1 for s in ladder):
        raise ValueError(f"ladder sizes must be >= 1, got {tuple(ladder)}")
    return (*sorted({int(s) for s in ladder if int(s) < batch_size}), batch_size)


def resolve_ladder(ladder: Ladder, batch_size: int) -> tuple[int, ...]:
    """The bucket sizes an engine uses for ``batch_size`` rows."""
    if ladder is None:
        return make_ladder(batch_size)
    return fit_ladder(ladder(batch_size) if callable(ladder) else ladder, batch_size)


def bucket_for(count: int, ladder: Sequence[int]) -> int:
    """Smallest ladder size holding ``count`` rows (0 for no rows); host-side helper."""
    if count == 0:
        return 0
    for size in ladder:
        if size >= count:
            return size
    raise ValueError(f"{count} rows do not fit the ladder {tuple(ladder)}")
