"""A cascade's trained members, restored and run once over the validation and test splits:
the inputs of the cascade report and benchmark."""

from __future__ import annotations

import numpy as np

from jee import scoring, sharding
from jee.cascade.features import cascade_data
from jee.cascade.graph import make_graph
from jee.cascade.members import Member, MemberOutputs, cascade_members
from jee.checkpoint import CheckpointError
from jee.models import split as split_model
from jee.runs import restore_trained


def restore_member(member: Member):
    """(dataset, model, state) of a member's best checkpoint."""
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
    restored = restored or [restore_member(m) for m in members]
    mesh = sharding.make_mesh()
    macs, logits, labels, dataset = [], {"val": [], "test": []}, {}, None
    for m, (ds, model, state) in zip(members, restored, strict=True):
        macs.append(model.costs().backbone)
        graphdef = split_model(model)[0]
        for split in ("val", "test"):
            out, _, y = scoring.collect_outputs(
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


def cascade_inputs(config, members=None, restored=None):
    """(outputs, graph, {split: CascadeData}) of a cascade config's trained members."""
    outputs = member_outputs(members or cascade_members(config), restored)
    graph = make_graph(len(outputs.names), tuple(config.cascade.edges))
    data = {s: cascade_data(outputs.logits[s], outputs.labels[s], outputs.macs)
            for s in ("val", "test")}
    return outputs, graph, data
