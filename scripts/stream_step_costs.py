"""Where a cascade stream's pass goes: every compiled program it runs, timed, against each model
alone, at the operating points the cascade benchmark times.

    python scripts/stream_step_costs.py --config configs/fashion_mnist_cascade.py --root RUN \
        [--loss 0.01] [--selected_on test] [--batch_size 256] [--repeats 5] [--out PATH]

For each point (``jee.evaluation.cascade_bench.timed_points`` of the cascade report, filtered by
``--loss`` and ``--selected_on``) the stream runs whole passes over the test split, fed the
batches as device arrays, with each of its program calls waited for and timed (the CPU backend
runs one program at a time, as ``evaluate.py --benchmark`` does), and each model alone is timed
on the same batches in the same rounds. Printed per point: each program's calls per pass and
median milliseconds (``direct at s``: a piece of s rows fed straight into the first model's
step; ``feed at s``: one appended to its queue; ``step k at s``: model k's step on s rows), each
model's median per batch alone, the median pass, and what the programs do not account for (host
work and dispatch), and the pass in four figures (:func:`breakdown`). A step's time over its
model's alone is what routing and the queues cost it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jee.cascade.members import cascade_members  # noqa: E402
from jee.cascade.paired import policy_from_pick  # noqa: E402
from jee.cascade.sweeps import cascade_report, operating_points  # noqa: E402
from jee.config import load_config  # noqa: E402
from jee.evaluation.cascade_bench import _test_batches, timed_points  # noqa: E402
from jee.evaluation.cascade_inputs import cascade_inputs, restore_member  # noqa: E402
from jee.host_memory import keep_host_memory  # noqa: E402
from jee.infer.stream_cascade import StreamCascadeEngine  # noqa: E402
from jee.runs import backbone_function  # noqa: E402


def timed_programs(engine: StreamCascadeEngine, record: dict):
    """Wraps the engine's compiled programs so that each call waits for its outputs and adds
    its seconds to ``record[name]``; returns a function that undoes it."""
    saved = engine._step_fns, engine._direct_fn, engine._feed_fn

    def timed(name, fn, piece_at=None):
        def call(*args):
            # A fed piece's rows: the program of its size runs.
            label = name if piece_at is None else f"{name} at {args[piece_at]['h'].shape[0]}"
            start = time.perf_counter()
            out = jax.block_until_ready(fn(*args))
            record[label].append(time.perf_counter() - start)
            return out
        return call

    engine._step_fns = {key: timed(f"step {key[0]} at {key[1]}", fn)
                        for key, fn in saved[0].items()}
    engine._direct_fn = timed("direct", saved[1], piece_at=4)
    engine._feed_fn = timed("feed", saved[2], piece_at=4)

    def undo():
        engine._step_fns, engine._direct_fn, engine._feed_fn = saved
    return undo


def point_costs(engine, models, batches, repeats: int) -> dict:
    num = sum(int(b.shape[0]) for b in batches)
    full = [b for b in batches if b.shape[0] == engine.batch_size]
    engine.run(iter(batches), num_examples=num)  # warm: compiled already, caches filled
    record, alone, passes = collections.defaultdict(list), collections.defaultdict(list), []
    undo = timed_programs(engine, record)
    try:
        for _ in range(repeats):
            for k, model in enumerate(models):
                for b in full:
                    start = time.perf_counter()
                    jax.block_until_ready(model(b))
                    alone[k].append(time.perf_counter() - start)
            start = time.perf_counter()
            engine.run(iter(batches), num_examples=num)
            passes.append(time.perf_counter() - start)
    finally:
        undo()
    programs = {name: {"calls_per_pass": len(t) / repeats, "median_ms": 1e3 * np.median(t),
                       "ms_per_pass": 1e3 * sum(t) / repeats}
                for name, t in sorted(record.items())}
    pass_ms = 1e3 * float(np.median(passes))
    return {"num_examples": num, "pass_ms": pass_ms, "programs": programs,
            "alone_ms_per_batch": [1e3 * float(np.median(alone[k])) for k in range(len(models))],
            "unaccounted_ms_per_pass": pass_ms - sum(p["ms_per_pass"] for p in programs.values())}


def breakdown(costs: dict, path_fractions, path_ms, batch: int) -> dict:
    """A pass in four figures (ms): ``ideal``, the batches of the split times the mean time per
    batch of the paths taken (``path_ms``: each path's models alone, as the cascade
    benchmark's ideal by time has it; fractions of a batch included); ``whole_batches``, the
    stream's own programs at their models' times alone, a program of s rows counted as s /
    batch of a batch; ``programs``, what those programs took; ``pass``, the pass. Their
    differences: padding to whole batches, what the steps add to their models (routing, the
    queues), and the host's work."""
    alone, n = costs["alone_ms_per_batch"], costs["num_examples"]
    whole = 0.0
    for name, p in costs["programs"].items():
        kind, _, size = name.rpartition(" at ")
        k = 0 if kind in ("direct", "feed") else int(kind.split()[1])
        if kind != "feed":  # a feed runs no model
            whole += p["calls_per_pass"] * int(size) / batch * alone[k]
    return {"ideal": n / batch * float(np.dot(path_fractions, path_ms)), "whole_batches": whole,
            "programs": sum(p["ms_per_pass"] for p in costs["programs"].values()),
            "pass": costs["pass_ms"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a cascade config, e.g. "
                   "configs/fashion_mnist_cascade.py")
    p.add_argument("--root", required=True, help="the cascade's runs (config.cascade.root)")
    p.add_argument("--loss", type=float, default=None, help="only points of this loss allowed")
    p.add_argument("--selected_on", choices=("val", "test"), default=None)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--crossfit_folds", type=int, default=5)
    p.add_argument("--partial_sizes", default=None,
                   help="the stream's partial sizes, e.g. 16,64 (default: the engine's)")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    sizes = None
    if args.partial_sizes is not None:
        try:
            sizes = [int(v) for v in args.partial_sizes.split(",")]
        except ValueError:
            sizes = []
        if not sizes or not all(1 <= v <= args.batch_size for v in sizes):
            p.error(f"--partial_sizes takes comma-separated sizes from 1 to --batch_size "
                    f"({args.batch_size}), such as 16,64, got {args.partial_sizes!r}")
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    keep_host_memory()
    config = load_config(args.config)
    config.cascade.root = args.root
    members = cascade_members(config)
    restored = [restore_member(m) for m in members]
    outputs, graph, data = cascade_inputs(config, members, restored)
    report = cascade_report(data["val"], data["test"], graph, outputs.names,
                            crossfit_folds=args.crossfit_folds)
    points = [q for q in timed_points(operating_points(report, config.cascade.losses)["points"])
              if (args.loss is None or np.isclose(q["loss"], args.loss))
              and (args.selected_on is None or q["selected_on"] == args.selected_on)]
    if not points:
        raise SystemExit("no timed operating point matches --loss and --selected_on")
    functions = [backbone_function(model, state) for _, model, state in restored]
    models = [jax.jit(f) for f in functions]
    batches, _ = _test_batches(restored[0][0], args.batch_size)
    engine, results = None, []
    for point in points:
        policy = policy_from_pick(point, graph)
        if engine is None:
            engine = StreamCascadeEngine(functions, policy, batch_size=args.batch_size,
                                         partial_sizes=sizes)
        engine.policy = policy
        costs = point_costs(engine, models, batches, args.repeats)
        costs["breakdown_ms"] = breakdown(costs, point["test_exit_fractions"],
                                          graph.path_costs(costs["alone_ms_per_batch"]),
                                          args.batch_size)
        results.append({key: point[key] for key in ("loss", "selected_on", "family")}
                       | {"path_fractions": point["test_exit_fractions"], **costs})
        print(f"partial sizes {list(engine.sizes)}; loss {point['loss']:.2f} chosen on "
              f"{point['selected_on']}, {point['family']}: "
              f"pass {costs['pass_ms']:.1f} ms, of which programs do not account for "
              f"{costs['unaccounted_ms_per_pass']:.1f} ms; alone per batch "
              f"{np.round(costs['alone_ms_per_batch'], 2).tolist()} ms ({outputs.names})")
        for name, c in costs["programs"].items():
            print(f"  {name:>14}: {c['calls_per_pass']:5.1f} calls/pass, median "
                  f"{c['median_ms']:7.2f} ms, {c['ms_per_pass']:8.1f} ms/pass")
        b = costs["breakdown_ms"]
        print(f"  ms per pass: ideal {b['ideal']:.1f}, in whole batches {b['whole_batches']:.1f}"
              f", programs {b['programs']:.1f}, pass {b['pass']:.1f}: efficiency by time "
              f"{b['ideal'] / b['pass']:.3f}")
    record = {"config": args.config, "root": args.root, "batch_size": args.batch_size,
              "paths": report["paths"],
              "partial_sizes": list(engine.sizes),
              "repeats": args.repeats, "models": list(outputs.names), "points": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
