"""The contract between the inference engines and the network and policy they run.

A network is a list of E segments. ``segments[k](h) -> (h_next, logits_k, conf_k)`` is a pure
JAX function closing over its parameters that works at any leading batch size ``b``: ``h`` is
``[b, ...]`` (the images for segment 0), ``h_next`` feeds segment k + 1 (``None`` after the
last segment), ``logits_k`` is ``[b, C]`` and ``conf_k`` is ``[b]``.

A policy's ``decide(k, logits_k, conf_k, aux) -> bool [b]`` is pure and jit-able with ``k`` a
static int; ``aux`` is an optional per-example int32 array ``[b]`` that the engines carry along
with the rows (``None`` when the caller gave none). The last exit always exits, so engines
never ask the policy about it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp

Segment = Callable[[jax.Array], tuple[jax.Array | None, jax.Array, jax.Array]]


class Policy(Protocol):
    def decide(self, k: int, logits: jax.Array, conf: jax.Array,
               aux: jax.Array | None) -> jax.Array: ...


def check_segments(segments: Sequence[Segment]) -> tuple[Segment, ...]:
    segments = tuple(segments)
    if not segments:
        raise ValueError("an early-exit network needs at least one segment")
    return segments


def exits_here(policy: Policy, k: int, num_exits: int, logits: jax.Array, conf: jax.Array,
               aux: jax.Array | None) -> jax.Array:
    """Bool ``[b]``: which rows leave at exit k (all of them at the last exit)."""
    if k == num_exits - 1:
        return jnp.ones(logits.shape[0], dtype=bool)
    return jnp.asarray(policy.decide(k, logits, conf, aux)).astype(bool)
