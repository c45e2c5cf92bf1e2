"""Wall-clock benchmark of the inference modes against the plain backbone.

:func:`run_benchmark` times the modes on one batch. Every compiled mode is called once to
warm up (compilation included), then timed over ``repeats`` calls with
``jax.block_until_ready``; compile time is the first call minus the steady-state median, and
compilations during the timed calls are counted (a serving path that recompiles per batch is
a bug). The one-example-at-a-time modes are timed on the first ``eager_examples`` examples
and scaled per image. Exits and predictions of every mode are checked against the masked
mode, and the speed-up is compared with the ideal one the exits allow:
``1 / mean(costs[exit])``.

:func:`dataset_benchmark` times whole passes over a data set, where the streaming engine
(:mod:`jee.infer.stream`) can fill every segment's batches across input batches: the plain
backbone batch by batch, and, for each size in which requests arrive, the bucketed engine on
each arriving chunk and the stream fed the chunks. Besides the ideal by MACs it reports an
ideal by time: every segment timed alone at the batch size on real intermediate features and
weighted by the fraction of examples that reach it, which is what an engine running every
segment on full batches at no overhead would take.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jee.infer.bucketed import BucketedEngine
from jee.infer.eager import EagerEngine, PerExampleEngine
from jee.infer.host import HostEngine
from jee.infer.interface import Policy, Segment, check_segments
from jee.infer.ladder import Ladder
from jee.infer.masked import MaskedEngine
from jee.infer.stream import StreamEngine
from jee.infer.stream_plan import plan_spans
from jee.infer.timing import (
    CALLS_PER_ROUND,
    median_times,
    repeated,
    single_calls,
    split_times,
    time_calls,
    time_rounds,
    warm_up,
)

# Modes run one example at a time: timed on a subset, reported per image.
PER_EXAMPLE_MODES = ("per_example", "eager")
# Modes only meaningful over many batches: timed by dataset_benchmark, skipped by run_benchmark.
DATASET_MODES = ("stream",)
MODES = ("full", "masked", "bucketed", "bucketed_rows", "host", *PER_EXAMPLE_MODES,
         *DATASET_MODES)
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


def _check_costs(costs, num_exits: int) -> np.ndarray:
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (num_exits,):
        raise ValueError(f"need one cost per exit ({num_exits}), got {costs.shape}")
    return costs


def compare_outputs(result, reference) -> tuple[np.ndarray, dict]:
    """``(ok, figures)``: per example, whether exit and argmax equal the reference's, and a
    mode's ``agreement`` (both), ``exit_agreement`` (the policy's decisions alone) and
    ``max_abs_logit_diff`` (at the examples whose exits agree). In bfloat16 separately compiled
    programs round at other places than one fused program, so near-tied predictions can flip
    while every exit agrees; the logit difference says by how much they moved."""
    exit_index, logits = (np.asarray(a) for a in result)
    ref_exit, ref_logits = (np.asarray(a)[:exit_index.shape[0]] for a in reference)
    same_exit = exit_index == ref_exit
    ok = same_exit & (logits.argmax(-1) == ref_logits.argmax(-1))
    diff = np.abs(logits[same_exit].astype(np.float32)
                  - ref_logits[same_exit].astype(np.float32))
    return ok, {"agreement": float(ok.mean()), "exit_agreement": float(same_exit.mean()),
                "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0}


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
    the backbone. "full" and "masked" are always timed: they are the references; the
    :data:`DATASET_MODES` are left to :func:`dataset_benchmark`.
    """
    segments = check_segments(segments)
    costs = _check_costs(costs, len(segments))
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; expected some of {MODES}")
    x = jnp.asarray(x)
    aux = None if aux is None else jnp.asarray(aux, jnp.int32)
    batch = x.shape[0]
    n_small = max(1, min(eager_examples, batch))
    small_args = (x[:n_small], None if aux is None else aux[:n_small])

    order = ["full", "masked"] + [m for m in modes
                                  if m not in ("full", "masked", *DATASET_MODES)]
    results, reference, checked, agreed = {}, None, 0, 0
    for mode in order:
        if mode == "full":
            engine, args, reps = jax.jit(full_fn), (x,), repeats
        else:
            engine = make_engine(mode, segments, policy, ladder=ladder)
            per_example = mode in PER_EXAMPLE_MODES
            args = small_args if per_example else (x, aux)
            reps = eager_repeats if per_example else repeats
        out, first, times, warm, steady = time_calls(engine, args, max(1, reps))
        timed = args[0].shape[0]
        median, p90 = float(np.median(times)), float(np.percentile(times, 90))
        stats = {
            "images_per_s": timed / median,
            "ms_per_batch_median": 1e3 * median * batch / timed,
            "ms_per_batch_p90": 1e3 * p90 * batch / timed,
            "compile_s": max(0.0, first - median),
            "compiles_at_warmup": warm,
            "recompiles_after_warmup": steady,
            "timed_examples": timed,
        }
        if mode == "masked":
            reference = out
        elif mode != "full":
            ok, figures = compare_outputs(out, reference)
            stats.update(figures)
            checked, agreed = checked + ok.size, agreed + int(ok.sum())
        results[mode] = stats

    full_per_image = 1.0 / results["full"]["images_per_s"]
    ref_exit = np.asarray(reference[0])
    ideal = 1.0 / float(costs[ref_exit].mean())
    for stats in results.values():
        stats["speedup"] = full_per_image * stats["images_per_s"]
        stats["efficiency"] = stats["speedup"] / ideal
    exit_agreement = min((s["exit_agreement"] for s in results.values()
                          if "exit_agreement" in s), default=1.0)
    results["agreement"] = agreed / checked if checked else 1.0
    results["exit_agreement"] = exit_agreement
    results["ideal_speedup"] = ideal
    results["exit_fractions"] = (np.bincount(ref_exit, minlength=len(segments))
                                 / ref_exit.size).tolist()
    return results


