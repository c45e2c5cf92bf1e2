"""The `Dataset` (train/val/test splits, class count, image shape, mean/std) and `build(cfg)`,
which opens the configured source, carves validation (and, if asked, a holdout for the
confidence stage) from train and fixes mean/std."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jee.data.fields import _field, _num_classes_setting
from jee.data.open_arrays import _open_digits, _open_idx, _open_npz
from jee.data.open_lazy import _open_folder, _open_tfds
from jee.data.sources import ResizedSource, SubsetSource
from jee.data.stats import _channel_stats, _channel_vector

SOURCES = ("digits", "npz", "idx", "folder", "tfds")


@dataclasses.dataclass
class Dataset:
    """Splits 'train', 'val' and 'test' of one image-classification dataset."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    splits: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray

    def num_examples(self, split: str) -> int:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; this dataset has {sorted(self.splits)}")
        return len(self.splits[split])


def build(cfg) -> Dataset:
    """Opens the source named by `cfg.source`, carves val from train and fixes mean/std."""
    source = _field(cfg, "source")
    openers = {
        "digits": _open_digits,
        "npz": _open_npz,
        "idx": _open_idx,
        "folder": _open_folder,
        "tfds": _open_tfds,
    }
    if source not in openers:
        raise ValueError(
            f"unknown config.dataset.source {source!r}; known sources: {', '.join(SOURCES)}"
        )
    image_size = int(_field(cfg, "image_size"))
    if image_size < 0:
        raise ValueError(f"config.dataset.image_size must be >= 0 (0 = keep), got {image_size}")

    explicit_classes = _num_classes_setting(cfg)
    train_full, test, num_classes, image_shape = openers[source](cfg)
    if explicit_classes and explicit_classes != num_classes:
        # Only folder and tfds get here: the array sources take the explicit count as given.
        raise ValueError(
            f"config.dataset.num_classes={explicit_classes} but the {source} source "
            f"{_field(cfg, 'name')!r} has {num_classes} classes; set config.dataset.num_classes "
            f"to 0 (take the source's count) or to {num_classes}"
        )
    if source != "folder" and image_size > 0:
        # The folder source resizes while decoding; everything else is resized here.
        if image_shape[:2] != (image_size, image_size):
            train_full = ResizedSource(train_full, image_size)
            test = ResizedSource(test, image_size)
        image_shape = (image_size, image_size, image_shape[2])
    if None in image_shape:
        raise ValueError(
            f"dataset {_field(cfg, 'name')!r} has images of varying size {image_shape}; set "
            "config.dataset.image_size > 0 to resize them to one square size"
        )
    image_shape = tuple(int(d) for d in image_shape)

    train_idx, val_idx = carve_validation(
        len(train_full), _field(cfg, "val_size"), int(_field(cfg, "val_seed"))
    )
    splits = {"val": SubsetSource(train_full, val_idx), "test": test}
    holdout_size = _holdout_size(cfg)
    if holdout_size:
        # Carved from what is left after validation, with its own seed, so setting a holdout
        # leaves the validation split unchanged.
        keep, holdout = carve_validation(len(train_idx), holdout_size,
                                         int(_field(cfg, "val_seed")) + 1, "holdout_size")
        splits["holdout"] = SubsetSource(train_full, train_idx[holdout])
        train_idx = train_idx[keep]
    splits["train"] = SubsetSource(train_full, train_idx)

    mean, std = _field(cfg, "mean"), _field(cfg, "std")
    channels = image_shape[2]
    if mean is None or std is None:
        est_mean, est_std = _channel_stats(splits["train"], channels)
        mean = est_mean if mean is None else mean
        std = est_std if std is None else std
    mean = _channel_vector(mean, channels, "mean")
    std = _channel_vector(std, channels, "std")
    if np.any(std <= 0):
        raise ValueError(f"config.dataset.std must be > 0 in every channel, got {std.tolist()}")

    return Dataset(
        name=str(_field(cfg, "name")),
        num_classes=int(num_classes),
        image_shape=image_shape,
        splits=splits,
        mean=mean,
        std=std,
    )


def _holdout_size(cfg):
    """``dataset.holdout_size`` (0 when the config predates the key)."""
    try:
        return cfg["holdout_size"]
    except (KeyError, AttributeError):
        return 0


def carve_validation(n: int, val_size, val_seed: int, key: str = "val_size"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (rest, carved) indices into range(n); the carved part (validation, or the
    holdout when ``key`` says so) is a fraction if < 1, else a count."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.number)):
        raise TypeError(f"config.dataset.{key} must be a number, got {val_size!r}")
    if val_size < 0:
        raise ValueError(f"config.dataset.{key} must be >= 0, got {val_size}")
    if val_size < 1:
        n_val = int(round(val_size * n))
    else:
        if val_size != int(val_size):
            raise ValueError(
                f"config.dataset.{key}={val_size} is >= 1, so it is read as a count and must be "
                "a whole number; use a value below 1 for a fraction"
            )
        n_val = int(val_size)
    if n_val >= n:
        raise ValueError(
            f"config.dataset.{key}={val_size} asks for {n_val} examples but the training data "
            f"has only {n} left; leave some for training"
        )
    order = np.random.default_rng(val_seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
