"""`evaluate.py --describe` works for every config, without data or checkpoints."""

import glob
import json
import os
import subprocess
import sys

import pytest

from jee.config import is_cascade, load_config
from jee.evaluation.describe import describe_cascade, format_cascade
from jee.models.describe import describe, format_table
from jee.runs import model_for_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def _load(path, arg=None):
    return load_config(f"{path}:{arg}" if arg else path)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_describes(path):
    config = _load(path)
    if is_cascade(config):
        _check_cascade(path, config)
        return
    desc = describe(model_for_config(config))
    exits = desc["exits"]
    assert len(exits) == config.model.num_exits + 1
    assert [e["block"] for e in exits] == sorted({e["block"] for e in exits})
    assert exits[-1]["block"] == desc["num_blocks"] - 1
    rel = [e["relative_cost"] for e in exits]
    assert all(a < b for a, b in zip(rel, rel[1:], strict=False)) and rel[-1] >= 1.0
    assert exits[-1]["params"] == desc["params"]
    assert "final" in format_table(desc)
    # Each config's smoke variant builds too.
    _load(path, "smoke")


def _check_cascade(path, config):
    desc = describe_cascade(config)
    costs = [m["relative_cost"] for m in desc["models"]]
    # Members are listed cheapest first and the most expensive defines the unit.
    assert costs == sorted(costs) and costs[-1] == 1.0 and len(set(costs)) == len(costs)
    assert [p["models"] for p in desc["paths"][:1]] == [[desc["models"][0]["name"]]]
    for name in config.cascade.names:
        member = _load(path, name)
        assert member.model.num_exits == 0 and not member.cascade.members
        assert _load(path, f"{name},smoke").max_steps > 0
    smoke = _load(path, "smoke")
    assert all(m.endswith(",smoke") for m in smoke.cascade.members)
    assert "->" in format_cascade(desc)


def test_describe_cli_writes_json(tmp_path):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="1")
    r = subprocess.run([sys.executable, "evaluate.py", "--config", "configs/digits.py",
                        "--describe", "--workdir", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    desc = json.loads((tmp_path / "eval" / "describe.json").read_text())
    assert set(desc) >= {"params", "macs_full", "exits"}
    assert set(desc["exits"][0]) >= {"block", "macs", "relative_cost", "params"}
    # ResNet-20 at 8x8: macs_full is the backbone's conv + dense work, 1/16 of the 32x32 figure
    # for the convolutions (41 M / 16 ~ 2.5 M).
    assert 2.3e6 < desc["macs_full"] < 2.7e6
