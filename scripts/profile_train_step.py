"""Where a training step's time goes: jee's step taken apart on the backend it runs on.

    python scripts/profile_train_step.py [--config configs/cifar10_eenet20.py] [--batch 128]
        [--repeats 10] [--pipeline_config configs/fashion_mnist_eenet20.py] [--torch]
        [--out PATH]

For the config's network (random data of its shape, no dataset needed), each timed as a
median of ``--repeats`` calls after a warm-up, all in one run:

- ``step``: jee's jitted train step (``train_lib.make_train_step``: EENet loss over every exit,
  optimizer update, metrics), on a device-resident batch; ``plain_step`` the same for the
  backbone alone (plain cross-entropy);
- ``forward`` (the training-mode forward pass and loss) and ``forward_backward`` (its value
  and gradient, no optimizer): the step minus the latter is the optimizer and bookkeeping,
  the latter minus the former the backward pass;
- ``convolutions``: every ``conv_general_dilated`` of the forward-backward program (forward
  convolutions and the two gradients of each), taken from its jaxpr and timed alone, one
  compiled call per distinct shape (less the time of a trivial call, its dispatch), times
  its count: the part of the step that is the backend's convolution kernels, which jee does
  not choose;
- the program's own make-up: how many dtype conversions and transposes the optimized HLO
  holds (a layout or dtype mismatch of jee's would show here);
- with ``--pipeline_config``: that config's network trained as ``train.py`` feeds it (the
  real input pipeline, ``next`` + ``put_batch`` per step) against the same steps on one
  resident batch;
- with ``--torch`` (and PyTorch installed): the same ResNet backbone written in PyTorch,
  trained with SGD on the same shapes and threads, for a reference of what another CPU
  backend gets.

Prints a table; ``--out`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jee import data as data_lib  # noqa: E402
from jee import losses, optim, sharding, train_lib  # noqa: E402
from jee.config import load_config  # noqa: E402
from jee.models import (
    forward,  # noqa: E402
    split,  # noqa: E402
)
from jee.runs import model_for_config  # noqa: E402
from scripts.bench_train_step import plain_step_fn  # noqa: E402


def median_s(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` (which blocks until its result is ready)."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(v, "eqns"):
                yield v
            elif hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
                yield v.jaxpr


def conv_eqns(jaxpr):
    """Every convolution of a jaxpr, nested programs (jit, custom_vjp, remat) included."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            yield eqn
        for sub in _subjaxprs(eqn):
            yield from conv_eqns(sub)


def time_convolutions(jaxpr, repeats: int) -> dict:
    """Total time of the jaxpr's convolutions, each distinct one compiled and timed alone."""
    groups: dict[str, list] = {}
    for eqn in conv_eqns(jaxpr):
        key = repr(([(v.aval.shape, str(v.aval.dtype)) for v in eqn.invars],
                    sorted((k, repr(p)) for k, p in eqn.params.items())))
        groups.setdefault(key, []).append(eqn)
    total, rows = 0.0, []
    rng = np.random.default_rng(0)
    for eqns in groups.values():
        eqn = eqns[0]
        args = [jnp.asarray(rng.normal(size=v.aval.shape), v.aval.dtype) for v in eqn.invars]
        prim, params = eqn.primitive, eqn.params
        fn = jax.jit(lambda *a, prim=prim, params=params: prim.bind(*a, **params))
        # A call of its own costs a dispatch the fused program does not pay: the time of a
        # trivial call on the same arguments is taken off.
        idle = jax.jit(lambda *a: a[0].reshape(-1)[0] + a[1].reshape(-1)[0])
        seconds = median_s(lambda fn=fn, args=args: fn(*args).block_until_ready(), repeats)
        dispatch = median_s(lambda idle=idle, args=args: idle(*args).block_until_ready(),
                            repeats)
        seconds = max(seconds - dispatch, 0.0)
        total += seconds * len(eqns)
        rows.append({"lhs": list(eqn.invars[0].aval.shape),
                     "rhs": list(eqn.invars[1].aval.shape), "count": len(eqns),
                     "ms_each": 1e3 * seconds, "dispatch_ms": 1e3 * dispatch})
    return {"seconds": total, "count": sum(r["count"] for r in rows), "distinct": rows}


