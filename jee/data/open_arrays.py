"""Openers of the in-memory sources: scikit-learn's digits, ``.npz`` files and MNIST-format IDX
folders, plus `read_idx`.

Each opener takes ``config.dataset`` and returns ``(train_full, test, num_classes,
image_shape)``; the arrays are checked by `jee.data.checks._arrays_dataset`.
"""

from __future__ import annotations

import gzip
import math
import os

import numpy as np

from jee.data.checks import _arrays_dataset
from jee.data.fields import _field, _num_classes_setting

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# digits has no official test split; this seed fixes the carved one so that changing
# `val_seed` never moves examples in or out of the test set.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open_digits(cfg):
    # Local: scikit-learn is imported only when the digits source is used.
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
