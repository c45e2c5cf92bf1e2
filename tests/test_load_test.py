"""scripts/load_test.py end to end, as a user runs it (a subprocess, the digits smoke network
with random weights): every request answered and recorded, every answer checked against the
masked mode, nothing compiled during the phases, and the JSON it writes complete."""

import json
import os
import subprocess
import sys

import numpy as np

from jee.infer.stream_plan import plan_spans
from scripts.load_test import stream_ceiling
from tests.procs import ROOT, env

CLIENTS, REQUESTS, SIZE = 4, 4, 8


def test_load_test_answers_and_records_every_request(tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "load_test.py"),
         "--config", os.path.join(ROOT, "configs", "digits.py:smoke"), "--random_init",
         "--clients", str(CLIENTS), "--requests", str(REQUESTS), "--request_size", str(SIZE),
         "--out", str(out)],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["gc_frozen_objects"] > 0  # the warmed-up heap is out of the collector's way
    assert set(doc["modes"]) == {"stream", "bucketed", "full"}
    for mode, phases in doc["modes"].items():
        closed, opened = phases["closed"], phases["open"]
        # Closed loop: every client's requests; open loop: all sent, all answered, and each
        # answer's latency recorded (the last one too, whose callback runs after its waiter).
        assert closed["requests"] == CLIENTS * REQUESTS, mode
        assert opened["sent"] == opened["requests"] == CLIENTS * REQUESTS, mode
        assert opened["unanswered"] == 0, mode
        for phase in (closed, opened):
            assert phase["images"] == phase["requests"] * SIZE, mode
            assert phase["num_errors"] == 0 and phase["compiles"] == 0, mode
            if mode != "full":  # the plain network sends every row to the last exit
                assert phase["agreement"] == 1.0, mode
            assert 0 < phase["p50_ms"] <= phase["p99_ms"], mode
    # The stream server gathered rows of several requests into a batch of the first segment.
    assert doc["modes"]["stream"]["closed"]["batches_run"][0] < CLIENTS * REQUESTS
    # The engine's sizes at the default batch of 64: 64 and 64 / 4 (then below 8).
    assert doc["modes"]["stream"]["closed"]["partial_sizes"] == [16, 64]
    # The stream's plan: the planner's choice from the synthetic policy's fractions and the
    # times measured in the run, and one step count per queue.
    spans = doc["modes"]["stream"]["closed"]["spans"]
    assert tuple(spans) == plan_spans(doc["plan_fractions"], np.multiply(
        doc["segment_ms_at_batch"], 1e-3), np.multiply(doc["hop_ms_at_batch"], 1e-3))
    assert len(doc["modes"]["stream"]["closed"]["batches_run"]) == len(spans)
    assert np.isclose(doc["stream_ceiling_images_per_s"], stream_ceiling(
        doc["batch_size"], doc["exit_fractions"], spans,
        np.multiply(doc["span_ms_at_batch"], 1e-3)))
    assert len(doc["span_ms_at_batch"]) == len(spans)
    assert "stream ceiling" in proc.stdout


def test_stream_ceiling_by_hand():
    # Half leave at exit 0, a quarter at 1: reach 1, 0.5, 0.25 of segments of 10, 20, 40 ms,
    # 30 ms of segment time per batch of 64.
    assert np.isclose(stream_ceiling(64, [0.5, 0.25, 0.25], (1, 1, 1), [0.01, 0.02, 0.04]),
                      64 / 0.03)
    # Segments 1-2 as one step of 50 ms, reached by half: 10 + 25 ms.
    assert np.isclose(stream_ceiling(64, [0.5, 0.25, 0.25], (1, 2), [0.01, 0.05]), 64 / 0.035)
    # Nobody leaves early, one step: its time.
    assert np.isclose(stream_ceiling(8, [0.0, 1.0], (2,), [0.004]), 8 / 0.004)
