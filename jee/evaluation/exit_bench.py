"""``evaluate.py --benchmark``: wall-clock time of every inference mode on a real network.

With ``--random_init`` no checkpoint is needed: random weights, random images and a synthetic
policy that sends a chosen fraction of examples to each exit (mean relative cost
``--target_cost``), so the speed-up can be measured on any architecture. With a checkpoint the
real test images go through the trained network under the EENet threshold policy (or the
Bolukbasi policy fitted on validation at the same budget).

With ``stream`` among ``--modes`` a ``dataset`` section is added: whole passes over the test
split (unpadded, with a checkpoint) or over ``--dataset_batches`` synthetic batches (with
``--random_init``), the backbone batch by batch against the bucketed engine on each arriving
chunk and the streaming engine fed the chunks, for each of ``--arrival_sizes``
(:func:`jee.infer.benchmark.dataset_benchmark`). With ``--stream_plan auto`` the stream's
segments share queues where few examples leave between them, as planned from the exit
fractions on validation (the synthetic policy's own fractions with ``--random_init``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jee import data as data_lib
from jee.evaluation.exit_report import exit_data_by_split
from jee.evaluation.options import BenchmarkOptions
from jee.host_memory import host_memory
from jee.infer.benchmark import dataset_benchmark, masked_exit_fractions, run_benchmark
from jee.infer.synthetic import SyntheticPolicy, fractions_for_cost, synthetic_exits
from jee.models import split
from jee.outputs import is_writer, write_json
from jee.policy.bolukbasi import fit_bolukbasi
from jee.policy.budget import select_under_budget
from jee.policy.sweeps import DEFAULT_LAMBDAS, sweep_rows
from jee.policy.thresholds import eenet_policy
from jee.runs import (
    build_dataset,
    model_for_config,
    network_functions,
    on_one_device,
    restore_trained,
)


def _print(result: dict) -> None:
    print(f"{result['config']}: batch {result['batch_size']} on {result['backend']}, ideal "
          f"speed-up {result['ideal_speedup']:.2f}, exits "
          f"{np.round(result['exit_fractions'], 3).tolist()}")
    print(f"{'mode':>12} {'images/s':>10} {'ms/batch':>10} {'p90':>9} {'compile s':>9} "
          f"{'speedup':>8} {'effic.':>7} {'recompiles':>10}")
    for mode, s in result["modes"].items():
        print(f"{mode:>12} {s['images_per_s']:>10.1f} {s['ms_per_batch_median']:>10.1f} "
              f"{s['ms_per_batch_p90']:>9.1f} {s['compile_s']:>9.2f} {s['speedup']:>8.3f} "
              f"{s['efficiency']:>7.3f} {s['recompiles_after_warmup']:>10}")
    print(f"agreement with masked mode: {result['agreement']:.4f}")


def _print_dataset(d: dict) -> None:
    print(f"dataset: {d['num_examples']} images ({d['source']}), batch {d['batch_size']}; "
          f"ideal speed-up {d['ideal_speedup']:.2f} by MACs, {d['ideal_by_time']:.2f} by time "
          f"(segments {np.round(np.multiply(d['segment_seconds_at_batch'], 1e3), 2).tolist()} "
          f"ms reached by {np.round(d['reach_fractions'], 3).tolist()}, full "
          f"{d['full_seconds_at_batch'] * 1e3:.2f} ms)")
    plan = d["plan_fractions"]
    print(f"stream: segments per queue {d['stream_spans']}, "
          + ("one per segment" if plan is None else
             f"planned from exit fractions {np.round(plan, 3).tolist()}")
          + (f" and the segments and hops (ms) timed before the passes: "
             f"{np.round(np.multiply(d['plan_segment_seconds'], 1e3), 2).tolist()}, "
             f"{np.round(np.multiply(d['plan_hop_seconds'], 1e3), 2).tolist()}"
             if plan is not None else ""))
    print(f"{'mode':>12} {'arrival':>7} {'ms/pass':>9} {'images/s':>9} {'speedup':>8} "
          f"{'effic.':>7} {'by time':>7} {'agree':>6} {'recompiles':>10}")
    for mode, s in d["modes"].items():
        agree = f"{s['agreement']:.4f}" if "agreement" in s else "-"
        print(f"{mode:>12} {s['arrival_size']:>7} {s['seconds_per_pass'] * 1e3:>9.1f} "
              f"{s['images_per_s']:>9.1f} {s['speedup']:>8.3f} {s['efficiency']:>7.3f} "
              f"{s['efficiency_by_time']:>7.3f} {agree:>6} {s['recompiles_after_warmup']:>10}")


class _Setup(NamedTuple):
    """What the benchmark needs of a network: weights, one batch, a policy, the data set of
    the dataset section (``dataset()`` -> images, aux or None, a description), and the exit
    fractions its stream is planned from, never measured on that data set."""

    model: object
    params: object
    stats: object
    x: jax.Array
    aux: jax.Array | None
    policy: object
    policy_name: str
    padding: int
    dataset: Callable[[], tuple]
    # (segments, policy) -> the exit fractions the stream's spans are planned from.
    plan_fractions: Callable[[tuple, object], list[float]]


def _random_network(config, options: BenchmarkOptions) -> _Setup:
    model = model_for_config(config)
    _, params, stats = split(model)
    fractions = fractions_for_cost(model.costs().relative_costs(), options.target_cost)
    batch = options.batch_size
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, *model.input_shape)).astype(np.float32))
    aux = jnp.asarray(synthetic_exits(batch, fractions, seed=0))

    def dataset():
        n = options.dataset_batches * batch
        images = rng.normal(size=(n, *model.input_shape)).astype(np.float32)
        return (images, synthetic_exits(n, fractions, seed=1),
                f"synthetic ({options.dataset_batches} batches)")
    # The synthetic policy's exits are drawn from these fractions: the plan knows them.
    return _Setup(model, params, stats, x, aux, SyntheticPolicy(),
                  f"synthetic(target_cost={options.target_cost})", 0, dataset,
                  lambda segments, policy: list(fractions))


def _trained_network(config, options: BenchmarkOptions) -> _Setup:
    batch = options.batch_size
    ds = build_dataset(config)
    available = ds.num_examples("test")
    padding = max(0, batch - available)
    if padding and not options.allow_padding:
        raise ValueError(
            f"--batch_size {batch} is larger than the test split ({available} examples): "
            f"use --batch_size {available} or less, or --allow_padding to time {padding} "
            "padding images too (recorded in benchmark.json)")
    ds, model, state = restore_trained(config, options.workdir, options.step, ds=ds)
    params, stats = on_one_device(state)
    x = jnp.asarray(next(data_lib.eval_batches(ds, "test", batch_size=batch))["image"])
    if options.policy == "eenet":
        policy, name = eenet_policy(model.num_exits, config.threshold), \
            f"eenet(T={config.threshold})"
    else:
        policy, name = _bolukbasi_at_budget(config, options, ds, model, state)

    def dataset():
        # The real rows only: the padding of the last batch is no request to serve.
        rows = list(data_lib.real_images(ds, "test", batch_size=batch))
        return np.concatenate(rows), None, "test split"

    def plan_fractions(segments, policy):
        # Planned on validation, as the policies are chosen: the test split is only timed.
        return masked_exit_fractions(segments, policy,
                                     data_lib.real_images(ds, "val", batch_size=batch))
    return _Setup(model, params, stats, x, None, policy, name, padding, dataset, plan_fractions)


def run(config, options: BenchmarkOptions, out: str | None, config_name: str = "") -> dict:
    """Times every mode of ``options.modes``; writes ``out/benchmark.json`` if ``out``."""
    make = _random_network if options.random_init else _trained_network
    setup = make(config, options)
    model, policy = setup.model, setup.policy
    costs = model.costs().relative_costs()
    segments, full = network_functions(split(model)[0], setup.params, setup.stats,
                                       model.num_exits)
    ladder = options.make_ladder()
    result = run_benchmark(segments, full, policy, setup.x, setup.aux, costs=costs,
                           ladder=ladder, modes=options.modes,
                           repeats=options.repeats, eager_examples=options.eager_examples)
    record = {
        "config": config_name or config.model.arch,
        "arch": config.model.arch,
        "policy": setup.policy_name,
        "batch_size": options.batch_size,
        "padding_images": setup.padding,
        "ladder": list(ladder),
        "backend": jax.default_backend(),
        "cpu_async_dispatch": jax.config.read("jax_cpu_enable_async_dispatch"),
        "host_memory": host_memory(),
        "devices": jax.device_count(),
        "ideal_speedup": result.pop("ideal_speedup"),
        "agreement": result.pop("agreement"),
        "exit_agreement": result.pop("exit_agreement"),
        "exit_fractions": list(np.asarray(result.pop("exit_fractions")).tolist()),
        "relative_costs": list(costs),
        "modes": result,
    }
    if "stream" in options.modes:
        images, aux, source = setup.dataset()
        fractions = (setup.plan_fractions(segments, policy)
                     if options.stream_plan == "auto" else None)
        record["dataset"] = {"source": source, **dataset_benchmark(
            segments, full, policy, images, aux, costs=costs, batch_size=options.batch_size,
            arrival_sizes=options.arrivals(), ladder=ladder, repeats=options.repeats,
            plan_fractions=fractions)}
    if is_writer():
        _print(record)
        if "dataset" in record:
            _print_dataset(record["dataset"])
    if out:
        path = write_json(out, "benchmark.json", record)
        if is_writer():
            print(f"wrote {path}")
    return record


def _bolukbasi_at_budget(config, options: BenchmarkOptions, ds, model, state):
    """The Bolukbasi policy fitted on validation whose validation cost meets --target_cost."""
    _, data = exit_data_by_split(config, ds, model, state)
    policies, _ = fit_bolukbasi(data["val"], DEFAULT_LAMBDAS)
    rows = sweep_rows(policies, data["val"], data["test"])
    pick = select_under_budget({"family": "bolukbasi", **rows}, options.target_cost)
    if pick is None:
        raise ValueError(f"no Bolukbasi setting meets --target_cost={options.target_cost} on "
                         "validation; raise it")
    index = [r["params"] for r in rows["val"]].index(pick["params"])
    return policies[index], f"bolukbasi({pick['params']})"
