"""Host mode: the bucketed re-batching driven from Python, one device-to-host sync per segment.

After each segment the exit decisions (and that segment's logits) are read back, the survivors
are listed with NumPy, padded to the smallest ladder bucket and handed to segment k + 1
compiled for that bucket size. Each (segment, bucket) pair compiles once and is reused;
segments after "nobody survived" are skipped outright. The comparison with the bucketed mode
prices the host round trips that ``lax.switch`` avoids.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.interface import Policy, Segment, check_segments, exits_here
from jee.infer.ladder import Ladder, bucket_for, resolve_ladder


class HostEngine:
    """Callable ``engine(x, aux=None) -> (exit_index int32 [B], logits_at_exit [B, C])``."""

    def __init__(self, segments: Sequence[Segment], policy: Policy, *, ladder: Ladder = None):
        self.segments = check_segments(segments)
        self.policy = policy
        self.ladder = ladder
        self._first = jax.jit(functools.partial(self._run, 0))
        self._steps = [None] + [jax.jit(functools.partial(self._gather_run, k))
                                for k in range(1, len(self.segments))]

    def _run(self, k, h, aux):
        h_next, logits, conf = self.segments[k](h)
        return h_next, logits, exits_here(self.policy, k, len(self.segments), logits, conf, aux)

    def _gather_run(self, k, h, idx, rows, aux):
        # Gathering inside the compiled step saves a dispatch per segment.
        return self._run(k, h[idx], None if aux is None else aux[rows])

    def __call__(self, x: jax.Array, aux: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        batch, num_exits = x.shape[0], len(self.segments)
        sizes = resolve_ladder(self.ladder, batch)
        aux = None if aux is None else jnp.asarray(aux)
        h, logits, leave = self._first(x, aux)
        leave, logits = jax.device_get((leave, logits))  # the deliberate sync
        exit_index = np.full(batch, num_exits - 1, np.int32)
        logits_at_exit = np.zeros((batch, logits.shape[1]), np.float32)
        exit_index[leave] = 0
        logits_at_exit[leave] = logits[leave]
        rows, alive = np.arange(batch, dtype=np.int32), ~leave
        for k in range(1, num_exits):
            local = np.flatnonzero(alive).astype(np.int32)
            count = local.size
            if count == 0:
                break
            # Padding slots repeat the first survivor; their results are cut off below.
            idx = np.full(bucket_for(count, sizes), local[0], np.int32)
            idx[:count] = local
            rows = rows[idx]
            h, logits, leave = self._steps[k](h, idx, rows, aux)
            leave, logits = jax.device_get((leave, logits))
            leave, logits = leave[:count], logits[:count]
            done = rows[:count][leave]
            exit_index[done] = k
            logits_at_exit[done] = logits[leave]
            alive = np.zeros(idx.size, bool)
            alive[:count] = ~leave
        return jax.device_put(exit_index), jax.device_put(logits_at_exit)

    def cache_size(self) -> int:
        """Compiled programs held: one per (segment, bucket size) seen so far."""
        return self._first._cache_size() + sum(s._cache_size() for s in self._steps[1:])
