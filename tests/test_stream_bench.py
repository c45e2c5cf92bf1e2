"""The stream mode of ``evaluate.py --benchmark``: the dataset section of a network's
benchmark.json and the stream modes of a cascade's, on tiny digits networks.

Timings are not checked (the machine is shared); what is checked is that the streaming
engines agree with the masked mode and the offline policy on every example, compile nothing
after warm-up, run full batches but for the last of each queue, and that the reported ideals
follow from the reported times and fractions.
"""

import json
import os

import numpy as np
import pytest

from jee.config import load_config
from jee.evaluation import commands
from jee.evaluation.options import BenchmarkOptions
from jee.infer.stream_plan import plan_spans, span_starts
from jee.infer.synthetic import fractions_for_cost

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, DATASET_BATCHES = 32, 3


def test_arrival_sizes_option():
    options = BenchmarkOptions(batch_size=BATCH, arrival_sizes=["b", "8", 32, "5"])
    assert options.arrival_sizes == ("B", 8, 32, 5)
    assert options.arrivals() == (BATCH, 8, 5)  # "B" and 32 are the same size
    assert BenchmarkOptions().arrivals() == (256, 8)
    for bad in (["0"], ["x"], []):
        with pytest.raises(ValueError, match="arrival_sizes"):
            BenchmarkOptions(arrival_sizes=bad)
    with pytest.raises(ValueError, match="--stream_plan must be one of"):
        BenchmarkOptions(stream_plan="greedy")


