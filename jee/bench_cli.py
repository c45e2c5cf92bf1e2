"""``evaluate.py --benchmark``: wall-clock time of every inference mode on a real network.

With ``--random_init`` no checkpoint is needed: random weights, random images and a synthetic
policy that sends a chosen fraction of examples to each exit (mean relative cost
``--target_cost``), so the speed-up can be measured on any architecture. With a checkpoint the
real test images go through the trained network under the EENet threshold policy (or the
Bolukbasi policy fitted on validation at the same budget).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.benchmark import run_benchmark
from jee.infer.ladder import make_ladder
from jee.infer.synthetic import SyntheticPolicy, fractions_for_cost, synthetic_exits
from jee.models import apply_backbone, apply_segment, split


class OnlinePolicy:
    """Adapts a ``jee.policy`` policy (which reads sigmoid confidences) to the engines."""

    def __init__(self, policy):
        self.policy = policy

    def decide(self, k, logits, conf, aux):
        return self.policy.decide(k, logits, conf)


def network_functions(graphdef, params, batch_stats, num_exits: int):
    """Segments (confidence as a probability) and the plain backbone, closing over weights."""
    def make(k):
        def segment(h):
            h_next, logits, conf_logit = apply_segment(graphdef, params, batch_stats, k, h)
            return h_next, logits, jax.nn.sigmoid(conf_logit)
        return segment

    def full(x):
        return apply_backbone(graphdef, params, batch_stats, x)

    return [make(k) for k in range(num_exits)], full


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


def run(config, flags) -> dict:
    from jee.evaluation import _eval_dir, model_for_config

    batch = flags.batch_size
    padding = 0
    if flags.random_init:
        model = model_for_config(config)
        graphdef, params, stats = split(model)
        costs = model.costs().relative_costs()
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(batch, *model.input_shape)).astype(np.float32))
        fractions = fractions_for_cost(costs, flags.target_cost)
        aux = jnp.asarray(synthetic_exits(batch, fractions, seed=0))
        policy, policy_name = SyntheticPolicy(), f"synthetic(target_cost={flags.target_cost})"
    else:
        from jee import data as data_lib
        from jee.policy.thresholds import eenet_policy
        from jee.train_lib import restore_trained

        ds = data_lib.build(config.dataset)
        available = ds.num_examples("test")
        padding = max(0, batch - available)
        if padding and not flags.allow_padding:
            raise ValueError(
                f"--batch_size {batch} is larger than the test split ({available} examples): "
                f"use --batch_size {available} or less, or --allow_padding to time {padding} "
                "padding images too (recorded in benchmark.json)")
        ds, model, state = restore_trained(config, flags.workdir, flags.step, ds=ds)
        graphdef = split(model)[0]
        # The engines run on one device: take the weights off the training mesh.
        params, stats = jax.device_put((state["params"], state["batch_stats"]),
                                       jax.devices()[0])
        costs = model.costs().relative_costs()
        images = next(data_lib.eval_batches(ds, "test", batch_size=batch))["image"]
        x = jnp.asarray(images)
        aux = None
        if flags.policy == "eenet":
            policy = OnlinePolicy(eenet_policy(model.num_exits, config.threshold))
            policy_name = f"eenet(T={config.threshold})"
        elif flags.policy == "bolukbasi":
            policy, policy_name = _bolukbasi_at_budget(config, flags, ds, model, state)
        else:
            raise ValueError(f"--policy must be eenet or bolukbasi, got {flags.policy!r}")
    segments, full = network_functions(graphdef, params, stats, model.num_exits)
    growth = 2.0 if flags.ladder == "pow2" else flags.ladder_growth
    ladder = make_ladder(batch, kind=flags.ladder, growth=growth)
    result = run_benchmark(segments, full, policy, x, aux, costs=costs,
                           ladder=ladder, modes=tuple(flags.modes),
                           repeats=flags.repeats, eager_examples=flags.eager_examples)
    out = {
        "config": os.path.basename(getattr(flags, "config_path", "") or config.model.arch),
        "arch": config.model.arch,
        "policy": policy_name,
        "batch_size": batch,
        "padding_images": padding,
        "ladder": list(ladder),
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "ideal_speedup": result.pop("ideal_speedup"),
        "agreement": result.pop("agreement"),
        "exit_fractions": list(np.asarray(result.pop("exit_fractions")).tolist()),
        "relative_costs": list(costs),
        "modes": result,
    }
    _print(out)
    if flags.workdir and jax.process_index() == 0:
        path = os.path.join(_eval_dir(flags.workdir), "benchmark.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {path}")
    return out


def _bolukbasi_at_budget(config, flags, ds, model, state):
    """The Bolukbasi policy fitted on validation whose validation cost meets --target_cost."""
    from jee.policy.bolukbasi import fit_bolukbasi
    from jee.policy.budget import select_under_budget
    from jee.policy.sweeps import DEFAULT_LAMBDAS, sweep_rows
    from jee.report_cli import exit_data_by_split

    _, data = exit_data_by_split(config, ds, model, state)
    policies, _ = fit_bolukbasi(data["val"], DEFAULT_LAMBDAS)
    rows = sweep_rows(policies, data["val"], data["test"])
    pick = select_under_budget({"family": "bolukbasi", **rows}, flags.target_cost)
    if pick is None:
        raise ValueError(f"no Bolukbasi setting meets --target_cost={flags.target_cost} on "
                         "validation; raise it")
    index = [r["params"] for r in rows["val"]].index(pick["params"])
    return OnlinePolicy(policies[index]), f"bolukbasi({pick['params']})"
