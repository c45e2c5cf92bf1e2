"""scripts/stream_step_costs.py on the digits cascade, as a user runs it (a subprocess: it
turns the CPU's async dispatch off): every program call of the stream counted and timed, the
first model's programs covering every example once, the unaccounted time the pass less the
programs."""

import json
import math
import os
import re
import subprocess
import sys

import pytest

from scripts.stream_step_costs import breakdown, main
from tests.procs import ROOT, env

BATCH = 64


def test_step_costs_of_the_digits_cascade(digits_cascade, tmp_path):
    _, root = digits_cascade
    out = tmp_path / "costs.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "stream_step_costs.py"),
         "--config", os.path.join(ROOT, "configs", "digits_cascade.py:smoke"),
         "--root", str(root), "--loss", "0", "--selected_on", "val",
         "--batch_size", str(BATCH), "--repeats", "2", "--out", str(out)],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["points"] and doc["partial_sizes"][-1] == BATCH
    for point in doc["points"]:
        assert point["loss"] == 0 and point["selected_on"] == "val"
        assert len(point["alone_ms_per_batch"]) == len(doc["models"])
        n, programs = point["num_examples"], point["programs"]
        # Every example passes the first model once, in pieces of at most a batch of which
        # only the last is partial (padded to its program's size).
        rows = 0
        for name, p in programs.items():
            kind, size = re.fullmatch(r"(direct|feed|step \d+) at (\d+)", name).groups()
            assert int(size) in doc["partial_sizes"], name
            assert p["calls_per_pass"] > 0 and p["median_ms"] > 0, name
            if kind in ("direct", "step 0"):
                rows += p["calls_per_pass"] * int(size)
        assert n <= rows < n + BATCH
        total = sum(p["ms_per_pass"] for p in programs.values())
        assert math.isclose(point["unaccounted_ms_per_pass"], point["pass_ms"] - total)
        assert f"loss 0.00 chosen on val, {point['family']}" in proc.stdout
        b = point["breakdown_ms"]
        assert b["pass"] == point["pass_ms"] and math.isclose(b["programs"], total)
        # Padding to whole batches can only add to the ideal.
        assert b["whole_batches"] >= b["ideal"] * (1 - 1e-9)


@pytest.mark.parametrize("sizes", ["abc", "0,16", "16,512", ""])
def test_bad_partial_sizes_are_a_clear_error(sizes, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--config", "configs/digits_cascade.py:smoke", "--root", "unused",
              "--partial_sizes", sizes])
    assert exit_.value.code == 2
    assert "--partial_sizes takes comma-separated sizes from 1 to --batch_size (256)" in (
        capsys.readouterr().err)


def test_breakdown_by_hand():
    # 300 examples at batch 100; models of 10 and 40 ms a batch alone; 1/3 reach the second.
    # The stream ran 3 direct steps of 100 rows, one step of model 1 at 100 rows (a partial
    # flush of 100 real rows would be the same) and a feed, which runs no model.
    costs = {"num_examples": 300, "pass_ms": 80.0, "alone_ms_per_batch": [10.0, 40.0],
             "programs": {"direct at 100": {"calls_per_pass": 3, "ms_per_pass": 33.0},
                          "feed at 100": {"calls_per_pass": 1, "ms_per_pass": 1.0},
                          "step 1 at 100": {"calls_per_pass": 1, "ms_per_pass": 42.0},
                          "step 1 at 25": {"calls_per_pass": 2, "ms_per_pass": 21.0}}}
    # Paths [model 0] and [model 0, model 1], taken by 2/3 and 1/3: 10 and 50 ms a batch.
    b = breakdown(costs, path_fractions=[2 / 3, 1 / 3], path_ms=[10.0, 50.0], batch=100)
    assert math.isclose(b["ideal"], 3 * 10 + 1 * 40)  # 3 batches of model 0, 1 of model 1
    # 3 x 10 + 1 x 40 + 2 x 25/100 x 40
    assert math.isclose(b["whole_batches"], 30 + 40 + 20)
    assert math.isclose(b["programs"], 33 + 1 + 42 + 21) and b["pass"] == 80.0
