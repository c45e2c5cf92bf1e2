"""Metrics as JSON lines in ``WORKDIR/metrics.jsonl`` and a progress bar, on process 0 only."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np


def _plain(v):
    if isinstance(v, (np.ndarray, np.generic, jax.Array)):
        v = np.asarray(v)
        v = v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf
    return v


# Records written after the last checkpoint of a finished run; a resumed run writes them anew.
CLOSING_KINDS = ("test",)


class MetricsWriter:
    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)

    def rewind(self, step: int | None) -> int:
        """Makes the file read as one uninterrupted run resumed at ``step`` (None: a fresh
        start): a killed attempt's records past the restored step go, and so do the closing
        records (``test``), which the resumed run writes again. Rewritten atomically (a
        temporary file, then a rename), so a kill during the rewrite loses nothing. Returns
        the number of records dropped."""
        if not self.enabled or not os.path.exists(self.path):
            return 0
        with open(self.path) as f:
            lines = [line for line in f if line.strip()]
        keep = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by the kill
            if step is not None and record.get("step", 0) <= step and \
                    record.get("kind") not in CLOSING_KINDS:
                keep.append(line if line.endswith("\n") else line + "\n")
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return len(lines) - len(keep)

    def write(self, kind: str, step: int, **metrics) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": int(step), "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class ProgressBar:
    """One carriage-returned line: epoch, step, loss, accuracy, images/s."""

    def __init__(self, total_steps: int, enabled: bool = True, width: int = 24):
        self.total = max(1, total_steps)
        self.enabled = enabled and jax.process_index() == 0
        self.width = width
        self.tty = sys.stderr.isatty()

    def update(self, step: int, epoch: float, **fields) -> None:
        if not self.enabled:
            return
        done = int(self.width * step / self.total)
        bar = "#" * done + "." * (self.width - done)
        text = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in fields.items())
        line = f"[{bar}] step {step}/{self.total} epoch {epoch:.2f} {text}"
        # On a terminal, redraw in place; in logs (CI, nohup), print one line per update.
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")

    @staticmethod
    def message(text: str) -> None:
        if jax.process_index() == 0:
            print(text, file=sys.stderr, flush=True)
