"""Where evaluation writes: ``WORKDIR/eval``, checked and created before any work, and the
JSON / CSV files in it, written once, by process 0."""

from __future__ import annotations

import contextlib
import csv
import json
import os

import jax

from jee.errors import USER_ERRORS
from jee.workdir import WorkdirError, check_workdir, make_dir, remove_if_created


def is_writer() -> bool:
    """Whether this process writes files and prints results (process 0)."""
    return jax.process_index() == 0


def eval_dir(workdir: str) -> str:
    return os.path.join(workdir, "eval")


@contextlib.contextmanager
def prepared(workdir: str, *, must_exist: bool):
    """Checks ``workdir`` and creates ``workdir/eval`` before the work inside the block, so
    a bad path fails at once rather than after a report is computed; if the block raises a
    user error, what was created here is removed again (a bug keeps the folders to look at)."""
    existed = check_workdir(workdir, must_exist=must_exist)
    out = eval_dir(workdir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise WorkdirError(f"{out} is a file, not a directory; move it away")
    out_existed = os.path.isdir(out)
    make_dir(out)
    try:
        check_workdir(out)
        yield out
    except USER_ERRORS:
        remove_if_created(out, out_existed)
        remove_if_created(workdir, existed)
        raise


def write_json(directory: str, name: str, obj, indent: int | None = 2) -> str:
    """Writes ``obj`` to ``directory/name`` on process 0; returns the path."""
    path = os.path.join(directory, name)
    if is_writer():
        with open(path, "w") as f:
            json.dump(obj, f, indent=indent)
    return path


CSV_KEYS = ("family", "name", "params", "accuracy", "top5", "relative_cost", "speedup")


def write_csv(path: str, rows, fractions_key: str = "exit_fractions") -> None:
    """One line per report row (process 0); lists and dicts as JSON."""
    if not is_writer():
        return
    keys = [*CSV_KEYS, fractions_key]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            w.writerow([json.dumps(r[k]) if isinstance(r[k], (dict, list)) else r[k]
                        for k in keys])
