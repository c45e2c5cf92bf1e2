"""The models of a cascade: their configs, their training runs, and their outputs on a split.

A cascade config (``configs/*_cascade.py``) names each member by a config spec,
``path/to/config.py[:variant]``, the same string ``train.py --config`` takes, so a member is
trained exactly as it is later loaded. ``cascade_variant`` gives such a file its variants:
``NAME`` is the training config of one member, ``NAME,smoke`` its few-step version, no
argument the cascade itself and ``smoke`` the cascade of the smoke members. ``variant_of``
derives a member's config from an existing one with a few keys changed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import ml_collections
import numpy as np

from jee.config import load_config
from jee.defaults import base_config, smoke, unknown_variant


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


@dataclasses.dataclass(frozen=True)
class Member:
    name: str
    spec: str
    workdir: str
    config: ml_collections.ConfigDict


def is_cascade(config) -> bool:
    return bool(config.cascade.members)


def cascade_members(config) -> list[Member]:
    """The members of a cascade config, with their configs loaded and workdirs resolved."""
    c = config.cascade
    specs = tuple(c.members)
    names = tuple(c.names) or tuple(f"model{i}" for i in range(len(specs)))
    if len(names) != len(specs):
        raise ValueError(f"cascade.names has {len(names)} entries for {len(specs)} members")
    if len(set(names)) != len(names):
        raise ValueError(f"cascade.names must be distinct, got {list(names)}")
    workdirs = tuple(c.workdirs)
    if not workdirs:
        if not c.root:
            raise ValueError("set cascade.workdirs (one per member) or cascade.root "
                             "(members' runs in ROOT/NAME)")
        workdirs = tuple(os.path.join(c.root, n) for n in names)
    if len(workdirs) != len(specs):
        raise ValueError(f"cascade.workdirs has {len(workdirs)} entries for {len(specs)} "
                         "members")
    return [Member(n, s, w, load_config(s)) for n, s, w in zip(names, specs, workdirs,
                                                               strict=True)]


@dataclasses.dataclass(frozen=True)
class MemberOutputs:
    """Every member's final-exit logits on the validation and test splits."""

    names: tuple[str, ...]
    macs: np.ndarray                  # [M] per-example MACs of each member's plain backbone
    logits: dict[str, np.ndarray]     # split -> [M, N, C]
    labels: dict[str, np.ndarray]     # split -> [N]
    dataset: str


def restore_member(member: Member):
    """(dataset, model, state) of a member's best checkpoint."""
    from jee.checkpoint import CheckpointError
    from jee.train_lib import restore_trained

    try:
        return restore_trained(member.config, member.workdir, "best")
    except (CheckpointError, FileNotFoundError) as e:
        # Name the member and the exact command that trains it, whatever went wrong.
        raise CheckpointError(
            f"cascade member {member.name!r}: {e}\n  train it with `python train.py --config "
            f"{member.spec} --workdir {member.workdir}`, or point cascade.root / "
            "cascade.workdirs at its run") from e


def member_outputs(members: list[Member], restored=None) -> MemberOutputs:
    """Run each member (``restored``: their ``restore_member`` results, else restored here)
    over the validation and test splits.

    The members must have been trained on the same data split: their labels are compared
    example by example.
    """
    from jee import exit_eval, sharding
    from jee.models import split as split_model

    restored = restored or [restore_member(m) for m in members]
    mesh = sharding.make_mesh()
    macs, logits, labels, dataset = [], {"val": [], "test": []}, {}, None
    for m, (ds, model, state) in zip(members, restored, strict=True):
        macs.append(model.costs().backbone)
        graphdef = split_model(model)[0]
        for split in ("val", "test"):
            out, _, y = exit_eval.collect_outputs(
                graphdef, state["params"], state["batch_stats"], ds, split,
                batch_size=m.config.eval_batch_size, mesh=mesh)
            logits[split].append(out[-1])  # the final exit: the member's backbone classifier
            if split not in labels:
                labels[split], dataset = y, ds.name
            elif y.shape != labels[split].shape or np.any(y != labels[split]):
                raise ValueError(
                    f"cascade member {m.name!r} sees a different {split} split than "
                    f"{members[0].name!r}: train every member on the same dataset settings "
                    "(source, path, val_size, val_seed)")
    return MemberOutputs(tuple(m.name for m in members), np.asarray(macs, np.float64),
                         {s: np.stack(v) for s, v in logits.items()}, labels, dataset)
