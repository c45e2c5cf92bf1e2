"""Multi-process data parallelism on JAX's distributed runtime, and portable checkpoints.

Two processes with two CPU devices each (collectives through gloo) must train exactly like
one process with four devices, and checkpoints must restore across device counts.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jee import runs, train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import digits  # noqa: E402
from scripts.launch_local import launch  # noqa: E402

SMOKE = ["--config", "configs/digits.py:smoke", "--config.batch_size=16",
         "--config.eval_batch_size=32"]


def _train(workdir, *extra, devices=1):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "train.py", *SMOKE, "--workdir", str(workdir), *extra],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _config(max_steps):
    c = digits.get_config("smoke")
    c.batch_size, c.eval_batch_size, c.max_steps = 16, 32, max_steps
    return c


def _assert_same(a, b, atol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=atol)


def test_two_processes_equal_one_process_and_resume_in_one(tmp_path):
    mp, single = tmp_path / "mp", tmp_path / "single"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code = launch(["train.py", *SMOKE, "--config.max_steps=4", "--workdir", str(mp)],
                      num_processes=2, devices_per_process=2, timeout=600)
    finally:
        os.chdir(cwd)
    assert code == 0
    _train(single, "--config.max_steps=4", devices=4)
    _, _, a = runs.restore_trained(_config(4), str(mp), "latest")
    _, _, b = runs.restore_trained(_config(4), str(single), "latest")
    assert int(a["step"]) == int(b["step"]) == 4
    _assert_same(a["params"], b["params"])
    _assert_same(a["batch_stats"], b["batch_stats"])
    # The 2-process checkpoint restores in a 1-process run, which continues to step 6.
    r = _train(mp, "--config.max_steps=6", devices=1)
    assert "resumed from checkpoint at step 4" in r.stderr
    _, _, a = runs.restore_trained(_config(6), str(mp), "latest")
    assert int(a["step"]) == 6
    # Evaluation gathers every process's outputs: the policy report of a 2-process run
    # equals the 1-process report.
    evaluate = ["evaluate.py", *SMOKE, "--config.max_steps=6", "--workdir", str(mp)]
    os.chdir(ROOT)
    try:
        assert launch(evaluate, num_processes=2, devices_per_process=2, timeout=600) == 0
    finally:
        os.chdir(cwd)
    two = json.loads((mp / "eval" / "report.json").read_text())
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="1", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, *evaluate], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    one = json.loads((mp / "eval" / "report.json").read_text())
    assert two["num_examples"] == one["num_examples"] == 359
    for a, b in zip(two["exits"], one["exits"], strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)
    for a, b in zip(two["policies"], one["policies"], strict=True):
        assert a["name"] == b["name"]
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)
        assert a["relative_cost"] == pytest.approx(b["relative_cost"], abs=1e-5)


def test_checkpoint_moves_between_8_devices_and_1(tmp_path):
    assert jax.device_count() == 8
    # 8 -> 1: written here (8 devices), continued in a 1-device process.
    eight = tmp_path / "eight"
    train_lib.train_and_evaluate(_config(2), str(eight))
    r = _train(eight, "--config.max_steps=4", devices=1)
    assert "resumed from checkpoint at step 2" in r.stderr
    # 1 -> 8: written by a 1-device process, restored and continued here.
    one = tmp_path / "one"
    _train(one, "--config.max_steps=2", devices=1)
    _, _, state = runs.restore_trained(_config(2), str(one), "latest")
    assert int(state["step"]) == 2
    assert len(jax.tree.leaves(state["params"])[0].sharding.device_set) == 8
    train_lib.train_and_evaluate(_config(4), str(one))
    _, _, state = runs.restore_trained(_config(4), str(one), "latest")
    assert int(state["step"]) == 4
