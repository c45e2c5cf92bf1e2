"""``evaluate.py --describe``: a network's exits (block, MACs, relative cost, parameters) or a
cascade's members and paths, from the config alone: no data (for known datasets) and no
checkpoint."""

from __future__ import annotations

from typing import Any

from jee.cascade.graph import make_graph
from jee.cascade.members import cascade_members
from jee.config import is_cascade
from jee.evaluation.options import DescribeOptions
from jee.models import count_params, split
from jee.models.describe import describe, format_table
from jee.outputs import is_writer, write_json
from jee.runs import model_for_config


def describe_cascade(config) -> dict[str, Any]:
    members = cascade_members(config)
    models = []
    for m in members:
        model = model_for_config(m.config)
        models.append({"name": m.name, "config": m.spec, "workdir": m.workdir,
                       "arch": m.config.model.arch, "params": count_params(split(model)[1]),
                       "macs": model.costs().backbone})
    top = max(m["macs"] for m in models)
    for m in models:
        m["relative_cost"] = m["macs"] / top
    graph = make_graph(len(models), tuple(config.cascade.edges))
    costs = graph.path_costs([m["macs"] / top for m in models])
    paths = [{"models": [models[k]["name"] for k in p], "relative_cost": float(c)}
             for p, c in zip(graph.paths(), costs, strict=True)]
    return {"models": models, "paths": paths}


def format_cascade(desc: dict[str, Any]) -> str:
    lines = [f"{'model':>10} {'arch':>10} {'params':>10} {'M MACs':>9} {'rel. cost':>9}"]
    for m in desc["models"]:
        lines.append(f"{m['name']:>10} {m['arch']:>10} {m['params']:>10,} "
                     f"{m['macs'] / 1e6:>9.3f} {m['relative_cost']:>9.3f}")
    lines.append("paths (relative cost):")
    for p in desc["paths"]:
        lines.append(f"  {' -> '.join(p['models'])}: {p['relative_cost']:.3f}")
    return "\n".join(lines)


def run(config, options: DescribeOptions, out: str | None) -> dict[str, Any]:
    """Prints the description; writes ``out/describe.json`` if ``out``."""
    if is_cascade(config):
        desc = describe_cascade(config)
        text = format_cascade(desc)
    else:
        desc = describe(model_for_config(config))
        text = format_table(desc)
    if is_writer():
        print(text)
    if out:
        path = write_json(out, "describe.json", desc)
        if is_writer():
            print(f"wrote {path}")
    return desc
