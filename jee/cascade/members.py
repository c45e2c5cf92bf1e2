"""The models of a cascade: their configs and training runs, and their outputs on a split.

A cascade config (``configs/*_cascade.py``, built with :func:`jee.config.cascade_variant`)
names each member by a config spec, ``path/to/config.py[:variant]``, the same string
``train.py --config`` takes, so a member is trained exactly as it is later loaded.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import numpy as np

from jee.config import load_config


@dataclasses.dataclass(frozen=True)
class Member:
    name: str
    spec: str
    workdir: str
    config: ml_collections.ConfigDict


def cascade_members(config) -> list[Member]:
    """The members of a cascade config, with their configs loaded and workdirs resolved."""
    c = config.cascade
    specs = tuple(c.members)
    names = tuple(c.names) or tuple(f"model{i}" for i in range(len(specs)))
    if len(names) != len(specs):
        raise ValueError(f"cascade.names has {len(names)} entries for {len(specs)} members")
    if len(set(names)) != len(names):
        raise ValueError(f"cascade.names must be distinct, got {list(names)}")
    losses = tuple(c.losses)
    if not losses or not all(isinstance(x, (int, float)) and 0 <= x < 1 for x in losses):
        raise ValueError(f"cascade.losses must be accuracy losses in [0, 1), e.g. (0.0, 0.01) "
                         f"for none and one point; got {list(losses)}")
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
