"""Wall time of a training run with TensorBoard logging on and off.

    python scripts/bench_logging_overhead.py [--config configs/digits.py] [--runs 3]
    python scripts/bench_logging_overhead.py --config configs/digits.py:smoke --runs 1

Each run is a fresh ``train.py`` process training from scratch in a new temporary workdir, so
it pays everything a user's run pays (the import of tensorboardX included). The
two settings alternate, in ABBA order, so that drift in the machine's load hits both alike.
Prints every wall time, the median of each setting, their ratio (on / off) and the size of
the event files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_once(config: str, tensorboard: bool) -> tuple[float, int]:
    """(wall seconds, bytes of event files) of one training run."""
    with tempfile.TemporaryDirectory(prefix="jee_bench_tb_") as workdir:
        cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--config", config,
               "--workdir", workdir, f"--config.tensorboard={tensorboard}"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"train.py failed (tensorboard={tensorboard}):\n{r.stderr[-3000:]}")
        size = sum(os.path.getsize(os.path.join(d, f))
                   for d, _, files in os.walk(os.path.join(workdir, "tb")) for f in files)
        return wall, size


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/digits.py")
    p.add_argument("--runs", type=int, default=3, help="runs of each setting")
    args = p.parse_args()

    times = {True: [], False: []}
    size = 0
    for i in range(args.runs):
        for tensorboard in ((True, False) if i % 2 == 0 else (False, True)):
            wall, event_bytes = train_once(args.config, tensorboard)
            times[tensorboard].append(wall)
            size = max(size, event_bytes)
            print(f"run {i + 1}, tensorboard {'on ' if tensorboard else 'off'}: {wall:.2f} s",
                  flush=True)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"{args.config}, median of {args.runs} runs each: tensorboard on {on:.2f} s "
          f"(spread {min(times[True]):.2f}-{max(times[True]):.2f}), off {off:.2f} s "
          f"(spread {min(times[False]):.2f}-{max(times[False]):.2f}); ratio on/off "
          f"{on / off:.3f} ({100 * (on / off - 1):+.1f}%); event files {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
