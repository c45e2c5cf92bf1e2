"""Training: sharded step equivalence, exact resume, end-to-end smoke runs, clear errors."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import Mesh

from jee import optim, runs, train_lib
from jee.config import base_config
from jee.errors import TrainingDiverged
from jee.models import build_eenet, split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digits_smoke(**overrides):
    sys.path.insert(0, ROOT)
    from configs import digits

    c = digits.get_config("smoke")
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def _run_step(devices, state0, batch, graphdef, tx, cfg, costs):
    mesh = Mesh(np.array(devices), ("data",))
    step = train_lib.make_train_step(graphdef, tx, cfg.loss, costs, mesh)
    state = jax.device_put(state0, train_lib.sharding.replicated(mesh))
    b = jax.device_put(batch, train_lib.sharding.batch_sharding(mesh))
    for _ in range(2):
        state, metrics = step(state, b)
    return jax.device_get(state), jax.device_get(metrics)


def test_step_on_8_devices_equals_1_device():
    assert jax.device_count() == 8
    cfg = base_config()
    model = build_eenet("resnet8", (8, 8, 1), 10, exit_blocks=(0,), exit_type="bnpool")
    graphdef, params, stats = split(model)
    costs = model.costs().relative_costs()
    tx, _ = optim.make_optimizer(cfg.optimizer, 10, 1)
    state0 = jax.device_get(train_lib.init_state(params, stats, tx))
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(16, 8, 8, 1)).astype(np.float32),
             "label": rng.integers(0, 10, 16).astype(np.int32)}
    s1, m1 = _run_step(jax.devices()[:1], state0, batch, graphdef, tx, cfg, costs)
    s8, m8 = _run_step(jax.devices(), state0, batch, graphdef, tx, cfg, costs)
    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5, atol=1e-6)
    for name in ("params", "batch_stats"):
        for a, b in zip(jax.tree.leaves(s1[name]), jax.tree.leaves(s8[name]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # The step really trained: parameters moved from their initial values.
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state0["params"]),
                                                   jax.tree.leaves(s1["params"]), strict=True)]
    assert any(moved)


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    full = _digits_smoke(max_steps=8)
    train_lib.train_and_evaluate(full, str(tmp_path / "full"))
    # First run stops (is "killed") after step 4's checkpoint, the second resumes from it.
    train_lib.train_and_evaluate(_digits_smoke(max_steps=4), str(tmp_path / "resumed"))
    train_lib.train_and_evaluate(_digits_smoke(max_steps=8), str(tmp_path / "resumed"))
    _, _, a = runs.restore_trained(full, str(tmp_path / "full"), "latest")
    _, _, b = runs.restore_trained(full, str(tmp_path / "resumed"), "latest")
    assert int(a["step"]) == int(b["step"]) == 8
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert any('"kind": "test"' in line for line in lines)


def test_smoke_config_trains_under_tfds_mock_data(tmp_path):
    c = base_config()
    c.dataset.source = "tfds"
    c.dataset.name = "mnist"
    c.dataset.val_size = 16
    c.model.arch = "eenet8"
    c.model.num_exits = 2
    c.model.exit_type = "bnpool"
    c.batch_size = 16
    c.eval_batch_size = 16
    c.num_epochs = 1
    c.max_steps = 2
    c.progress = False
    with tfds.testing.mock_data(num_examples=64):
        test = train_lib.train_and_evaluate(c, str(tmp_path))
    assert test["num_examples"] == 64
    assert len(test["exit_accuracy"]) == 3
    assert sum(test["exit_fractions"]) == pytest.approx(1.0)


def test_nan_loss_stops_with_the_step_and_last_good_checkpoint(tmp_path):
    c = _digits_smoke(max_steps=6)
    c.optimizer.learning_rate = 1e30
    with pytest.raises(TrainingDiverged, match=r"NaN/Inf at step \d+"):
        train_lib.train_and_evaluate(c, str(tmp_path))


def test_batch_not_divisible_by_devices_is_a_clear_error(tmp_path):
    c = _digits_smoke(batch_size=12)
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        train_lib.train_and_evaluate(c, str(tmp_path))


def test_cli_reports_unknown_config_key_and_dataset(tmp_path):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="1")
    base = [sys.executable, "train.py", "--config", "configs/digits.py:smoke",
            "--workdir", str(tmp_path)]
    r = subprocess.run(base + ["--config.model.bogus=1"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "bogus" in r.stderr
    r = subprocess.run(base + ["--config.dataset.source=imagenet9"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error:" in r.stderr and "digits" in r.stderr
    assert "Traceback" not in r.stderr


def test_bf16_compute_trains(tmp_path):
    c = _digits_smoke(max_steps=2)
    c.model.dtype = "bfloat16"
    test = train_lib.train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(test["relative_cost"]) and 0 <= test["final_accuracy"] <= 1


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    from jee.checkpoint import CheckpointError

    c = _digits_smoke(max_steps=2)
    with pytest.raises(CheckpointError, match="no checkpoints in .* train first"):
        runs.restore_trained(c, str(tmp_path / "never_trained"))
    train_lib.train_and_evaluate(c, str(tmp_path))
    step_dir = tmp_path / "checkpoints" / "2"
    data_files = [p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0
                  and "metadata" not in p.name and p.suffix != ".json"]
    assert data_files
    for p in data_files:
        p.write_bytes(b"\0garbage")
    with pytest.raises(CheckpointError, match="cannot be (restored|read).*corrupt"):
        train_lib.train_and_evaluate(_digits_smoke(max_steps=4), str(tmp_path))
