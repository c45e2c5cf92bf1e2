"""Image classification data for jee: sources, train/val/test splits and grain input pipelines.

`build(cfg)` opens one of the supported sources (`config.dataset.source`) and returns a
`Dataset` whose splits are random-access sources of ``{'image', 'label'}`` records:

* ``digits``: scikit-learn's 8x8 digits (bundled with scikit-learn, so no download).
* ``npz``:    a ``.npz`` with ``x_train, y_train, x_test, y_test``.
* ``idx``:    MNIST-format IDX files in a folder (e.g. Debian's ``dataset-fashion-mnist``).
* ``folder``: ``root/<split>/<class>/*.png|jpg|jpeg|bmp``, decoded lazily with Pillow.
* ``tfds``:   a TFDS dataset prepared as ArrayRecord, read through ``tfds.data_source``
              (random access without TensorFlow).

The class count is ``config.dataset.num_classes`` when that is > 0, else the largest training
label + 1 (folder and tfds know their own count; a different explicit one is an error). A label
outside ``[0, num_classes)`` in any split, a non-finite pixel, or train and test images of
different shapes stop `build` with a one-line ValueError; test labels that never occur in the
training split give a warning.

`train_batches` and `eval_batches` turn those splits into batches with grain. Every batch is a
pure function of (seed, global step, row), which is what makes resuming after a kill exact and
lets each process of a multi-host job read only its own rows of every global batch.

Augmentation (``crop``/``crop_flip``) pads the raw image with zeros (black, as in the usual
CIFAR recipe) by ``crop_padding`` pixels, takes a random crop of the original size and, for
``crop_flip``, flips horizontally with probability 1/2.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np

SOURCES = ("digits", "npz", "idx", "folder", "tfds")
AUGMENTATIONS = ("none", "crop", "crop_flip")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Mean/std are estimated from at most this many training images: enough for 3-4 significant
# digits, while keeping `build` quick on file-backed sources.
MAX_STATS_IMAGES = 10_000

# digits has no official test split; this seed fixes the carved one so that changing
# `val_seed` never moves examples in or out of the test set.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0

# Extra words mixed into the seeds so that the epoch permutation and the augmentation draws
# of the same (seed, ...) are independent streams.
_PERMUTATION_STREAM = 0x5EED_0001
_AUGMENT_STREAM = 0x5EED_0002

# The training stream is endless; grain needs a length, and this one is never reached.
_ENDLESS = sys.maxsize


# ---------------------------------------------------------------------------------------------
# Random-access sources.
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Dataset and build().
# ---------------------------------------------------------------------------------------------


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


def _field(cfg, name: str):
    try:
        return cfg[name]
    except (KeyError, AttributeError) as err:
        raise KeyError(
            f"config.dataset.{name} is missing; every dataset config must set it "
            "(see jee/data.py for the list of fields)"
        ) from err


def _num_classes_setting(cfg) -> int:
    """config.dataset.num_classes: 0 (or absent, as in configs written before it existed) means
    infer the class count from the source."""
    try:
        value = cfg["num_classes"]
    except (KeyError, AttributeError):
        return 0
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            f"config.dataset.num_classes must be a whole number >= 0 (0 = infer from the "
            f"training labels), got {value!r}"
        )
    return int(value)


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
    splits = {
        "train": SubsetSource(train_full, train_idx),
        "val": SubsetSource(train_full, val_idx),
        "test": test,
    }

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


def carve_validation(n: int, val_size, val_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices into range(n); val is a fraction if < 1, else a count."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.number)):
        raise TypeError(f"config.dataset.val_size must be a number, got {val_size!r}")
    if val_size < 0:
        raise ValueError(f"config.dataset.val_size must be >= 0, got {val_size}")
    if val_size < 1:
        n_val = int(round(val_size * n))
    else:
        if val_size != int(val_size):
            raise ValueError(
                f"config.dataset.val_size={val_size} is >= 1, so it is read as a count and must be "
                "a whole number; use a value below 1 for a fraction"
            )
        n_val = int(val_size)
    if n_val >= n:
        raise ValueError(
            f"config.dataset.val_size={val_size} asks for {n_val} validation examples but the "
            f"training data has only {n}; leave some for training"
        )
    order = np.random.default_rng(val_seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


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
        warnings.warn(
            f"{where}: test labels {shown}{more} never occur in the training split, so the "
            "network cannot learn those classes and their test examples will count as errors",
            stacklevel=4,
        )
    return (ArraySource(x_train, y_train), ArraySource(x_test, y_test), num_classes,
            tuple(x_train.shape[1:]))


# ---------------------------------------------------------------------------------------------
# Source openers: each returns (train_full, test, num_classes, image_shape).
# ---------------------------------------------------------------------------------------------


def _open_digits(cfg):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    n = len(labels)
    order = np.random.default_rng(_DIGITS_TEST_SEED).permutation(n)
    n_test = int(round(_DIGITS_TEST_FRACTION * n))
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    return _arrays_dataset(images[train_idx], labels[train_idx], images[test_idx],
                           labels[test_idx], "digits (scikit-learn)",
                           num_classes=_num_classes_setting(cfg))


def _open_npz(cfg):
    path = os.fspath(_field(cfg, "path"))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"npz file {path!r} (config.dataset.path) does not exist; it must hold "
            f"{', '.join(NPZ_KEYS)}"
        )
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise KeyError(
                f"{path} lacks {', '.join(missing)}; an npz dataset needs the arrays "
                f"{', '.join(NPZ_KEYS)} (found: {', '.join(npz.files) or 'none'})"
            )
        arrays = [npz[k] for k in NPZ_KEYS]
    return _arrays_dataset(*arrays, where=f"npz file {path}",
                           num_classes=_num_classes_setting(cfg))


# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into an array of the shape its header gives."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"could not read IDX file {path}: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path} is not an IDX file: its magic number is 0x{data[:4].hex() or 'empty'}, "
            "expected two zero bytes, a type byte (0x08 = uint8) and the number of dimensions "
            "(e.g. 0x00000803 for MNIST images); check that the file is not corrupt or mislabelled"
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header is truncated ({len(data)} bytes for {ndim} dims)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header says shape {dims} ({expected} bytes of {dtype}) but the file has "
            f"{len(data) - header} bytes of data; the file is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _find_idx(folder: str, stem: str) -> str:
    for candidate in (stem + ".gz", stem):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    expected = ", ".join(f"{name}[.gz]" for name in IDX_FILES.values())
    raise FileNotFoundError(
        f"{stem}[.gz] not found in {folder!r} (config.dataset.path); an idx dataset folder "
        f"needs {expected}"
    )


def _open_idx(cfg):
    folder = os.fspath(_field(cfg, "path"))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"idx folder {folder!r} (config.dataset.path) does not exist; on Debian, "
            "`apt-get install dataset-fashion-mnist` puts Fashion-MNIST in "
            "/usr/share/datasets/fashion-mnist"
        )
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = _find_idx(folder, stem)
        array = read_idx(path)
        want_ndim = 1 if key.endswith("labels") else 3
        if array.ndim != want_ndim:
            raise ValueError(
                f"{path}: expected a {want_ndim}-D IDX array for {key.replace('_', ' ')}, "
                f"got shape {array.shape}"
            )
        arrays[key] = array
    return _arrays_dataset(arrays["train_images"], arrays["train_labels"],
                           arrays["test_images"], arrays["test_labels"],
                           where=f"idx folder {folder}", num_classes=_num_classes_setting(cfg))


def _list_images(split_dir: str, classes: Sequence[str]):
    files, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        for entry in sorted(os.listdir(class_dir)):
            if os.path.splitext(entry)[1].lower() in IMAGE_EXTENSIONS:
                files.append(os.path.join(class_dir, entry))
                labels.append(label)
    if not files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {split_dir}/<class>/; expected "
            "one sub-folder per class holding that class's image files"
        )
    return files, np.asarray(labels, dtype=np.int64)


def _class_dirs(split_dir: str) -> list[str]:
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(
            f"split folder {split_dir!r} does not exist; the folder source expects "
            "config.dataset.path/<split>/<class>/<image files> for the train and test splits"
        )
    return sorted(e for e in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, e)))


def _open_folder(cfg):
    from PIL import Image

    root = os.fspath(_field(cfg, "path"))
    train_dir = os.path.join(root, str(_field(cfg, "train_split")))
    test_dir = os.path.join(root, str(_field(cfg, "test_split")))
    classes = _class_dirs(train_dir)
    test_classes = _class_dirs(test_dir)
    if test_classes != classes:
        raise ValueError(
            f"class folders differ between {train_dir} ({classes}) and {test_dir} "
            f"({test_classes}); both splits need the same class sub-folders"
        )
    train_files, train_labels = _list_images(train_dir, classes)
    test_files, test_labels = _list_images(test_dir, classes)
    image_size = int(_field(cfg, "image_size"))
    if image_size > 0:
        hw = (image_size, image_size)
    else:
        # Only the first image is opened here (listing sizes of all files would make `build`
        # slow on big folders); a mismatch is reported when the odd image is read.
        with Image.open(train_files[0]) as first:
            hw = (first.height, first.width)
        # The first test image too: a test split at another resolution would otherwise only
        # fail at the first evaluation, after training.
        with Image.open(test_files[0]) as first_test:
            test_hw = (first_test.height, first_test.width)
        if test_hw != hw:
            raise ValueError(
                f"folder source {root}: train images are {hw[1]}x{hw[0]} (WxH, "
                f"{train_files[0]}) but test images are {test_hw[1]}x{test_hw[0]} "
                f"({test_files[0]}); set config.dataset.image_size > 0 to resize every image "
                "to one square size"
            )
    train = FolderSource(train_files, train_labels, image_size, hw)
    test = FolderSource(test_files, test_labels, image_size, hw)
    return train, test, len(classes), (hw[0], hw[1], 3)


def _open_tfds(cfg):
    import tensorflow_datasets as tfds

    name = str(_field(cfg, "name"))
    data_dir = _field(cfg, "data_dir")
    data_dir = None if data_dir in (None, "") else os.fspath(data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as err:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split("/")[0].split(":")[0], known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"unknown tfds dataset {name!r} (config.dataset.name){hint}; "
            "tfds.list_builders() lists the known names"
        ) from err
    features = builder.info.features
    missing = [k for k in ("image", "label") if k not in features]
    if missing:
        raise ValueError(
            f"tfds dataset {name!r} has features {sorted(features)} but jee needs 'image' and "
            f"'label' (missing: {', '.join(missing)})"
        )
    splits = {}
    for key in ("train_split", "test_split"):
        split = str(_field(cfg, key))
        try:
            # download=False: preparing needs TensorFlow and the network, so never attempt it.
            splits[key] = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception as err:  # tfds raises assorted types (NotImplementedError, OSError)
            where = builder.data_dir
            if builder.is_prepared():
                raise ValueError(
                    f"tfds dataset {name!r} is prepared in {where} but split {split!r} "
                    f"(config.dataset.{key}) cannot be opened for random access: {err}. If it was "
                    f"built as TFRecord, rebuild it with `tfds build {name} "
                    "--file_format=array_record`"
                ) from err
            raise FileNotFoundError(
                f"the dataset is not prepared in {where}; run `tfds build {name} "
                "--file_format=array_record` once (that step needs TensorFlow), or point "
                "`config.dataset.data_dir` at prepared data"
            ) from err
    image_shape = tuple(features["image"].shape)
    num_classes = getattr(features["label"], "num_classes", None)
    if not num_classes:
        raise ValueError(
            f"tfds dataset {name!r}: its 'label' feature is {features['label']!r}, not a "
            "ClassLabel with a known number of classes, so it cannot be used for classification"
        )
    return (TfdsSource(splits["train_split"]), TfdsSource(splits["test_split"]), num_classes,
            image_shape)


# ---------------------------------------------------------------------------------------------
# Pipelines.
# ---------------------------------------------------------------------------------------------


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _read_options() -> grain.ReadOptions:
    threads = _default_threads()
    # The elements are whole batches, so a small buffer already hides the per-batch latency
    # without holding hundreds of batches in memory (grain's default buffer is 500).
    return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)


def _local_batch(batch_size: int, process_index: int, process_count: int) -> int:
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index must be in [0, process_count) with process_count >= 1, got "
            f"process_index={process_index}, process_count={process_count}"
        )
    if batch_size % process_count:
        raise ValueError(
            f"the global batch size {batch_size} is not divisible by the {process_count} "
            "processes; choose a batch size that is a multiple of the process count"
        )
    return batch_size // process_count


def _normalise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((_to_unit_float(image) - mean) / std).astype(np.float32, copy=False)


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


class _TrainExample:
    """Maps a flat position of this process's stream to its augmented, normalised example."""

    def __init__(self, source, *, batch_size: int, local_batch: int, process_index: int,
                 seed: int, start_step: int, augment: str, padding: int, mean: np.ndarray,
                 std: np.ndarray):
        self.source = source
        self.num_examples = len(source)
        self.batch_size = batch_size
        self.local_batch = local_batch
        self.row_offset = process_index * local_batch
        self.steps_per_epoch = self.num_examples // batch_size
        self.seed = seed
        self.start_step = start_step
        self.augment = augment
        self.padding = padding
        self.mean = mean
        self.std = std
        self._init_cache()

    def _init_cache(self):
        self._lock = threading.Lock()
        self._perms: dict[int, np.ndarray] = {}

    # Locks cannot be pickled, and grain pickles the pipeline into its worker processes.
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"], state["_perms"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_cache()

    def _permutation(self, epoch: int) -> np.ndarray:
        with self._lock:
            perm = self._perms.get(epoch)
            if perm is None:
                rng = np.random.default_rng([self.seed, epoch, _PERMUTATION_STREAM])
                perm = rng.permutation(self.num_examples)
                # Prefetch threads straddle at most one epoch boundary, so two epochs suffice.
                for old in [e for e in self._perms if e < epoch - 1]:
                    del self._perms[old]
                self._perms[epoch] = perm
            return perm

    def __call__(self, position: int) -> dict:
        step = self.start_step + position // self.local_batch
        row = self.row_offset + position % self.local_batch
        epoch, batch_in_epoch = divmod(step, self.steps_per_epoch)
        index = self._permutation(epoch)[batch_in_epoch * self.batch_size + row]
        record = self.source[int(index)]
        image = np.asarray(record["image"])
        if self.augment != "none":
            bits = _augment_bits(self.seed, step, row)
            image = _augment(image, bits, self.padding, flip=self.augment == "crop_flip")
        return {
            "image": _normalise(image, self.mean, self.std),
            "label": np.int32(record["label"]),
        }


