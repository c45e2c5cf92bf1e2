"""Watching a run: TensorBoard event files beside metrics.jsonl (read back with TensorBoard's
own loader and served by ``tensorboard --logdir``), no duplicate steps after a kill and a
resume, and the progress bar on a terminal and in a log."""

import io
import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

from jee import checkpoint, train_lib
from jee.metrics_log import MetricsWriter, ProgressBar
from jee.tensorboard_log import HPARAM_KEYS, HPARAM_METRICS, TEST_RUN, log_image, tb_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALAR_TAGS = (
    ["train/loss", "train/ce", "train/cost", "train/learning_rate", "train/images_per_s"]
    + [f"train/exit_accuracy/{k}" for k in range(3)]
    + [f"val/exit_accuracy/{k}" for k in range(3)]
    + [f"val/exit_fraction/{k}" for k in range(3)]
    + ["val/accuracy", "val/final_accuracy", "val/relative_cost"])


def _smoke(**overrides):
    sys.path.insert(0, ROOT)
    from configs import digits

    c = digits.get_config("smoke")  # resnet8, 2 exits, a train record every 2 steps
    c.update(overrides)
    return c


def records(workdir) -> list[dict]:
    with open(os.path.join(str(workdir), "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _accumulator(workdir, run=""):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    # Size 0 keeps every event (the defaults sample a few images and tensors per tag).
    acc = ea.EventAccumulator(os.path.join(tb_dir(str(workdir)), run),
                              size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0})
    return acc.Reload()


def _steps_by_tag(acc) -> dict:
    tags = acc.Tags()
    steps = {t: [e.step for e in acc.Scalars(t)] for t in tags["scalars"]}
    steps.update({t: [e.step for e in acc.Images(t)] for t in tags["images"]})
    steps.update({t: [e.step for e in acc.Tensors(t)] for t in tags["tensors"]})
    return steps


def _record_steps(workdir, kind) -> list[int]:
    return [r["step"] for r in records(workdir) if r["kind"] == kind]


class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def single_run(runs_root):
    workdir = runs_root / "single"
    train_lib.train_and_evaluate(_smoke(max_steps=6), str(workdir))
    return workdir


@pytest.fixture(scope="module")
def resumed_run(runs_root):
    """Trained to step 4; then an attempt to step 8 is killed just before its checkpoint at
    step 8, after writing its train records of steps 6 and 8 and its validation at 8; then
    the same command resumes from step 4 and finishes."""
    workdir = str(runs_root / "resumed")
    train_lib.train_and_evaluate(_smoke(max_steps=4), workdir)
    save = checkpoint.Checkpoints.save

    def save_or_die(self, step, *args, **kwargs):
        if step == 8:
            raise _Killed
        return save(self, step, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint.Checkpoints, "save", save_or_die)
        with pytest.raises(_Killed):
            train_lib.train_and_evaluate(_smoke(max_steps=8), workdir)
    killed = _steps_by_tag(_accumulator(workdir))
    assert killed["train/loss"] == [2, 4, 6, 8] and killed["val/accuracy"] == [4, 8]
    train_lib.train_and_evaluate(_smoke(max_steps=8), workdir)
    return workdir


def test_every_record_is_in_tensorboard_at_its_step(single_run):
    acc = _accumulator(single_run)
    tags = acc.Tags()
    for tag in SCALAR_TAGS:
        assert tag in tags["scalars"], tag
    steps = _steps_by_tag(acc)
    train, val = _record_steps(single_run, "train"), _record_steps(single_run, "val")
    assert len(train) >= 3 and val
    assert {t.split("/")[0] for t in tags["scalars"]} == {"train", "val"}
    for t in tags["scalars"]:
        assert steps[t] == (train if t.startswith("train/") else val), t
    # Same values as the JSON lines (float32 in the event file).
    for record, event in zip([r for r in records(single_run) if r["kind"] == "train"],
                             acc.Scalars("train/learning_rate"), strict=True):
        assert event.value == pytest.approx(record["lr"], rel=1e-6)
    last_val = [r for r in records(single_run) if r["kind"] == "val"][-1]
    assert acc.Scalars("val/exit_fraction/1")[-1].value == pytest.approx(
        last_val["exit_fractions"][1], rel=1e-6)

    images = acc.Images("val/exit_histogram")
    assert [e.step for e in images] == val
    png = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert png.format == "PNG" and png.size == (images[-1].width, images[-1].height)

    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"arch": "resnet8"' in text

    # The closing records: test figures and the hparams session, in the test sub-run.
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = _accumulator(single_run, TEST_RUN)
    test = records(single_run)[-1]
    assert test["kind"] == "test"
    for tag in HPARAM_METRICS:
        assert [e.step for e in acc.Scalars(tag)] == [test["step"]]
    assert acc.Scalars("test/accuracy")[0].value == pytest.approx(test["accuracy"], rel=1e-6)
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    assert set(start.hparams) == set(HPARAM_KEYS)
    assert start.hparams["model.arch"].string_value == "resnet8"
    assert start.hparams["model.num_exits"].number_value == 2
    assert start.hparams["dataset.name"].string_value == "digits"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == list(HPARAM_METRICS)


def test_kill_and_resume_leave_no_duplicate_steps(resumed_run):
    acc = _accumulator(resumed_run)
    steps = _steps_by_tag(acc)
    for tag, seen in steps.items():
        assert len(seen) == len(set(seen)), (tag, seen)
    assert steps["train/loss"] == _record_steps(resumed_run, "train") == [2, 4, 6, 8]
    assert steps["val/accuracy"] == _record_steps(resumed_run, "val") == [4, 8]
    assert steps["val/exit_histogram"] == [4, 8]
    assert steps["config/text_summary"] == [0]
    # The first attempt's test figures at step 4 went with the resume; the new ones are at 8.
    test_steps = _steps_by_tag(_accumulator(resumed_run, TEST_RUN))
    assert test_steps and all(seen == [8] for seen in test_steps.values()), test_steps
    # The values shown are the resumed attempt's (its images/s differ from the killed one's).
    rate = {r["step"]: r["images_per_s"] for r in records(resumed_run) if r["kind"] == "train"}
    for event in acc.Scalars("train/images_per_s"):
        assert event.value == pytest.approx(rate[event.step], rel=1e-5)


def test_log_image_adds_a_png_to_the_run(tmp_path):
    pytest.importorskip("tensorboard")
    png_path = tmp_path / "plot.png"
    Image.new("RGB", (12, 7), "red").save(png_path)
    log_image(str(tmp_path), "eval/accuracy_vs_cost", str(png_path), 42)
    event = _accumulator(tmp_path).Images("eval/accuracy_vs_cost")[0]
    assert (event.step, event.width, event.height) == (42, 12, 7)
    (tmp_path / "not.png").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        log_image(str(tmp_path), "eval/x", str(tmp_path / "not.png"), 0)


def test_tensorboard_off_writes_only_the_json_lines(tmp_path):
    writer = MetricsWriter(str(tmp_path), config=_smoke(tensorboard=False))
    writer.rewind(None)
    writer.write("train", 2, loss=1.0)
    writer.close()
    assert not os.path.exists(tb_dir(str(tmp_path)))
    assert records(tmp_path)[0]["loss"] == 1.0


def _get_json(url, data=None):
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_tensorboard_serves_the_runs(runs_root, single_run, resumed_run, tmp_path):
    pytest.importorskip("tensorboard")
    logdir = str(runs_root)
    runs = {os.path.relpath(tb_dir(str(w)), logdir) for w in (single_run, resumed_run)}
    test_runs = {f"{run}/{TEST_RUN}" for run in runs}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "tensorboard.log", "w+")  # a file: a full pipe would block it
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
                             "--port", str(port), "--host", "127.0.0.1"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        tags, deadline = {}, time.time() + 60
        # It answers before it has read every file: wait until every run is there.
        while not runs | test_runs <= set(tags) and time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "tensorboard.log").read_text()
            try:
                tags = _get_json(f"{base}/scalars/tags")
            except OSError:
                pass
            time.sleep(0.5)
        assert runs | test_runs <= set(tags), tags
        for run in runs:
            assert set(SCALAR_TAGS) <= set(tags[run])
        for run in test_runs:
            assert set(HPARAM_METRICS) <= set(tags[run])
        resumed = os.path.relpath(tb_dir(str(resumed_run)), logdir)
        points = _get_json(f"{base}/scalars/scalars?run={resumed}&tag=train/loss")
        assert [p[1] for p in points] == [2, 4, 6, 8]  # [wall time, step, value]
        groups = _get_json(f"{base}/hparams/session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 10, "colParams": [],
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                "STATUS_RUNNING"]})["sessionGroups"]
        assert {g["name"] for g in groups} == test_runs
        assert all(len(g["metricValues"]) == len(HPARAM_METRICS) for g in groups)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_progress_bar_prints_one_line_per_update_in_a_log(capsys):
    bar = ProgressBar(10, start=2)
    bar.update(4, 0.4, loss=1.5, acc=0.25)
    ProgressBar.message("epoch 0.40 val: accuracy")
    bar.update(10, 1.0, loss=0.5, acc=0.75)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and "\r" not in "".join(lines)
    assert "epoch 0.40" in lines[0] and "4/10" in lines[0] and "loss 1.5" in lines[0]
    assert "step/s" in lines[0] and lines[1] == "epoch 0.40 val: accuracy"
    assert "100%" in lines[2] and "10/10" in lines[2] and "acc 0.75" in lines[2]


def test_progress_bar_redraws_in_place_on_a_terminal(monkeypatch):
    import fcntl
    import struct
    import termios

    master, replica = os.openpty()
    # A new pseudo-terminal is 0 columns wide; tqdm fits the bar to the width.
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    with os.fdopen(replica, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        bar = ProgressBar(10)
        bar.update(5, 0.5, loss=1.0)
        bar.update(10, 1.0, loss=0.5)
        bar.close()
        tty.flush()
        out = b""
        while select.select([master], [], [], 0.5)[0]:  # the terminal hands it over in parts
            out += os.read(master, 1 << 16)
    os.close(master)
    out = out.decode()
    assert "\r" in out and "10/10" in out and "loss 0.5" in out and "step" in out
