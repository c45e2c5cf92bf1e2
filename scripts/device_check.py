"""The figures jee needs from a GPU, measured in one command the first time one is available.

    bash scripts/device_check.sh                      # -> $OUT/device_check.json, else docs/
    python scripts/device_check.py --out PATH.json [--cpu] [--budget_s 450] [--peak_flops F]

Writes ONE JSON file with these sections:

- ``device``: backend, device kind and count, jax/jaxlib/flax versions, date, and which
  packages jee imports but the machine lacks (see "Stand-ins" below).
- ``inference``: EENet-110 (``configs/cifar10_eenet110.py``, 8 early exits), random weights, a
  synthetic policy at mean relative cost 0.5; :func:`jee.infer.benchmark.run_benchmark` with
  every mode (full, masked, bucketed, host, eager, per_example) at batch 256 and 1024.
- ``stream``: :class:`jee.infer.stream.StreamEngine` over 8 batches of synthetic images, fed
  in chunks of the batch size and of 8, against the plain backbone run batch by batch; the
  ideal speed-up by MACs (``1 / mean cost``) and by time (every segment timed alone at the
  batch size on real intermediate features, weighted by the fraction of examples reaching it).
- ``inference`` and ``stream`` again, keys ``resnet50_batch_B``: the ImageNet EENet-50
  (``configs/imagenet_resnet50.py``, 4 early exits, bf16, 224x224), random weights, the same
  synthetic policy; compiled modes only (full, masked, bucketed, host), and the stream with
  chunks of 8 also copied together on the host (``stream@8_assembled``) in place of the
  2B-capacity variant; one more stream@8 pass profiled (``trace``, and the Perfetto trace
  beside the JSON). ResNet-110 on 32x32 images is launch-bound on a GPU (its
  segments at batch 256 take longer one after another than the whole network); ResNet-50 on
  224x224 is compute-bound, which is where early exit can turn saved FLOPs into time.
- ``train``: the ResNet-50 bf16 train step (``configs/imagenet_resnet50.py``) with the
  config's exits and as the plain backbone (``model.num_exits=0``): images/s and MFU, XLA's
  flop count of the compiled step over its time and the device's peak dense bf16 FLOP/s.
- ``serving``: ``scripts/load_test.py`` on EENet-110 with random weights and the synthetic
  policy (16 client threads sending requests of 8 images, closed then open loop): the
  streaming server's throughput and latency against each request run through the bucketed
  engine and the plain network, and the stream's ceiling; its report as ``--out`` writes it.

On a CPU backend (no GPU visible to JAX, or ``--cpu``) every shape is tiny, so the whole
check runs in a minute or two: it proves the script and the code paths, not the speed.

Every item (a section at one batch size or variant) is guarded: a failure is recorded as
``"error"`` in its entry and the next item runs. Items run cheapest-first-of-each-kind (batch
256 of inference and stream, then training and serving, then batch 1024, then ResNet-50), and
an item whose estimated time would take the run past ``--budget_s`` is recorded as skipped.
The file is rewritten after every item, and a watchdog writes it and exits at
``--hard_limit_s`` even if an item hangs, so a run stopped at any point leaves what it
measured. Exit code 0 whenever the file was written.

Stand-ins: jee imports grain, orbax and ml_collections at module level for data loading,
checkpoints and configs. The lent GPU machines' image has none of grain and ml_collections
and cannot install anything, and this check needs none of their functionality, so when one
of them cannot be imported it is replaced by a stand-in (an inert module; for
ml_collections, a minimal ``ConfigDict``), and ``device.stand_ins`` says which were.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.abc
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace

# The budget counts from here: interpreter start-up is negligible, jax's import is not.
START = time.monotonic()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

INFERENCE_MODES = ("full", "masked", "bucketed", "host", "eager", "per_example")
# The large network's modes: the eager ones would time Python dispatch of ~170 ops an image.
LARGE_MODES = ("full", "masked", "bucketed", "host")
LARGE = "resnet50"  # the large network's items are keyed f"{LARGE}_batch_{B}"
TRAIN_VARIANTS = ("exits", "plain")
SECTIONS = ("device", "inference", "stream", "train", "serving")

# Peak dense (no sparsity) bf16 FLOP/s of one device, from the vendors' datasheets.
PEAK_BF16_FLOPS = {
    "H100 SXM": 989e12,
    "H100 PCIe": 756e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5e": 197e12,
}


# How to read the figures; written into the JSON next to them.
NOTES = [
    "Times are medians after a warm-up call, with jax.block_until_ready; compile_s is the "
    "first call minus the median. A program compiled by an earlier item (the plain backbone "
    "at a batch size already seen) is cached, so its compile_s there is about 0.",
    "inference: run_benchmark on one batch; eager and per_example run eager_examples images "
    "one at a time, scaled per image. speedup is over 'full' (the plain backbone) in the same "
    "item; efficiency is speedup / ideal_speedup, ideal_speedup = 1 / mean relative cost.",
    "stream: passes over num_examples images; 'stream' is fed batches of B already on the "
    "device, 'stream@8' chunks of 8 from the host; speedup is full's pass time (batch by "
    "batch at B) over the mode's. ideal_by_time = full_seconds_at_batch / "
    "ideal_seconds_per_batch, ideal_seconds_per_batch = sum_k reach_fractions[k] * "
    "segment_seconds_at_batch[k], single calls of the backbone and of each segment at B, "
    "made calls_per_round times in every round of the passes (median over rounds of their "
    "mean); efficiency_by_time = speedup / ideal_by_time. stream_spans: segments per queue, "
    "planned from the synthetic policy's fractions and the segment and hop times measured "
    "before the passes (plan_segment_seconds, plan_hop_seconds; jee/infer/stream_plan.py). "
    "reads_per_pass: queue lengths read back; drains_per_pass: reads of the last program "
    "dispatched, nothing queued behind it (the device may idle until the next dispatch). "
    "stream_capacity_2B: the stream with 2 batches of room per queue instead of 3, which "
    "reads the lengths after nearly every step. feed_sizes: the sizes of the pieces that "
    "feed queue 0, [B] where pushed chunks are copied together into batches on the host, "
    "powers of two where they go as pushed (a large batch on an accelerator); "
    "stream@8_assembled (large network): the chunks of 8 copied together whatever their "
    "size; assembled_per_pass: pieces copied together on the host. "
    "upload_seconds_per_pass: the small chunks' uploads alone (jax.device_put of each, one "
    "after another), a floor for stream@8 where the images are large.",
    "agreement: exit and argmax equal to the masked mode's; exit_agreement: exits alone; "
    "max_abs_logit_diff: at the examples whose exits agree. In bfloat16 separately compiled "
    "segments round where one fused program need not, so random weights' near-tied logits "
    "can flip the argmax while every exit agrees.",
    "inference/resnet50_batch_B, stream/resnet50_batch_B: the same measurements on the large "
    "network (settings.large_config, large_overrides), compiled inference modes only, and "
    "stream@8_assembled in place of stream_capacity_2B. Its stream entry's 'trace': one more "
    "stream@8 pass under jax.profiler.trace, its events summed by process and name "
    "(inclusive milliseconds), the Perfetto trace beside the JSON (trace_*.json.gz) unless "
    "over 15 MiB.",
    "train: one device-resident batch reused every step (no input pipeline). flops_per_step "
    "is XLA's cost_analysis() of the compiled step, i.e. of one device's program; mfu = "
    "flops_per_step / step_s_median / peak_flops_per_device (dense bf16 peak). "
    "analytic_flops_per_step = 6 x forward MACs (all exit heads) x images per device; "
    "mfu_analytic = analytic_flops_per_step / step_s_median / peak. On GPUs XLA's cost "
    "analysis does not count convolutions lowered to cuDNN custom calls (seen on an H100: "
    "0.017 of the analytic count), so there mfu understates and mfu_analytic is the figure.",
]


def device_family(device_kind: str) -> str | None:
    """The :data:`PEAK_BF16_FLOPS` entry of a ``jax.devices()[0].device_kind``, or None.

    Kinds read e.g. 'NVIDIA H100 80GB HBM3', 'NVIDIA H100 PCIe', 'NVIDIA H200',
    'NVIDIA A100-SXM4-80GB', 'TPU v4', 'TPU v5 lite'.
    """
    k = device_kind.lower()
    if "h100" in k:
        if "pcie" in k:
            return "H100 PCIe"
        # The H100 NVL has its own peak (not in the table): no guess rather than a wrong MFU.
        return None if "nvl" in k else "H100 SXM"
    if "h200" in k:
        return "H200"
    if "a100" in k:
        return "A100"
    # 'TPU v4 lite' is the v4i inference chip, with a different peak.
    if "tpu" in k and "v4" in k and "lite" not in k:
        return "TPU v4"
    if "tpu" in k and ("v5e" in k or "v5 lite" in k or "v5lite" in k):
        return "TPU v5e"
    return None


def ideal_by_time(full_s: float, segment_s, reach) -> tuple[float, float]:
    """``(ideal seconds per batch, ideal speed-up)``: what an engine running every segment on
    full batches at no overhead would take, ``sum_k reach[k] * segment_s[k]``, and the plain
    backbone's time over it."""
    ideal_s = float(sum(r * s for r, s in zip(reach, segment_s, strict=True)))
    return ideal_s, full_s / ideal_s


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def xla_flops(cost_analysis) -> float:
    """The ``flops`` of ``compiled.cost_analysis()``: a dict, or a list of one dict per
    program in older jax versions."""
    if isinstance(cost_analysis, (list, tuple)):
        return float(sum(c.get("flops", 0.0) for c in cost_analysis))
    return float(cost_analysis.get("flops", 0.0))


