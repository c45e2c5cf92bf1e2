"""Openers of the sources decoded on access: image folders (Pillow) and prepared TFDS datasets
(``tfds.data_source``, random access without TensorFlow).

Each opener takes ``config.dataset`` and returns ``(train_full, test, num_classes,
image_shape)``; both know their own class count.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

import numpy as np

from jee.data.fields import _field
from jee.data.sources import FolderSource, TfdsSource

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


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
    # Local: Pillow is needed only by sources that resize or decode image files.
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
    # Local: tensorflow_datasets is a heavy import, needed only by the tfds source.
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