class _EvalExample:
    """Maps a flat position of this process's eval stream to an example or to padding."""

    def __init__(self, source, *, batch_size: int, local_batch: int, process_index: int,
                 image_shape: tuple[int, int, int], mean: np.ndarray, std: np.ndarray):
        self.source = source
        self.num_examples = len(source)
        self.batch_size = batch_size
        self.local_batch = local_batch
        self.row_offset = process_index * local_batch
        self.image_shape = image_shape
        self.mean = mean
        self.std = std

    def __call__(self, position: int) -> dict:
        batch, row = divmod(position, self.local_batch)
        index = batch * self.batch_size + self.row_offset + row
        if index >= self.num_examples:
            return {
                "image": np.zeros(self.image_shape, np.float32),
                "label": np.int32(0),
                "mask": np.bool_(False),
            }
        record = self.source[index]
        return {
            "image": _normalise(np.asarray(record["image"]), self.mean, self.std),
            "label": np.int32(record["label"]),
            "mask": np.bool_(True),
        }


def _ensure_absl_flags_parsed() -> None:
    from absl import flags

    # grain's multiprocess prefetch reads an absl flag (worker profiling) and crashes with
    # UnparsedFlagAccessError in programs that never ran absl.app (pytest, notebooks); grain
    # issue #1355. Marking the flags parsed keeps every flag at its default; absl.app.run still
    # parses argv normally if it runs later.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def steps_per_epoch(ds: Dataset, batch_size: int) -> int:
    """Number of full global batches in one pass over the train split."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return ds.num_examples("train") // batch_size


def train_batches(ds: Dataset, cfg, *, batch_size: int, seed: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
    """Endless training batches; this process gets rows [p*b, (p+1)*b) of each global batch.

    Batch k depends only on (seed, k), so `start_step=k` resumes exactly where an uninterrupted
    run would be. Yields {'image': float32 [b, H, W, C] normalised, 'label': int32 [b]}.
    """
    local = _local_batch(batch_size, process_index, process_count)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    num_train = ds.num_examples("train")
    if num_train < batch_size:
        raise ValueError(
            f"the train split of {ds.name!r} has {num_train} examples, fewer than one global "
            f"batch of {batch_size}; lower the batch size or config.dataset.val_size"
        )
    augment = _field(cfg, "augment")
    if augment not in AUGMENTATIONS:
        raise ValueError(
            f"unknown config.dataset.augment {augment!r}; choose one of {', '.join(AUGMENTATIONS)}"
        )
    padding = int(_field(cfg, "crop_padding")) if augment != "none" else 0
    if padding < 0:
        raise ValueError(f"config.dataset.crop_padding must be >= 0, got {padding}")
    num_workers = int(_field(cfg, "num_workers"))
    if num_workers < 0:
        raise ValueError(f"config.dataset.num_workers must be >= 0, got {num_workers}")

    example = _TrainExample(
        ds.splits["train"], batch_size=batch_size, local_batch=local,
        process_index=process_index, seed=int(seed), start_step=int(start_step),
        augment=augment, padding=padding, mean=ds.mean, std=ds.std,
    )
    # Batching must stay on the MapDataset: mp_prefetch slices the dataset right before
    # to_iter_dataset, so each worker then produces whole batches and the output is the same
    # for any number of workers.
    pipeline = (
        grain.MapDataset.range(_ENDLESS)
        .map(example)
        .batch(local, drop_remainder=True)
        .to_iter_dataset(_read_options())
    )
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        pipeline = pipeline.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2)
        )
    return iter(pipeline)


def eval_batches(ds: Dataset, split: str, *, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict]:
    """One ordered pass over `split` in equal-shaped batches; 'mask' is False on padding rows.

    `split` is any key of `ds.splits` ('val', 'test', or 'train' for statistics). The last
    batch is padded with zero images of label 0, so a jitted step sees a single shape; this
    process gets rows [p*b, (p+1)*b) of every global batch, as in `train_batches`.
    """
    local = _local_batch(batch_size, process_index, process_count)
    if split not in ds.splits:
        raise KeyError(f"unknown split {split!r}; choose one of {sorted(ds.splits)}")
    source = ds.splits[split]
    num_batches = -(-len(source) // batch_size)
    example = _EvalExample(
        source, batch_size=batch_size, local_batch=local, process_index=process_index,
        image_shape=ds.image_shape, mean=ds.mean, std=ds.std,
    )
    pipeline = (
        grain.MapDataset.range(num_batches * local)
        .map(example)
        .batch(local, drop_remainder=True)
        .to_iter_dataset(_read_options())
    )
    return iter(pipeline)
