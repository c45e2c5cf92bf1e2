"""``evaluate.py --config configs/*_cascade.py --benchmark``: the cascade's wall-clock speed-up.

The routing policies at the operating points of the report (no accuracy loss against the best
single model, and 1 point of loss, each chosen on validation and, after the fact, on test):
the learned policy's, and the cheapest of any family where that is another (``timed_points``),
run over the whole test split in batches of ``--batch_size``, each mode compiled once
(a point whose policy has the structure of one timed before reuses its programs) and timed
over ``--repeats`` passes after a warm-up pass (every model alone and every
mode of a point taken in turn, round after round, so that the machine's drift hits them
alike):

- ``reference``: the best single model (by validation accuracy) alone, the baseline;
- ``masked``: every model on every example, routing applied afterwards (nothing saved);
- ``bucketed``: :class:`jee.infer.cascade.CascadeEngine`, each model only on the examples
  routed to it;
- with ``stream`` among ``--modes``: ``stream``, :class:`jee.infer.stream.StreamCascadeEngine`
  with batch ``--batch_size`` fed the same batches, each model run on full batches of the
  examples routed to it across input batches; and for every other size ``a`` of
  ``--arrival_sizes``, requests arriving as host arrays of ``a`` rows: ``bucketed@a`` runs
  the bucketed engine on each of them as it comes, ``stream@a`` feeds them to the stream.

The measured speed-up (reference time / mode time) is reported next to two ideal ones: by
MACs, the reference model's cost over the mean cost of the paths taken, and by time, the
reference model's time over the mean time of the paths taken, each model timed alone on the
whole split among the point's modes (what the engine could reach if routing and compaction
were free). Every mode's predictions are checked against the offline simulation of the same
policy.
"""

from __future__ import annotations

import jax
import numpy as np

from jee import data as data_lib
from jee.cascade.members import cascade_members
from jee.cascade.paired import policy_from_pick
from jee.cascade.sweeps import cascade_report, operating_points
from jee.evaluation.cascade_inputs import cascade_inputs, restore_member
from jee.evaluation.options import BenchmarkOptions
from jee.host_memory import host_memory
from jee.infer.benchmark import arrival_chunks, stream_counts, unpad
from jee.infer.cascade import CascadeEngine, MaskedCascadeEngine
from jee.infer.stream_cascade import StreamCascadeEngine
from jee.infer.timing import time_rounds, warm_up
from jee.outputs import is_writer, write_json
from jee.runs import backbone_function


def _test_batches(ds, batch_size: int):
    """The test split as device arrays of ``batch_size`` rows, the last of its real rows only
    (no mode pays for padding: the stream runs partial batches at small sizes), and the
    number of rows in each."""
    images, counts = [], []
    for batch in data_lib.eval_batches(ds, "test", batch_size=batch_size):
        count = int(np.sum(batch["mask"]))
        images.append(jax.device_put(np.asarray(batch["image"])[:count], jax.devices()[0]))
        counts.append(count)
    return images, counts


def _each(engine, chunks) -> list:
    return [engine(x) for x in chunks]


def _streamed(engine: StreamCascadeEngine, chunks, num_examples: int):
    # The chunks of other arrival sizes are padded: num_examples stops before the padding.
    return engine.run(iter(chunks), num_examples=num_examples)


def _mode_runs(engines: dict, batches, counts, arrivals: dict, batch_size: int):
    """``(name, engine, pass function, chunks, real rows per chunk, arrival size)`` of every
    mode: masked and bucketed on the batches, then per arrival size (``arrivals``: size ->
    (chunks, real rows)) the stream fed the chunks, and for sizes other than the batch the
    bucketed engine on each chunk as it arrives."""
    runs = [(m, engines[m], _each, batches, counts, batch_size) for m in ("masked", "bucketed")]
    if "stream" not in engines:
        return runs
    for size, (chunks, sizes) in arrivals.items():
        if size == batch_size:
            runs.append(("stream", engines["stream"], _streamed, chunks, sizes, size))
        else:
            runs += [(f"bucketed@{size}", engines["bucketed"], _each, chunks, sizes, size),
                     (f"stream@{size}", engines["stream"], _streamed, chunks, sizes, size)]
    return runs


