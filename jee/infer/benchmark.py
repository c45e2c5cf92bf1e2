"""Wall-clock benchmark of the inference modes against the plain backbone.

Every compiled mode is called once to warm up (compilation included), then timed over
``repeats`` calls with ``jax.block_until_ready``; compile time is the first call minus the
steady-state median, and compilations during the timed calls are counted (a serving path
that recompiles per batch is a bug). The one-example-at-a-time modes are timed on the first
``eager_examples`` examples and scaled per image. Exits and predictions of every mode are
checked against the masked mode, and the speed-up is compared with the ideal one the exits
allow: ``1 / mean(costs[exit])``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.bucketed import BucketedEngine
from jee.infer.compiles import CompileCounter
from jee.infer.eager import EagerEngine, PerExampleEngine
from jee.infer.host import HostEngine
from jee.infer.interface import Policy, Segment, check_segments
from jee.infer.ladder import Ladder
from jee.infer.masked import MaskedEngine

# Modes run one example at a time: timed on a subset, reported per image.
PER_EXAMPLE_MODES = ("per_example", "eager")
MODES = ("full", "masked", "bucketed", "bucketed_rows", "host", *PER_EXAMPLE_MODES)
DEFAULT_MODES = ("full", "masked", "bucketed", "host", *PER_EXAMPLE_MODES)


def make_engine(mode: str, segments: Sequence[Segment], policy: Policy, *,
                ladder: Ladder = None) -> Callable:
    """The callable ``engine(x, aux) -> (exit_index, logits_at_exit)`` of an early-exit mode."""
    if mode == "masked":
        return MaskedEngine(segments, policy)
    if mode == "bucketed":
        return BucketedEngine(segments, policy, ladder=ladder, carry="compact")
    if mode == "bucketed_rows":
        return BucketedEngine(segments, policy, ladder=ladder, carry="rows")
    if mode == "host":
        return HostEngine(segments, policy, ladder=ladder)
    if mode == "per_example":
        return PerExampleEngine(segments, policy)
    if mode == "eager":
        return EagerEngine(segments, policy)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def _timed(fn: Callable, args: tuple, repeats: int):
    """(first output, first-call seconds, steady-state seconds [repeats], warm-up compiles,
    compiles during the timed calls)."""
    with CompileCounter() as warm:
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        first = time.perf_counter() - start
    times = []
    with CompileCounter() as steady:
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - start)
    return out, first, np.asarray(times), warm, steady


def _matches(result, reference) -> np.ndarray:
    exit_index, logits = (np.asarray(a) for a in result)
    ref_exit, ref_logits = (np.asarray(a)[:exit_index.shape[0]] for a in reference)
    return (exit_index == ref_exit) & (logits.argmax(-1) == ref_logits.argmax(-1))


def run_benchmark(segments: Sequence[Segment], full_fn: Callable[[jax.Array], jax.Array],
                  policy: Policy, x: jax.Array, aux: jax.Array | None = None, *,
                  costs: Sequence[float], ladder: Ladder = None,
                  modes: Sequence[str] = DEFAULT_MODES, repeats: int = 10,
                  eager_examples: int = 16, eager_repeats: int = 3) -> dict:
    """Times each mode on the batch ``x`` (with optional ``aux [B]``) and returns a dict.

    Per mode: ``images_per_s``, ``ms_per_batch_median``, ``ms_per_batch_p90`` (scaled to the
    whole batch for the per-example modes), ``compile_s``, ``speedup`` (full / mode, per
    image), ``efficiency`` (speedup / ideal), ``recompiles_after_warmup``, and ``agreement``
    and ``timed_examples``. Top level: ``agreement`` (fraction of checked examples whose exit
    and argmax match the masked mode, over all early-exit modes), ``ideal_speedup`` and
    ``exit_fractions`` (of the masked mode). ``costs [E]`` are the exits' costs relative to
    the backbone. "full" and "masked" are always timed: they are the references.
    """
    segments = check_segments(segments)
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (len(segments),):
        raise ValueError(f"need one cost per exit ({len(segments)}), got {costs.shape}")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; expected some of {MODES}")
    x = jnp.asarray(x)
    aux = None if aux is None else jnp.asarray(aux, jnp.int32)
    batch = x.shape[0]
    n_small = max(1, min(eager_examples, batch))
    small_args = (x[:n_small], None if aux is None else aux[:n_small])

    order = ["full", "masked"] + [m for m in modes if m not in ("full", "masked")]
    results, reference, checked, agreed = {}, None, 0, 0
    for mode in order:
        if mode == "full":
            engine, args, reps = jax.jit(full_fn), (x,), repeats
        else:
            engine = make_engine(mode, segments, policy, ladder=ladder)
            per_example = mode in PER_EXAMPLE_MODES
            args = small_args if per_example else (x, aux)
            reps = eager_repeats if per_example else repeats
        out, first, times, warm, steady = _timed(engine, args, max(1, reps))
        timed = args[0].shape[0]
        median, p90 = float(np.median(times)), float(np.percentile(times, 90))
        stats = {
            "images_per_s": timed / median,
            "ms_per_batch_median": 1e3 * median * batch / timed,
            "ms_per_batch_p90": 1e3 * p90 * batch / timed,
            "compile_s": max(0.0, first - median),
            "compiles_at_warmup": warm.count,
            "recompiles_after_warmup": steady.count,
            "timed_examples": timed,
        }
        if mode == "masked":
            reference = out
        elif mode != "full":
            ok = _matches(out, reference)
            stats["agreement"] = float(ok.mean())
            checked, agreed = checked + ok.size, agreed + int(ok.sum())
        results[mode] = stats

    full_per_image = 1.0 / results["full"]["images_per_s"]
    ref_exit = np.asarray(reference[0])
    ideal = 1.0 / float(costs[ref_exit].mean())
    for stats in results.values():
        stats["speedup"] = full_per_image * stats["images_per_s"]
        stats["efficiency"] = stats["speedup"] / ideal
    results["agreement"] = agreed / checked if checked else 1.0
    results["ideal_speedup"] = ideal
    results["exit_fractions"] = (np.bincount(ref_exit, minlength=len(segments))
                                 / ref_exit.size).tolist()
    return results
