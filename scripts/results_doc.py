"""Writes docs/RESULTS.md from the files jee's own commands produced (see reproduce.sh).

    python scripts/results_doc.py RUNS_DIR > docs/RESULTS.md

Reads, for each experiment, the EENet run and its plain-backbone run (``test_metrics.json``),
the EENet run's policy report (``eval/report.json``, ``eval/budgets.json``) and benchmarks
(``eval/benchmark*.json``), and each cascade's report and benchmark; copies the
accuracy-vs-cost plots next to the document. Nothing
here is typed in by hand: every figure comes from those files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from scripts.adaptive_table import budget_table as paired_table  # noqa: E402
from scripts.adaptive_table import run_table  # noqa: E402

EXPERIMENTS = [
    ("digits", "ResNet-20, 2 pool exits (scikit-learn digits)", "digits", "digits_plain"),
    ("fashion_mnist", "EENet-8, 4 filters, pool exits (Fashion-MNIST)", "fm_eenet8",
     "fm_cascade/tiny"),
    ("fashion_mnist_resnet20", "ResNet-20, 8 filters, 3 plain exits (Fashion-MNIST)",
     "fm_eenet20", "fm_cascade/large"),
]
# The same networks trained with the other recipe: (run, experiment index, recipe).
ALTERNATES = [("digits_adaptive", 0, "adaptive recipe"), ("fm_eenet8_onestage", 1, "one stage"),
              ("fm_eenet20_onestage", 2, "one stage")]
# (run, benchmark file, label)
BENCHMARKS = [
    ("bench110_b256", "benchmark.json",
     "ResNet-110, 8 exits, random init, synthetic policy (cost 0.5)"),
    ("digits", "benchmark.json", "digits ResNet-20, trained, EENet rule T=0.5"),
    ("fm_eenet8", "benchmark.json", "Fashion-MNIST EENet-8, trained, EENet rule T=0.5"),
    ("fm_eenet20", "benchmark.json", "Fashion-MNIST ResNet-20, trained, EENet rule T=0.5"),
    ("fm_eenet20", "benchmark_bolukbasi_0.5.json",
     "Fashion-MNIST ResNet-20, trained, Bolukbasi policy at budget 0.5"),
]
# (run, label) of scripts/load_test.py runs, written to RUN/eval/load_test.json.
ONESTAGE_E8 = "Fashion-MNIST EENet-8, one stage, trained, EENet rule T=0.5"
LOAD_TESTS = [("fm_eenet8", "Fashion-MNIST EENet-8, trained, EENet rule T=0.5"),
              ("fm_eenet8_onestage", ONESTAGE_E8),
              ("fm_eenet20", "Fashion-MNIST ResNet-20, trained, EENet rule T=0.5")]
CASCADES = [("fm_cascade", "Fashion-MNIST: EENet-8 (4 filters), ResNet-8 (8), ResNet-20 (8)")]
# (run, benchmark file, label) of benchmarks run with --modes ...,stream (a dataset section).
STREAM_BENCHMARKS = [
    ("bench110_b256", "benchmark_stream.json",
     "ResNet-110, 8 exits, random init, synthetic policy (cost 0.5)"),
    ("fm_eenet8", "benchmark_stream.json", "Fashion-MNIST EENet-8, trained, EENet rule T=0.5"),
    ("fm_eenet8_onestage", "benchmark_stream.json", ONESTAGE_E8),
    ("fm_eenet20", "benchmark_stream.json", "Fashion-MNIST ResNet-20, trained, EENet rule T=0.5"),
]


def _load(path):
    with open(path) as f:
        return json.load(f)


def _pct(x):
    return f"{100 * x:.2f}"


def _dispatch(record) -> str:
    """How the CPU ran the benchmark's programs (files from before the setting existed ran
    JAX's default, concurrently) and whether freed host memory was kept in the process
    (``jee/host_memory.py``; files from before it ran glibc's default)."""
    if record.get("backend", "cpu") != "cpu":
        return "-"
    dispatch = "concurrent" if record.get("cpu_async_dispatch", True) else "one at a time"
    kept = record.get("host_memory", "").startswith("kept")
    return f"{dispatch}, {'memory kept' if kept else 'glibc default malloc'}"


def _plot(eval_dir: str, docs: str, name: str, label: str) -> list[str]:
    """Copies a run's accuracy-vs-cost plot into docs/ as NAME_accuracy_vs_cost.png and
    returns the lines that show it (none when the run has no plot)."""
    plot = os.path.join(eval_dir, "accuracy_vs_cost.png")
    if not os.path.exists(plot):
        return [""]
    target = f"{name}_accuracy_vs_cost.png"
    shutil.copy(plot, os.path.join(docs, target))
    return ["", f"![accuracy vs relative cost, {label}]({target})", ""]


def _scored(metrics: dict) -> str:
    """Which state a test_metrics.json scored: the best checkpoint's step of the last."""
    last = metrics.get("last_state", {}).get("step", metrics.get("step"))
    return f"step {metrics.get('step')} of {last}"


# Every training run of reproduce.sh, with its label.
RUNS = [("digits", "digits ResNet-20 EENet"), ("digits_plain", "digits ResNet-20 plain"),
        ("fm_eenet8", "Fashion-MNIST EENet-8"), ("fm_eenet20", "Fashion-MNIST ResNet-20 EENet"),
        ("fm_cascade/tiny", "cascade tiny (= EENet-8 plain)"),
        ("fm_cascade/small", "cascade small"),
        ("fm_cascade/large", "cascade large (= ResNet-20 plain)")]


def checkpoint_table(runs: str) -> list[str]:
    """Each run's test figures from its best checkpoint (by validation accuracy, what every
    table here uses) next to those of its last state, from its test_metrics.json."""
    out = ["| run | best step (val. acc.) | last step | test acc. at T, best | at T, last | "
           "final exit, best | final exit, last |", "|---|---|---|---|---|---|---|"]
    for run, label in RUNS:
        try:
            m = _load(os.path.join(runs, run, "test_metrics.json"))
        except FileNotFoundError:
            continue
        last = m.get("last_state", m)
        val = f" ({_pct(m['val_accuracy'])})" if m.get("val_accuracy") is not None else ""
        out.append(f"| {label} | {m['step']}{val} | {last['step']} | {_pct(m['accuracy'])} | "
                   f"{_pct(last['accuracy'])} | {_pct(m['final_accuracy'])} | "
                   f"{_pct(last['final_accuracy'])} |")
    return out


def backbone_table(runs: str) -> list[str]:
    """Each EENet (the config's default recipe, then the other one where it was trained)
    against its plain backbone: accuracy at T=0.5, cost, the test share of every exit."""
    ee, plains = [], {}
    for _, label, run, plain in EXPERIMENTS:
        plains[label] = os.path.join(runs, plain)
        ee.append((f"{label}/default recipe", os.path.join(runs, run)))
    ee += [(f"{EXPERIMENTS[i][1]}/{recipe}", os.path.join(runs, run))
           for run, i, recipe in ALTERNATES]
    present = [(label, path) for label, path in ee
               if os.path.exists(os.path.join(path, "test_metrics.json"))
               and os.path.exists(os.path.join(plains[label.split("/", 1)[0]],
                                               "test_metrics.json"))]
    return run_table(present, plains).splitlines()


def budget_tables(runs: str, docs: str) -> list[str]:
    out = []
    for name, label, ee, _ in EXPERIMENTS:
        path = os.path.join(runs, ee, "eval")
        try:
            budgets = _load(os.path.join(path, "budgets.json"))
            report = _load(os.path.join(path, "report.json"))
        except FileNotFoundError:
            continue
        out += [f"### {label}", "",
                "Best setting of each policy family whose *validation* cost fits the budget, "
                "chosen on out-of-fold validation figures; those validation-predicted figures "
                "beside the test accuracy and cost of that setting.", "",
                "| budget | policy | val.-predicted acc. | test acc. | val.-predicted cost | "
                "test cost |", "|---|---|---|---|---|---|"]
        for b in budgets:
            if b.get("feasible", True):
                out.append(f"| {b['budget']:.1f} | {b['family']} | {_pct(b['val_accuracy'])} | "
                           f"{_pct(b['test_accuracy'])} | {b['val_relative_cost']:.3f} | "
                           f"{b['test_relative_cost']:.3f} |")
        for row in report["policies"]:
            if row["family"] in ("oracle", "eenet_default"):
                out.append(f"| - | {row['family']} | - | {_pct(row['accuracy'])} | - | "
                           f"{row['relative_cost']:.3f} |")
        out += _plot(path, docs, name, label)
    return out


def curve_comparison(runs: str) -> list[str]:
    """The learned policy against max-probability at budgets 0.3-0.9, paired on test, from
    each early-exit run's and each cascade's ``eval/comparison.json``."""
    labelled = [(label, os.path.join(runs, ee)) for _, label, ee, _ in EXPERIMENTS] + [
        (f"cascade: {label}", os.path.join(runs, run)) for run, label in CASCADES]
    return ["Each policy's most accurate setting whose *validation* cost fits the budget, "
            "every setting chosen on out-of-fold validation figures (5-fold cross-fitting, "
            "then refitted on all of validation): validation-predicted / test accuracy (test "
            "cost), and learned minus max-probability on test with its paired standard error "
            "(both scored on the same test examples).", ""] + \
        paired_table(labelled).splitlines()


def benchmark_table(runs: str) -> list[str]:
    out = ["| network | batch | ladder | ideal speed-up | bucketed speed-up | efficiency | "
           "host speed-up | eager images/s | bucketed images/s | bucketed / eager | "
           "recompiles | agreement | CPU programs, host memory |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run, name, label in BENCHMARKS:
        path = os.path.join(runs, run, "eval", name)
        if not os.path.exists(path):
            continue
        b = _load(path)
        m = b["modes"]
        bk, eager, host = m["bucketed"], m.get("eager"), m.get("host")
        # Modes left out of a run (--modes) show as "-".
        ratio = f"{bk['images_per_s'] / eager['images_per_s']:.1f}x" if eager else "-"
        host_speedup = f"{host['speedup']:.2f}" if host else "-"
        eager_rate = f"{eager['images_per_s']:.1f}" if eager else "-"
        out.append(
            f"| {label} | {b['batch_size']} | {len(b.get('ladder', []))} sizes | "
            f"{b['ideal_speedup']:.2f} | {bk['speedup']:.2f} | {bk['efficiency']:.2f} | "
            f"{host_speedup} | {eager_rate} | {bk['images_per_s']:.1f} | {ratio} | "
            f"{bk['recompiles_after_warmup']} | {b['agreement']:.4f} | {_dispatch(b)} |")
    return out


def _dot(a, b) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


def _with_spans(mode: str, stats: dict) -> str:
    """A stream mode's name with its segments per queue, e.g. ``stream [1+2]``."""
    spans = stats.get("spans")
    return f"{mode} [{'+'.join(map(str, spans))}]" if spans else mode


def stream_table(runs: str) -> list[str]:
    """The dataset sections: whole passes, input arriving in chunks of the batch and of 8."""
    out = ["| network | images | batch | ideal by MACs | ideal by time | mode | arrival | "
           "images/s | speed-up | efficiency by time | of the zero-overhead time | agreement | "
           "recompiles | CPU programs, host memory |", "|---" * 14 + "|"]
    for run, name, label in STREAM_BENCHMARKS:
        path = os.path.join(runs, run, "eval", name)
        if not os.path.exists(path):
            continue
        record = _load(path)
        d = record["dataset"]
        # Every segment on full batches at its own time, nothing else: seconds per pass.
        zero_overhead = (_dot(d["reach_fractions"], d["segment_seconds_at_batch"])
                         * d["num_examples"] / d["batch_size"])
        for mode, m in d["modes"].items():
            agree = f"{m['agreement']:.4f}" if "agreement" in m else "-"
            out.append(f"| {label} | {d['num_examples']} | {d['batch_size']} | "
                       f"{d['ideal_speedup']:.2f} | {d['ideal_by_time']:.2f} | "
                       f"{_with_spans(mode, m)} | "
                       f"{m['arrival_size']} | {m['images_per_s']:.0f} | {m['speedup']:.2f} | "
                       f"{m['efficiency_by_time']:.3f} | "
                       f"{zero_overhead / m['seconds_per_pass']:.3f} | {agree} | "
                       f"{m['recompiles_after_warmup']} | {_dispatch(record)} |")
    return out


def load_table(runs: str) -> list[str]:
    """Serving: requests from client threads through the stream ``Server`` against each
    request run alone (bucketed, full), from scripts/load_test.py's JSON."""
    out = ["| network | exits taken | mode | closed loop images/s | vs bucketed | p50 / p99 ms | "
           "open loop offered images/s | p50 / p99 ms | p99 bound ms | within | agreement | "
           "compiles |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run, label in LOAD_TESTS:
        path = os.path.join(runs, run, "eval", "load_test.json")
        if not os.path.exists(path):
            continue
        r = _load(path)
        bucketed = r["modes"].get("bucketed", {}).get("closed", {}).get("images_per_s")
        shares = " / ".join(f"{100 * f:.1f}" for f in r["exit_fractions"])
        for mode, m in r["modes"].items():
            c, o = m["closed"], m["open"]
            ratio = f"{c['images_per_s'] / bucketed:.2f}x" if bucketed else "-"
            agree = "-" if c["agreement"] is None else f"{c['agreement']:.4f}"
            out.append(f"| {label} | {shares} | {_with_spans(mode, c)} | "
                       f"{c['images_per_s']:.0f} | {ratio} | "
                       f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f} | "
                       f"{o['offered_images_per_s']:.0f} | {o['p50_ms']:.1f} / "
                       f"{o['p99_ms']:.1f} | {r['latency_bound_ms']:.1f} | "
                       f"{'yes' if o['p99_within_bound'] else 'no'} | {agree} | "
                       f"{c['compiles'] + o['compiles']} |")
    return out


def cascade_tables(runs: str, docs: str) -> list[str]:
    out = []
    for run, label in CASCADES:
        path = os.path.join(runs, run, "eval")
        try:
            report = _load(os.path.join(path, "report.json"))
            budgets = _load(os.path.join(path, "budgets.json"))
        except FileNotFoundError:
            continue
        out += [f"### {label}", "", "| model | relative cost | test acc. |", "|---|---|---|"]
        out += [f"| {m['name']} | {m['relative_cost']:.3f} | {_pct(m['accuracy'])} |"
                for m in report["models"]]
        ops = report["operating_points"]
        ref = ops["reference"]
        out += ["", f"Operating points: the cheapest setting of each policy whose accuracy is "
                f"within the given loss of the best single model ({ref['model']}, "
                f"{_pct(ref['val_accuracy'])} on validation, {_pct(ref['test_accuracy'])} on "
                "test), chosen on validation (what a user can do) or, after the fact, on test "
                "(the best the policy family could have done); its test accuracy, cost and "
                "ideal speed-up over that model.", "",
                "| loss allowed | chosen on | policy | test acc. | change | test cost | "
                "ideal speed-up | path fractions |", "|---|---|---|---|---|---|---|---|"]
        names = [" > ".join(p["models"]) for p in report["paths"]]
        for p in ops["points"]:
            if p["feasible"]:
                fractions = ", ".join(f"{n} {f:.3f}" for n, f in
                                      zip(names, p["test_path_fractions"], strict=True) if f)
                out.append(f"| {100 * p['loss']:.0f} pt | {p['selected_on']} | {p['family']} | "
                           f"{_pct(p['test_accuracy'])} | {100 * p['test_accuracy_change']:+.2f} | "
                           f"{p['test_relative_cost']:.3f} | "
                           f"{p['test_speedup_vs_reference']:.2f} | {fractions} |")
        out += ["", "| budget | policy | test acc. | test cost |", "|---|---|---|---|"]
        out += [f"| {b['budget']:.1f} | {b['family']} | {_pct(b['test_accuracy'])} | "
                f"{b['test_relative_cost']:.3f} |" for b in budgets if b["feasible"]]
        oracle = next(r for r in report["policies"] if r["family"] == "oracle")
        out.append(f"| - | oracle | {_pct(oracle['accuracy'])} | "
                   f"{oracle['relative_cost']:.3f} |")
        bench_path = os.path.join(path, "benchmark.json")
        if os.path.exists(bench_path):
            b = _load(bench_path)
            alone = ", ".join(f"{n} {1e3 * t:.0f} ms"
                              for n, t in b["seconds_per_pass_alone"].items())
            out += ["", f"Measured over the whole test split, batch {b['batch_size']}, median "
                    f"of {b['repeats']} passes, CPU programs {_dispatch(b)}; reference: "
                    f"{b['reference']['model']} alone at "
                    f"{b['reference']['images_per_s']:.0f} images/s. Each model alone: {alone}"
                    " per pass, at the start. Each point times every model alone again, its "
                    "passes taken in turn with the point's modes: the speed-ups are over the "
                    "reference's passes there (seconds in the last column), the ideal by time "
                    "the speed-up if routing and compaction were free, from the models' times "
                    "there. Of the zero-overhead time: the paths' time from those passes over "
                    "the mode's time.", "",
                    "| loss allowed | chosen on | policy | mode | images/s | measured speed-up | "
                    "ideal by MACs | ideal by time | efficiency by time | of the zero-overhead "
                    "time | test acc. | agreement | recompiles | reference s/pass |",
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for p in b["points"]:
                # The models' passes timed among the point's modes (older files: at the start).
                alone_s = p.get("model_seconds_per_pass", b["seconds_per_pass_alone"])
                zero_overhead = _dot(p["path_fractions"], [
                    sum(alone_s[name] for name in path["models"]) for path in b["paths"]])
                ref_s = p.get("reference_seconds_per_pass")
                for mode, m in p["modes"].items():
                    out.append(f"| {100 * p['loss']:.0f} pt | {p['selected_on']} | "
                               f"{p.get('family', 'bolukbasi')} | {mode} | "
                               f"{m['images_per_s']:.0f} "
                               f"| {m['speedup']:.2f} | {p['ideal_speedup']:.2f} | "
                               f"{p['timed_ideal_speedup']:.2f} | "
                               f"{m['speedup'] / p['timed_ideal_speedup']:.3f} | "
                               f"{zero_overhead / m['seconds_per_pass']:.3f} | "
                               f"{_pct(m['accuracy'])} | {m['agreement']:.4f} | "
                               f"{m['recompiles_after_warmup']} | "
                               + ("-" if ref_s is None else f"{ref_s:.2f}") + " |")
        out += _plot(path, docs, run, label)
    return out


def main() -> None:
    runs = sys.argv[1] if len(sys.argv) > 1 else "runs/results"
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
    os.makedirs(docs, exist_ok=True)
    lines = ["## EENet against its plain backbone (test split)", ""]
    lines += backbone_table(runs)
    lines += ["", "## Which checkpoint: the best by validation accuracy against the last state",
              "", "Every figure in this document comes from each run's best checkpoint by "
              "validation accuracy (ties: the earliest); the last state's test figures, from the "
              "same runs, for comparison.", ""]
    lines += checkpoint_table(runs)
    lines += ["", "## Exit policies at matched budgets", ""]
    lines += budget_tables(runs, docs)
    lines += ["## The learned policy against the max-probability threshold, budgets 0.3-0.9", ""]
    lines += curve_comparison(runs) + [""]
    lines += ["## Wall-clock speed-up of compiled early exit (this 2-core CPU)", ""]
    lines += benchmark_table(runs)
    lines += ["", "## Streaming early exit over a whole split (this 2-core CPU)", "",
              "Every segment runs on full batches of survivors gathered across input batches "
              "(`--modes ...,stream`); `bucketed` runs each arriving chunk alone, `full` is the "
              "plain network batch by batch. Ideal by time: the plain network's time at the "
              "batch size over the sum of each segment's own time at that size weighted by the "
              "fraction of examples reaching it, from single calls of the network and of "
              "each segment made in every round of the modes' passes, so that drift during "
              "the run hits the ideal and the passes alike. CPU programs: "
              "one at a time (`evaluate.py --benchmark`'s default on the CPU, as a GPU runs "
              "its stream) or concurrently (JAX's default); host memory: kept in the process "
              "(the default since `jee/host_memory.py`) or glibc's default malloc, under "
              "which every call of a program with more than 32 MiB of scratch memory, such as "
              "the plain network at batch 256, page-faults all of it in again. A stream's "
              "segments per queue in brackets: `[1+2]` runs segment 0 alone and segments "
              "1-2 as one step, as planned from validation's exit fractions; "
              "`stream_per_segment` is the stream "
              "with a queue per segment, in the same run. Of the zero-overhead time: the pass "
              "that runs every segment at its own measured time on the examples reaching it "
              "and nothing else, over the mode's pass; the efficiency by time without the "
              "plain network's pass in it (the modes' passes are taken in turn, round after "
              "round).", ""]
    lines += stream_table(runs)
    lines += ["", "## Serving: requests of 8 images from 16 client threads (this 2-core CPU)",
              "", "`scripts/load_test.py`: closed loop (each client sends its next request "
              "when the last is answered), then open loop at half of the stream server's "
              "closed-loop throughput, latency counted from each request's scheduled time; "
              "the bound is max_wait_ms + 3 x the slowest segment's time at the batch size. "
              "`bucketed` and `full` run each request alone.", ""]
    lines += load_table(runs)
    lines += ["", "## Network selection over a cascade of models", ""]
    lines += cascade_tables(runs, docs)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