def timed_points(points: list[dict]) -> list[dict]:
    """The operating points worth timing: for each accuracy loss and split chosen on, the
    learned policy's, and the cheapest point of any family (the one a user would deploy)
    when that is another family's."""
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        if p["feasible"]:
            groups.setdefault((p["loss"], p["selected_on"]), []).append(p)
    chosen = []
    for group in groups.values():
        # val_* are the figures of the split the point was chosen on.
        cheapest = min(group, key=lambda p: (p["val_relative_cost"], -p["val_accuracy"]))
        chosen += [p for p in group if p["family"] == "bolukbasi" or p is cheapest]
    return chosen


def run(config, options: BenchmarkOptions, out: str) -> dict:
    """Times the cascade ``config`` at its operating points; writes ``out/benchmark.json``."""
    members = cascade_members(config)
    restored = [restore_member(m) for m in members]
    outputs, graph, data = cascade_inputs(config, members, restored)
    report = cascade_report(data["val"], data["test"], graph, outputs.names,
                            crossfit_folds=options.crossfit_folds)
    ops = operating_points(report, config.cascade.losses)
    ref_name = ops["reference"]["model"]
    ref = outputs.names.index(ref_name)

    functions = [backbone_function(model, state) for _, model, state in restored]
    batches, counts = _test_batches(restored[0][0], options.batch_size)
    ladder = options.make_ladder()
    labels = outputs.labels["test"]
    # Every model alone: the reference's time is the baseline, and the others' give the
    # speed-up the paths would have if the engine added nothing (small models can cost far
    # more time per MAC than large ones).
    alone = [(_each, (jax.jit(f), batches)) for f in functions]
    ref_out, first, _ = [warm_up(*call) for call in alone][ref]
    times, recompiles = time_rounds(alone, options.repeats)
    model_s = np.median(times, axis=0).tolist()
    ref_s, ref_recompiles = model_s[ref], recompiles[ref]
    results = {"reference": {"model": ref_name, "seconds_per_pass": ref_s,
                             "images_per_s": len(labels) / ref_s, "compile_s": first - ref_s,
                             "recompiles_after_warmup": ref_recompiles,
                             "accuracy": float(np.mean(
                                 unpad(ref_out, counts).argmax(-1) == labels))},
               "seconds_per_pass_alone": dict(zip(outputs.names, model_s, strict=True))}
    results["points"] = []
    # One set of engines for every point: a policy is an argument of their programs, so a
    # point of a structure already seen (a learned policy at another lambda, a threshold
    # family at another threshold) compiles nothing.
    engines = {}
    stream = "stream" in options.modes
    # Requests of each arrival size: the batches themselves at the batch size, else host
    # arrays of the real rows.
    images, arrivals = unpad(batches, counts), {}
    for size in options.arrivals() if stream else ():
        if size == options.batch_size:
            arrivals[size] = batches, counts
        else:
            chunks, sizes = arrival_chunks(images, None, size, on_device=False)
            arrivals[size] = [x for x, _ in chunks], sizes
    for point in timed_points(ops["points"]):
        policy = policy_from_pick(point, graph)
        if not engines:
            engines = {"masked": MaskedCascadeEngine(functions, policy),
                       "bucketed": CascadeEngine(functions, policy, ladder=ladder)}
            if stream:
                engines["stream"] = StreamCascadeEngine(functions, policy,
                                                        batch_size=options.batch_size)
        for engine in engines.values():
            engine.policy = policy
        offline_path = np.asarray(policy.paths_from_features(data["test"].features))
        offline_final = np.asarray([p[-1] for p in graph.paths()])[offline_path]
        entry = {"loss": point["loss"], "selected_on": point["selected_on"],
                 "family": point["family"], "params": point["params"],
                 "test_accuracy": point["test_accuracy"],
                 "test_relative_cost": point["test_relative_cost"],
                 "ideal_speedup": point["test_speedup_vs_reference"],
                 "path_fractions": point["test_exit_fractions"], "modes": {}}
        runs = list(_mode_runs(engines, batches, counts, arrivals, options.batch_size))
        warm, extra = [], {}
        for mode, engine, run_pass, chunks, _, _ in runs:
            streamed = run_pass is _streamed
            before = stream_counts(engine) if streamed else None
            args = (engine, chunks, len(labels)) if streamed else (engine, chunks)
            warm.append((args, *warm_up(run_pass, args)))
            if streamed:
                extra[mode] = stream_counts(engine, since=before)
        # Every model alone again, its passes taken in turn with the modes': the speed-ups
        # and the ideal by time are ratios of passes timed under the same conditions (the
        # reference's passes took 13% less time among one point's modes than among the
        # models alone).
        times, recompiles = time_rounds(
            alone + [(r[2], w[0]) for r, w in zip(runs, warm, strict=True)], options.repeats)
        seconds = np.median(times, axis=0)
        point_model_s = seconds[:len(alone)].tolist()
        entry.update(
            reference_seconds_per_pass=point_model_s[ref],
            model_seconds_per_pass=dict(zip(outputs.names, point_model_s, strict=True)),
            timed_ideal_speedup=point_model_s[ref] / float(np.dot(
                point["test_exit_fractions"], graph.path_costs(point_model_s))))
        for i, (mode, _, run_pass, _, sizes, size) in enumerate(runs, len(alone)):
            _, passes, first, compiles = warm[i - len(alone)]
            if run_pass is _streamed:
                final, logits = (np.asarray(a) for a in passes[:2])
            else:
                final = unpad([o[0] for o in passes], sizes)
                logits = unpad([o[1] for o in passes], sizes)
            entry["modes"][mode] = {
                "arrival_size": size,
                "seconds_per_pass": float(seconds[i]),
                "images_per_s": len(labels) / seconds[i],
                "compile_s": max(0.0, first - seconds[i]), "compiles_at_warmup": compiles,
                "recompiles_after_warmup": recompiles[i],
                "speedup": seconds[ref] / seconds[i],
                "accuracy": float(np.mean(logits.argmax(-1) == labels)),
                "agreement": float(np.mean(final == offline_final)),
                **extra.get(mode, {})}
        results["points"].append(entry)
    record = {"config": config.cascade.root, "models": list(outputs.names),
              "relative_costs": np.asarray(data["test"].costs).tolist(),
              "paths": report["paths"], "num_examples": len(labels),
              "batch_size": options.batch_size,
              "ladder": list(ladder), "backend": jax.default_backend(),
              "cpu_async_dispatch": jax.config.read("jax_cpu_enable_async_dispatch"),
              "host_memory": host_memory(),
              "repeats": options.repeats, **results}
    if is_writer():
        _print(record)
        print(f"wrote {write_json(out, 'benchmark.json', record)}")
    return record


