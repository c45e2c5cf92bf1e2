"""What one flat position of a process's stream holds: `_TrainExample` (the permuted,
augmented, normalised training example) and `_EvalExample` (an ordered example or padding).

Both are pure functions of their position (and, for training, of seed and start step), which is
what makes the pipelines resumable and identical for any number of grain workers.
"""

from __future__ import annotations

import threading

import numpy as np

from jee.data.augment import _PERMUTATION_STREAM, _augment, _augment_bits
from jee.data.stats import _normalise


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
