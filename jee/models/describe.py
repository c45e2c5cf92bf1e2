"""A table of an early-exit network's exits: where they sit, what leaving there costs."""

from __future__ import annotations

from flax import nnx

from jee.models.eenet import EarlyExitNet, count_params


def _params(module) -> int:
    return count_params(nnx.state(module, nnx.Param))


def describe(model: EarlyExitNet) -> dict:
    """``{"params", "macs_full", "exits": [{"block", "macs", "relative_cost", "params",
    "head_params"}]}``; an exit's ``params`` counts everything evaluated to leave there."""
    ct = model.costs()
    bb = model.backbone
    stem = _params(bb.stem)
    blocks = [_params(b) for b in bb.blocks]
    heads = [_params(e) for e in model.exits]
    final_head = _params(model.final) + (_params(bb.final_norm) if bb.final_norm else 0)
    macs, rel = ct.exit_macs(), ct.relative_costs()
    exits = []
    for k in range(model.num_exits):
        stop = model.segment_blocks(k)[1]
        head = heads[k] if k < len(heads) else final_head
        exits.append({
            "block": stop - 1,
            "macs": int(macs[k]),
            "relative_cost": float(rel[k]),
            "params": stem + sum(blocks[:stop]) + sum(heads[:k + 1]) + (
                final_head if k == len(heads) else 0),
            "head_params": head,
        })
    return {"arch": bb.name, "input_shape": list(model.input_shape),
            "num_blocks": bb.num_blocks, "params": _params(model), "macs_full": int(ct.backbone),
            "exits": exits}


def format_table(desc: dict) -> str:
    lines = [f"{desc['arch']} on {tuple(desc['input_shape'])}: {desc['num_blocks']} blocks, "
             f"{desc['params']:,} parameters, plain backbone {desc['macs_full'] / 1e6:,.2f} M MACs",
             f"{'exit':>4} {'block':>5} {'M MACs':>10} {'rel. cost':>9} {'params':>12} "
             f"{'head params':>11}"]
    for i, e in enumerate(desc["exits"]):
        name = "final" if i == len(desc["exits"]) - 1 else str(i)
        lines.append(f"{name:>4} {e['block']:>5} {e['macs'] / 1e6:>10.3f} "
                     f"{e['relative_cost']:>9.3f} {e['params']:>12,} {e['head_params']:>11,}")
    return "\n".join(lines)
