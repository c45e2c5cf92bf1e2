"""scripts/device_check.sh on CPU: one run of the script as the device machine would start it
(no GPU visible, so its tiny CPU mode), and the JSON it writes checked for completeness and for
figures that must hold on any machine (agreement, no recompilation, ideal speed-ups and MFU
consistent with the reported parts)."""

import gzip
import json
import math
import os
import subprocess
import sys
import time

import pytest

from jee.infer.stream_plan import plan_spans
from scripts import device_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK = 1e11  # a nominal peak: a CPU has no entry in the table, and MFU must still be computed


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    # No --cpu: the script must notice by itself that JAX's backend is the CPU. A generous
    # budget, so that a busy machine does not turn items into skips.
    env = dict(os.environ, OUT=str(out), JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")
    start = time.monotonic()
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "device_check.sh"),
                           "--budget_s", "600", "--peak_flops", str(PEAK)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - start
    path = out / "device_check.json"
    doc = json.loads(path.read_text()) if path.exists() else None
    # What the run said, for a reader of `pytest -s` (captured otherwise).
    print(f"\ndevice_check.sh: exit {proc.returncode} after {wall:.1f} s; JSON keys "
          f"{list(doc) if doc else None}\n{proc.stdout}")
    return proc, doc, wall


def _items(doc):
    yield "device", doc["device"]
    for section in ("inference", "stream", "train", "serving"):
        for key, entry in doc[section].items():
            yield f"{section}/{key}", entry


