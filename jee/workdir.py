"""A run's working directory: checked before any work, and locked while a run writes to it.

Two live ``train.py`` runs in one workdir would interleave checkpoints and metrics, so the run
(process 0 of it) holds ``WORKDIR/.lock`` for its whole life. On one host an ``fcntl`` lock on
that file does the work: the kernel drops it when the holder dies, even by ``kill -9``, so a
resume is never blocked by a dead run. The file also names its holder (host, pid, start) and
carries a lease that a background thread renews, so a run on another host sharing the
directory (where ``flock`` may not reach) is refused while the lease is fresh and taken over
once it has gone stale.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time

LOCK_NAME = ".lock"
LEASE_RENEW_S = 30.0
LEASE_STALE_S = 120.0


class WorkdirError(RuntimeError):
    """The workdir cannot be used; the message says why and what to do."""


def check_workdir(path: str, *, must_exist: bool = False) -> bool:
    """Checks that ``path`` is (or can be made) a writable directory, creating nothing.

    Returns whether it already exists. Writability is checked by the file system's own
    answer where it matters (root ignores permission bits), via the nearest existing parent.
    """
    if not path:
        raise WorkdirError("--workdir is empty; give a directory for the run's files")
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"--workdir {path} is a file, not a directory; choose another path")
    exists = os.path.isdir(path)
    if must_exist and not exists:
        raise WorkdirError(f"--workdir {path} does not exist; give the directory of a run "
                           "trained with train.py")
    probe_dir = path if exists else _nearest_existing_parent(path)
    if not os.path.isdir(probe_dir):
        raise WorkdirError(f"--workdir {path}: {probe_dir} is not a directory; choose another "
                           "path")
    _probe_writable(probe_dir, path)
    return exists


def _nearest_existing_parent(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return parent


def _probe_writable(directory: str, wanted: str) -> None:
    # Host and pid: the processes of a multi-host run may probe one shared directory at once.
    probe = os.path.join(directory, f".jee_write_probe_{socket.gethostname()}_{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(f"--workdir {wanted} is not writable ({directory}: {e.strerror}); "
                           "choose a directory you can write to") from None


def make_dir(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create {path}: {e.strerror}; choose another path") from None
    return path


def remove_if_created(path: str, existed: bool) -> None:
    """Undoes the creation of ``path`` (and of nothing else) if it is still empty."""
    if not existed:
        try:
            os.rmdir(path)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkdirLock:
    """``with WorkdirLock(workdir, what="train.py"):`` holds the workdir for one run."""

    def __init__(self, workdir: str, what: str = "train.py", enabled: bool = True):
        self.path = os.path.join(workdir, LOCK_NAME)
        self.what = what
        self.enabled = enabled
        self._fd = None
        self._stop = threading.Event()
        self._thread = None
        self._info = None

    def __enter__(self) -> WorkdirLock:
        if self.enabled:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        fd = self._open_locked()
        holder = _read(fd)
        # The flock is ours, so no live process on this host holds the directory; a fresh lease
        # from another host means a run there may (its flock does not reach us).
        if holder and holder.get("host") != socket.gethostname() and \
                time.time() - float(holder.get("renewed", 0)) < LEASE_STALE_S:
            os.close(fd)
            raise WorkdirError(self._busy_message(holder))
        self._fd = fd
        self._info = {"what": self.what, "host": socket.gethostname(), "pid": os.getpid(),
                      "started": time.strftime("%Y-%m-%d %H:%M:%S"), "renewed": time.time()}
        self._write()
        self._thread = threading.Thread(target=self._renew, name="jee-workdir-lease",
                                        daemon=True)
        self._thread.start()

    def _open_locked(self) -> int:
        """A descriptor of the lock file, flock-ed; refuses if a live local process has it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read(fd)
                os.close(fd)
                raise WorkdirError(self._busy_message(holder)) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            # The holder released and removed the file between our open and our flock: the
            # inode we locked is no longer the lock file, so start again on the new one.
            os.close(fd)

    def _busy_message(self, holder: dict | None) -> str:
        workdir = os.path.dirname(self.path)
        if not holder:
            who = "another process"
        else:
            who = (f"{holder.get('what', 'a run')} (pid {holder.get('pid')} on host "
                   f"{holder.get('host')}, started {holder.get('started')})")
            if holder.get("host") == socket.gethostname() and not _alive(int(holder["pid"])):
                who = "another process"  # the named one is gone; whoever took over is not
        return (f"workdir {workdir} is in use by {who}; wait for it to finish, stop it, or use "
                "another --workdir")

    def _write(self) -> None:
        self._info["renewed"] = time.time()
        data = json.dumps(self._info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            try:
                self._write()
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            try:
                os.remove(self.path)
            except OSError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read(fd: int) -> dict | None:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw.decode()) if raw else None
    except (OSError, ValueError):
        return None
