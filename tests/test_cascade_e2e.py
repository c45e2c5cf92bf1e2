"""Network selection end to end: three digits models trained briefly, then evaluate.py's
cascade report and describe (its benchmark: tests/test_stream_bench.py)."""

import json
import os

import numpy as np
import pytest

from jee.checkpoint import CheckpointError
from jee.config import load_config
from jee.evaluation import commands
from jee.evaluation.options import DescribeOptions, ReportOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "digits_cascade.py")


def test_cascade_report(digits_cascade):
    config, root = digits_cascade
    commands.run(config, ReportOptions())
    report = json.loads((root / "eval" / "report.json").read_text())
    assert report["num_examples"] == 359
    assert [m["name"] for m in report["models"]] == ["tiny", "small", "large"]
    assert report["models"][-1]["relative_cost"] == 1.0
    assert [p["models"] for p in report["paths"]] == [
        ["tiny"], ["tiny", "small"], ["tiny", "small", "large"], ["tiny", "large"]]
    # Each model's accuracy in the report equals its own training run's test evaluation.
    for m in report["models"]:
        own = json.loads((root / m["name"] / "test_metrics.json").read_text())
        assert m["accuracy"] == pytest.approx(own["exit_accuracy"][-1], abs=1e-6)
    families = {p["family"] for p in report["policies"]}
    # The learned policy with each feature set: the better out of fold is "bolukbasi".
    chosen = report["feature_selection"]["chosen"]
    other = next(n for n in ("basic", "history") if n != chosen)
    assert families == {"max_prob", "margin", "entropy", "bolukbasi", f"bolukbasi_{other}",
                        "oracle"}
    oracle = next(p for p in report["policies"] if p["family"] == "oracle")
    for p in report["policies"]:
        assert len(p["path_fractions"]) == 4
        assert sum(p["path_fractions"]) == pytest.approx(1.0, abs=1e-5)
        assert p["accuracy"] <= oracle["accuracy"] + 1e-9
        expected_cost = np.dot(p["path_fractions"], [q["relative_cost"] for q in report["paths"]])
        assert p["relative_cost"] == pytest.approx(expected_cost, abs=1e-5)
    ops = report["operating_points"]
    assert {(p["loss"], p["selected_on"]) for p in ops["points"]} == {
        (loss, split) for loss in (0.0, 0.01) for split in ("val", "test")}
    for p in ops["points"]:
        if p["feasible"]:
            # Within the allowed loss of the reference on the split the point was chosen on.
            chosen = p[f"{p['selected_on']}_accuracy"]
            assert chosen >= ops["reference"][f"{p['selected_on']}_accuracy"] - p["loss"] - 1e-6
    for name in ("report.csv", "budgets.json", "report_full.json", "accuracy_vs_cost.png",
                 "path_histograms.png"):
        assert (root / "eval" / name).stat().st_size > 0


def test_cascade_describe_and_missing_member(digits_cascade, tmp_path, capsys):
    config, _ = digits_cascade
    commands.run(config, DescribeOptions())
    assert "tiny -> small -> large" in capsys.readouterr().out
    missing = load_config(f"{CONFIG}:smoke")
    missing.cascade.root = str(tmp_path)
    with pytest.raises(CheckpointError, match=r"member 'tiny'.*\n.*digits_cascade.py:tiny,smoke"):
        commands.run(missing, ReportOptions())
