"""The full configuration schema with defaults; every file in ``configs/`` starts from it.

Keeping every key here means ``--config.some.key=value`` overrides of a key that does not
exist fail at once (ml_collections refuses unknown keys) instead of being silently ignored.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    c.dataset = ml_collections.ConfigDict(dict(
        source="digits",          # digits | npz | idx | folder | tfds
        name="digits",            # tfds name (e.g. cifar10), or a label for other sources
        path="",                  # npz file, idx folder or image-folder root
        data_dir=config_dict.placeholder(str),  # tfds data_dir (None: tfds default)
        train_split="train",
        test_split="test",
        val_size=0.1,             # carved from train: a fraction (< 1) or a count
        val_seed=0,
        augment="none",           # none | crop | crop_flip
        crop_padding=4,
        image_size=0,             # 0 keeps the source size
        num_classes=0,            # 0: the largest training label + 1 (folder/tfds: the source's
                                  # count); set it when the training split lacks some classes
        mean=config_dict.placeholder(tuple),  # None: computed from the training split
        std=config_dict.placeholder(tuple),
        num_workers=0,            # grain worker processes (0 = in-process threads)
    ))

    c.model = ml_collections.ConfigDict(dict(
        arch="resnet20",          # resnet{6n+2} | resnet18/34/50/101/152 | eenet8
        width=0,                  # first-stage channels (0: the architecture's own)
        num_exits=2,              # early exits; 0 = the plain backbone (every config's baseline)
        placement="pareto",       # pareto | fine | linear | golden_ratio | quadratic
        exit_blocks=(),           # explicit block indices (as many as num_exits); else placement
        exit_type="pool",         # plain | pool | bnpool
        dtype="float32",          # compute dtype: float32 | bfloat16 (parameters stay float32)
    ))

    c.loss = ml_collections.ConfigDict(dict(
        kind="v2",                # v0 | v1 | v2 | weighted
        lam=1.0,                  # lambda of the cost term (v1, v2)
        exit_weights=(),          # weighted: one weight per exit (empty: all 1)
        warmup_epochs=0.0,        # train with v0 (all exits' cross-entropy) for this long first
    ))

    c.optimizer = ml_collections.ConfigDict(dict(
        name="sgd",               # sgd | adam | adamw
        learning_rate=0.1,        # peak learning rate, for the global batch size
        momentum=0.9,
        nesterov=False,
        weight_decay=1e-4,        # L2 on conv/dense kernels (decoupled for adamw)
        schedule="cosine",        # constant | cosine | step
        warmup_epochs=0.0,
        decay_epochs=(),          # step schedule: epochs at which lr *= decay_factor
        decay_factor=0.1,
        grad_clip_norm=0.0,       # 0 = off
    ))

    # Network selection (evaluate.py): a cascade of separately trained models. Set by the
    # configs/*_cascade.py files; empty for a single network.
    c.cascade = ml_collections.ConfigDict(dict(
        members=(),               # "configs/FILE.py[:variant]" of each model, cheapest first
        names=(),                 # their labels in reports, one per member
        workdirs=(),              # their training runs; empty: root/NAME for each name
        root="",                  # where the members' runs are; the cascade report goes here
        edges=(),                 # (from, to) member positions; empty: each to every later one
    ))

    c.seed = 0
    c.batch_size = 128            # global batch, split over every device of every process
    c.eval_batch_size = 256
    c.num_epochs = 10
    c.threshold = 0.5             # EENet confidence threshold for the reported exit figures
    c.log_every_steps = 50
    c.eval_every_epochs = 1
    c.checkpoint_every_epochs = 1
    c.keep_checkpoints = 2        # the latest N, plus the best by validation accuracy
    c.progress = True             # progress bar on stderr (process 0)
    c.max_steps = 0               # > 0: stop after this many steps (smoke tests, profiling)
    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a config to a few steps for tests (each config's ``:smoke`` variant)."""
    c.num_epochs = 1
    c.max_steps = 4
    c.batch_size = 32
    c.progress = False
    return c


def unknown_variant(arg: str, known: str) -> ValueError:
    return ValueError(f"unknown config variant {arg!r}; known: {known}")
