"""Random-access sources of ``{'image', 'label'}`` records: in-memory arrays, subsets, resized
views, image folders decoded with Pillow and `tfds.data_source` splits.

Every source has ``len()`` and ``source[i]``; an index outside ``[0, len)`` is an IndexError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _check_index(index: Any, length: int) -> int:
    i = int(index)
    if not 0 <= i < length:
        raise IndexError(f"index {i} out of range for a source of {length} examples")
    return i


class ArraySource:
    """In-memory images [N, H, W, C] (uint8 or float32 in [0, 1]) with integer labels [N]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index) -> dict:
        i = _check_index(index, len(self))
        return {"image": self.images[i], "label": int(self.labels[i])}

    def take_images(self, indices: np.ndarray) -> np.ndarray:
        return self.images[indices]


class SubsetSource:
    """The examples of `parent` at `indices`, in that order (used for the val/train carve)."""

    def __init__(self, parent, indices: np.ndarray):
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index) -> dict:
        return self.parent[int(self.indices[_check_index(index, len(self))])]

    @property
    def in_memory(self) -> bool:
        return isinstance(self.parent, ArraySource)

    def take_images(self, indices: np.ndarray) -> np.ndarray:
        return self.parent.take_images(self.indices[indices])


class ResizedSource:
    """Resizes every image of `parent` to size x size on access (bilinear, antialiased)."""

    def __init__(self, parent, size: int):
        self.parent = parent
        self.size = size

    def __len__(self) -> int:
        return len(self.parent)

    def __getitem__(self, index) -> dict:
        record = self.parent[index]
        return {"image": _resize(record["image"], self.size), "label": record["label"]}


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    # Local: Pillow is needed only by sources that resize or decode image files.
    from PIL import Image

    if image.shape[0] == size and image.shape[1] == size:
        return image
    if image.dtype == np.uint8 and image.shape[-1] == 3:
        return np.asarray(Image.fromarray(image, "RGB").resize((size, size), Image.BILINEAR))
    # Pillow has no multi-channel float mode, so other cases go channel by channel.
    mode = "L" if image.dtype == np.uint8 else "F"
    work = image if image.dtype == np.uint8 else image.astype(np.float32)
    channels = [
        np.asarray(Image.fromarray(work[..., c], mode).resize((size, size), Image.BILINEAR))
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1).astype(image.dtype)


class FolderSource:
    """Image files decoded with Pillow on access, converted to RGB uint8."""

    def __init__(self, files: Sequence[str], labels: np.ndarray, image_size: int,
                 expected_hw: tuple[int, int]):
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_size = image_size
        self.expected_hw = expected_hw

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> dict:
        # Local: Pillow is needed only by sources that resize or decode image files.
        from PIL import Image

        i = _check_index(index, len(self))
        path = self.files[i]
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        if self.image_size > 0:
            rgb = rgb.resize((self.image_size, self.image_size), Image.BILINEAR)
        image = np.asarray(rgb, dtype=np.uint8)
        if image.shape[:2] != self.expected_hw:
            raise ValueError(
                f"{path} is {image.shape[1]}x{image.shape[0]} (WxH) but the dataset's images are "
                f"{self.expected_hw[1]}x{self.expected_hw[0]}; set config.dataset.image_size > 0 "
                "to resize every image to one square size"
            )
        return {"image": image, "label": int(self.labels[i])}


class TfdsSource:
    """A `tfds.data_source` split, reduced to the 'image' and 'label' features."""

    def __init__(self, parent):
        self.parent = parent

    def __len__(self) -> int:
        return len(self.parent)

    def __getitem__(self, index) -> dict:
        record = self.parent[_check_index(index, len(self))]
        return {"image": np.asarray(record["image"]), "label": int(record["label"])}
