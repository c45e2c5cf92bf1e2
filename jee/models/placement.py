"""Where early exits go: cost-based placement schemes of the EENets paper, or explicit blocks.

A scheme gives, for early exit i of N, a threshold on the cumulative relative cost of the
backbone (stem + blocks up to and including a block, over the whole plain backbone). Exit i
goes after the first block, later than exit i-1's, whose cumulative cost reaches threshold i.
No exit may sit after the last block: that position is the final exit.

Schemes (i = 0 .. N-1):
- ``pareto``:       1 - 0.8^(i+1)
- ``fine``:         1 - 0.95^(i+1)
- ``linear``:       (i+1) / (N+1)
- ``golden_ratio``: phi^(i-N), phi = (1 + sqrt 5) / 2
- ``quadratic``:    ((i+1) / (N+1))^2 -- the linear spacing squared, which crowds exits into
  the cheap early part of the network (the reference code names this scheme but lacks it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PHI = (1 + math.sqrt(5)) / 2

SCHEMES = {
    "pareto": lambda i, n: 1 - 0.8 ** (i + 1),
    "fine": lambda i, n: 1 - 0.95 ** (i + 1),
    "linear": lambda i, n: (i + 1) / (n + 1),
    "golden_ratio": lambda i, n: PHI ** (i - n),
    "quadratic": lambda i, n: ((i + 1) / (n + 1)) ** 2,
}


def thresholds(scheme: str, num_exits: int) -> list[float]:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown placement scheme {scheme!r}; choose one of {sorted(SCHEMES)} "
                         "or give explicit block indices (model.exit_blocks)")
    return [SCHEMES[scheme](i, num_exits) for i in range(num_exits)]


def place_exits(cumulative_cost: Sequence[float], num_exits: int, scheme: str) -> tuple[int, ...]:
    """Block indices of ``num_exits`` early exits.

    ``cumulative_cost[b]`` is the relative cost of the backbone up to and including block b.
    """
    num_blocks = len(cumulative_cost)
    if num_exits < 0:
        raise ValueError(f"num_exits must be >= 0, got {num_exits}")
    if num_exits > num_blocks - 1:
        raise ValueError(f"{num_exits} early exits do not fit a backbone of {num_blocks} blocks: "
                         f"at most {num_blocks - 1} (one per block but the last)")
    blocks: list[int] = []
    for i, t in enumerate(thresholds(scheme, num_exits)):
        start = blocks[-1] + 1 if blocks else 0
        found = next((b for b in range(start, num_blocks - 1) if cumulative_cost[b] >= t), None)
        if found is None:
            raise ValueError(
                f"placement {scheme!r} cannot place exit {i} of {num_exits}: no block after "
                f"block {start - 1} but the last reaches cumulative cost {t:.3f}; use fewer "
                "exits, another scheme, or explicit model.exit_blocks")
        blocks.append(found)
    return tuple(blocks)


def check_exit_blocks(exit_blocks: Sequence[int], num_blocks: int) -> tuple[int, ...]:
    """Validates explicit exit positions: strictly increasing, within [0, num_blocks - 2]."""
    blocks = tuple(int(b) for b in exit_blocks)
    for b in blocks:
        if not 0 <= b <= num_blocks - 2:
            raise ValueError(f"exit block {b} does not fit a backbone of {num_blocks} blocks: "
                             f"early exits go after blocks 0..{num_blocks - 2}")
    if any(a >= b for a, b in zip(blocks, blocks[1:], strict=False)):
        raise ValueError(f"exit blocks must be strictly increasing (one exit per block), "
                         f"got {list(blocks)}")
    return blocks
