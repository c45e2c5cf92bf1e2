"""History features online: the earlier exits' state carried through the unchanged engines.

A rule reading what earlier exits said (``HISTORY_NAMES``) needs a small per-example state
that travels from exit to exit with the surviving rows. The engines (``jee.infer``) hand each
segment's ``h`` to the next, moved row by row through every gather, pad and scatter of the
bucketed and streaming modes, while ``aux`` is read-only. So ``carry_history`` wraps a
network's segments: each wrapped segment appends the state, bit for bit, to every row of its
flattened ``h_next`` (unpacked again by the next wrapped segment), and returns the state of
the exits *before* it as ``STATE_SIZE`` extra columns of ``logits_k``, which is where
``FeaturePolicy.decide`` reads it. The state is updated by ``history_step``, the function the
offline features use, so online and offline decisions agree. The engines' ``logits_at_exit``
then carry the extra columns too: ``strip_history`` removes them.

The cost is one concatenation of each carried feature map with a few numbers per row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jee.infer.interface import Segment, check_segments
from jee.policy.features import STATE_SIZE, history_step, initial_state


def _pack(h: jax.Array, state: jax.Array) -> jax.Array:
    """``[b, prod(h.shape[1:]) + STATE_SIZE * r]`` of h's dtype: ``h`` flattened, then the
    float32 ``state`` reinterpreted as r elements of that dtype each (no rounding)."""
    width = jnp.dtype(h.dtype).itemsize
    if width > 4:
        raise ValueError(f"carry_history supports feature maps of at most 4 bytes, not {h.dtype}")
    bits = jax.lax.bitcast_convert_type(state.astype(jnp.float32), h.dtype)
    return jnp.concatenate([h.reshape(h.shape[0], -1), bits.reshape(h.shape[0], -1)], axis=1)


def _unpack(packed: jax.Array, spec: jax.ShapeDtypeStruct) -> tuple[jax.Array, jax.Array]:
    """Inverse of ``_pack`` for a feature map of per-row shape/dtype ``spec``."""
    b = packed.shape[0]
    size = math.prod(spec.shape[1:])
    h = packed[:, :size].reshape(b, *spec.shape[1:])
    ratio = 4 // jnp.dtype(spec.dtype).itemsize
    bits = packed[:, size:]
    if ratio > 1:
        bits = bits.reshape(b, STATE_SIZE, ratio)
    return h, jax.lax.bitcast_convert_type(bits, jnp.float32)


def _wrap(segment: Segment, spec_in: jax.ShapeDtypeStruct | None) -> Segment:
    def wrapped(h):
        if spec_in is None:
            x, state = h, initial_state(h.shape[0])
        else:
            x, state = _unpack(h, spec_in)
        h_next, logits, conf = segment(x)
        _, state_next = history_step(state, logits, conf)
        logits_out = jnp.concatenate([jnp.asarray(logits, jnp.float32), state], axis=-1)
        packed = None if h_next is None else _pack(h_next, state_next)
        return packed, logits_out, conf
    return wrapped


def carry_history(segments: Sequence[Segment], example: jax.Array) -> tuple[Segment, ...]:
    """Segments computing the same network whose ``logits_k`` carry the history state.

    ``example``: an input batch (or its ``jax.ShapeDtypeStruct``), used only for the per-row
    shapes of the feature maps (found abstractly, nothing runs). Use the result with a policy
    whose ``uses_history`` is True; with any engine; then ``strip_history`` the logits.
    """
    segments = check_segments(segments)
    spec = jax.ShapeDtypeStruct((1, *example.shape[1:]), example.dtype)
    specs_in: list[jax.ShapeDtypeStruct | None] = [None]
    for segment in segments[:-1]:
        spec = jax.eval_shape(segment, spec)[0]
        specs_in.append(spec)
    return tuple(_wrap(s, spec) for s, spec in zip(segments, specs_in, strict=True))


def strip_history(logits: jax.Array) -> jax.Array:
    """The class logits ``[..., C]`` of logits from ``carry_history`` segments."""
    return logits[..., :-STATE_SIZE]
