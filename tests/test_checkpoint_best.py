"""The best checkpoint is tracked across restarts, and a killed run resumes as if never stopped.

Runs train.py / evaluate.py in subprocesses, as a user does, and kills them with SIGKILL.
"""

import json
import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from jee.checkpoint import Checkpoints
from jee.config import load_config
from jee.runs import restore_trained
from tests import procs

# One stage: the best checkpoint by validation accuracy is what these tests track (a
# confidence stage, the digits default, ranks its own last checkpoint first).
SMOKE = f"{procs.DIGITS}:onestage,smoke"
TIMING_KEYS = ("time", "images_per_s")


def _best_by_records(records) -> int:
    """The step of the highest validation accuracy in metrics.jsonl, the earliest on ties."""
    val = [r for r in records if r["kind"] == "val"]
    top = max(r["accuracy"] for r in val)
    return min(r["step"] for r in val if r["accuracy"] == top)


def _kill_when(proc, ready, workdir, timeout=240.0) -> None:
    """SIGKILLs ``proc`` as soon as ``ready(records)`` holds (or once it has exited)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if ready(procs.records(workdir)):
                break
        except (FileNotFoundError, ValueError):
            pass  # not written yet, or a line half written
        time.sleep(0.02)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def _steps(records, kind):
    return [r["step"] for r in records if r["kind"] == kind]


@pytest.fixture(scope="module")
def peaked(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("peaked")
    r = procs.run("train.py", SMOKE, workdir, *procs.PEAKED)
    assert r.returncode == 0, r.stderr
    return workdir


def test_best_step_is_the_best_validated_checkpoint(peaked):
    ckpts = Checkpoints(str(peaked), read_only=True)
    try:
        best, latest = ckpts.best_step(), ckpts.latest_step()
    finally:
        ckpts.close()
    records = procs.records(peaked)
    assert best == _best_by_records(records)
    assert best < latest == max(_steps(records, "val"))
    # test_metrics.json scores that checkpoint, and the last state next to it, labelled.
    scored = json.loads((peaked / "test_metrics.json").read_text())
    assert scored["step"] == best and scored["scored"] == "best checkpoint"
    assert scored["last_state"]["step"] == latest
    assert scored["accuracy"] != scored["last_state"]["accuracy"]


def test_a_killed_resume_keeps_the_best_and_evaluate_loads_it(peaked, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(peaked, workdir)
    best = _best_by_records(procs.records(workdir))
    more = [*procs.PEAKED, "--config.num_epochs=6", "--config.keep_checkpoints=1"]
    proc = procs.start("train.py", SMOKE, workdir, *more)
    _kill_when(proc, lambda rs: max(_steps(rs, "val")) >= 190, workdir)
    assert (workdir / "checkpoints" / str(best)).is_dir()
    r = procs.run("train.py", SMOKE, workdir, *more)
    assert r.returncode == 0, r.stderr
    kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [best, 228]  # keep=1: the latest, and the best however old
    r = procs.run("evaluate.py", SMOKE, workdir)
    assert r.returncode == 0, r.stderr
    assert f"loaded checkpoint step {best} of {workdir}: best by val accuracy" in r.stderr
    r = procs.run("evaluate.py", SMOKE, workdir, "--step", "latest")
    assert f"loaded checkpoint step 228 of {workdir}: latest" in r.stderr


def _comparable(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_kill_at_three_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    extra = ["--config.max_steps=0", "--config.num_epochs=3", "--config.log_every_steps=5"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    r = procs.run("train.py", SMOKE, whole, *extra)
    assert r.returncode == 0, r.stderr
    moments = [
        lambda rs: any(s > 40 for s in _steps(rs, "train")),  # mid epoch 2
        lambda rs: 76 in _steps(rs, "val"),                     # at the epoch-2 checkpoint
        lambda rs: bool(_steps(rs, "test")),                    # while closing the run
    ]
    for ready in moments:
        _kill_when(procs.start("train.py", SMOKE, killed, *extra), ready, killed)
    r = procs.run("train.py", SMOKE, killed, *extra)
    assert r.returncode == 0, r.stderr
    got, want = procs.records(killed), procs.records(whole)
    pairs = [(x["kind"], x["step"]) for x in got]
    assert len(pairs) == len(set(pairs))
    assert _comparable(got) == _comparable(want)
    config = load_config(SMOKE)
    _, _, a = restore_trained(config, str(whole), "latest", announce=False)
    _, _, b = restore_trained(config, str(killed), "latest", announce=False)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
