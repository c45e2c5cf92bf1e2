"""One live run per workdir: a second one stops at once; a dead or stale holder does not block."""

import json
import os
import socket
import time

import pytest

from jee.workdir import LOCK_NAME, WorkdirError, WorkdirLock
from tests import procs

SMOKE = f"{procs.DIGITS}:smoke"


def test_a_second_train_in_the_same_workdir_stops_at_once(tmp_path):
    first = procs.start("train.py", SMOKE, tmp_path, *procs.PEAKED)
    deadline = time.time() + 120
    while not (tmp_path / "metrics.jsonl").exists() and time.time() < deadline:
        assert first.poll() is None, first.communicate()[1]
        time.sleep(0.05)
    start = time.time()
    second = procs.run("train.py", SMOKE, tmp_path, *procs.PEAKED, timeout=60)
    took = time.time() - start
    assert first.poll() is None, "the first run ended before the second was tried"
    assert second.returncode == 2 and took < 10
    lines = procs.error_lines(second.stderr)
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "in use by train.py" in lines[0]
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    # The first run's results are its own: one record per (kind, step), a complete test.
    records = procs.records(tmp_path)
    pairs = [(r["kind"], r["step"]) for r in records]
    assert len(pairs) == len(set(pairs)) and pairs[-1] == ("test", 152)
    assert json.loads((tmp_path / "test_metrics.json").read_text())["last_state"]["step"] == 152
    assert not (tmp_path / LOCK_NAME).exists()


def _fake_holder(workdir, host, renewed):
    info = {"what": "train.py", "host": host, "pid": 4242, "started": "earlier",
            "renewed": renewed}
    (workdir / LOCK_NAME).write_text(json.dumps(info))


def test_another_hosts_fresh_lease_blocks_and_a_stale_one_does_not(tmp_path):
    _fake_holder(tmp_path, "elsewhere", time.time())
    with pytest.raises(WorkdirError, match="pid 4242 on host elsewhere"):
        WorkdirLock(str(tmp_path)).acquire()
    _fake_holder(tmp_path, "elsewhere", time.time() - 3600)
    with WorkdirLock(str(tmp_path)):
        held = json.loads((tmp_path / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_dead_local_holder_does_not_block(tmp_path):
    # What kill -9 leaves: the file names a process, but no flock is held on it.
    _fake_holder(tmp_path, socket.gethostname(), time.time())
    with WorkdirLock(str(tmp_path)):
        with pytest.raises(WorkdirError, match="in use by train.py"):
            WorkdirLock(str(tmp_path)).acquire()