# ---- stand-ins for packages jee imports but this check never uses ----

# Packages whose module-level import by jee is all this check needs of them (data loading,
# checkpoints, TensorBoard). ml_collections gets a working minimal ConfigDict instead.
INERT_PACKAGES = ("grain", "array_record", "orbax", "tensorflow_datasets", "tensorboardX")


class _Absent:
    """What a stand-in module's attributes are: anything may be looked up, nothing may run."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(f"{self._name}.{name}")

    def __call__(self, *args, **kwargs):
        raise ModuleNotFoundError(f"{self._name} is a stand-in: the package is not installed")


class _InertModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(f"{self.__name__}.{name}")


class _ConfigDict(dict):
    """The part of ``ml_collections.ConfigDict`` that jee's config files use: nested keys
    read and written as attributes."""

    def __init__(self, initial=None, **kwargs):
        super().__init__()
        for key, value in dict(initial or {}, **kwargs).items():
            self[key] = value

    def __setitem__(self, key, value):
        if isinstance(value, dict) and not isinstance(value, _ConfigDict):
            value = _ConfigDict(value)
        super().__setitem__(key, value)

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value) -> None:
        self[name] = value

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, _ConfigDict) else v for k, v in self.items()}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a stand-in module for every module under the given top-level packages."""

    def __init__(self, packages):
        self.packages = set(packages)

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.packages:
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None

    def create_module(self, spec):
        if spec.name.partition(".")[0] == "ml_collections":
            return types.ModuleType(spec.name)
        return _InertModule(spec.name)

    def exec_module(self, module) -> None:
        module.__path__ = []  # a package, so that submodule imports resolve here too
        if module.__name__ in ("ml_collections", "ml_collections.config_dict"):
            module.ConfigDict = _ConfigDict
            module.placeholder = lambda type_=None, required=False: None
            if module.__name__ == "ml_collections":
                module.config_dict = importlib.import_module("ml_collections.config_dict")


def import_jee(allow_stand_ins: bool = True) -> list[str]:
    """Imports the jee modules this check uses; returns the packages replaced by stand-ins.

    A stand-in is used only for a package of :data:`INERT_PACKAGES` or ml_collections whose
    import failed: an installed, working package is never replaced.
    """
    allowed = (*INERT_PACKAGES, "ml_collections")
    finder = None
    while True:
        try:
            for name in ("jee.config", "jee.runs", "jee.train_lib", "jee.optim", "jee.sharding",
                         "jee.infer.benchmark", "jee.infer.stream", "jee.infer.synthetic",
                         "jee.infer.masked", "jee.infer.compiles", "jee.models"):
                importlib.import_module(name)
            return sorted(finder.packages) if finder else []
        except ImportError as e:
            top = (e.name or "").partition(".")[0]
            if not allow_stand_ins or top not in allowed or (finder and top in finder.packages):
                raise
            if finder is None:
                finder = _StandIns(())
                sys.meta_path.insert(0, finder)
            finder.packages.add(top)
            # Drop the half-imported modules: the stand-in and jee's importers start afresh.
            for name in list(sys.modules):
                if name.partition(".")[0] in (top, "jee"):
                    del sys.modules[name]


