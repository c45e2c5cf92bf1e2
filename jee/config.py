"""Configs: the schema with its defaults, ``path/to/config.py[:variant]`` files, derived
variants, and key checks.

``base_config()`` is the schema: every key a run may set, with its default. A config file
defines ``get_config(arg)`` returning a ConfigDict that starts from it, so an override of a
key that does not exist is refused (with the closest existing keys) instead of being
silently ignored. ``variant_of`` derives a config from another file's with a few keys
changed; ``cascade_variant`` gives a cascade config file its variants: ``NAME`` is the
training config of one member, ``NAME,smoke`` its few-step version, no argument the cascade
itself and ``smoke`` the cascade of the smoke members.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import Any

import ml_collections
from ml_collections import config_dict


class ConfigError(ValueError):
    """A config file, variant or key given by the user is wrong; the message says how."""


def base_config() -> ml_collections.ConfigDict:
    """Every key a config may set, with its default."""
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
        holdout_size=0.0,         # carved from train too (fraction or count): the data the
                                  # confidence stage trains on; 0 = none
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
        confidence_inputs="features",  # features (the paper) | features+softmax: the
                                  # confidence branch also reads its exit's max-prob, margin
                                  # and normalised entropy
        dtype="float32",          # compute dtype: float32 | bfloat16 (parameters stay float32)
    ))

    c.loss = ml_collections.ConfigDict(dict(
        kind="v2",                # v0 | v1 | v2 | weighted
        lam=1.0,                  # lambda of the cost term (v1, v2)
        exit_weights=(),          # weighted: one weight per exit (empty: all 1)
        warmup_epochs=0.0,        # train with v0 (all exits' cross-entropy) for this long first
        exit_grad_scale=1.0,      # scale of the early exits' gradients into the backbone
                                  # (0 = the exit heads train on detached features)
    ))

    # A second stage after the main one: only the confidence branches train, with the EENet
    # loss, on dataset.holdout_size examples the classifiers never saw; backbone, classifiers
    # and BatchNorm statistics stay frozen (jee/confidence_stage.py).
    c.confidence_stage = ml_collections.ConfigDict(dict(
        epochs=0.0,               # passes over the holdout; 0 = no confidence stage
        kind="v2",                # v1 | v2: the EENet loss the confidence heads minimise
        lam=-1.0,                 # its cost weight; < 0 takes loss.lam
        learning_rate=0.1,        # Adam, each kernel's step divided by its fan-in,
                                  # cosine-decayed over the stage
        reset=True,               # start the confidence branches from zero (confidence 0.5):
                                  # the main stage leaves them saturated, without gradient
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
        losses=(0.0, 0.01),       # accuracy losses (fractions) allowed against the best single
                                  # model, at which the report and --benchmark pick points
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
    c.tensorboard = True          # also write every metrics.jsonl record to TensorBoard event
                                  # files in WORKDIR/tb/ (process 0): tensorboard --logdir runs/
    c.max_steps = 0               # > 0: stop after this many steps (smoke tests, profiling)
    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks a config to a few steps for tests (each config's ``:smoke`` variant)."""
    c.num_epochs = 1
    c.max_steps = 4
    c.batch_size = 32
    c.progress = False
    return c


def adaptive_recipe(c: ml_collections.ConfigDict, holdout_size: float,
                    stage_epochs: float = 5.0, exit_grad_scale: float = 0.1
                    ) -> ml_collections.ConfigDict:
    """The recipe that makes a network's exits adapt per example (README, "Exits that adapt
    per example"): the early exits' gradients into the backbone scaled by
    ``exit_grad_scale``, so the final exit keeps the plain network's accuracy; confidence
    branches that also read their exit's softmax (max-prob, margin, entropy);
    ``holdout_size`` training images held out, on which a confidence stage of
    ``stage_epochs`` trains the confidence branches alone at a cost weight of 0.1."""
    c.loss.exit_grad_scale = exit_grad_scale
    c.model.confidence_inputs = "features+softmax"
    c.dataset.holdout_size = holdout_size
    c.confidence_stage.epochs = stage_epochs
    c.confidence_stage.lam = 0.1
    return c


