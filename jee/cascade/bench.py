"""``evaluate.py --config configs/*_cascade.py --benchmark``: the cascade's wall-clock speed-up.

The learned routing policies at the operating points of the report (no accuracy loss against
the best single model, and 1 point of loss, each chosen on validation and, after the fact, on
test) run over the whole test split in batches of ``--batch_size`` in three modes, each
compiled once and timed over ``--repeats`` passes after a warm-up pass:

- ``reference``: the best single model (by validation accuracy) alone, the baseline;
- ``masked``: every model on every example, routing applied afterwards (nothing saved);
- ``bucketed``: :class:`jee.infer.cascade.CascadeEngine`, each model only on the examples
  routed to it.

The measured speed-up (reference time / mode time) is reported next to two ideal ones: by
MACs, the reference model's cost over the mean cost of the paths taken, and by time, the
reference model's time over the mean time of the paths taken, each model timed alone on the
whole split (what the engine could reach if routing and compaction were free). Every mode's
predictions are checked against the offline simulation of the same policy.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jee.cascade.fit import fit_cascade
from jee.cascade.members import cascade_members, restore_member
from jee.cascade.report import cascade_inputs, cascade_report, operating_points, output_dir
from jee.infer.cascade import CascadeEngine, MaskedCascadeEngine
from jee.infer.compiles import CompileCounter
from jee.infer.ladder import make_ladder
from jee.models import apply_backbone, split
from jee.policy.sweeps import DEFAULT_LAMBDAS


def model_functions(restored):
    """Each member's backbone as ``f(x) -> logits``, weights on one device."""
    def make(graphdef, params, stats):
        return lambda x: apply_backbone(graphdef, params, stats, x)

    return [make(split(model)[0], *jax.device_put((state["params"], state["batch_stats"]),
                                                   jax.devices()[0]))
            for _, model, state in restored]


def _test_batches(ds, batch_size: int):
    """The test split as device arrays of ``batch_size`` rows (the last padded) and the
    number of real rows in each."""
    from jee import data as data_lib

    images, counts = [], []
    for batch in data_lib.eval_batches(ds, "test", batch_size=batch_size):
        images.append(jax.device_put(jnp.asarray(batch["image"]), jax.devices()[0]))
        counts.append(int(np.sum(batch["mask"])))
    return images, counts


def _time_passes(fn, batches, repeats: int):
    """(outputs of the first pass, first-pass seconds, median seconds per pass, compilations
    after the first pass)."""
    start = time.perf_counter()
    first = jax.block_until_ready([fn(x) for x in batches])
    first_s = time.perf_counter() - start
    times = []
    with CompileCounter() as steady:
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready([fn(x) for x in batches])
            times.append(time.perf_counter() - start)
    return first, first_s, float(np.median(times)), steady.count


def _unpad(arrays, counts) -> np.ndarray:
    """The real rows of per-batch outputs, concatenated."""
    return np.concatenate([np.asarray(a)[:n] for a, n in zip(arrays, counts, strict=True)])