def _errors(node, where=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "error":
                yield f"{where}: {value}"
            yield from _errors(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _errors(value, f"{where}[{i}]")


def test_runs_and_writes_every_section(check):
    proc, doc, wall = check
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert doc is not None, proc.stdout + proc.stderr[-3000:]
    assert list(_errors(doc)) == []
    assert doc["device"]["mode"] == "cpu_tiny"
    assert "cpu" in doc["device"]["mode_reason"]
    assert doc["device"]["backend"] == "cpu" and doc["device"]["jax"]
    assert set(doc["inference"]) == set(doc["stream"]) == {
        "batch_32", "batch_64", f"{device_check.LARGE}_batch_16"}
    assert set(doc["train"]) == {"exits", "plain"}
    assert set(doc["serving"]) == {"load_test"}
    for label, entry in _items(doc):
        assert entry["status"] == "ok", (label, entry)
        # One summary line per item on stdout, and the same lines in the file.
        assert any(line.startswith(f"{label}: ") for line in proc.stdout.splitlines()), label
    assert len(doc["summary"]) == 10
    assert wall < 300, f"the CPU run took {wall:.0f} s"


def test_inference_modes_agree_without_recompiling(check):
    _, doc, _ = check
    for key, entry in doc["inference"].items():
        modes = entry["modes"]
        large = key.startswith(f"{device_check.LARGE}_")
        assert set(modes) == set(device_check.LARGE_MODES if large
                                 else device_check.INFERENCE_MODES)
        assert entry["arch"] == ("resnet50" if large else "resnet20")
        assert entry["agreement"] == 1.0
        assert entry["max_recompiles_after_warmup"] == 0
        assert modes["full"]["speedup"] == pytest.approx(1.0)
        if not large:
            assert modes["eager"]["timed_examples"] == entry["eager_examples"]
        for name, m in modes.items():
            assert m["recompiles_after_warmup"] == 0, name
            assert m.get("agreement", 1.0) == 1.0, name
            assert m["images_per_s"] > 0 and math.isfinite(m["speedup"]), name
            assert m["efficiency"] == pytest.approx(m["speedup"] / entry["ideal_speedup"])
        assert entry["mean_relative_cost"] == pytest.approx(0.5, abs=0.05)
        assert entry["ideal_speedup"] == pytest.approx(1 / entry["mean_relative_cost"])


def test_stream_agrees_and_its_ideal_by_time_adds_up(check):
    _, doc, _ = check
    for key, entry in doc["stream"].items():
        b, n = entry["batch_size"], entry["num_examples"]
        large = key.startswith(f"{device_check.LARGE}_")
        assert set(entry["modes"]) == {"full", "stream", "stream@8"} | (
            {"stream@8_assembled"} if large else {"stream_capacity_2B"})
        assert entry["agreement"] == 1.0 and entry["max_recompiles_after_warmup"] == 0
        reach, seconds = entry["reach_fractions"], entry["segment_seconds_at_batch"]
        assert reach[0] == 1.0 and reach == sorted(reach, reverse=True)
        ideal_s = sum(r * s for r, s in zip(reach, seconds, strict=True))
        assert entry["ideal_seconds_per_batch"] == pytest.approx(ideal_s)
        assert entry["ideal_by_time"] == pytest.approx(entry["full_seconds_at_batch"] / ideal_s)
        fractions = entry["exit_fractions"]
        assert entry["ideal_speedup"] == pytest.approx(
            1 / sum(f * c for f, c in zip(fractions, entry["relative_costs"], strict=True)))
        full_pass = entry["modes"]["full"]["seconds_per_pass"]
        for name, m in entry["modes"].items():
            assert m["recompiles_after_warmup"] == 0, name
            assert m["speedup"] == pytest.approx(full_pass / m["seconds_per_pass"]), name
            assert m["efficiency_by_time"] == pytest.approx(m["speedup"] / entry["ideal_by_time"])
            if name != "full":
                assert m["agreement"] == 1.0, name
                # Every image enters segment 0, in full batches of B.
                assert m["batches_per_pass"][0] == n // b, name
                assert len(m["batches_per_pass"]) == len(entry["stream_spans"]), name
                assert m["partial_batches_per_pass"][0] == 0, name
        modes = entry["modes"]
        if not large:
            assert (modes["stream_capacity_2B"]["drains_per_pass"]
                    >= modes["stream"]["drains_per_pass"])
        assert tuple(entry["stream_spans"]) == plan_spans(
            entry["plan_fractions"], entry["plan_segment_seconds"], entry["plan_hop_seconds"])
        assert len(entry["hop_seconds_at_batch"]) == len(seconds) - 1


def test_train_step_mfu_from_xla_flops(check):
    _, doc, _ = check
    train = doc["train"]
    for variant, entry in train.items():
        assert entry["dtype"] == "bfloat16" and entry["finite"], variant
        assert entry["recompiles_after_warmup"] == 0 and entry["out_of_memory"] == []
        assert entry["flops_per_step"] > 0
        assert entry["images_per_s"] == pytest.approx(entry["batch_size"] / entry["step_s_median"])
        assert entry["peak_flops_per_device"] == PEAK
        assert entry["mfu"] == pytest.approx(
            entry["flops_per_step"] / entry["step_s_median"] / PEAK)
        assert entry["mfu_analytic"] == pytest.approx(
            entry["analytic_flops_per_step"] / entry["step_s_median"] / PEAK)
        # XLA's count of the compiled step against 6 x MACs x batch: the same order.
        assert 0.5 < entry["xla_over_analytic_flops"] < 2.0, variant
    assert train["plain"]["early_exits"] == 0 and train["exits"]["early_exits"] > 0
    assert train["exits"]["flops_per_step"] > train["plain"]["flops_per_step"]


def test_load_test_answers_every_request(check):
    _, doc, _ = check
    entry = doc["serving"]["load_test"]
    assert entry["config"] == "configs/digits.py:smoke" and entry["backend"] == "cpu"
    assert set(entry["modes"]) == {"stream", "bucketed", "full"}
    for mode, phases in entry["modes"].items():
        for phase in ("closed", "open"):
            m = phases[phase]
            assert m["requests"] == 4 * 4 and m["num_errors"] == 0, (mode, phase)
            assert m["compiles"] == 0, (mode, phase)
            if mode != "full":
                assert m["agreement"] == 1.0, (mode, phase)
    assert entry["stream_ceiling_images_per_s"] > 0


def test_large_stream_pass_is_traced(check):
    _, doc, _ = check
    trace = doc["stream"][f"{device_check.LARGE}_batch_16"]["trace"]
    assert trace["pass"] == "stream@8" and trace["events"] > 0
    # On the CPU backend the host is the only process; the engine's feeds are among its events.
    host = trace["by_process"]["/host:CPU"]
    assert host == sorted(host, key=lambda r: -r["total_ms"])
    out = doc["argv"][doc["argv"].index("--out") + 1]
    assert trace["file"] and os.path.exists(os.path.join(os.path.dirname(out), trace["file"]))
    assert "trace" not in doc["stream"]["batch_32"]


@pytest.mark.parametrize("flag", ["--batches", "--large_batches"])
def test_bad_batch_sizes_are_a_clear_error(flag, capsys):
    for bad in ("256,x", "0"):
        with pytest.raises(SystemExit):
            device_check.parse_args([flag, bad])
        assert f"{flag} takes comma-separated batch sizes" in capsys.readouterr().err
    assert device_check.parse_args([flag, ""]) is not None  # none: allowed


def test_trace_summary_by_hand(tmp_path):
    events = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/device:GPU:0"}},
        {"ph": "X", "name": "feed", "pid": 1, "tid": 1, "ts": 0, "dur": 1500},
        {"ph": "X", "name": "feed", "pid": 1, "tid": 1, "ts": 2000, "dur": 500},
        {"ph": "X", "name": "step", "pid": 1, "tid": 1, "ts": 3000, "dur": 4000},
        {"ph": "X", "name": "scatter", "pid": 2, "tid": 7, "ts": 100, "dur": 250},
        {"ph": "i", "name": "instant", "pid": 1, "tid": 1, "ts": 5},
    ]
    path = tmp_path / "t.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    summary = device_check.trace_summary(str(path), top=1)
    assert summary["events"] == 7
    assert summary["by_process"] == {
        "/device:GPU:0": [{"name": "scatter", "count": 1, "total_ms": 0.25}],
        "/host:CPU": [{"name": "step", "count": 1, "total_ms": 4.0}]}
    assert device_check.trace_summary(str(path))["by_process"]["/host:CPU"][1] == {
        "name": "feed", "count": 2, "total_ms": 2.0}


@pytest.mark.parametrize("kind, family", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", None),
    ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-80GB", "A100"),
    ("TPU v4", "TPU v4"),
    ("TPU v5 lite", "TPU v5e"),
    ("TPU v5", None),
    ("cpu", None),
])
def test_peak_table_matches_device_kinds(kind, family):
    assert device_check.device_family(kind) == family


def test_stand_ins_load_the_configs_without_ml_collections_grain_orbax(tmp_path):
    # As on the lent GPU machines' image: these packages cannot be imported there.
    program = """
import importlib.abc, sys
BLOCKED = {"grain", "ml_collections", "orbax"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from scripts import device_check as dc
print(dc.import_jee())
from jee.runs import model_for_config
tiny = dc.cpu_settings()
config = dc.load_config(tiny.inference_config, tiny.inference_overrides)
print(config.model.arch, model_for_config(config).exit_blocks, config.batch_size)
config = dc.load_config(tiny.train_config, {"model.num_exits": 0})
print(config.model.arch, config.model.num_exits, config.model.dtype, config.batch_size)
"""
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["['grain', 'ml_collections', 'orbax']",
                                        "resnet20 (1, 2, 4, 5) 128",
                                        "resnet50 0 bfloat16 1024"]