def unknown_variant(arg: str, known: str) -> ValueError:
    return ValueError(f"unknown config variant {arg!r}; known: {known}")


def parse_variants(arg: str | None, groups: dict[str, tuple[str, ...]], known: str
                   ) -> dict[str, Any]:
    """A config file's comma-separated variant ``arg`` as {group: chosen name} for each group
    named in it (``groups`` maps a group to its names), plus ``smoke`` (True/False). An
    unknown name, or two names of one group, is an error listing ``known``."""
    chosen: dict[str, Any] = {"smoke": False}
    for part in (p for p in (arg or "").split(",") if p):
        group = next((g for g, names in groups.items() if part in names), None)
        if part == "smoke" and not chosen["smoke"]:
            chosen["smoke"] = True
        elif group is None or group in chosen:
            raise unknown_variant(arg, known)
        else:
            chosen[group] = part
    return chosen


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config of ``path/to/config.py[:variant]`` (the path relative to the working
    directory, as for ``--config``)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} (from {spec!r}) does not exist; give its path "
                          "relative to the working directory, or absolute (e.g. "
                          "configs/digits.py)")
    module_spec = importlib.util.spec_from_file_location(
        f"jee_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} defines no get_config(arg)")
    return module.get_config(arg or None)


def dotted_keys(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[str]:
    """Every key of ``config``, nested ones as ``a.b.c``, sections included."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, ml_collections.ConfigDict):
            yield from dotted_keys(value, name + ".")


def check_key(config: ml_collections.ConfigDict, key: str, where: str) -> None:
    """Raises :class:`ConfigError` naming ``key`` and its closest existing keys if ``config``
    has no such (dotted) key."""
    node = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            keys = list(dotted_keys(config))
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
            if not close:  # a misspelt leaf under a right section: match on the leaf alone
                leaf = key.rsplit(".", 1)[-1]
                close = [k for k in keys if k.rsplit(".", 1)[-1] in
                         difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in keys],
                                                   n=3, cutoff=0.6)][:3]
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ConfigError(f"unknown config key {key!r} in {where}{hint}")
        node = node[part]


def variant_of(path: str, overrides: dict[str, Any]) -> Callable[[], ml_collections.ConfigDict]:
    """A builder of the config at ``path`` with dotted-key ``overrides`` applied
    (``{"model.arch": "resnet8"}``); a key the config does not have is an error."""
    def build() -> ml_collections.ConfigDict:
        c = load_config(path)
        for key, value in overrides.items():
            check_key(c, key, f"the overrides of {path}")
            *parents, leaf = key.split(".")
            node = c
            for name in parents:
                node = node[name]
            node[leaf] = value
        return c
    return build


def is_cascade(config) -> bool:
    return bool(config.cascade.members)


def cascade_variant(config_file: str, members: dict[str, Callable[[], ml_collections.ConfigDict]],
                    arg: str | None, root: str, edges=()) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of a cascade config file whose ``members`` builds each model's
    training config (cheapest first)."""
    parts = [p for p in (arg or "").split(",") if p]
    is_smoke = "smoke" in parts
    names = [p for p in parts if p != "smoke"]
    unknown = [n for n in names if n not in members]
    if unknown or len(names) > 1:
        raise unknown_variant(arg, f"one of {sorted(members)} (optionally ',smoke'), 'smoke', "
                                   "or none for the cascade")
    if names:
        c = members[names[0]]()
        return smoke(c) if is_smoke else c
    c = base_config()
    # The members' data, kept for reference (the cascade reads each member's own).
    c.dataset = members[next(iter(members))]().dataset
    suffix = ",smoke" if is_smoke else ""
    c.cascade.members = tuple(f"{os.path.abspath(config_file)}:{n}{suffix}" for n in members)
    c.cascade.names = tuple(members)
    c.cascade.root = root + ("_smoke" if is_smoke else "")
    c.cascade.edges = tuple(tuple(e) for e in edges)
    return c