def _print(result: dict) -> None:
    ref = result["reference"]
    print(f"cascade {result['models']}, batch {result['batch_size']} on {result['backend']}; "
          f"reference {ref['model']}: {ref['images_per_s']:.0f} img/s, accuracy "
          f"{ref['accuracy']:.4f}")
    print("each model alone: " + ", ".join(
        f"{n} {s * 1e3:.0f} ms" for n, s in result["seconds_per_pass_alone"].items())
        + " per pass")
    print(f"{'loss':>5} {'chosen on':>9} {'policy':>10} {'mode':>11} {'img/s':>8} {'speed-up':>8} "
          f"{'ideal MACs':>10} {'ideal time':>10} {'accuracy':>8} {'agree':>6} {'compile s':>9} "
          f"{'recompiles':>10}")
    for p in result["points"]:
        for mode, s in p["modes"].items():
            print(f"{p['loss']:>5.2f} {p['selected_on']:>9} {p['family']:>10} {mode:>11} "
                  f"{s['images_per_s']:>8.0f} "
                  f"{s['speedup']:>8.2f} {p['ideal_speedup']:>10.2f} "
                  f"{p['timed_ideal_speedup']:>10.2f} {s['accuracy']:>8.4f} {s['agreement']:>6.3f} "
                  f"{s['compile_s']:>9.2f} {s['recompiles_after_warmup']:>10}")