def hlo_makeup(compiled_text: str) -> dict:
    """Op counts of an optimized HLO module that would reveal layout or dtype churn."""
    ops = re.findall(r"=\s*[\w\[\]{},. ]*?\s(\w[\w-]*)\(", compiled_text)
    counts = {name: ops.count(name) for name in ("convolution", "convert", "transpose",
                                                  "copy", "fusion")}
    counts["bf16_or_f64"] = len(re.findall(r"\b(bf16|f64)\[", compiled_text))
    return counts


def network_parts(config, batch: int, repeats: int) -> dict:
    mesh = sharding.make_mesh()
    model = model_for_config(config)
    graphdef, params, stats = split(model)
    costs = jnp.asarray(model.costs().relative_costs(), jnp.float32)
    tx, _ = optim.make_optimizer(config.optimizer, 100, 10)
    rng = np.random.default_rng(0)
    host = {"image": rng.normal(size=(batch, *model.input_shape)).astype(np.float32),
            "label": rng.integers(0, model.num_classes, batch).astype(np.int32)}
    data = sharding.put_batch(mesh, host)
    out = {"arch": config.model.arch, "width": config.model.width,
           "input_shape": list(model.input_shape), "exits": int(model.num_exits), "batch": batch}

    def loss_fn(p, image, label):
        logits, conf, _ = forward(graphdef, p, stats, image, True,
                                            float(config.loss.exit_grad_scale))
        return losses.eenet_loss(config.loss.kind, logits, conf, label, costs,
                                 lam=float(config.loss.lam))[0]

    fwd = jax.jit(loss_fn)
    fwd_bwd = jax.jit(jax.value_and_grad(loss_fn))
    out["forward_s"] = median_s(
        lambda: fwd(params, data["image"], data["label"]).block_until_ready(), repeats)
    out["forward_backward_s"] = median_s(
        lambda: jax.block_until_ready(fwd_bwd(params, data["image"], data["label"])), repeats)
    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss_fn))(params, data["image"], data["label"])
    out["convolutions"] = time_convolutions(jaxpr.jaxpr, repeats)
    out["hlo"] = hlo_makeup(fwd_bwd.lower(params, data["image"], data["label"]).compile()
                            .as_text())

    for key, make in (("step_s", lambda: train_lib.make_train_step(
            graphdef, tx, config.loss, costs, mesh)),
                      ("plain_step_s", lambda: plain_step_fn(graphdef, tx, mesh))):
        step = make()
        holder = {"state": sharding.put_replicated(mesh, train_lib.init_state(
            *jax.tree.map(jnp.copy, (params, stats)), tx))}

        def call(step=step, holder=holder):
            holder["state"], m = step(holder["state"], data)
            jax.block_until_ready(m)
        out[key] = median_s(call, repeats)
    return out


def pipeline_parts(config, steps: int) -> dict:
    """``steps`` steps fed as train.py feeds them against the same on one resident batch."""
    mesh = sharding.make_mesh()
    ds = data_lib.build(config.dataset)
    model = model_for_config(config)
    graphdef, params, stats = split(model)
    costs = model.costs().relative_costs()
    tx, _ = optim.make_optimizer(config.optimizer, 100, 10)
    step = train_lib.make_train_step(graphdef, tx, config.loss, costs, mesh)
    state = sharding.put_replicated(mesh, train_lib.init_state(params, stats, tx))
    batches = data_lib.train_batches(ds, config.dataset, batch_size=config.batch_size, seed=0)
    resident = sharding.put_batch(mesh, next(batches))
    state, m = step(state, resident)
    jax.block_until_ready(m)

    def run(feed):
        nonlocal state
        t = time.perf_counter()
        for _ in range(steps):
            state, m = step(state, feed())
        jax.block_until_ready((state, m))
        return time.perf_counter() - t

    run(lambda: resident)
    fed = [run(lambda: sharding.put_batch(mesh, next(batches))) for _ in range(3)]
    bare = [run(lambda: resident) for _ in range(3)]
    close = getattr(batches, "close", None)
    if close:
        close()
    return {"config": config.dataset.name, "arch": config.model.arch,
            "batch": config.batch_size, "steps": steps,
            "fed_s_per_step": float(np.median(fed)) / steps,
            "resident_s_per_step": float(np.median(bare)) / steps}


