"""evaluate.py end to end on a briefly trained digits network: report and benchmark files."""

import json
import os
import sys

import numpy as np
import pytest

from jee import data as data_lib
from jee import train_lib
from jee.evaluation import commands
from jee.evaluation.options import BenchmarkOptions, ReportOptions
from jee.infer.masked import MaskedEngine
from jee.infer.stream_plan import plan_spans
from jee.models import split
from jee.policy.thresholds import eenet_policy
from jee.runs import network_functions, on_one_device, restore_trained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import digits  # noqa: E402


def _bench(workdir, **kw):
    base = dict(workdir=str(workdir), batch_size=64, repeats=2, eager_examples=2,
                ladder="pow2", modes=["full", "masked", "bucketed", "host", "eager",
                                      "per_example"])
    return BenchmarkOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("digits")
    config = digits.get_config("smoke")
    config.max_steps = 40
    train_lib.train_and_evaluate(config, str(workdir))
    return config, workdir


def test_report_files_and_oracle_bound(trained):
    config, workdir = trained
    commands.run(config, ReportOptions(workdir=str(workdir)))
    out = workdir / "eval"
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["num_examples"] == 359
    assert len(report["exits"]) == config.model.num_exits + 1
    families = {p["family"] for p in report["policies"]}
    assert {"eenet", "max_prob", "entropy", "bolukbasi", "oracle", "eenet_default"} <= families
    oracle = next(p for p in report["policies"] if p["family"] == "oracle")
    for p in report["policies"]:
        assert set(p) >= {"name", "params", "accuracy", "top5", "relative_cost", "speedup",
                          "exit_fractions"}
        assert sum(p["exit_fractions"]) == pytest.approx(1.0, abs=1e-5)
        # No policy beats the oracle in both accuracy and cost.
        assert not (p["accuracy"] > oracle["accuracy"] + 1e-9
                    and p["relative_cost"] < oracle["relative_cost"] - 1e-9)
    # Single-exit accuracies in the report equal the fraction of correct examples per exit,
    # which the training run's own test evaluation computed independently.
    test_metrics = json.loads((workdir / "test_metrics.json").read_text())
    # Both score the best checkpoint.
    assert [e["accuracy"] for e in report["exits"]] == pytest.approx(
        test_metrics["exit_accuracy"], abs=1e-6)
    for name in ("report.csv", "budgets.json", "accuracy_vs_cost.png", "exit_histograms.png"):
        assert (out / name).stat().st_size > 0


def test_benchmark_with_checkpoint_agrees_with_masked_mode(trained):
    config, workdir = trained
    commands.run(config, _bench(workdir))
    bench = json.loads((workdir / "eval" / "benchmark.json").read_text())
    assert bench["agreement"] == 1.0
    assert set(bench["modes"]) == {"full", "masked", "bucketed", "host", "eager", "per_example"}
    for stats in bench["modes"].values():
        assert stats["recompiles_after_warmup"] == 0
        assert set(stats) >= {"images_per_s", "ms_per_batch_median", "ms_per_batch_p90",
                              "compile_s", "speedup", "efficiency"}


def test_stream_benchmark_with_checkpoint_plans_on_validation(trained):
    config, workdir = trained
    commands.run(config, _bench(workdir, modes=["full", "masked", "stream"], repeats=1,
                                arrival_sizes=["B"]))
    d = json.loads((workdir / "eval" / "benchmark.json").read_text())["dataset"]
    assert d["agreement"] == 1.0
    # The plan's fractions are the masked mode's on the validation split, not the timed one.
    ds, model, state = restore_trained(config, str(workdir), "best")
    params, stats = on_one_device(state)
    segments, _ = network_functions(split(model)[0], params, stats, model.num_exits)
    policy = eenet_policy(model.num_exits, config.threshold)
    val = data_lib.real_images(ds, "val", batch_size=64)
    exits = np.concatenate([np.asarray(MaskedEngine(segments, policy)(x)[0]) for x in val])
    np.testing.assert_allclose(d["plan_fractions"],
                               np.bincount(exits, minlength=model.num_exits) / len(exits))
    assert tuple(d["stream_spans"]) == plan_spans(
        d["plan_fractions"], d["plan_segment_seconds"], d["plan_hop_seconds"])


def test_benchmark_random_init_hits_the_target_cost(tmp_path):
    config = digits.get_config("smoke")
    commands.run(config, _bench(tmp_path, random_init=True, modes=["full", "masked", "bucketed"],
                                target_cost=0.6))
    bench = json.loads((tmp_path / "eval" / "benchmark.json").read_text())
    mean_cost = sum(f * c for f, c in zip(bench["exit_fractions"], bench["relative_costs"],
                                          strict=True))
    assert mean_cost == pytest.approx(0.6, abs=0.02)
    assert bench["ideal_speedup"] == pytest.approx(1 / mean_cost, rel=1e-6)
    assert bench["agreement"] == 1.0