# ---- what to run, at which size ----

@dataclass(frozen=True)
class Settings:
    """Sizes of one run; :func:`accelerator_settings` and :func:`cpu_settings` are the two
    defaults, which command-line flags may override."""

    scale: str
    batches: tuple[int, ...]
    repeats: int
    eager_examples: int
    eager_repeats: int
    stream_repeats: int
    train_batch: int
    train_warmup: int
    train_steps: int
    inference_overrides: dict = field(default_factory=dict)
    train_overrides: dict = field(default_factory=dict)
    # Seconds an item is expected to take before anything similar was measured (compilation
    # dominates), for the budget check.
    priors: dict = field(default_factory=dict)
    inference_config: str = "configs/cifar10_eenet110.py"
    train_config: str = "configs/imagenet_resnet50.py"
    large_config: str = "configs/imagenet_resnet50.py"
    large_batches: tuple[int, ...] = ()
    large_overrides: dict = field(default_factory=dict)
    target_cost: float = 0.5
    dataset_batches: int = 8
    small_arrival: int = 8
    # Where the large network's stream@small pass is traced to (the JSON's folder); None: no
    # trace.
    trace_dir: str | None = None
    # scripts/load_test.py: its config (random weights) and further arguments.
    serving_config: str = "configs/cifar10_eenet110.py"
    serving_args: tuple[str, ...] = ("--phase_s", "20")


def accelerator_settings() -> Settings:
    return Settings(scale="accelerator", batches=(256, 1024), repeats=10, eager_examples=8,
                    eager_repeats=2, stream_repeats=5, train_batch=256, train_warmup=2,
                    train_steps=10, train_overrides={"model.dtype": "bfloat16"},
                    large_batches=(256,), large_overrides={"model.dtype": "bfloat16"},
                    priors={"inference": 150.0, "stream": 60.0, "train": 100.0,
                            "large": 150.0, "serving": 120.0})


def cpu_settings() -> Settings:
    # ResNet-20 has 9 blocks: Pareto placement fits at most 6 early exits there; 4 keep the
    # compile time of the bucketed ladder small on two busy cores.
    return Settings(scale="cpu_tiny", batches=(32, 64), repeats=3, eager_examples=4,
                    eager_repeats=1, stream_repeats=2, train_batch=8, train_warmup=1,
                    train_steps=2,
                    inference_overrides={"model.arch": "resnet20", "model.width": 4,
                                         "model.num_exits": 4, "dataset.image_size": 16},
                    train_overrides={"model.dtype": "bfloat16", "model.width": 8,
                                     "dataset.image_size": 32},
                    large_batches=(16,),
                    large_overrides={"model.dtype": "bfloat16", "model.width": 8,
                                     "dataset.image_size": 32},
                    serving_config="configs/digits.py:smoke",
                    serving_args=("--clients", "4", "--requests", "4", "--phase_s", "10"),
                    priors={"inference": 30.0, "stream": 20.0, "train": 40.0, "large": 40.0,
                            "serving": 30.0})


def load_config(path: str, overrides: dict):
    from jee import config as config_lib

    config = config_lib.load_config(os.path.join(ROOT, path))
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = getattr(node, part)
        setattr(node, last, value)
    return config


# ---- a profile of one pass ----

# The device machine sends back files of at most 16 MiB.
TRACE_MAX_BYTES = 15 << 20