def arrival_chunks(images: np.ndarray, aux: np.ndarray | None, size: int, *,
                   on_device: bool, pad: bool = True) -> tuple[list[tuple], list[int]]:
    """``(chunks, counts)``: ``images`` (and ``aux``) cut into consecutive ``(x, aux)`` chunks
    of ``size`` rows and the number of real rows in each.

    ``pad``: the last chunk padded with zero rows, so that one compiled shape serves them all;
    else it holds its real rows only, as a data set's last batch: no mode pays for padding.
    ``on_device``: chunks put on the device beforehand, as batches already in memory; else
    NumPy arrays, requests arriving from the host, each engine paying for its own uploads.
    """
    chunks, counts = [], []
    for start in range(0, images.shape[0], size):
        x = images[start:start + size]
        a = None if aux is None else aux[start:start + size]
        count = x.shape[0]
        if pad and count < size:
            x = np.concatenate([x, np.zeros((size - count, *x.shape[1:]), x.dtype)])
            a = None if a is None else np.concatenate([a, np.zeros(size - count, a.dtype)])
        chunks.append(jax.device_put((x, a)) if on_device else (x, a))
        counts.append(count)
    return chunks, counts


def unpad(outputs: Sequence, counts: Sequence[int]) -> np.ndarray:
    """The real rows of per-chunk outputs, concatenated, on the host."""
    return np.concatenate([np.asarray(o)[:n] for o, n in zip(outputs, counts, strict=True)])


def _each_chunk(engine: Callable, chunks: Sequence[tuple]) -> list:
    return [engine(x, a) for x, a in chunks]


def masked_exit_fractions(segments: Sequence[Segment], policy: Policy,
                          batches: Iterable) -> list[float]:
    """The fraction of the examples in ``batches`` (arrays, or ``(x, aux)`` pairs) leaving at
    each exit in the masked mode: what a stream's spans are planned from, on data it will not
    be scored on (e.g. validation). Batch by batch, so a split never sits in memory whole."""
    engine, counts = MaskedEngine(segments, policy), np.zeros(len(segments), np.int64)
    for item in batches:
        x, aux = item if isinstance(item, tuple) else (item, None)
        exits = np.asarray(engine(x, aux)[0])
        counts += np.bincount(exits, minlength=len(segments))
    if not counts.sum():
        raise ValueError("no examples to plan the stream from (an empty split?)")
    return (counts / counts.sum()).tolist()


def _streamed(engine: StreamEngine, chunks: Sequence[tuple], num_examples: int):
    # num_examples drops the padding rows of the last chunk: the stream pads nothing.
    return engine.run(iter(chunks), num_examples=num_examples)