def test_network_dataset_section(tmp_path):
    config = load_config(os.path.join(ROOT, "configs", "digits.py") + ":smoke")
    commands.run(config, BenchmarkOptions(
        workdir=str(tmp_path), random_init=True, batch_size=BATCH, repeats=1, ladder="pow2",
        modes=["full", "masked", "stream"], dataset_batches=DATASET_BATCHES))
    bench = json.loads((tmp_path / "eval" / "benchmark.json").read_text())
    assert set(bench["modes"]) == {"full", "masked"}  # stream is timed over the data set only
    d = bench["dataset"]
    n = DATASET_BATCHES * BATCH
    assert d["num_examples"] == n and d["batch_size"] == BATCH
    # The plan: the synthetic policy's own fractions, and the planner's choice from them and
    # the times measured in the run.
    fractions = np.asarray(d["exit_fractions"])
    np.testing.assert_allclose(d["plan_fractions"], fractions_for_cost(
        bench["relative_costs"], 0.5), atol=1e-12)
    spans = d["stream_spans"]
    assert tuple(spans) == plan_spans(d["plan_fractions"], d["plan_segment_seconds"],
                                      d["plan_hop_seconds"])
    assert len(d["plan_segment_seconds"]) == len(fractions)
    planned = len(spans) < len(fractions)
    assert set(d["modes"]) == ({"full", "bucketed", "stream", "bucketed@8", "stream@8"}
                               | ({"stream_per_segment"} if planned else set()))
    assert d["agreement"] == 1.0
    for mode, stats in d["modes"].items():
        assert stats["recompiles_after_warmup"] == 0, mode
        assert stats["arrival_size"] == (8 if "@" in mode else BATCH)
        assert stats["seconds_per_pass"] > 0
        assert stats["images_per_s"] == pytest.approx(n / stats["seconds_per_pass"])
        assert stats["speedup"] == pytest.approx(
            d["modes"]["full"]["seconds_per_pass"] / stats["seconds_per_pass"])
        assert stats["efficiency"] == pytest.approx(stats["speedup"] / d["ideal_speedup"])
        assert stats["efficiency_by_time"] == pytest.approx(
            stats["speedup"] / d["ideal_by_time"])
        if mode != "full":
            assert stats["agreement"] == 1.0, mode
    # The synthetic policy replays assigned exits: the ideals follow from them.
    assert fractions.sum() == pytest.approx(1.0)
    assert d["ideal_speedup"] == pytest.approx(1 / np.dot(fractions, bench["relative_costs"]))
    reach = fractions[::-1].cumsum()[::-1]  # an example reaches k if it exits at k or later
    np.testing.assert_allclose(d["reach_fractions"], reach)
    segment_s = np.asarray(d["segment_seconds_at_batch"])
    assert segment_s.shape == fractions.shape and np.all(segment_s > 0)
    assert d["ideal_by_time"] == pytest.approx(d["full_seconds_at_batch"]
                                               / np.dot(reach, segment_s))
    assert len(d["hop_seconds_at_batch"]) == len(fractions) - 1
    # The stream runs every queue on full batches but the last one: a queue's step takes the
    # examples reaching its span's first segment.
    reached = np.rint(reach * n).astype(int)
    streams = {"stream": spans, "stream@8": spans, "stream_per_segment": [1] * len(fractions)}
    for mode in set(streams) & set(d["modes"]):
        stats = d["modes"][mode]
        assert stats["spans"] == streams[mode]
        queue_rows = reached[list(span_starts(streams[mode]))]
        np.testing.assert_array_equal(stats["batches_per_pass"], -(-queue_rows // BATCH))
        np.testing.assert_array_equal(stats["partial_batches_per_pass"],
                                      queue_rows % BATCH > 0)
        assert stats["partial_sizes"] == [8, BATCH]  # BATCH / 4 = 8, then below 8
        assert 0 <= stats["drains_per_pass"] <= stats["reads_per_pass"]
    # Arriving in chunks of 8 changes nothing the stream compiles.
    assert d["modes"]["stream"]["compiles_at_warmup"] > 0
    assert d["modes"]["stream@8"]["compiles_at_warmup"] == 0


def test_cascade_stream_modes_match_the_offline_policy(digits_cascade):
    config, root = digits_cascade
    batch = 128
    # Operating points at no loss only: the compilations are most of this test's time.
    config = config.copy_and_resolve_references()
    config.cascade.losses = (0.0,)
    commands.run(config, BenchmarkOptions(batch_size=batch, repeats=1, ladder="pow2",
                                          modes=["stream"]))
    bench = json.loads((root / "eval" / "benchmark.json").read_text())
    assert bench["reference"]["recompiles_after_warmup"] == 0
    assert bench["points"], "no operating point was feasible"
    assert {p["loss"] for p in bench["points"]} == {0.0}
    n = bench["num_examples"]
    models = bench["models"]
    # One set of engines times every point: a policy of a structure seen before (the learned
    # one chosen on validation, then on test) compiles nothing.
    seen = set()
    for point in bench["points"]:
        structure = (point["family"], json.dumps(point["params"].get("features")))
        compiles = [m["compiles_at_warmup"] for m in point["modes"].values()]
        assert (max(compiles) == 0) == (structure in seen), (structure, compiles)
        seen.add(structure)
    assert len(seen) < len(bench["points"])
    for point in bench["points"]:
        modes = point["modes"]
        assert set(modes) == {"masked", "bucketed", "stream", "bucketed@8", "stream@8"}
        # The ideal by time from the models' passes timed among this point's modes.
        alone = point["model_seconds_per_pass"]
        assert set(alone) == set(bench["seconds_per_pass_alone"]) == set(models)
        path_s = [sum(alone[name] for name in path["models"]) for path in bench["paths"]]
        assert point["reference_seconds_per_pass"] == alone[bench["reference"]["model"]]
        assert point["timed_ideal_speedup"] == pytest.approx(
            point["reference_seconds_per_pass"] / np.dot(point["path_fractions"], path_s))
        for mode, stats in modes.items():
            # Against the reference's passes timed in turn with this point's.
            assert stats["speedup"] == pytest.approx(
                point["reference_seconds_per_pass"] / stats["seconds_per_pass"])
            assert stats["agreement"] == 1.0, mode
            assert stats["recompiles_after_warmup"] == 0, mode
            assert stats["accuracy"] == pytest.approx(point["test_accuracy"], abs=1e-6)
            assert stats["arrival_size"] == (8 if "@" in mode else batch)
        # Each model runs ceil(visits / batch) batches per pass, one of them partial at most.
        visits = np.zeros(len(models))
        for fraction, path in zip(point["path_fractions"], bench["paths"], strict=True):
            for name in path["models"]:
                visits[models.index(name)] += fraction * n
        visits = np.rint(visits).astype(int)
        for mode in ("stream", "stream@8"):
            np.testing.assert_array_equal(modes[mode]["batches_per_pass"], -(-visits // batch))
            np.testing.assert_array_equal(modes[mode]["partial_batches_per_pass"],
                                          visits % batch > 0)
            assert modes[mode]["partial_sizes"] == [8, 32, batch]
            assert 0 <= modes[mode]["drains_per_pass"] <= modes[mode]["reads_per_pass"]