def trace_summary(path: str, top: int = 25) -> dict:
    """The events of a Perfetto trace (``jax.profiler.trace(create_perfetto_trace=True)``)
    summed by process (host, each device) and name: count and total milliseconds, the ``top``
    longest per process. Totals are inclusive: a Python frame's time holds its callees'."""
    import gzip

    with gzip.open(path, "rt") as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    names = {e["pid"]: e.get("args", {}).get("name", str(e["pid"])) for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    totals: dict[tuple[str, str], list] = {}
    for e in events:
        if e.get("ph") != "X":
            continue
        key = (names.get(e.get("pid"), str(e.get("pid"))), str(e.get("name", "?")))
        total = totals.setdefault(key, [0, 0.0])
        total[0] += 1
        total[1] += float(e.get("dur", 0.0)) / 1e3
    by_process: dict[str, list] = {}
    for (process, name), (count, ms) in totals.items():
        by_process.setdefault(process, []).append({"name": name, "count": count,
                                                   "total_ms": ms})
    return {"events": len(events),
            "by_process": {p: sorted(rows, key=lambda r: -r["total_ms"])[:top]
                           for p, rows in sorted(by_process.items())}}


def traced(run: Callable, path: str) -> dict:
    """Runs ``run()`` once under ``jax.profiler.trace``: its :func:`trace_summary`, with the
    Perfetto trace copied to ``path`` when it is small enough to come back from the device
    machine."""
    import glob
    import shutil
    import tempfile

    import jax

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            run()
        wall = time.perf_counter() - start
        found = glob.glob(os.path.join(tmp, "**", "perfetto_trace.json.gz"), recursive=True)
        if not found:
            return {"error": "jax.profiler wrote no perfetto_trace.json.gz", "wall_s": wall}
        summary = {"wall_s": wall, **trace_summary(found[0])}
        size = os.path.getsize(found[0])
        if size <= TRACE_MAX_BYTES:
            shutil.copyfile(found[0], path)
            summary["file"] = os.path.basename(path)
        else:
            summary["file"] = None
            summary["file_note"] = f"{size} bytes, over {TRACE_MAX_BYTES}: not kept"
    return summary


# ---- the JSON document ----

def _plain(value):
    """JSON-safe builtins: numpy scalars and arrays unwrapped, non-finite floats as strings
    (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Report:
    """The document, rewritten whole (write then rename) after every change, under a lock
    shared with the watchdog and the SIGTERM handler."""

    def __init__(self, path: str, doc: dict):
        self.path, self.doc = path, doc
        self.lock = threading.RLock()
        self.finished = False

    def entry(self, section: str, key: str | None) -> dict:
        return self.doc[section] if key is None else self.doc[section][key]

    def set_entry(self, section: str, key: str | None, value: dict) -> None:
        with self.lock:
            if self.finished:
                return
            entry = self.entry(section, key)
            entry.clear()
            entry.update(value)
            self.write()

    def write(self) -> None:
        with self.lock:
            self.doc["wall_s"] = round(time.monotonic() - START, 3)
            # default=str: a stray object in a result must not cost the whole file.
            text = json.dumps(_plain(self.doc), indent=2, default=str)
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            tmp = f"{self.path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, self.path)

    def finish(self, reason: str | None = None) -> None:
        """Final write: with ``reason`` (a hard stop), the running item becomes an error and
        the pending ones are skipped. Prints the one-line summaries."""
        with self.lock:
            if self.finished:
                return
            if reason:
                for section, key in self.items():
                    entry = self.entry(section, key)
                    if entry.get("status") == "running":
                        entry.update(status="error", error=f"stopped: {reason}",
                                     wall_s=round(time.monotonic() - START
                                                  - entry.get("started_at_s", 0.0), 3))
                    elif entry.get("status") == "pending":
                        entry.update(status="skipped", reason=f"stopped: {reason}")
                self.doc["stopped"] = reason
            self.doc["finished"] = _now()
            self.doc["summary"] = [summary_line(s, k, self.entry(s, k)) for s, k in self.items()]
            self.write()
            self.finished = True
            for line in self.doc["summary"]:
                print(line)
            print(f"wrote {self.path} in {time.monotonic() - START:.1f} s"
                  + (f" (stopped: {reason})" if reason else ""))
            sys.stdout.flush()

    def items(self) -> list[tuple[str, str | None]]:
        out = []
        for section in SECTIONS:
            value = self.doc.get(section)
            if not isinstance(value, dict):
                continue
            if "status" in value:
                out.append((section, None))
            else:
                out.extend((section, key) for key, v in value.items()
                           if isinstance(v, dict) and "status" in v)
        return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _log(message: str) -> None:
    # Progress on stderr: stdout carries only the summaries, at the end.
    print(f"[device_check {time.monotonic() - START:6.1f} s] {message}", file=sys.stderr,
          flush=True)


# ---- sections ----

def device_info() -> dict:
    import jax

    from jee.host_memory import keep_host_memory

    devices = jax.devices()
    info = {
        "backend": jax.default_backend(),
        # Before anything is timed: see jee/host_memory.py.
        "host_memory": keep_host_memory(),
        "device_kind": devices[0].device_kind,
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "python": platform.python_version(),
        "date": _now(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "env": {k: os.environ[k] for k in ("JAX_PLATFORMS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES",
                                           "XLA_PYTHON_CLIENT_MEM_FRACTION") if k in os.environ},
    }
    for package in ("flax", "optax", "numpy"):
        info[package] = _version(package)
    for plugin in ("jax-cuda12-plugin", "jax-cuda13-plugin"):
        version = _version(plugin)
        if not version.startswith("unavailable"):
            info[plugin] = version
    try:
        stats = devices[0].memory_stats() or {}
        info["memory_bytes_limit"] = stats.get("bytes_limit")
    except Exception:
        info["memory_bytes_limit"] = None
    try:
        info["git"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                     capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        info["git"] = None
    if info["backend"] == "gpu":
        try:  # a read-only query: clocks and power limit explain timings across machines
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,"
                 "clocks.max.sm,power.limit", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception as e:
            info["nvidia_smi"] = f"unavailable: {e}"
    return info


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except Exception as e:  # a missing package is a finding, not a failure of the check
        return f"unavailable: {type(e).__name__}: {e}"


class InferenceNet:
    """EENet of a config with random weights, its engine view, and the synthetic policy's exit
    mix at the target cost; shared by the inference and stream sections. ``modes``: the
    inference modes timed on it; ``large``: the stream's variant is stream@8_assembled, not
    the 2B capacity."""

    def __init__(self, settings: Settings, large: bool = False):
        from jee.infer.synthetic import SyntheticPolicy, fractions_for_cost
        from jee.models import split
        from jee.runs import model_for_config, network_functions

        path, overrides = ((settings.large_config, settings.large_overrides) if large
                           else (settings.inference_config, settings.inference_overrides))
        self.large = large
        self.modes = LARGE_MODES if large else INFERENCE_MODES
        self.config = load_config(path, overrides)
        model = model_for_config(self.config)
        graphdef, params, stats = split(model)
        self.segments, self.full = network_functions(graphdef, params, stats, model.num_exits)
        self.costs = model.costs().relative_costs()
        self.fractions = fractions_for_cost(self.costs, settings.target_cost)
        self.policy = SyntheticPolicy()
        self.input_shape = tuple(model.input_shape)
        self.describe = {
            "config": path,
            "overrides": dict(overrides),
            "arch": self.config.model.arch,
            "dtype": self.config.model.dtype,
            "early_exits": model.num_exits - 1,
            "exit_blocks": list(model.exit_blocks),
            "image_shape": list(self.input_shape),
            "relative_costs": list(self.costs),
            "target_cost": settings.target_cost,
            "policy": f"synthetic(target_cost={settings.target_cost})",
        }


class Lazy:
    """A value built on first use; a failed build is retried by the next user."""

    def __init__(self, make: Callable):
        self.make, self.value = make, None

    def get(self):
        if self.value is None:
            self.value = self.make()
        return self.value


def inference_item(net: InferenceNet, batch: int, s: Settings) -> dict:
    import jax.numpy as jnp
    import numpy as np

    from jee.infer.benchmark import run_benchmark
    from jee.infer.synthetic import synthetic_exits

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *net.input_shape)).astype(np.float32)
    aux = synthetic_exits(batch, net.fractions, seed=0)
    result = run_benchmark(net.segments, net.full, net.policy, jnp.asarray(x),
                           jnp.asarray(aux), costs=net.costs, modes=net.modes,
                           repeats=s.repeats, eager_examples=s.eager_examples,
                           eager_repeats=s.eager_repeats)
    modes = {m: result[m] for m in net.modes}
    exit_fractions = list(result["exit_fractions"])
    return {
        **net.describe,
        "batch_size": batch,
        "repeats": s.repeats,
        "eager_examples": s.eager_examples,
        "eager_repeats": s.eager_repeats,
        "mean_relative_cost": float(np.dot(exit_fractions, net.costs)),
        "exit_fractions": exit_fractions,
        "ideal_speedup": result["ideal_speedup"],
        "agreement": result["agreement"],
        "exit_agreement": result["exit_agreement"],
        "max_recompiles_after_warmup": max(v["recompiles_after_warmup"]
                                           for v in modes.values()),
        "modes": modes,
    }


def stream_item(net: InferenceNet, batch: int, s: Settings) -> dict:
    import jax
    import numpy as np

    from jee.infer.benchmark import compare_outputs, stream_counts
    from jee.infer.masked import MaskedEngine
    from jee.infer.stream import StreamEngine
    from jee.infer.stream_plan import plan_spans
    from jee.infer.synthetic import synthetic_exits
    from jee.infer.timing import (
        CALLS_PER_ROUND,
        median_times,
        repeated,
        single_calls,
        split_times,
        time_rounds,
        warm_up,
    )

    n = s.dataset_batches * batch
    rng = np.random.default_rng(1)
    images = rng.normal(size=(n, *net.input_shape)).astype(np.float32)
    aux = synthetic_exits(n, net.fractions, seed=1)
    # Batches of B already in device memory (what `full` reads); smaller chunks stay on the
    # host, requests arriving one small chunk at a time, each engine paying its uploads.
    batches = [jax.device_put((images[i:i + batch], aux[i:i + batch]))
               for i in range(0, n, batch)]
    small = s.small_arrival
    arrivals = {batch: batches,
                small: [(images[i:i + small], aux[i:i + small]) for i in range(0, n, small)]}

    masked = MaskedEngine(net.segments, net.policy)
    ref = [masked(x, a) for x, a in batches]
    reference = tuple(np.concatenate([np.asarray(r[i]) for r in ref]) for i in range(2))
    ref_exit = reference[0]
    num_segments = len(net.segments)
    reach = [float(np.mean(ref_exit >= k)) for k in range(num_segments)]
    exit_fractions = (np.bincount(ref_exit, minlength=num_segments) / n).tolist()
    ideal = 1.0 / float(np.dot(exit_fractions, net.costs))
    calls, num_segments = single_calls(net.segments, net.full, batches[0][0])
    _, plan_segment_s, plan_hop_s = median_times(calls, num_segments, s.repeats)

    full = jax.jit(net.full)

    def full_pass():
        return jax.block_until_ready([full(x) for x, _ in batches])

    # Planned, as evaluate.py --benchmark plans it, from the fractions the synthetic policy
    # draws its exits from.
    spans = plan_spans(net.fractions, plan_segment_s, plan_hop_s)
    engine = StreamEngine(net.segments, net.policy, batch_size=batch, spans=spans)
    # Two batches of room: the lengths read back after nearly every step, the device idle
    # while the host dispatches the next; what the default third batch buys.
    tight = None if net.large else StreamEngine(net.segments, net.policy, batch_size=batch,
                                                spans=spans, capacity=2 * batch)

    def stream_pass(eng, chunks):
        return jax.block_until_ready(eng.run(iter(chunks), num_examples=n))

    passes, engines = {"full": full_pass}, {}
    for size, chunks in arrivals.items():
        name = "stream" if size == batch else f"stream@{size}"
        passes[name], engines[name] = (lambda c=chunks: stream_pass(engine, c)), engine
    if tight is not None:
        passes["stream_capacity_2B"] = lambda: stream_pass(tight, batches)
        engines["stream_capacity_2B"] = tight
    else:
        # The small chunks copied together into batches on the host whatever their size,
        # against the engine's default (fed as pushed where a batch is large: an accelerator).
        assembling = StreamEngine(net.segments, net.policy, batch_size=batch, spans=spans)
        assembling.assemble_max_bytes = 1 << 62
        name = f"stream@{small}_assembled"
        passes[name] = lambda: stream_pass(assembling, arrivals[small])
        engines[name] = assembling
    # The uploads alone of the small chunks, one at a time: what stream@small cannot beat
    # where its images are large (224x224 float32: 4.8 MB a chunk of 8 from pageable memory).
    upload = f"upload@{small}"
    passes[upload] = lambda: jax.block_until_ready(
        [jax.device_put(chunk) for chunk in arrivals[small]])
    stats, outputs = {}, {}
    for name, run in passes.items():
        before = stream_counts(engines[name]) if name in engines else None
        outputs[name], first, compiles = warm_up(run, ())
        stats[name] = {"first_pass_s": first, "compiles_at_warmup": compiles}
        if name in engines:
            stats[name].update(stream_counts(engines[name], since=before))
    # Passes interleaved, so the comparison is taken under the same machine conditions; the
    # single calls the ideal is made of join every round, drifting with the passes.
    times, recompiles = time_rounds(
        [(run, ()) for run in passes.values()]
        + [(repeated(call, CALLS_PER_ROUND), ()) for call in calls], max(1, s.stream_repeats))
    for i, name in enumerate(passes):
        stats[name].update(times=times[:, i], recompiles_after_warmup=recompiles[i])
    full_s, segment_s, hop_s = split_times(
        np.median(times[:, len(passes):], axis=0) / CALLS_PER_ROUND, num_segments)
    ideal_s, by_time = ideal_by_time(full_s, segment_s, reach)

    modes, agreements = {}, []
    full_pass_s = float(np.median(stats["full"]["times"]))
    upload_s = float(np.median(stats.pop(upload)["times"]))
    for name, st in stats.items():
        median = float(np.median(st.pop("times")))
        size = small if "@" in name else batch
        if name in engines:
            st["feed_sizes"] = list(engines[name].feed_sizes)
        st.update(arrival_size=size, seconds_per_pass=median, images_per_s=n / median,
                  compile_s=max(0.0, st.pop("first_pass_s") - median),
                  speedup=full_pass_s / median)
        st["efficiency"] = st["speedup"] / ideal
        st["efficiency_by_time"] = st["speedup"] / by_time
        if name != "full":
            _, figures = compare_outputs(outputs[name], reference)
            st.update(figures)
            agreements.append(figures)
        modes[name] = st
    trace = {}
    if s.trace_dir and net.large:
        # After the timed rounds, so that the profiler's overhead stays out of them.
        name = f"stream@{small}"
        path = os.path.join(s.trace_dir, f"trace_{LARGE}_{batch}_{name}.json.gz")
        try:
            trace = {"trace": {"pass": name, **traced(passes[name], path)}}
        except Exception as e:  # a profiler that fails (no CUPTI, say) must not cost the item
            trace = {"trace": {"pass": name, "error": _short(e)}}
    return {
        **trace,
        **net.describe,
        "batch_size": batch,
        "num_examples": n,
        "arrival_sizes": list(arrivals),
        "upload_seconds_per_pass": {str(small): upload_s},
        "repeats": s.stream_repeats,
        "segment_repeats": s.repeats,
        "exit_fractions": exit_fractions,
        "reach_fractions": reach,
        "ideal_speedup": ideal,
        "full_seconds_at_batch": full_s,
        "segment_seconds_at_batch": segment_s,
        "segments_sum_seconds": float(sum(segment_s)),
        "hop_seconds_at_batch": hop_s,
        "calls_per_round": CALLS_PER_ROUND,
        "plan_fractions": [float(f) for f in net.fractions],
        "plan_segment_seconds": plan_segment_s,
        "plan_hop_seconds": plan_hop_s,
        "stream_spans": list(spans),
        "ideal_seconds_per_batch": ideal_s,
        "ideal_by_time": by_time,
        "agreement": min(a["agreement"] for a in agreements),
        "exit_agreement": min(a["exit_agreement"] for a in agreements),
        "max_recompiles_after_warmup": max(m["recompiles_after_warmup"]
                                           for m in modes.values()),
        "modes": modes,
    }


def _time_train_step(step, host_state, tx, mesh, batch: int, shape, classes: int,
                     s: Settings) -> dict:
    import jax
    import numpy as np

    from jee import sharding, train_lib
    from jee.infer.compiles import CompileCounter

    rng = np.random.default_rng(0)
    # One device-resident batch reused every step: the input pipeline is not what is timed.
    data = sharding.put_batch(mesh, {
        "image": rng.normal(size=(batch, *shape)).astype(np.float32),
        "label": rng.integers(0, classes, batch).astype(np.int32)})
    # Uploaded afresh from host copies: the step donates its state.
    state = sharding.put_replicated(mesh, train_lib.init_state(*host_state, tx))
    start = time.perf_counter()
    compiled = step.lower(state, data).compile()
    compile_s = time.perf_counter() - start
    flops = xla_flops(compiled.cost_analysis())
    try:
        memory = compiled.memory_analysis()
        temp_bytes = getattr(memory, "temp_size_in_bytes", None)
    except Exception:
        temp_bytes = None
    with CompileCounter() as warm:
        for _ in range(max(1, s.train_warmup)):
            state, metrics = compiled(state, data)
            jax.block_until_ready((state, metrics))
    first_loss = float(metrics["loss"])
    times = []
    with CompileCounter() as steady:
        for _ in range(max(1, s.train_steps)):
            start = time.perf_counter()
            state, metrics = compiled(state, data)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"batch_size": batch, "compile_s": compile_s, "flops_per_step": flops,
            "temp_bytes": temp_bytes, "step_s_median": median,
            "step_s_min": float(np.min(times)), "step_s_max": float(np.max(times)),
            "images_per_s": batch / median, "warmup_steps": max(1, s.train_warmup),
            "timed_steps": len(times), "compiles_at_warmup": warm.count,
            "recompiles_after_warmup": steady.count, "loss_after_warmup": first_loss,
            "loss_last": float(metrics["loss"])}


def train_item(variant: str, s: Settings, peak_flops: float | None, peak_source: str) -> dict:
    import jax

    from jee import optim, sharding, train_lib
    from jee.models import split
    from jee.runs import model_for_config

    overrides = dict(s.train_overrides)
    if variant == "plain":
        overrides["model.num_exits"] = 0
    config = load_config(s.train_config, overrides)
    model = model_for_config(config)
    costs = model.costs()
    graphdef, params, stats = split(model)
    host_state = jax.device_get((params, stats))
    del params, stats
    tx, _ = optim.make_optimizer(config.optimizer, 100, config.num_epochs)
    mesh = sharding.make_mesh()
    devices = jax.device_count()
    step = train_lib.make_train_step(graphdef, tx, config.loss, costs.relative_costs(), mesh)
    batch = max(devices, s.train_batch // devices * devices)
    out_of_memory = []
    while True:
        try:
            result = _time_train_step(step, host_state, tx, mesh, batch, model.input_shape,
                                      model.num_classes, s)
        except Exception as e:
            smaller = batch // 2 // devices * devices
            if not is_out_of_memory(e) or smaller < devices:
                raise
            out_of_memory.append({"batch_size": batch, "error": _short(e)})
            _log(f"train/{variant}: out of memory at batch {batch}, trying {smaller}")
            batch = smaller
        else:
            break
        # Past the except clause the traceback is gone, and with it the frames holding the
        # failed attempt's device buffers.
        gc.collect()
    # XLA counts the per-device program of the sharded step, so MFU is against one device.
    per_device = result["batch_size"] / devices
    forward_macs = costs.exit_macs()[-1]  # every exit head on the way, as the step runs them
    analytic = 6.0 * forward_macs * per_device  # 2 flops per MAC, backward twice the forward
    mfu = None
    if peak_flops and result["flops_per_step"] > 0:
        mfu = result["flops_per_step"] / result["step_s_median"] / peak_flops
    mfu_analytic = analytic / result["step_s_median"] / peak_flops if peak_flops else None
    return {
        "config": s.train_config,
        "overrides": overrides,
        "arch": config.model.arch,
        "dtype": config.model.dtype,
        "early_exits": model.num_exits - 1,
        "image_shape": list(model.input_shape),
        "num_classes": model.num_classes,
        "devices": devices,
        "requested_batch_size": s.train_batch,
        **result,
        "out_of_memory": out_of_memory,
        "forward_macs_per_image": forward_macs,
        "analytic_flops_per_step": analytic,
        "xla_over_analytic_flops": result["flops_per_step"] / analytic if analytic else None,
        "flops_per_s": result["flops_per_step"] / result["step_s_median"],
        "peak_flops_per_device": peak_flops,
        "peak_source": peak_source,
        "mfu": mfu,
        "mfu_analytic": mfu_analytic,
        "mfu_note": None if mfu is not None else (
            "peak FLOP/s of this device kind unknown: rerun with --peak_flops"
            if not peak_flops else "XLA reported no flops"),
        "finite": math.isfinite(result["loss_last"]),
    }


def serving_item(s: Settings) -> dict:
    """``scripts/load_test.py`` on ``s.serving_config`` with random weights and the synthetic
    policy at ``s.target_cost``: the report its ``--out`` writes."""
    from scripts import load_test

    argv = ["--config", s.serving_config, "--random_init", "--target_cost", str(s.target_cost),
            *s.serving_args]
    return {"argv": argv, **load_test.main(argv)}


# ---- one-line summaries ----

def _short(error: BaseException, limit: int = 400) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return (text[0] if text else type(error).__name__)[:limit]


def summary_line(section: str, key: str | None, e: dict) -> str:
    label = section if key is None else f"{section}/{key}"
    status = e.get("status")
    if status == "skipped":
        return f"{label}: skipped ({e.get('reason')})"
    if status == "error":
        return f"{label}: ERROR {e.get('error')}"
    if status != "ok":
        return f"{label}: {status}"
    wall = f"[{e.get('wall_s', 0):.0f} s]"
    try:
        if section == "device":
            extra = f", stand-ins {e['stand_ins']}" if e.get("stand_ins") else ""
            return (f"{label}: {e['backend']} {e['device_kind']!r} x{e['device_count']}, "
                    f"jax {e['jax']} jaxlib {e['jaxlib']}, mode {e['mode']}{extra}")
        if section == "inference":
            m = e["modes"]
            speedups = " ".join(f"{k} {v['speedup']:.3g}" for k, v in m.items() if k != "full")
            return (f"{label}: full {m['full']['images_per_s']:.0f} img/s "
                    f"({m['full']['ms_per_batch_median']:.2f} ms/batch); speed-up {speedups} "
                    f"(ideal {e['ideal_speedup']:.2f}); agreement {e['agreement']:.4f} "
                    f"(exits {e.get('exit_agreement', float('nan')):.4f}); "
                    f"recompiles {e['max_recompiles_after_warmup']} {wall}")
        if section == "stream":
            m = e["modes"]
            speedups = ", ".join(f"{k} {v['speedup']:.3g}" for k, v in m.items() if k != "full")
            uploads = "".join(f", uploads@{k} alone {t * 1e3:.1f} ms/pass"
                              for k, t in e.get("upload_seconds_per_pass", {}).items())
            if e.get("trace"):
                uploads += f", {e['trace']['pass']} traced ({e['trace'].get('file')})"
            return (f"{label}: {e['num_examples']} images, full "
                    f"{m['full']['images_per_s']:.0f} img/s; speed-up {speedups}{uploads} (ideal "
                    f"{e['ideal_speedup']:.2f} by MACs, {e['ideal_by_time']:.2f} by time); "
                    f"agreement {e['agreement']:.4f} (exits "
                    f"{e.get('exit_agreement', float('nan')):.4f}); recompiles "
                    f"{e['max_recompiles_after_warmup']} {wall}")
        if section == "serving":
            m = {k: v["closed"] for k, v in e["modes"].items()}
            base = m.get("bucketed", {}).get("images_per_s")
            rates = ", ".join(f"{k} {v['images_per_s']:.0f}" for k, v in m.items())
            over = f" ({m['stream']['images_per_s'] / base:.2f}x bucketed)" \
                if base and "stream" in m else ""
            opened = e["modes"].get("stream", {}).get("open", {})
            return (f"{label}: {e['config']} batch {e['batch_size']}, closed loop img/s "
                    f"{rates}{over}; stream ceiling {e['stream_ceiling_images_per_s']:.0f}; "
                    f"open-loop stream p99 {opened.get('p99_ms', float('nan')):.1f} ms (bound "
                    f"{e['latency_bound_ms']:.1f}) {wall}")
        if section == "train":
            mfu = (f"MFU {e['mfu']:.3f} by XLA's flops, {e['mfu_analytic']:.3f} by MACs, of "
                   f"{e['peak_flops_per_device']:.3g} FLOP/s ({e['peak_source']})"
                   if e.get("mfu") is not None
                   else f"MFU n/a ({e['mfu_note']})")
            oom = f", OOM at {[o['batch_size'] for o in e['out_of_memory']]}" \
                if e.get("out_of_memory") else ""
            return (f"{label}: {e['arch']} {e['dtype']} {e['early_exits']} early exits, batch "
                    f"{e['batch_size']}{oom}: {e['images_per_s']:.1f} img/s "
                    f"({e['step_s_median'] * 1e3:.1f} ms/step), "
                    f"{e['flops_per_step']:.3g} flop/step, {mfu}; recompiles "
                    f"{e['recompiles_after_warmup']} {wall}")
    except Exception as err:  # a summary must never lose the file
        return f"{label}: ok (summary failed: {_short(err)})"
    return f"{label}: ok"


# ---- the run ----

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", nargs="?", help="the JSON file to write (wins over --out)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "device_check.json"),
                   help="the JSON file to write")
    p.add_argument("--cpu", action="store_true",
                   help="force the CPU backend and the tiny shapes (also chosen automatically "
                        "when JAX's backend is cpu)")
    p.add_argument("--budget_s", type=float, default=450.0,
                   help="skip items that would end past this many seconds since start")
    p.add_argument("--hard_limit_s", type=float, default=None,
                   help="write the file and exit at this many seconds even mid-item "
                        "(default: budget_s + 30)")
    p.add_argument("--peak_flops", type=float, default=None,
                   help="peak FLOP/s of one device for MFU (default: the table by device kind)")
    p.add_argument("--sections", default=",".join(SECTIONS[1:]),
                   help="comma-separated sections to run besides device")
    p.add_argument("--batches", default=None, help="inference/stream batch sizes, e.g. 256,1024")
    p.add_argument("--large_batches", default=None,
                   help="batch sizes of the large network (ResNet-50) items, e.g. 256; "
                        "'' for none")
    p.add_argument("--train_batch", type=int, default=None)
    p.add_argument("--train_steps", type=int, default=None)
    p.add_argument("--no_trace", action="store_true",
                   help="no profile of the large network's stream@8 pass")
    p.add_argument("--no_stand_ins", action="store_true",
                   help="fail instead of standing in for missing grain/orbax/ml_collections")
    args = p.parse_args(argv)
    for flag in ("batches", "large_batches"):
        text = getattr(args, flag)
        try:
            ok = all(b >= 1 for b in _sizes(text, ()))
        except ValueError:
            ok = False
        if not ok:
            p.error(f"--{flag} takes comma-separated batch sizes of at least 1, such as "
                    f"256,1024 ('' for none), got {text!r}")
    unknown = set(args.sections.split(",")) - set(SECTIONS) - {""}
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS[1:]}")
    return args


def _sizes(flag: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """A comma-separated list of batch sizes ('' for none), or ``default`` when not given."""
    return default if flag is None else tuple(int(b) for b in flag.split(",") if b)


def _plan(s: Settings, sections: set[str]) -> list[tuple[str, str]]:
    """(section, key) in run order: the first batch size of inference and stream, then the
    train step and the load test, then the other batch sizes, then the large network, so a
    tight budget drops the largest sizes and the large network first."""
    first, rest = s.batches[:1], s.batches[1:]
    plan = [(sec, f"batch_{b}") for b in first for sec in ("inference", "stream")]
    plan += [("train", v) for v in TRAIN_VARIANTS]
    plan += [("serving", "load_test")]
    plan += [(sec, f"batch_{b}") for b in rest for sec in ("stream", "inference")]
    plan += [(sec, f"{LARGE}_batch_{b}") for b in s.large_batches
             for sec in ("inference", "stream")]
    return [(sec, key) for sec, key in plan if sec in sections]


def main(argv=None) -> int:
    args = parse_args(argv)
    path = os.path.abspath(args.path or args.out)
    if args.cpu:
        os.environ["JAX_PLATFORMS"] = "cpu"  # before jax is imported
    hard_limit = args.hard_limit_s if args.hard_limit_s is not None else args.budget_s + 30
    report = Report(path, {"script": "scripts/device_check.py", "argv": sys.argv[1:],
                           "started": _now(), "budget_s": args.budget_s,
                           "hard_limit_s": hard_limit, "device": {"status": "pending"}})
    try:
        report.write()
    except OSError as e:
        print(f"device_check: cannot write {path}: {e}", file=sys.stderr)
        return 1

    def stop(reason):
        report.finish(reason)
        os._exit(0)

    watchdog = threading.Timer(max(1.0, hard_limit - (time.monotonic() - START)), stop,
                               args=(f"hard limit of {hard_limit:.0f} s reached",))
    watchdog.daemon = True
    watchdog.start()
    signal.signal(signal.SIGTERM, lambda *_: stop("SIGTERM"))

    # jax first: nothing runs without it.
    started = time.monotonic()
    try:
        import jax

        backend = jax.default_backend()
        device_kind = jax.devices()[0].device_kind
    except Exception as e:
        report.set_entry("device", None, {"status": "error", "error": _short(e),
                                          "traceback": traceback.format_exc()[-4000:]})
        report.finish()
        return 0
    if args.cpu:
        mode, reason = "cpu_tiny", "--cpu: CPU backend forced, tiny shapes"
    elif backend == "cpu":
        mode, reason = "cpu_tiny", (
            "jax.default_backend() is 'cpu' (no GPU visible to JAX: is jax installed with "
            "CUDA support?): tiny shapes, no GPU figures")
    else:
        mode, reason = "accelerator", f"jax.default_backend() is {backend!r}"
    print(f"device_check: mode {mode}: {reason}", flush=True)
    settings = cpu_settings() if mode == "cpu_tiny" else accelerator_settings()
    settings = replace(
        settings,
        batches=_sizes(args.batches, settings.batches),
        large_batches=_sizes(args.large_batches, settings.large_batches),
        trace_dir=None if args.no_trace else os.path.dirname(path),
        train_batch=args.train_batch or settings.train_batch,
        train_steps=args.train_steps or settings.train_steps)
    family = device_family(device_kind)
    peak_flops, peak_source = args.peak_flops, "--peak_flops"
    if peak_flops is None and family:
        peak_flops, peak_source = PEAK_BF16_FLOPS[family], f"table: {family}"
    report.doc["peak_bf16_flops_table"] = dict(PEAK_BF16_FLOPS)
    report.doc["settings"] = dict(settings.__dict__)
    report.doc["notes"] = NOTES

    # Then jee, standing in for what is missing; a failure here fails the items that need
    # jee, each recording it, while the device facts are still written.
    import_error, stand_ins = None, []
    try:
        stand_ins = import_jee(allow_stand_ins=not args.no_stand_ins)
    except Exception as e:
        import_error = _short(e)
    entry = {"status": "error" if import_error else "ok", "mode": mode, "mode_reason": reason,
             "peak_family": family, "peak_bf16_flops_per_device": peak_flops,
             "peak_source": peak_source if peak_flops else None, "stand_ins": stand_ins}
    if import_error:
        entry["error"] = f"jee import failed: {import_error}"
    try:
        entry.update(device_info())
    except Exception as e:
        entry.update(status="error", error=_short(e), traceback=traceback.format_exc()[-4000:])
    entry["wall_s"] = time.monotonic() - started
    report.set_entry("device", None, entry)
    _log(summary_line("device", None, report.doc["device"]))

    sections = set(args.sections.split(",")) - {""}
    plan = _plan(settings, sections)
    for section, key in plan:
        report.doc.setdefault(section, {})[key] = {"status": "pending"}
    report.write()

    nets = {False: Lazy(lambda: InferenceNet(settings)),
            True: Lazy(lambda: InferenceNet(settings, large=True))}

    def on_net(item):
        def run(key):
            prefix, _, batch = key.rpartition("batch_")
            return item(nets[prefix == f"{LARGE}_"].get(), int(batch), settings)
        return run

    runners = {
        "inference": on_net(inference_item),
        "stream": on_net(stream_item),
        "train": lambda key: train_item(key, settings, peak_flops, peak_source),
        "serving": lambda key: serving_item(settings),
    }
    walls: dict[str, list[float]] = {}
    for section, key in plan:
        # Estimate: the same kind's last measured item (larger batches grow it by half;
        # compilation dominates), else the prior.
        kind = "large" if key.startswith(f"{LARGE}_") else section
        seen = walls.get(kind)
        estimate = (seen[-1] * (1.5 if section != "train" else 1.0) if seen
                    else settings.priors.get(kind, 60.0))
        elapsed = time.monotonic() - START
        label = f"{section}/{key}"
        if elapsed + estimate > args.budget_s:
            report.set_entry(section, key, {
                "status": "skipped",
                "reason": f"budget: {elapsed:.0f} s elapsed + about {estimate:.0f} s "
                          f"estimated > budget_s {args.budget_s:.0f}"})
            _log(f"{label}: skipped (budget)")
            continue
        _log(f"{label}: starting (estimate {estimate:.0f} s)")
        report.set_entry(section, key, {"status": "running", "started_at_s": elapsed,
                                        "estimate_s": estimate})
        began = time.monotonic()
        try:
            result = runners[section](key)
            entry = {"status": "ok", **result}
        except Exception as e:
            entry = {"status": "error", "error": _short(e),
                     "traceback": traceback.format_exc()[-4000:]}
        wall = time.monotonic() - began
        walls.setdefault(kind, []).append(wall)
        entry.update(wall_s=wall, estimate_s=estimate)
        report.set_entry(section, key, entry)
        _log(summary_line(section, key, report.entry(section, key)))
        gc.collect()
    watchdog.cancel()
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
