"""Checks and preparation of in-memory splits: image layout, dtype and range (non-finite
pixels included), labels, train/test shapes and the class-count rules.

`_arrays_dataset` is what the array openers (digits, npz, idx) call; it returns the opener
tuple ``(train_full, test, num_classes, image_shape)`` of two `ArraySource`s.
"""

from __future__ import annotations

import warnings

import numpy as np

from jee.data.sources import ArraySource


def _prepare_images(images: np.ndarray, where: str) -> np.ndarray:
    """NHW -> NHWC; keeps uint8, maps other integer images to uint8, floats to float32."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(
            f"{where}: images must be [N, H, W] or [N, H, W, C], got shape {images.shape}"
        )
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.integer):
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError(
                f"{where}: integer images must be in 0..255, got {images.min()}..{images.max()}"
            )
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.floating):
        if images.size:
            # min/max propagate NaN and show +-Inf, so clean data costs no extra pass; only
            # bad data pays for the per-image search.
            lo, hi = images.min(), images.max()
            if not (np.isfinite(lo) and np.isfinite(hi)):
                bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
                raise ValueError(
                    f"{where}: image {int(bad.argmax())} has non-finite pixels (NaN/Inf); "
                    "clean the data"
                )
            if lo < 0.0 or hi > 1.0:
                raise ValueError(
                    f"{where}: float images must be in [0, 1], got {lo}..{hi}; "
                    "divide by 255 or store them as uint8"
                )
        return images.astype(np.float32)
    raise ValueError(f"{where}: unsupported image dtype {images.dtype}; use uint8 or float")


def _prepare_labels(labels: np.ndarray, num_images: int, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{where}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != num_images:
        raise ValueError(f"{where}: {num_images} images but {len(labels)} labels")
    if labels.size and labels.min() < 0:
        i = int(np.argmax(labels < 0))
        raise ValueError(
            f"{where}: label {int(labels[i])} at index {i} is negative; labels must be class "
            "indices 0, 1, ..., num_classes - 1"
        )
    return labels.astype(np.int64)


def _arrays_dataset(x_train, y_train, x_test, y_test, where: str, num_classes: int = 0):
    """Checks in-memory splits; `where` names the source in errors ("npz file /x/d.npz").

    `num_classes` > 0 is the class count from config.dataset.num_classes; 0 infers it from the
    training labels (never from the test labels: one stray test label must not add classes).
    """
    x_train = _prepare_images(np.asarray(x_train), f"{where}, split train")
    x_test = _prepare_images(np.asarray(x_test), f"{where}, split test")
    y_train = _prepare_labels(y_train, len(x_train), f"{where}, split train")
    y_test = _prepare_labels(y_test, len(x_test), f"{where}, split test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"{where}: train images are {x_train.shape[1:]} but test images are "
            f"{x_test.shape[1:]} (H, W, C); both splits must share one image shape"
        )
    if len(x_train) == 0:
        raise ValueError(f"{where}: the training split is empty")
    train_max = int(y_train.max())
    if num_classes:
        how = f"num_classes={num_classes} from config.dataset.num_classes"
    else:
        num_classes = train_max + 1
        how = f"num_classes={num_classes} inferred from the largest training label, {train_max}"
    for split, labels in (("train", y_train), ("test", y_test)):
        outside = labels >= num_classes
        if outside.any():
            i = int(outside.argmax())
            raise ValueError(
                f"{where}, split {split}: label {int(labels[i])} at index {i} is outside "
                f"[0, {num_classes}) ({how}); set config.dataset.num_classes to the true class "
                "count, or fix the label"
            )
    unseen = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if unseen.size:
        shown = ", ".join(str(int(c)) for c in unseen[:20])
        more = f", ... ({unseen.size} in all)" if unseen.size > 20 else ""
        # stacklevel 4 points past opener and build() at the caller of build().
        warnings.warn(
            f"{where}: test labels {shown}{more} never occur in the training split, so the "
            "network cannot learn those classes and their test examples will count as errors",
            stacklevel=4,
        )
    return (ArraySource(x_train, y_train), ArraySource(x_test, y_test), num_classes,
            tuple(x_train.shape[1:]))
