"""One example at a time: how the PyTorch reference implementations of early exits infer.

``eager_forward`` runs each segment op by op, without ``jax.jit``, and stops at the example's
exit after reading the decision back to Python, exactly like ``if conf > t: break`` at batch
size 1. ``PerExampleEngine`` runs the same loop with every segment (plus its decision)
compiled at batch size 1, so the two together separate the cost of eager dispatch from the
cost of having no batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.interface import Policy, Segment, check_segments, exits_here

Step = Callable[[jax.Array, jax.Array | None], tuple[jax.Array | None, jax.Array, jax.Array]]


def _step(segments, policy, k, h, aux):
    h_next, logits, conf = segments[k](h)
    return h_next, logits, exits_here(policy, k, len(segments), logits, conf, aux)


def _one_at_a_time(steps: Sequence[Step], x: jax.Array, aux: jax.Array | None
                   ) -> tuple[jax.Array, jax.Array]:
    exit_index, logits_at_exit = [], []
    aux = None if aux is None else jnp.asarray(aux)
    for i in range(x.shape[0]):
        h, aux_i = x[i:i + 1], None if aux is None else aux[i:i + 1]
        for k, step in enumerate(steps):  # noqa: B007 (k is the exit once the loop breaks)
            h, logits, leave = step(h, aux_i)
            if bool(leave[0]):  # a device-to-host sync per segment, as in the references
                break
        exit_index.append(k)
        logits_at_exit.append(np.asarray(logits[0], np.float32))
    return (jnp.asarray(np.array(exit_index, np.int32)),
            jnp.asarray(np.stack(logits_at_exit)))


def eager_forward(segments: Sequence[Segment], policy: Policy, x: jax.Array,
                  aux: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``(exit_index int32 [B], logits_at_exit float32 [B, C])``, one example at a time, eager."""
    segments = check_segments(segments)
    steps = [functools.partial(_step, segments, policy, k) for k in range(len(segments))]
    return _one_at_a_time(steps, x, aux)


class EagerEngine:
    """:func:`eager_forward` as a callable engine (nothing compiled beyond single ops)."""

    def __init__(self, segments: Sequence[Segment], policy: Policy):
        self.segments = check_segments(segments)
        self.policy = policy

    def __call__(self, x: jax.Array, aux: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        return eager_forward(self.segments, self.policy, x, aux)


class PerExampleEngine:
    """The eager loop with each segment and its decision compiled once at batch size 1."""

    def __init__(self, segments: Sequence[Segment], policy: Policy):
        self.segments = check_segments(segments)
        self.policy = policy
        self._steps = [jax.jit(functools.partial(_step, self.segments, policy, k))
                       for k in range(len(self.segments))]

    def __call__(self, x: jax.Array, aux: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        return _one_at_a_time(self._steps, x, aux)

    def cache_size(self) -> int:
        """Compiled programs held: one per segment."""
        return sum(step._cache_size() for step in self._steps)
