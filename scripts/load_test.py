"""Load test of the serving modes, in one process: client threads, no network.

    python scripts/load_test.py --config configs/cifar10_eenet20.py --random_init \
        --target_cost 0.5 [--modes stream,bucketed,full] [--batch_size 64] [--max_wait_ms 20] \
        [--clients 16] [--requests 20] [--request_size 8] [--rate_fraction 0.5] [--out PATH]
    python scripts/load_test.py --config configs/digits.py --workdir runs/digits  # trained
    python scripts/load_test.py --config configs/digits.py:smoke --random_init --requests 4

Modes: ``stream`` is :class:`jee.infer.server.Server` over a ``StreamEngine`` (every segment
on full batches of ``--batch_size`` rows across requests, partial batches forced after
``--max_wait_ms``; with ``--stream_plan auto`` segments share a queue where few examples leave
between them, planned as ``evaluate.py --benchmark`` plans them); ``bucketed`` and ``full``
run each request on its own (:class:`~jee.infer.server.PerRequestServer`) through the
``BucketedEngine`` or the plain network. With ``--random_init`` the weights and images are
random and a synthetic policy sends examples to the exits at mean relative cost
``--target_cost``; with ``--workdir`` the test images go through the trained network under
the EENet threshold policy.

Two phases per mode, each bounded by a request count and ``--phase_s``:

- closed loop: ``--clients`` threads each send ``--requests`` requests of ``--request_size``
  images, one at a time, waiting for each answer: throughput (images/s), p50/p99 latency;
- open loop: one thread sends requests on a fixed schedule at ``--rate_fraction`` of the
  stream mode's closed-loop throughput (the same offered load for every mode), latency counted
  from each request's scheduled time: p50/p99, and whether p99 <= max_wait_ms + 3 x (the
  slowest segment's time at the batch size), the stream server's latency bound.

The stream's ceiling (``stream_ceiling_images_per_s``): the batch size over its steps' own
networks' times at it (each span of segments sharing a queue run as one program, alone:
``span_ms_at_batch``), each weighted by the fraction of examples reaching it, measured before
the phases; the table gives it as a multiple of the bucketed server's throughput too.

Every answer is checked against the masked mode (exit and argmax); compilations during the
phases are counted (there should be none after the warm-up). Once every server is warm the
objects alive are frozen out of the garbage collector (``gc.freeze()``, as a long-running
server would; ``--no-gc_freeze`` leaves them): JAX, the model and the data leave about 250,000
of them, and a full collection over them took up to 100 ms on the 2-core CPU, enough to put
one open-loop phase's p99 at 117 ms. Prints a table; ``--out`` writes the results as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jee import data as data_lib  # noqa: E402
from jee.config import load_config  # noqa: E402
from jee.host_memory import host_memory, keep_host_memory  # noqa: E402
from jee.infer.benchmark import masked_exit_fractions  # noqa: E402
from jee.infer.bucketed import BucketedEngine  # noqa: E402
from jee.infer.compiles import CompileCounter  # noqa: E402
from jee.infer.masked import MaskedEngine  # noqa: E402
from jee.infer.server import PerRequestServer, Server, full_network  # noqa: E402
from jee.infer.stream import StreamEngine  # noqa: E402
from jee.infer.stream_plan import check_spans, plan_spans, span_starts  # noqa: E402
from jee.infer.synthetic import SyntheticPolicy, fractions_for_cost, synthetic_exits  # noqa: E402
from jee.infer.timing import MIN_SEGMENT_ROUNDS, segment_times, time_rounds  # noqa: E402
from jee.models import split  # noqa: E402
from jee.policy.thresholds import eenet_policy  # noqa: E402
from jee.runs import model_for_config, network_functions, restore_trained  # noqa: E402

MODES = ("stream", "bucketed", "full")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="path/to/config.py[:variant]")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--random_init", action="store_true")
    source.add_argument("--workdir", help="a trained run (EENet threshold policy)")
    p.add_argument("--step", default="best", help="checkpoint: best, latest or a step")
    p.add_argument("--target_cost", type=float, default=0.5)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--batch_size", type=int, default=64, help="the stream engine's batch")
    p.add_argument("--max_wait_ms", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=20, help="per client, closed loop")
    p.add_argument("--request_size", type=int, default=8, help="images per request (1, 8, 32)")
    p.add_argument("--rate_fraction", type=float, default=0.5)
    p.add_argument("--open_requests", type=int, default=0,
                   help="open-loop requests (default clients x requests)")
    p.add_argument("--phase_s", type=float, default=60.0, help="time limit of each phase")
    p.add_argument("--pool", type=int, default=1024, help="distinct images to draw from")
    p.add_argument("--gc_freeze", action=argparse.BooleanOptionalAction, default=True,
                   help="freeze the warmed-up heap out of the garbage collector")
    p.add_argument("--stream_plan", choices=("auto", "none"), default="auto",
                   help="auto: segments share a queue where few examples leave between "
                   "them, planned from validation's exit fractions; none: one per segment")
    p.add_argument("--keep_host_memory", action=argparse.BooleanOptionalAction, default=True,
                   help="keep freed host memory in the process (jee/host_memory.py)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    if not set(args.modes) <= set(MODES) or not args.modes:
        p.error(f"--modes must be a subset of {MODES}")
    if args.request_size < 1 or args.pool < args.request_size:
        p.error("need 1 <= --request_size <= --pool")
    return args


def build_network(config, args):
    """(segments, full, policy, images [P, ...], aux [P] or None, policy name, the exit
    fractions the stream is planned from: validation's, or the synthetic policy's own)."""
    if args.random_init:
        model = model_for_config(config)
        graphdef, params, stats = split(model)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(args.pool, *model.input_shape)).astype(np.float32)
        fractions = fractions_for_cost(model.costs().relative_costs(), args.target_cost)
        aux = synthetic_exits(args.pool, fractions, seed=0)
        policy, name = SyntheticPolicy(), f"synthetic(target_cost={args.target_cost})"

        def plan(segments):
            return list(fractions)  # the synthetic policy's exits are drawn from these
    else:
        step = int(args.step) if args.step.isdigit() else args.step
        ds, model, state = restore_trained(config, args.workdir, step)
        graphdef = split(model)[0]
        # The engines run on one device: take the weights off the training mesh.
        params, stats = jax.device_put((state["params"], state["batch_stats"]),
                                       jax.devices()[0])
        images = []
        for rows in data_lib.real_images(ds, "test", batch_size=256):
            images.append(rows)
            if sum(len(i) for i in images) >= args.pool:
                break
        x, aux = np.concatenate(images)[:args.pool], None
        policy = eenet_policy(model.num_exits, config.threshold)
        name = f"eenet(T={config.threshold})"

        def plan(segments):
            return masked_exit_fractions(segments, policy,
                                         data_lib.real_images(ds, "val", batch_size=256))
    segments, full = network_functions(graphdef, params, stats, model.num_exits)
    # Whole requests only: the pool is a multiple of the request size.
    keep = len(x) - len(x) % args.request_size
    return (segments, full, policy, x[:keep], None if aux is None else aux[:keep], name,
            plan(segments) if args.stream_plan == "auto" else None)


class Requests:
    """Request j uses the pool's rows [(j * size) mod P, ...); checks answers against the
    masked mode; records latencies. Thread-safe."""

    def __init__(self, x, aux, size, reference):
        self.x, self.aux, self.size, self.reference = x, aux, size, reference
        self._lock, self._next = threading.Lock(), 0
        self.latency, self.agree, self.images, self.errors = [], 0, 0, []
        self.last_done = 0.0
        self.recorded = 0  # answers done() has seen, failed ones included

    def take(self):
        with self._lock:
            j, self._next = self._next, self._next + 1
        rows = slice(j * self.size % len(self.x), j * self.size % len(self.x) + self.size)
        return rows, (self.x[rows],) if self.aux is None else (self.x[rows], self.aux[rows])

    def done(self, rows, since, future) -> None:
        now = time.perf_counter()
        try:
            exits, logits = future.result(0)[:2]
            ok = int(np.sum((exits == self.reference[0][rows])
                            & (logits.argmax(-1) == self.reference[1][rows].argmax(-1))))
        except Exception as error:  # reported, not raised, from a callback
            with self._lock:
                self.errors.append(repr(error))
                self.recorded += 1
            return
        with self._lock:
            self.recorded += 1
            self.latency.append(now - since)
            self.agree, self.images = self.agree + ok, self.images + self.size
            self.last_done = max(self.last_done, now)

    def summary(self, start: float) -> dict:
        lat = 1e3 * np.asarray(self.latency) if self.latency else np.full(1, np.nan)
        wall = self.last_done - start
        return {"requests": len(self.latency), "images": self.images,
                "images_per_s": self.images / wall if wall > 0 else float("nan"),
                "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "agreement": self.agree / self.images if self.images else float("nan"),
                "errors": self.errors[:5], "num_errors": len(self.errors)}


def closed_loop(server, net, args, reference) -> dict:
    x, aux = net[3], net[4]
    log = Requests(x, aux, args.request_size, reference)
    start = time.perf_counter()
    stop_at = start + args.phase_s

    def client():
        for _ in range(args.requests):
            if time.perf_counter() > stop_at:
                return
            rows, inputs = log.take()
            since = time.perf_counter()
            future = server.submit(*inputs)
            try:
                future.result(timeout=max(1.0, stop_at - time.perf_counter()) + 30)
            except Exception:  # recorded by done()
                pass
            log.done(rows, since, future)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return log.summary(start)


def open_loop(server, net, args, reference, images_per_s: float) -> dict:
    x, aux = net[3], net[4]
    log = Requests(x, aux, args.request_size, reference)
    interval = args.request_size / images_per_s
    count = args.open_requests or args.clients * args.requests
    futures = []
    start = time.perf_counter() + 0.01

    def sender():
        for i in range(count):
            due = start + i * interval
            if due > start + args.phase_s:
                return
            time.sleep(max(0.0, due - time.perf_counter()))
            rows, inputs = log.take()
            future = server.submit(*inputs)
            # Latency from the scheduled time: a late sender does not hide a slow server.
            future.add_done_callback(lambda f, rows=rows, due=due: log.done(rows, due, f))
            futures.append(future)

    thread = threading.Thread(target=sender)
    thread.start()
    thread.join()
    waited_until = time.perf_counter() + 30 + args.phase_s
    for future in futures:
        try:
            future.result(timeout=max(0.0, waited_until - time.perf_counter()))
        except Exception:  # recorded by done(), or unanswered below
            pass
    # A future wakes its waiters before it runs its callbacks: wait for done() to see them.
    answered = sum(f.done() for f in futures)
    while log.recorded < answered and time.perf_counter() < waited_until + 5:
        time.sleep(0.001)
    out = log.summary(start)
    out.update(offered_images_per_s=images_per_s, sent=len(futures),
               unanswered=sum(not f.done() for f in futures))
    return out


def make_servers(mode, net, args, spans):
    """A function making a fresh server of ``mode`` over one engine, warmed up."""
    segments, full, policy, x, aux = net[:5]
    size = args.request_size
    chunks = [x[i:i + size] if aux is None else (x[i:i + size], aux[i:i + size])
              for i in range(0, len(x), size)]
    if mode == "stream":
        engine = StreamEngine(segments, policy, batch_size=args.batch_size, spans=spans)
        engine.run(chunks)  # compiles the feed and every segment that rows reach
        return lambda: Server(engine, max_wait_ms=args.max_wait_ms)
    engine = BucketedEngine(segments, policy) if mode == "bucketed" else full_network(
        full, len(segments))
    with PerRequestServer(engine) as server:
        server.warm_up(chunks[:1])  # one program per request size
    return lambda: PerRequestServer(engine)


def main(argv=None) -> dict:
    args = parse_args(argv)
    memory = keep_host_memory() if args.keep_host_memory else host_memory()
    config = load_config(args.config)
    net = build_network(config, args)
    segments, full, policy, x, aux, policy_name, plan = net
    reference = jax.device_get(MaskedEngine(segments, policy)(x, aux))
    batch_x = jax.device_put(np.resize(x, (args.batch_size, *x.shape[1:])))
    _, seg_s, hop_s = segment_times(segments, full, batch_x, 5)
    seg_ms = [1e3 * t for t in seg_s]
    bound_ms = args.max_wait_ms + 3 * max(seg_ms)
    exit_fractions = np.bincount(reference[0], minlength=len(segments)) / len(reference[0])
    spans = None if plan is None else plan_spans(plan, seg_s, hop_s)
    spans = check_spans(spans, len(segments))
    span_s = span_seconds(segments, spans, batch_x, 5)
    ceiling = stream_ceiling(args.batch_size, exit_fractions, spans, span_s)
    modes = sorted(args.modes, key=MODES.index)  # stream first: it sets the open-loop rate
    factories = {mode: make_servers(mode, net, args, spans) for mode in modes}
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    results = {mode: {} for mode in modes}
    for phase in ("closed", "open"):
        if phase == "open":
            capacity = results[modes[0]]["closed"]["images_per_s"]
            rate = args.rate_fraction * capacity
        for mode in modes:
            server = factories[mode]()
            before = (server.engine.batches_run.copy(), server.engine.partial_batches.copy()
                      ) if mode == "stream" else None
            with CompileCounter() as compiles, server:
                if phase == "closed":
                    out = closed_loop(server, net, args, reference)
                else:
                    out = open_loop(server, net, args, reference, rate)
            out["compiles"] = compiles.count
            if mode == "full":
                out["agreement"] = None  # no early exits: it differs from the masked mode
            out["server"] = dict(server.stats)
            if before is not None:
                out["batches_run"] = (server.engine.batches_run - before[0]).tolist()
                out["partial_batches"] = (server.engine.partial_batches - before[1]).tolist()
                out["partial_sizes"] = list(server.engine.sizes)
                out["spans"] = list(server.engine.spans)
            if phase == "open":
                out["p99_within_bound"] = bool(out["p99_ms"] <= bound_ms)
            results[mode][phase] = out
    report = {
        "config": args.config, "policy": policy_name, "backend": jax.default_backend(),
        "host_memory": memory,
        "device": str(jax.devices()[0]), "batch_size": args.batch_size,
        "max_wait_ms": args.max_wait_ms, "clients": args.clients, "requests": args.requests,
        "gc_frozen_objects": gc.get_freeze_count(),
        "request_size": args.request_size, "rate_fraction": args.rate_fraction,
        "exit_fractions": exit_fractions.tolist(),
        "segment_ms_at_batch": seg_ms, "hop_ms_at_batch": [1e3 * t for t in hop_s],
        "span_ms_at_batch": [1e3 * t for t in span_s], "stream_ceiling_images_per_s": ceiling,
        "plan_fractions": plan, "latency_bound_ms": bound_ms, "modes": results,
    }
    print_table(report)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.out}")
    return report


def span_seconds(segments, spans, x, repeats: int) -> list[float]:
    """The median time of each span's segments run as one program on ``x`` (a batch), as a
    stream's step runs them, fed the features the segments before compute from ``x``."""
    programs, inputs, h = [], [], x
    for start in span_starts(spans):
        chain = segments[start:start + spans[len(programs)]]

        def run(h, chain=chain):
            outs = []
            for segment in chain:
                out = segment(h)
                outs.append(out)
                h = out[0]
            return outs

        programs.append(jax.jit(run))
        inputs.append(h)
        h = jax.block_until_ready(programs[-1](h))[-1][0]
    times, _ = time_rounds(list(zip(programs, [(h,) for h in inputs], strict=True)),
                           max(MIN_SEGMENT_ROUNDS, repeats))
    return np.median(times, axis=0).tolist()