def run(config, flags) -> dict:
    members = cascade_members(config)
    restored = [restore_member(m) for m in members]
    outputs, graph, data = cascade_inputs(config, members, restored)
    learned, _ = fit_cascade(data["val"], graph, DEFAULT_LAMBDAS)
    report = cascade_report(data["val"], data["test"], graph, outputs.names, learned=learned)
    ops = operating_points(report)
    ref_name = ops["reference"]["model"]
    ref = outputs.names.index(ref_name)
    lambdas = np.asarray(learned.lam).tolist()

    functions = model_functions(restored)
    batches, counts = _test_batches(restored[0][0], flags.batch_size)
    growth = 2.0 if flags.ladder == "pow2" else flags.ladder_growth
    ladder = make_ladder(flags.batch_size, kind=flags.ladder, growth=growth)
    labels = outputs.labels["test"]
    # Every model alone: the reference's time is the baseline, and the others' give the
    # speed-up the paths would have if the engine added nothing (small models can cost far
    # more time per MAC than large ones).
    alone = [_time_passes(jax.jit(f), batches, flags.repeats) for f in functions]
    ref_out, first, ref_s, ref_recompiles = alone[ref]
    model_s = [a[2] for a in alone]
    path_s = graph.path_costs(model_s)
    results = {"reference": {"model": ref_name, "seconds_per_pass": ref_s,
                             "images_per_s": len(labels) / ref_s, "compile_s": first - ref_s,
                             "recompiles_after_warmup": ref_recompiles,
                             "accuracy": float(np.mean(
                                 _unpad(ref_out, counts).argmax(-1) == labels))},
               "seconds_per_pass_alone": dict(zip(outputs.names, model_s, strict=True))}
    results["points"] = []
    engines = {}  # by lambda: two operating points often pick the same policy
    for point in ops["points"]:
        if point["family"] != "bolukbasi" or not point["feasible"]:
            continue
        index = lambdas.index(point["params"]["lambda"])
        policy = learned[index]
        if index not in engines:
            engines[index] = (("masked", MaskedCascadeEngine(functions, policy)),
                              ("bucketed", CascadeEngine(functions, policy, ladder=ladder)))
        offline_path = np.asarray(policy.paths_from_features(data["test"].features))
        offline_final = np.asarray([p[-1] for p in graph.paths()])[offline_path]
        entry = {"loss": point["loss"], "selected_on": point["selected_on"],
                 "lambda": point["params"]["lambda"],
                 "test_accuracy": point["test_accuracy"],
                 "test_relative_cost": point["test_relative_cost"],
                 "ideal_speedup": point["test_speedup_vs_reference"],
                 "timed_ideal_speedup": ref_s / float(
                     np.dot(point["test_exit_fractions"], path_s)),
                 "path_fractions": point["test_exit_fractions"], "modes": {}}
        for mode, engine in engines[index]:
            out, first, seconds, recompiles = _time_passes(engine, batches, flags.repeats)
            final = _unpad([o[0] for o in out], counts)
            logits = _unpad([o[1] for o in out], counts)
            entry["modes"][mode] = {
                "seconds_per_pass": seconds, "images_per_s": len(labels) / seconds,
                "compile_s": first - seconds, "recompiles_after_warmup": recompiles,
                "speedup": ref_s / seconds,
                "accuracy": float(np.mean(logits.argmax(-1) == labels)),
                "agreement": float(np.mean(final == offline_final))}
        results["points"].append(entry)
    out = {"config": config.cascade.root, "models": list(outputs.names),
           "relative_costs": np.asarray(data["test"].costs).tolist(),
           "paths": report["paths"], "batch_size": flags.batch_size, "ladder": list(ladder),
           "backend": jax.default_backend(), "repeats": flags.repeats, **results}
    _print(out)
    if jax.process_index() == 0:
        path = os.path.join(output_dir(config, flags), "benchmark.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {path}")
    return out


def _print(result: dict) -> None:
    ref = result["reference"]
    print(f"cascade {result['models']}, batch {result['batch_size']} on {result['backend']}; "
          f"reference {ref['model']}: {ref['images_per_s']:.0f} img/s, accuracy "
          f"{ref['accuracy']:.4f}")
    print("each model alone: " + ", ".join(
        f"{n} {s * 1e3:.0f} ms" for n, s in result["seconds_per_pass_alone"].items())
        + " per pass")
    print(f"{'loss':>5} {'chosen on':>9} {'mode':>9} {'img/s':>8} {'speed-up':>8} "
          f"{'ideal MACs':>10} {'ideal time':>10} {'accuracy':>8} {'agree':>6} {'compile s':>9} "
          f"{'recompiles':>10}")
    for p in result["points"]:
        for mode, s in p["modes"].items():
            print(f"{p['loss']:>5.2f} {p['selected_on']:>9} {mode:>9} {s['images_per_s']:>8.0f} "
                  f"{s['speedup']:>8.2f} {p['ideal_speedup']:>10.2f} "
                  f"{p['timed_ideal_speedup']:>10.2f} {s['accuracy']:>8.4f} {s['agreement']:>6.3f} "
                  f"{s['compile_s']:>9.2f} {s['recompiles_after_warmup']:>10}")
