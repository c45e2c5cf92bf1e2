"""Masked mode: every example through every segment, the exit chosen afterwards.

This is the accuracy reference of the other engines: one compiled program, no data-dependent
control flow and no savings. The exit of an example is the first k whose online decision is
True, exactly as an engine that really stops there would choose it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jee.infer.interface import Policy, Segment, check_segments, exits_here


def masked_forward(segments: Sequence[Segment], policy: Policy, x: jax.Array,
                   aux: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``(exit_index int32 [B], logits_at_exit float32 [B, C])``; pure, wrap in ``jax.jit``."""
    segments = check_segments(segments)
    num_exits = len(segments)
    h, all_logits, decisions = x, [], []
    for k, segment in enumerate(segments):
        h, logits, conf = segment(h)
        all_logits.append(logits)
        decisions.append(exits_here(policy, k, num_exits, logits, conf, aux))
    # argmax returns the first maximum, i.e. the first exit that said yes; the last always does.
    exit_index = jnp.argmax(jnp.stack(decisions), axis=0).astype(jnp.int32)
    stacked = jnp.stack(all_logits)
    logits_at_exit = jnp.take_along_axis(stacked, exit_index[None, :, None], axis=0)[0]
    return exit_index, logits_at_exit.astype(jnp.float32)


class MaskedEngine:
    """Callable ``engine(x, aux=None)`` compiling :func:`masked_forward` once per shape."""

    def __init__(self, segments: Sequence[Segment], policy: Policy):
        self.segments = check_segments(segments)
        self.policy = policy
        self._fn = jax.jit(self._forward)

    def _forward(self, x, aux):
        return masked_forward(self.segments, self.policy, x, aux)

    def __call__(self, x: jax.Array, aux: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        return self._fn(x, aux)

    def cache_size(self) -> int:
        """Compiled programs held (one per input shape)."""
        return self._fn._cache_size()
