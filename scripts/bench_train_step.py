"""Train-step time of an EENet (all exits, masked batch mode) over its plain backbone's step.

    python scripts/bench_train_step.py [--configs cifar10_eenet20,cifar10_eenet110]
                                       [--batch 128] [--repeats 10]

Random data of the config's shape (no dataset needed). Both steps are jitted pure functions
with donated state, timed after a warm-up with ``block_until_ready``; the two are timed in
alternation so that machine noise hits both alike. Prints medians, spreads and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jee import config as config_lib  # noqa: E402
from jee import optim, sharding, train_lib  # noqa: E402
from jee.models import split  # noqa: E402
from jee.runs import model_for_config  # noqa: E402


def load_config(name):
    return config_lib.load_config(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", f"{name}.py"))


def plain_step_fn(graphdef, tx, mesh):
    """The backbone alone: no exit heads, no confidence, plain cross-entropy."""
    def step(state, batch):
        def loss_fn(params):
            model = nnx.merge(graphdef, params, state["batch_stats"], copy=True)
            logits = model.backbone_logits(batch["image"], True)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, nnx.state(model, nnx.BatchStat)

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {**state, "params": params, "batch_stats": stats, "opt_state": opt_state,
                "step": state["step"] + 1}, {"loss": loss}

    repl = sharding.replicated(mesh)
    return jax.jit(step, in_shardings=(repl, sharding.batch_sharding(mesh)),
                   out_shardings=(repl, repl), donate_argnums=0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--configs", default="cifar10_eenet20,cifar10_eenet110")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    mesh = sharding.make_mesh()
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), batch {args.batch}")
    for name in args.configs.split(","):
        config = load_config(name)
        model = model_for_config(config)
        shape, classes = model.input_shape, model.num_classes
        costs = model.costs().relative_costs()
        graphdef, params, stats = split(model)
        tx, _ = optim.make_optimizer(config.optimizer, 100, 10)
        rng = np.random.default_rng(0)
        batch = sharding.put_batch(mesh, {
            "image": rng.normal(size=(args.batch, *shape)).astype(np.float32),
            "label": rng.integers(0, classes, args.batch).astype(np.int32)})
        ee_step = train_lib.make_train_step(graphdef, tx, config.loss, costs, mesh)
        pl_step = plain_step_fn(graphdef, tx, mesh)
        states = {}
        compile_s = {}
        for key, fn in (("eenet", ee_step), ("plain", pl_step)):
            # Copies: each step donates its state, which must not alias the other's buffers.
            fresh = jax.tree.map(jnp.copy, (params, stats))
            state = sharding.put_replicated(mesh, train_lib.init_state(*fresh, tx))
            t = time.perf_counter()
            state, m = fn(state, batch)
            jax.block_until_ready(m)
            compile_s[key] = time.perf_counter() - t
            state, m = fn(state, batch)  # second warm-up call
            jax.block_until_ready(m)
            states[key] = state
        times = {"eenet": [], "plain": []}
        for _ in range(args.repeats):
            for key, fn in (("eenet", ee_step), ("plain", pl_step)):
                t = time.perf_counter()
                states[key], m = fn(states[key], batch)
                jax.block_until_ready(m)
                times[key].append(time.perf_counter() - t)
        med = {k: float(np.median(v)) for k, v in times.items()}
        spread = {k: (float(np.min(v)), float(np.max(v))) for k, v in times.items()}
        print(f"{name}: {model.num_exits - 1} early exits after blocks {list(model.exit_blocks)}")
        for k in ("plain", "eenet"):
            print(f"  {k:6s} step median {med[k] * 1e3:8.1f} ms (min {spread[k][0] * 1e3:.1f}, "
                  f"max {spread[k][1] * 1e3:.1f}), compile+first {compile_s[k]:.1f} s, "
                  f"{args.batch / med[k]:.0f} images/s")
        print(f"  ratio eenet / plain = {med['eenet'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()