def stream_counts(engine, since: dict | None = None) -> dict:
    """A streaming engine's steps per queue, partial ones among them, reads of the queue
    lengths, drains (reads with no program queued behind) and input pieces copied together
    on the host, since the counts ``since``; with the partial sizes it may run at."""
    counts = {"batches_per_pass": engine.batches_run.tolist(),
              "partial_batches_per_pass": engine.partial_batches.tolist(),
              "reads_per_pass": engine.reads, "drains_per_pass": engine.drains,
              "assembled_per_pass": engine.assembled}
    if since is not None:
        counts = {k: (np.subtract(v, since[k]).tolist()) for k, v in counts.items()}
    return {**counts, "partial_sizes": list(engine.sizes)}


def _pass_stats(first: float, warm: int, times: np.ndarray, steady: int, num_examples: int,
                size: int) -> dict:
    median = float(np.median(times))
    return {"arrival_size": size, "seconds_per_pass": median,
            "seconds_per_pass_p90": float(np.percentile(times, 90)),
            "images_per_s": num_examples / median, "compile_s": max(0.0, first - median),
            "compiles_at_warmup": warm, "recompiles_after_warmup": steady}


def dataset_benchmark(segments: Sequence[Segment], full_fn: Callable[[jax.Array], jax.Array],
                      policy: Policy, images, aux=None, *, costs: Sequence[float],
                      batch_size: int, arrival_sizes: Sequence[int] = (8,),
                      ladder: Ladder = None, repeats: int = 10,
                      plan_fractions: Sequence[float] | None = None) -> dict:
    """Times whole passes over ``images [N, ...]`` (with optional ``aux [N]``); returns a dict.

    Modes (``modes``): ``full``, the plain backbone on batches of ``batch_size`` (B); for
    each arrival size ``a``, ``bucketed`` on every chunk of ``a`` rows as it arrives and
    ``stream`` (:class:`StreamEngine` with batch B) fed the chunks, named ``bucketed@a`` and
    ``stream@a`` unless ``a == B``. Chunks of B rows are put on the device beforehand, other
    chunks stay on the host (see :func:`arrival_chunks`); every pass ends with its results
    ready. Per mode: ``seconds_per_pass`` (median of ``repeats`` passes after a warm-up
    pass, the modes' passes taken in turn, round after round), ``images_per_s``,
    ``speedup`` over ``full``, ``efficiency`` and ``efficiency_by_time`` (speedup over each
    ideal), compiles, ``agreement`` with the masked mode (exit and argmax, every example),
    and for the stream its batches per pass
    and the partial ones among them, per queue, and the sizes partial batches run at.

    ``plan_fractions [E]``: the exit fractions (of data not timed here, e.g. validation) the
    stream's spans are planned from (:func:`~jee.infer.stream_plan.plan_spans`, with segment
    and hop times measured before the passes, recorded as ``plan_segment_seconds`` and
    ``plan_hop_seconds``); without them, or when the plan keeps one segment per queue, every
    segment has its own queue. Otherwise ``stream_per_segment`` times the unplanned stream
    too, at arrival size B, for comparison.

    Top level: ``ideal_speedup`` (``1 / mean(costs[exit])``), ``ideal_by_time``
    (``full_seconds_at_batch / sum_k reach_fractions[k] * segment_seconds_at_batch[k]``,
    the :func:`~jee.infer.timing.single_calls` at batch B, each made ``CALLS_PER_ROUND``
    times in every round of the passes: the median over rounds of their mean),
    ``exit_fractions``, ``reach_fractions`` (examples reaching each segment),
    ``hop_seconds_at_batch`` (timed likewise), ``stream_spans`` (segments per queue) and
    ``agreement`` over every checked mode.
    """
    segments = check_segments(segments)
    costs = _check_costs(costs, len(segments))
    images = np.asarray(images)
    aux = None if aux is None else np.asarray(aux, np.int32)
    n, batch, repeats = images.shape[0], int(batch_size), max(1, repeats)
    if n == 0:
        raise ValueError("the data set to time is empty")
    # The split's last batch at its real size: the stream runs its partial batches at small
    # sizes, and the other modes must not pay for padding it does not.
    batches, counts = arrival_chunks(images, aux, batch, on_device=True, pad=False)

    masked = _each_chunk(MaskedEngine(segments, policy), batches)
    reference = tuple(unpad([m[i] for m in masked], counts) for i in range(2))
    ref_exit = reference[0]
    # At the batch size, as the stream's steps run, even when the split is smaller.
    first = batches[0][0]
    if first.shape[0] < batch:
        first = jnp.concatenate([first, jnp.zeros((batch - first.shape[0], *first.shape[1:]),
                                                  first.dtype)])
    calls, num_segments = single_calls(segments, full_fn, first)
    spans = plan_segment_s = plan_hop_s = None
    if plan_fractions is not None:
        # The plan must exist before the stream's passes: from calls timed ahead of them.
        _, plan_segment_s, plan_hop_s = median_times(calls, num_segments, repeats)
        spans = plan_spans(plan_fractions, plan_segment_s, plan_hop_s)

    full = jax.jit(full_fn)
    bucketed = BucketedEngine(segments, policy, ladder=ladder)
    stream = StreamEngine(segments, policy, batch_size=batch, spans=spans)
    # (mode, pass function, its arguments (a stream's engine first), arrival size, real rows
    # per chunk of the modes whose outputs are per chunk).
    runs = [("full", _each_chunk, (lambda x, a: full(x), batches), batch, None)]
    for size in dict.fromkeys(int(a) for a in arrival_sizes):
        if size == batch:
            chunks, sizes, suffix = batches, counts, ""
        else:
            chunks, sizes = arrival_chunks(images, aux, size, on_device=False)
            suffix = f"@{size}"
        runs.append(("bucketed" + suffix, _each_chunk, (bucketed, chunks), size, sizes))
        runs.append(("stream" + suffix, _streamed, (stream, chunks, n), size, None))
        if size == batch and len(stream.spans) < len(segments):
            per_segment = StreamEngine(segments, policy, batch_size=batch)
            runs.append(("stream_per_segment", _streamed, (per_segment, chunks, n), size, None))
    # Warm-ups one after another (the first compiles what later ones reuse), then the timed
    # passes round-robin.
    warm, extra = [], {}
    for mode, fn, args, _, _ in runs:
        engine = args[0] if fn is _streamed else None
        before = None if engine is None else stream_counts(engine)
        warm.append(warm_up(fn, args))
        if engine is not None:
            extra[mode] = dict(spans=list(engine.spans),
                               **stream_counts(engine, since=before))
    # The single calls the ideal by time is made of join every round: drift between the
    # passes and a separate timing of the calls would count as the engines' (in)efficiency.
    times, recompiles = time_rounds(
        [(fn, args) for _, fn, args, _, _ in runs]
        + [(repeated(call, CALLS_PER_ROUND), ()) for call in calls], repeats)
    full_s, segment_s, hop_s = split_times(
        np.median(times[:, len(runs):], axis=0) / CALLS_PER_ROUND, num_segments)
    reach = [float(np.mean(ref_exit >= k)) for k in range(len(segments))]
    ideal = 1.0 / float(costs[ref_exit].mean())
    ideal_by_time = full_s / float(np.dot(reach, segment_s))
    modes, checked, agreed = {}, 0, 0
    for i, (mode, fn, _, size, rows) in enumerate(runs):
        out, first, compiles = warm[i]
        stats = modes[mode] = _pass_stats(first, compiles, times[:, i], recompiles[i], n, size)
        stats.update(extra.get(mode, {}))
        if mode == "full":
            continue
        if fn is not _streamed:
            out = tuple(unpad([o[j] for o in out], rows) for j in range(2))
        ok, figures = compare_outputs(out, reference)
        stats.update(figures)
        checked, agreed = checked + ok.size, agreed + int(ok.sum())
    for stats in modes.values():
        stats["speedup"] = modes["full"]["seconds_per_pass"] / stats["seconds_per_pass"]
        stats["efficiency"] = stats["speedup"] / ideal
        stats["efficiency_by_time"] = stats["speedup"] / ideal_by_time
    return {"num_examples": n, "batch_size": batch, "repeats": repeats,
            "ideal_speedup": ideal, "ideal_by_time": ideal_by_time,
            "full_seconds_at_batch": full_s, "segment_seconds_at_batch": segment_s,
            "hop_seconds_at_batch": hop_s, "stream_spans": list(stream.spans),
            "plan_fractions": None if plan_fractions is None else list(plan_fractions),
            "plan_segment_seconds": plan_segment_s, "plan_hop_seconds": plan_hop_s,
            "exit_fractions": (np.bincount(ref_exit, minlength=len(segments)) / n).tolist(),
            "reach_fractions": reach, "agreement": agreed / checked if checked else 1.0,
            "modes": modes}
