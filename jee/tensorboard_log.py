"""TensorBoard event files in ``WORKDIR/tb/``, mirroring ``metrics.jsonl`` on process 0.

Every record written to ``metrics.jsonl`` (which stays the source of the tables) is also
written here at the same step, so a run can be watched with ``tensorboard --logdir runs/`` and
several runs compared in one TensorBoard:

- ``train/{loss,ce,cost,learning_rate,images_per_s}``, ``train/exit_accuracy/K``;
- ``val/{accuracy,final_accuracy,relative_cost}``, ``val/exit_accuracy/K``,
  ``val/exit_fraction/K`` and the image ``val/exit_histogram``;
- the config as text (``config``) when a run starts afresh;
- in the sub-run ``tb/test/``, the final ``test/...`` figures (as ``val/...``) and an
  hparams-plugin session (architecture, exits, loss, dataset) whose metrics are
  ``test/accuracy``, ``test/final_accuracy`` and ``test/relative_cost``.

tensorboardX writes the files, so no TensorFlow is needed. A resumed run appends a new event
file that begins with ``SessionLog(START)`` at the first step it writes: TensorBoard then
discards every event of the interrupted attempt from that step on, so each tag reads as one
uninterrupted run, as ``metrics.jsonl`` does after ``MetricsWriter.rewind``. The test figures
are written at the last step, which a resumed run may restore from (a finished run trained
further), so START cannot supersede them; they live in their own sub-run, deleted on resume
and written anew at the end, as ``metrics.jsonl`` drops its closing records.
"""

from __future__ import annotations

import glob
import io
import os
import struct
import time

import jax
import numpy as np

TB_DIR = "tb"
TEST_RUN = "test"  # the sub-run of the closing records (test figures, hparams session)
# Config keys shown as hparams columns (names as in the config).
HPARAM_KEYS = ("model.arch", "model.num_exits", "model.placement", "model.exit_type",
               "loss.kind", "loss.lam", "dataset.name")
# The final figures the hparams table shows next to them.
HPARAM_METRICS = ("test/accuracy", "test/final_accuracy", "test/relative_cost")
# metrics.jsonl field -> TensorBoard name (fields not listed here are not plotted).
SCALARS = {"loss": "loss", "ce": "ce", "cost": "cost", "lr": "learning_rate",
           "images_per_s": "images_per_s", "accuracy": "accuracy",
           "final_accuracy": "final_accuracy", "relative_cost": "relative_cost"}
PER_EXIT = {"exit_accuracy": "exit_accuracy", "exit_fractions": "exit_fraction"}
PLOTTED_KINDS = ("train", "val", "test")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> TensorBoard colorspace (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).
_COLORSPACE = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def tb_dir(workdir: str) -> str:
    return os.path.join(workdir, TB_DIR)


def _remove_events(logdir: str) -> None:
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        os.remove(path)


def _writer(logdir: str, purge_step: int | None = None):
    from tensorboardX import SummaryWriter  # imported only by runs that log to TensorBoard

    # tensorboardX names a file by the second it was opened and opens it with 'wb': a run
    # resumed within the same second would overwrite the killed attempt's file. TensorBoard
    # also reads a folder's files in name order, and the START purge only works if the
    # resumed file is read last, so the suffix makes names unique and sortable by time.
    suffix = f".{time.time_ns():020d}.{os.getpid()}"
    # A long queue and flush period keep writes off the training loop's path; records flush
    # explicitly at each validation and at the end.
    return SummaryWriter(logdir, purge_step=purge_step, max_queue=1000, flush_secs=300,
                         filename_suffix=suffix)


def _png_summary(tag: str, png: bytes):
    from tensorboardX.proto.summary_pb2 import Summary  # as above: optional, for TB runs

    if not png.startswith(_PNG_MAGIC):
        raise ValueError(f"{tag}: not a PNG image")
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    image = Summary.Image(height=height, width=width, colorspace=_COLORSPACE.get(png[25], 4),
                          encoded_image_string=png)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def exit_histogram_png(fractions, title: str) -> bytes:
    """A bar chart of the fraction of examples leaving at each exit, as PNG bytes.

    Drawn with Pillow, not matplotlib: a run draws one at every validation, and matplotlib's
    import and figure set-up cost more than the rest of the logging together.
    """
    # Local: Pillow is only needed once a run validates (as for the data sources' images).
    from PIL import Image, ImageDraw

    fractions = np.clip(np.asarray(fractions, float), 0.0, 1.0)
    width, height, top, bottom, left = 320, 200, 30, 24, 10
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 6), title, fill="black")
    slot = (width - 2 * left) / max(1, len(fractions))
    base, span = height - bottom, height - bottom - top - 12
    draw.line([(left, base), (width - left, base)], fill="black")
    for k, f in enumerate(fractions):
        x0 = left + k * slot + slot * 0.15
        x1 = left + (k + 1) * slot - slot * 0.15
        draw.rectangle([x0, base - f * span, x1, base], fill=(31, 119, 180))
        draw.text((x0, base - f * span - 11), f"{f:.2f}", fill="black")
        label = "final" if k == len(fractions) - 1 else f"exit {k}"
        draw.text((x0, base + 5), label, fill="black")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def hparams_of(config) -> dict:
    values = {}
    for key in HPARAM_KEYS:
        node = config
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values


