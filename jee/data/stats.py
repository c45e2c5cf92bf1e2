"""Per-channel statistics and normalisation: pixels to [0, 1] floats, the mean/std estimated
from the training split, the check of configured mean/std, and ``(x - mean) / std``."""

from __future__ import annotations

import grain
import numpy as np

from jee.data.reading import _default_threads
from jee.data.sources import SubsetSource

# Mean/std are estimated from at most this many training images: enough for 3-4 significant
# digits, while keeping `build` quick on file-backed sources.
MAX_STATS_IMAGES = 10_000


def _channel_vector(values, channels: int, what: str) -> np.ndarray:
    vec = np.asarray(values, dtype=np.float32).reshape(-1)
    if vec.shape != (channels,):
        raise ValueError(
            f"config.dataset.{what} has {vec.size} values but the images have {channels} "
            f"channel(s); give one value per channel (in [0, 1] units) or None to compute it"
        )
    return vec


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1.0 / 255.0)
    return image.astype(np.float32, copy=False)


class _UnitFloat:
    def __call__(self, record: dict) -> np.ndarray:
        return _to_unit_float(record["image"])


def _channel_stats(source, channels: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(source)
    if n == 0:
        raise ValueError("the train split is empty, so mean/std cannot be computed")
    # Evenly spaced picks: deterministic (identical on every process) and spread over the data.
    picks = np.unique(np.linspace(0, n - 1, min(n, MAX_STATS_IMAGES)).round().astype(np.int64))
    if getattr(source, "in_memory", False):
        # Vectorised reads of in-memory arrays are ~100x faster than a per-record pipeline.
        chunks = (_to_unit_float(source.take_images(c)) for c in np.array_split(picks, 10))
    else:
        chunks = (
            grain.MapDataset.source(SubsetSource(source, picks))
            .map(_UnitFloat())
            .to_iter_dataset(
                grain.ReadOptions(num_threads=_default_threads(), prefetch_buffer_size=64))
        )
    total = np.zeros(channels, np.float64)
    total_sq = np.zeros(channels, np.float64)
    count = 0
    for images in chunks:
        pixels = images.reshape(-1, channels).astype(np.float64)
        total += pixels.sum(axis=0)
        total_sq += np.square(pixels).sum(axis=0)
        count += pixels.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    # A constant channel has nothing to scale; dividing by 1 then only centres it.
    std[std < 1e-6] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _normalise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((_to_unit_float(image) - mean) / std).astype(np.float32, copy=False)
