"""Metrics as JSON lines in ``WORKDIR/metrics.jsonl`` (mirrored to TensorBoard event files in
``WORKDIR/tb/``) and a progress bar, on process 0 only."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np
import tqdm

from jee.tensorboard_log import TensorBoardLog


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
    """Appends records to ``metrics.jsonl``; given the run's ``config`` with
    ``config.tensorboard`` set, also writes each record to TensorBoard at the same step
    (``jee.tensorboard_log``: tags, the config text and the hparams session)."""

    def __init__(self, workdir: str, config=None):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            if config is not None and getattr(config, "tensorboard", False):
                self.tensorboard = TensorBoardLog.for_config(workdir, config)

    def rewind(self, step: int | None) -> int:
        """Makes the file read as one uninterrupted run resumed at ``step`` (None: a fresh
        start): a killed attempt's records past the restored step go, and so do the closing
        records (``test``), which the resumed run writes again. Rewritten atomically (a
        temporary file, then a rename), so a kill during the rewrite loses nothing. Returns
        the number of records dropped. TensorBoard gets the same view: a fresh start deletes
        its old event files, a resumed one supersedes the events past ``step``."""
        if self.tensorboard is not None:
            self.tensorboard.start(step)
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
        if self.tensorboard is not None:
            self.tensorboard.record(record)

    def close(self) -> None:
        """Flushes and closes the TensorBoard files (metrics.jsonl is closed after each write)."""
        if self.tensorboard is not None:
            self.tensorboard.close()


class ProgressBar:
    """Training progress on stderr (process 0): tqdm's bar, step count, rate and ETA, with
    the epoch and the latest fields (loss, accuracy, images/s). On a terminal it is redrawn in
    place; otherwise (logs, CI, nohup) each update prints one line in the same format.

    ``update`` takes the absolute step; ``start`` is the step a resumed run begins at, so the
    rate and ETA count only the steps of this attempt."""

    def __init__(self, total_steps: int, enabled: bool = True, start: int = 0):
        self.total = max(1, total_steps)
        self.start = start
        self.enabled = enabled and jax.process_index() == 0
        self.tty = sys.stderr.isatty()
        self._t0 = time.time()
        self._bar = None
        if self.enabled and self.tty:
            self._bar = tqdm.tqdm(total=self.total, initial=start, unit="step", file=sys.stderr,
                                  dynamic_ncols=True)

    def update(self, step: int, epoch: float, **fields) -> None:
        if not self.enabled:
            return
        prefix = f"epoch {epoch:.2f}"
        text = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in fields.items())
        if self._bar is not None:
            self._bar.set_description_str(prefix, refresh=False)
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(step - self._bar.n)
            return
        line = tqdm.tqdm.format_meter(step, self.total, time.time() - self._t0, prefix=prefix,
                                      unit="step", postfix=text, initial=self.start,
                                      ascii=True)  # log files may not be UTF-8
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @staticmethod
    def message(text: str) -> None:
        if jax.process_index() == 0:
            # tqdm.write clears a bar being drawn, prints, and redraws the bar below.
            tqdm.tqdm.write(text, file=sys.stderr)
            sys.stderr.flush()
