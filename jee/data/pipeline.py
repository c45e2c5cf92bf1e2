"""The grain input pipelines: `train_batches` (endless, resumable), `eval_batches` (one padded,
ordered pass) and `steps_per_epoch`.

Every batch is a pure function of (seed, global step, row), which is what makes resuming after a
kill exact and lets each process of a multi-host job read only its own rows of every global
batch.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import grain
import numpy as np

from jee.data.dataset import Dataset
from jee.data.examples import _EvalExample, _TrainExample
from jee.data.fields import _field
from jee.data.reading import _read_options

AUGMENTATIONS = ("none", "crop", "crop_flip")

# The training stream is endless; grain needs a length, and this one is never reached.
_ENDLESS = sys.maxsize


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


def _ensure_absl_flags_parsed() -> None:
    # Local: absl is only needed when grain starts worker processes.
    from absl import flags

    # grain's multiprocess prefetch reads an absl flag (worker profiling) and crashes with
    # UnparsedFlagAccessError in programs that never ran absl.app (pytest, notebooks); grain
    # issue #1355. Marking the flags parsed keeps every flag at its default; absl.app.run still
    # parses argv normally if it runs later.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def steps_per_epoch(ds: Dataset, batch_size: int, split: str = "train") -> int:
    """Number of full global batches in one pass over ``split``."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return ds.num_examples(split) // batch_size


def train_batches(ds: Dataset, cfg, *, batch_size: int, seed: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1,
                  split: str = "train") -> Iterator[dict]:
    """Endless training batches of ``split`` (the train split, or the holdout the confidence
    stage trains on); this process gets rows [p*b, (p+1)*b) of each global batch.

    Batch k depends only on (seed, k), so `start_step=k` resumes exactly where an uninterrupted
    run would be. Yields {'image': float32 [b, H, W, C] normalised, 'label': int32 [b]}.
    """
    local = _local_batch(batch_size, process_index, process_count)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    num_train = ds.num_examples(split)
    if num_train < batch_size:
        raise ValueError(
            f"the {split} split of {ds.name!r} has {num_train} examples, fewer than one global "
            f"batch of {batch_size}; lower the batch size or config.dataset.val_size"
            + ("/holdout_size" if split == "holdout" else "")
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
        ds.splits[split], batch_size=batch_size, local_batch=local,
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


def real_images(ds: Dataset, split: str, *, batch_size: int) -> Iterator[np.ndarray]:
    """The images of `split` in order, batch by batch as `eval_batches` reads them, without
    the padding rows of the last batch (one process: inference on a single device)."""
    for batch in eval_batches(ds, split, batch_size=batch_size):
        yield np.asarray(batch["image"])[np.asarray(batch["mask"], bool)]
