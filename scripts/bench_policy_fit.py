"""Time the Bolukbasi policy fit: 32 lambdas, 8 exits, 10,000 synthetic validation examples.

Prints the first call (trace + compile + run) separately from the median of timed runs after
compilation. Target: under 5 s per fit after compilation on a 2-core CPU.

    python scripts/bench_policy_fit.py [--lambdas 32] [--exits 8] [--examples 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

# Runs from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jee.policy.bolukbasi import fit_bolukbasi  # noqa: E402
from jee.policy.features import exit_data  # noqa: E402
from jee.policy.synthetic import synthetic_exit_outputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambdas", type=int, default=32)
    parser.add_argument("--exits", type=int, default=8)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20, help="L-BFGS steps per exit decision")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    outputs = synthetic_exit_outputs(args.exits, args.examples, args.classes)
    data = jax.block_until_ready(exit_data(*outputs))
    lambdas = np.concatenate([[0.0], np.geomspace(1e-3, 10.0, args.lambdas - 1)])

    start = time.perf_counter()
    jax.block_until_ready(fit_bolukbasi(data, lambdas, steps=args.steps))
    first = time.perf_counter() - start

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        policies, objective = jax.block_until_ready(fit_bolukbasi(data, lambdas, steps=args.steps))
        times.append(time.perf_counter() - start)

    print(f"devices: {jax.devices()}")
    print(f"fit: {args.lambdas} lambdas x {args.exits} exits x {args.examples} examples, "
          f"{args.steps} L-BFGS steps per decision")
    median = statistics.median(times)
    print(f"first call (trace + compile + run): {first:.2f} s "
          f"=> trace + compile ~ {first - median:.2f} s")
    print(f"median of {args.repeats} compiled runs: {median:.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f})")
    print(f"training objective range: {float(objective.min()):.4f} .. "
          f"{float(objective.max()):.4f}")


if __name__ == "__main__":
    main()