def stream_ceiling(batch: int, exit_fractions, spans, span_seconds) -> float:
    """The stream server's throughput if it cost nothing but its steps' networks: ``batch``
    rows per sum over queues of (fraction of rows reaching the queue's first segment) x (its
    span's time at ``batch`` rows), with no hops, host work, waiting or partial batches. A
    server with these spans answers no faster, up to the machine's drift between the spans'
    timing and the phases: a target above it is out of reach there."""
    reach = 1.0 - np.concatenate([[0.0], np.cumsum(exit_fractions)[:-1]])
    firsts = list(span_starts(spans))
    return float(batch / np.dot(np.clip(reach[firsts], 0.0, 1.0), span_seconds))


def print_table(r: dict) -> None:
    print(f"{r['config']} on {r['backend']}: {r['policy']}, exits "
          f"{np.round(r['exit_fractions'], 3).tolist()}, batch {r['batch_size']}, "
          f"max_wait {r['max_wait_ms']} ms, {r['clients']} clients x {r['requests']} requests "
          f"of {r['request_size']} images")
    print(f"segment ms at batch {r['batch_size']}: "
          f"{[round(t, 2) for t in r['segment_ms_at_batch']]}, hops "
          f"{[round(t, 2) for t in r['hop_ms_at_batch']]}; latency bound "
          f"{r['latency_bound_ms']:.1f} ms")
    top = r["stream_ceiling_images_per_s"]
    spans_ms = [round(t, 2) for t in r["span_ms_at_batch"]]
    ceiling = f"stream ceiling (its spans alone: {spans_ms} ms): {top:.1f} img/s"
    if "bucketed" in r["modes"]:
        bucketed = r["modes"]["bucketed"]["closed"]["images_per_s"]
        ceiling += f", {top / bucketed:.2f}x the bucketed server's closed-loop throughput"
    print(ceiling)
    if "stream" in r["modes"]:
        print(f"stream: segments per queue {r['modes']['stream']['closed']['spans']}"
              + ("" if r["plan_fractions"] is None else ", planned from exit fractions "
                 f"{np.round(r['plan_fractions'], 3).tolist()}"))
    print(f"{'':>9} {'closed loop':^33} | {'open loop':^45}")
    print(f"{'mode':>9} {'images/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'agree':>7} | "
          f"{'offered/s':>9} {'images/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'<=bound':>7} | "
          f"{'compiles':>8} {'errors':>6}")
    for mode, m in r["modes"].items():
        c, o = m["closed"], m["open"]
        agree = "-" if c["agreement"] is None else f"{c['agreement']:.4f}"
        print(f"{mode:>9} {c['images_per_s']:>9.1f} {c['p50_ms']:>7.1f} {c['p99_ms']:>7.1f} "
              f"{agree:>7} | {o['offered_images_per_s']:>9.1f} "
              f"{o['images_per_s']:>9.1f} {o['p50_ms']:>7.1f} {o['p99_ms']:>7.1f} "
              f"{str(o['p99_within_bound']):>7} | {c['compiles'] + o['compiles']:>8} "
              f"{c['num_errors'] + o['num_errors'] + o['unanswered']:>6}")


if __name__ == "__main__":
    main()
