"""Runs every evaluate.py command on a trained digits run and a digits cascade and collects
their output files, timings removed, so two versions of jee can be compared file by file.

    python scripts/eval_outputs.py --runs DIR --out OUT [--train]   # --train: train DIR first
    diff -r OUT_BEFORE OUT_AFTER

Run it from the checkout whose evaluate.py is to be compared; ``--train`` trains
``DIR/digits`` (configs/digits.py:smoke, 3 epochs) and the digits cascade's smoke members.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = "configs/digits.py:smoke"
CASCADE = "configs/digits_cascade.py"
TRAIN_DIGITS = ["--config.max_steps=0", "--config.num_epochs=3"]
# Keys of benchmark.json whose values are times (or ratios of times).
TIMING = {"images_per_s", "ms_per_batch_median", "ms_per_batch_p90", "compile_s", "speedup",
          "efficiency", "ms_per_pass_median", "ms_per_pass", "seconds", "time_speedup",
          "ideal_speedup_by_time", "first_call_s", "ms_median", "ms_p90", "alone_ms",
          "model_ms", "measured_speedup", "seconds_per_pass", "seconds_per_pass_p90",
          "timed_ideal_speedup", "seconds_per_pass_alone", "ideal_by_time",
          "full_seconds_at_batch", "segment_seconds_at_batch", "efficiency_by_time",
          "reference_seconds_per_pass", "model_seconds_per_pass", "hop_seconds_at_batch",
          "plan_segment_seconds", "plan_hop_seconds",
          # A stream's plan is chosen from measured times, and its batch counts follow it
          # (a planned stream that merges segments also adds a `stream_per_segment` mode).
          "stream_spans", "spans", "batches_per_pass", "partial_batches_per_pass",
          "reads_per_pass", "drains_per_pass"}


def _run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True)


def _strip(obj):
    if isinstance(obj, dict):
        return {k: ("<time>" if k in TIMING or k.endswith("_ms") or k.endswith("_s")
                    else _strip(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _collect(eval_dir: str, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(eval_dir)):
        src, dst = os.path.join(eval_dir, name), os.path.join(out, name)
        if name.startswith("benchmark"):
            with open(src) as f:
                data = json.load(f)
            with open(dst, "w") as f:
                json.dump(_strip(data), f, indent=1, sort_keys=True)
        else:
            shutil.copy(src, dst)
    shutil.rmtree(eval_dir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--train", action="store_true")
    a = p.parse_args()
    runs, out = os.path.abspath(a.runs), os.path.abspath(a.out)
    digits, cascade = os.path.join(runs, "digits"), os.path.join(runs, "digits_cascade")
    if a.train:
        _run(["train.py", "--config", DIGITS, "--workdir", digits, *TRAIN_DIGITS])
        for m in ("tiny", "small", "large"):
            _run(["train.py", "--config", f"{CASCADE}:{m},smoke", "--workdir",
                  os.path.join(cascade, m), "--config.max_steps=24"])
    cascade_root = f"--config.cascade.root={cascade}"
    commands = {
        "describe": ["--config", DIGITS, "--describe"],
        "report": ["--config", DIGITS],
        "benchmark": ["--config", DIGITS, "--benchmark", "--repeats", "2",
                      "--eager_examples", "2"],
        "benchmark_bolukbasi": ["--config", DIGITS, "--benchmark", "--policy", "bolukbasi",
                                "--target_cost", "0.7", "--repeats", "2", "--modes",
                                "full,masked,bucketed,host"],
        "benchmark_random": ["--config", DIGITS, "--benchmark", "--random_init", "--repeats",
                             "2", "--eager_examples", "2"],
    }
    for name, args in commands.items():
        _run(["evaluate.py", *args, "--workdir", digits])
        _collect(os.path.join(digits, "eval"), os.path.join(out, "digits", name))
    for name, args in {"describe": ["--describe"], "report": [],
                       "benchmark": ["--benchmark", "--repeats", "2"]}.items():
        _run(["evaluate.py", "--config", f"{CASCADE}:smoke", cascade_root, *args,
              "--workdir", cascade])
        _collect(os.path.join(cascade, "eval"), os.path.join(out, "cascade", name))


if __name__ == "__main__":
    main()