def torch_resnet_step(config, batch: int, repeats: int) -> dict | None:
    """The CIFAR ResNet backbone (3 stages of n basic blocks, widths w/2w/4w) in PyTorch,
    one SGD step with momentum on random data of the same shape, ``torch`` threads = cores."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    match = re.fullmatch(r"resnet(\d+)", config.model.arch)
    if not match or (int(match.group(1)) - 2) % 6:
        return None  # only the CIFAR ResNets are written here
    # jee's CIFAR ResNet: width 0 is the architecture's own 16.
    n, w = (int(match.group(1)) - 2) // 6, int(config.model.width) or 16
    h, wd, c = model_for_config(config).input_shape

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                        nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(y)) + self.short(x))

    layers = [nn.Conv2d(c, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
    cin = w
    for stage, cout in enumerate((w, 2 * w, 4 * w)):
        for b in range(n):
            layers.append(Block(cin, cout, 2 if stage and b == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    net = nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, c, h, wd)
    y = torch.randint(0, 10, (batch,))
    torch.set_num_threads(os.cpu_count() or 1)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "plain_step_s": median_s(step, repeats)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/cifar10_eenet20.py")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--pipeline_config", default="")
    p.add_argument("--pipeline_steps", type=int, default=50)
    p.add_argument("--torch", action="store_true")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    config = load_config(a.config)
    result = {"config": a.config, "backend": jax.default_backend(),
              "devices": jax.device_count(), "cpu_count": os.cpu_count(),
              "jax": jax.__version__,
              "network": network_parts(config, a.batch, a.repeats)}
    if a.pipeline_config:
        result["pipeline"] = pipeline_parts(load_config(a.pipeline_config), a.pipeline_steps)
    if a.torch:
        result["torch"] = torch_resnet_step(config, a.batch, a.repeats)
    report(result)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {a.out}")
    return result


def report(r: dict) -> None:
    n = r["network"]
    b = n["batch"]
    conv = n["convolutions"]["seconds"]
    print(f"{r['config']} on {r['backend']} ({r['cpu_count']} cores), {n['arch']} width "
          f"{n['width']}, {n['exits']} exits, batch {b}")
    rows = [("jee step (EENet, all exits)", n["step_s"]),
            ("plain backbone step", n["plain_step_s"]),
            ("forward + loss", n["forward_s"]),
            ("forward + backward", n["forward_backward_s"]),
            (f"  of which {n['convolutions']['count']} convolutions", conv),
            ("  the rest of forward + backward", n["forward_backward_s"] - conv),
            ("optimizer + metrics (step - fwd/bwd)", n["step_s"] - n["forward_backward_s"])]
    torch = r.get("torch")
    if torch:
        rows.append((f"PyTorch {torch['version']} plain step ({torch['threads']} threads)",
                     torch["plain_step_s"]))
    for name, s in rows:
        print(f"  {name:<44} {1e3 * s:8.1f} ms  {b / s if s > 0 else 0:8.0f} images/s  "
              f"{100 * s / n['step_s']:5.1f}% of the step")
    print(f"  optimized HLO of forward + backward: {n['hlo']}")
    pipe = r.get("pipeline")
    if pipe:
        print(f"  {pipe['config']} {pipe['arch']} batch {pipe['batch']}: fed by the input "
              f"pipeline {1e3 * pipe['fed_s_per_step']:.1f} ms/step, resident batch "
              f"{1e3 * pipe['resident_s_per_step']:.1f} ms/step "
              f"({pipe['fed_s_per_step'] / pipe['resident_s_per_step']:.2f}x)")


if __name__ == "__main__":
    main()
