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

Modules, each importing only those listed before it:

- ``fields``: reading ``config.dataset`` (a required field, the ``num_classes`` setting).
- ``sources``: the random-access sources (arrays, subsets, resized views, image folders, tfds).
- ``checks``: preparation and checks of in-memory splits (image dtype/range, non-finite pixels,
  labels, shapes, the class-count rules).
- ``open_arrays``: the digits, npz and idx openers, and ``read_idx``.
- ``open_lazy``: the folder and tfds openers (images decoded on access).
- ``reading``: grain's thread count and read options.
- ``stats``: per-channel mean/std estimation, their checks, and normalisation.
- ``dataset``: the ``Dataset``, ``build(cfg)`` and ``carve_validation``.
- ``augment``: the deterministic crop/flip and its hash bits.
- ``examples``: one training or evaluation example per stream position.
- ``pipeline``: ``train_batches``, ``eval_batches`` (``real_images``: without the padding)
  and ``steps_per_epoch``.
"""

from jee.data.dataset import Dataset, build, carve_validation
from jee.data.open_arrays import read_idx
from jee.data.pipeline import eval_batches, real_images, steps_per_epoch, train_batches

__all__ = [
    "Dataset",
    "build",
    "carve_validation",
    "eval_batches",
    "read_idx",
    "real_images",
    "steps_per_epoch",
    "train_batches",
]