class TensorBoardLog:
    """The TensorBoard side of one training run (process 0 only: the caller checks)."""

    def __init__(self, workdir: str, hparams: dict | None = None, config_text: str = ""):
        self.logdir = tb_dir(workdir)
        self.hparams = hparams or {}
        self.config_text = config_text
        self._w = None
        self._test = None  # the writer of the test sub-run, opened at the end

    @classmethod
    def for_config(cls, workdir: str, config) -> TensorBoardLog:
        return cls(workdir, hparams_of(config), config.to_json(indent=2))

    def start(self, resume_step: int | None) -> None:
        """Opens the run: afresh (``None``: the event files of an earlier attempt whose
        checkpoints are gone are deleted, as ``metrics.jsonl`` is emptied) or resumed after
        ``resume_step``, superseding the interrupted attempt's events from the next step.
        Either way the test sub-run goes: the run writes it again when it finishes."""
        self.close()
        _remove_events(os.path.join(self.logdir, TEST_RUN))
        if resume_step is None:
            _remove_events(self.logdir)
            self._w = _writer(self.logdir)
            if self.config_text:
                # Indented: a Markdown code block, so the JSON keeps its layout.
                text = "\n".join("    " + line for line in self.config_text.splitlines())
                self._w.add_text("config", text, 0)
        else:
            self._w = _writer(self.logdir, purge_step=resume_step + 1)

    def record(self, record: dict) -> None:
        """Writes one metrics.jsonl record (its ``kind`` and ``step`` and its fields)."""
        kind, step = record["kind"], int(record["step"])
        if kind not in PLOTTED_KINDS:
            return
        if kind == "test":
            if self._test is None:
                self._test = _writer(os.path.join(self.logdir, TEST_RUN))
            w = self._test
        else:
            if self._w is None:
                self._w = _writer(self.logdir)
            w = self._w
        for field, value in record.items():
            if field in SCALARS and isinstance(value, (int, float)):
                w.add_scalar(f"{kind}/{SCALARS[field]}", value, step)
            elif field in PER_EXIT and isinstance(value, list):
                for k, v in enumerate(value):
                    w.add_scalar(f"{kind}/{PER_EXIT[field]}/{k}", v, step)
        if kind == "val" and "exit_fractions" in record:
            title = (f"step {step}: accuracy {record.get('accuracy', float('nan')):.3f}, "
                     f"relative cost {record.get('relative_cost', float('nan')):.3f}")
            png = exit_histogram_png(record["exit_fractions"], title)
            w.file_writer.add_summary(_png_summary("val/exit_histogram", png), step)
        if kind == "test" and self.hparams:
            from tensorboardX.summary import hparams  # optional, for TB runs

            # In the same run as the test/ scalars: the hparams session is that run, and
            # its metrics are those scalars.
            for summary in hparams(self.hparams, dict.fromkeys(HPARAM_METRICS, 0.0)):
                w.file_writer.add_summary(summary, step)
        if kind in ("val", "test"):
            w.flush()

    def close(self) -> None:
        for w in (self._w, self._test):
            if w is not None:
                w.close()
        self._w = self._test = None


def log_image(workdir: str, tag: str, png_path: str, step: int) -> None:
    """Adds the PNG file ``png_path`` to the run's TensorBoard as image ``tag`` at ``step``
    (e.g. evaluate.py's accuracy-vs-cost plot at the step of the checkpoint it scored).
    Process 0 only; a no-op elsewhere."""
    if jax.process_index() != 0:
        return
    with open(png_path, "rb") as f:
        png = f.read()
    summary = _png_summary(tag, png)
    w = _writer(tb_dir(workdir))
    try:
        w.file_writer.add_summary(summary, step)
    finally:
        w.close()
