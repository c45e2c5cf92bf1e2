"""Deterministic augmentation: 64 hash bits per (seed, global step, row) choose a zero-padded
random crop and, for ``crop_flip``, a horizontal flip."""

from __future__ import annotations

import numpy as np

# Extra words mixed into the seeds so that the epoch permutation and the augmentation draws
# of the same (seed, ...) are independent streams. They stay side by side so that they stay
# distinct; the permutation stream is used by jee.data.examples.
_PERMUTATION_STREAM = 0x5EED_0001
_AUGMENT_STREAM = 0x5EED_0002

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    # splitmix64's finaliser: a cheap, well-mixed hash. Seeding a numpy Generator per example
    # costs ~50 us, which dominated the per-example time of small images.
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _augment_bits(seed: int, step: int, row: int) -> int:
    """64 pseudo-random bits that depend only on (seed, global step, row of the global batch)."""
    h = _AUGMENT_STREAM
    for word in (seed, step, row):
        h = _mix64(h ^ (word & _MASK64))
    return h


def _augment(image: np.ndarray, bits: int, padding: int, flip: bool) -> np.ndarray:
    if padding > 0:
        height, width, channels = image.shape
        span = 2 * padding + 1
        # Modulo bias is below 1e-8 for any sane padding: 24-bit draws, span of a few pixels.
        top = (bits & 0xFFFFFF) % span
        left = ((bits >> 24) & 0xFFFFFF) % span
        padded = np.zeros((height + 2 * padding, width + 2 * padding, channels), image.dtype)
        padded[padding:padding + height, padding:padding + width] = image
        image = padded[top:top + height, left:left + width]
    if flip and (bits >> 63) & 1:
        image = image[:, ::-1]
    return image
