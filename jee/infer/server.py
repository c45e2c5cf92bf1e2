"""In-process serving of early-exit networks: requests in, futures out, one engine thread.

:class:`Server` puts a streaming engine (:class:`~jee.infer.stream.StreamEngine` or
:class:`~jee.infer.stream.StreamCascadeEngine`) behind ``submit(images) -> Future``. Rows of
all requests share the engine's per-segment queues, so every segment runs full batches across
requests; a request's future resolves once all its rows have left the network.

:class:`PerRequestServer` is the baseline it is compared with: the same ``submit`` API, each
request run on its own through a per-batch engine (``BucketedEngine``, or the plain network
via :func:`full_network`), one compiled program per request size.

Threading: an engine holds no lock, so exactly one worker thread per server touches it.
``submit`` only validates, copies and enqueues (a thread-safe queue), from any thread. The
futures are ``concurrent.futures.Future``; ``close()`` (or leaving a ``with`` block) serves
everything submitted so far, then stops the worker. An exception that escapes the worker
fails every pending future and refuses later submissions, so no caller waits forever.

Latency: a full garbage collection stops every thread, and over the ~250,000 objects that JAX
and a model leave in a process it took up to 100 ms on a 2-core CPU. A serving process should
``gc.freeze()`` its heap once the server is warm (``scripts/load_test.py`` does).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future

import jax
import numpy as np

from jee.infer.stream_cascade import StreamCascadeEngine
from jee.infer.stream_driver import StreamDriver
from jee.infer.stream_sched import read_rows

_STOP = object()  # the close() sentinel in the request queue


class _Request:
    __slots__ = ("x", "aux", "future", "submitted", "first", "left", "exit", "values")

    def __init__(self, x, aux, future: Future):
        self.x, self.aux, self.future = x, aux, future
        self.submitted = time.perf_counter()
        self.first = -1  # the engine id of row 0, once pushed
        self.left = x.shape[0]  # rows not yet emitted
        self.exit = np.empty(x.shape[0], np.int32)
        self.values: dict[str, np.ndarray] = {}


def _as_input(images, aux):
    """Copies of host inputs (the caller may reuse its buffers before the worker reads them);
    device arrays are immutable and pass through."""
    x = images if isinstance(images, jax.Array) else np.array(images)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"a request needs at least one image, got shape {x.shape}")
    if aux is not None:
        aux = aux if isinstance(aux, jax.Array) else np.array(aux, np.int32)
        if aux.shape != x.shape[:1]:
            raise ValueError(f"aux must be [{x.shape[0]}], got {aux.shape}")
    return x, aux


class _WorkerServer:
    """The request queue, the worker thread, close() and failure handling of both servers."""

    def __init__(self, name: str):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders submit() against close() and failure
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def submit(self, images, aux=None) -> Future:
        """Queues a request of ``images [n, ...]`` (and ``aux int32 [n]``); the future
        resolves to its results, row i for image i."""
        x, aux = _as_input(images, aux)
        future: Future = Future()
        with self._lock:
            if self.error is not None:
                raise RuntimeError("the server's worker failed") from self.error
            if self._closed:
                raise RuntimeError("the server is closed")
            self._queue.put(_Request(x, aux, future))
        return future

    def warm_up(self, requests: Iterable, timeout: float | None = None) -> list:
        """Submits ``requests`` (arrays or ``(x, aux)`` pairs) at once and waits for all, so
        that compilation happens before anything is timed; returns their results."""
        futures = [self.submit(*(r if isinstance(r, tuple) else (r,))) for r in requests]
        return [f.result(timeout) for f in futures]

    def close(self, timeout: float | None = None) -> None:
        """Serves every request submitted so far, then stops the worker (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if threading.current_thread() is self._thread:
            return  # called from a future's callback: the worker stops after this request
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the server's worker is still running after {timeout} s")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _main(self) -> None:
        try:
            self._serve()
        except BaseException as error:  # noqa: B036 - whatever it is, waiters must learn of it
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            self.error, self._closed = error, True
        # After the flag is set no submit() can add to the queue: draining it reaches them all.
        pending = list(self._in_flight())
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                pending.append(item)
        for request in pending:
            if not request.future.done():
                request.future.set_exception(error)

    # Subclass hooks.
    def _serve(self) -> None:
        raise NotImplementedError

    def _in_flight(self) -> Iterable[_Request]:
        return ()


class Server(_WorkerServer):
    """Streaming early exit behind ``submit(images, aux=None) -> Future``.

    The future resolves to ``(exit_index int32 [n], logits float32 [n, C])`` as the masked
    mode gives them (for a cascade engine ``(final, logits, visited bool [n, M])``).

    The worker loop: take new requests and push them into the engine; run what the engine's
    scheduler picks without forcing (full batches and feeds only), taking new requests between
    steps; collect the emitted pages every ``collect_every`` steps and whenever the engine is
    idle, resolving the requests that are complete. A collection after a step leaves that step's
    page for the next one: reading a page waits for its step, and the device should run the
    newest step while the host answers the requests of the ones before. ``max_wait_ms`` is how
    long after its submission a request should be answered when its batches do not fill: once
    the oldest request in flight has less of its ``max_wait_ms`` left than a forced pass takes
    (the mean of the passes measured so far, 0 before the first), a forced pass runs (forced
    steps, partial batches padded, until no request is overdue). A request is then answered
    within about ``max_wait_ms`` plus the step running when it fell due, however low the load.
    Idle, the worker sleeps on the queue until a request arrives or the oldest deadline passes.

    ``stats`` (written by the worker) counts requests, images, steps, forced steps and
    collections; the engine's ``batches_run`` / ``partial_batches`` count batches per segment.
    """

    def __init__(self, engine: StreamDriver, *, max_wait_ms: float = 20.0,
                 collect_every: int | None = None):
        super().__init__("jee-stream-server")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        engine.reset()  # refuses an engine with rows in flight; drops stale pages
        self.engine, self.max_wait = engine, max_wait_ms / 1e3
        # A page per step stays on device until collected; reading every step would add a
        # sync per step, reading rarely delays answers. One pass through the queues is a middle.
        self.collect_every = collect_every or engine.num_queues
        self.stats = dict(requests=0, images=0, steps=0, forced_steps=0, collects=0)
        self._open: collections.OrderedDict[int, _Request] = collections.OrderedDict()
        self._unread = 0  # steps whose pages are not collected yet
        self._force_s = 0.0  # the mean duration of the forced passes so far
        self._forced_passes = 0
        self._thread.start()

    def _in_flight(self):
        return self._open.values()

    def _serve(self) -> None:
        engine, stopping, busy = self.engine, False, False
        while True:
            if not stopping:
                # Block only when the engine has nothing to run unforced.
                stopping = self._intake(0 if busy else self._until_deadline())
            busy = engine.step()
            self.stats["steps"] += busy
            self._unread += busy
            if not busy or self._unread >= self.collect_every:
                # The step just dispatched is left running: its page is read next time, so
                # the device has work while the host answers requests and takes new ones.
                self._collect(keep=int(busy))
                if self._overdue():
                    self._force()
                    busy = True  # look for new requests without blocking, then go on
            if stopping and not busy:
                break
        engine.flush()
        self._collect()
        if self._open:
            raise RuntimeError(f"{len(self._open)} requests unanswered after the final flush")

    def _intake(self, timeout: float | None) -> bool:
        """Pushes the queued requests (waiting up to ``timeout`` s for the first; ``None``:
        until one comes); True once close() was called."""
        try:
            if timeout is None or timeout > 0:
                item = self._queue.get(timeout=timeout)
            else:
                item = self._queue.get_nowait()
        except queue.Empty:
            return False
        while True:
            if item is _STOP:
                return True
            if item.future.set_running_or_notify_cancel():  # False: cancelled while queued
                try:
                    ids = self.engine.push(item.x, item.aux)
                except Exception as error:  # a bad request (shape, dtype): fail it alone
                    item.future.set_exception(error)
                else:
                    item.first, item.x, item.aux = ids.start, None, None
                    self._open[ids.start] = item
                    self.stats["requests"] += 1
                    self.stats["images"] += len(ids)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False

    def _until_deadline(self) -> float | None:
        """Seconds until the oldest request in flight must start its forced pass."""
        if not self._open:
            return None
        oldest = next(iter(self._open.values()))
        # Never before submission: a pass longer than max_wait cannot be started early enough.
        due = oldest.submitted + max(self.max_wait - self._force_s, 0.0)
        return max(due - time.perf_counter(), 0.0)

    def _overdue(self) -> bool:
        return bool(self._open) and self._until_deadline() == 0.0

    def _force(self) -> None:
        # No intake meanwhile: with a fixed set of rows the forced steps reach every queue,
        # whereas new arrivals could keep the shallow queues busy and starve the overdue rows.
        start = time.perf_counter()
        self._force_pass()
        self._forced_passes += 1
        self._force_s += (time.perf_counter() - start - self._force_s) / self._forced_passes

    def _force_pass(self) -> None:
        # The overdue rows may have left in the step whose page a collection left unread.
        self._collect()
        while self._overdue():
            if not self.engine.step(force=True):
                raise RuntimeError(f"overdue requests but nothing to run: {self.engine.view()}")
            self.stats["steps"] += 1
            self.stats["forced_steps"] += 1
            self._unread += 1
            self._collect()

    def _collect(self, keep: int = 0) -> None:
        pages = self.engine.pop_emitted(keep)
        self._unread = 0
        if not pages:
            return
        self.stats["collects"] += 1
        rows, exits, values = read_rows(pages)
        if rows.size:
            # Requests hold consecutive ids, and _open keeps them in id order.
            firsts = np.fromiter(self._open.keys(), np.int64, len(self._open))
            owners = np.searchsorted(firsts, rows, side="right") - 1
            for owner in np.unique(owners):
                mine = owners == owner
                request = self._open[int(firsts[owner])]
                local = rows[mine] - request.first
                request.exit[local] = exits[mine]
                for name, v in values.items():
                    if name not in request.values:
                        request.values[name] = np.empty((request.exit.shape[0], *v.shape[1:]),
                                                        v.dtype)
                    request.values[name][local] = v[mine]
                request.left -= int(mine.sum())
                if request.left == 0:
                    del self._open[request.first]
                    request.future.set_result(self._result(request))
        if not self._open:
            # Idle: restart the ids at 0, as the engine carries them in int32.
            self.engine.reset()

    def _result(self, request: _Request) -> tuple[np.ndarray, ...]:
        out = (request.exit, request.values["logits"])
        if isinstance(self.engine, StreamCascadeEngine):
            bits = np.arange(self.engine.num_queues, dtype=np.int32)
            out += (((request.values["visited"][:, None] >> bits) & 1).astype(bool),)
        return out


Engine = Callable[[object, object], tuple]


class PerRequestServer(_WorkerServer):
    """The baseline: each request run alone, in submission order, through ``engine(x, aux)
    -> (exit_index [n], logits [n, C])`` (e.g. a ``BucketedEngine``) on the worker thread.

    A jitted engine compiles once per request size: :meth:`warm_up` with each size first. An
    exception from the engine fails that request only (the engine holds no state to spoil).
    """

    def __init__(self, engine: Engine):
        super().__init__("jee-per-request-server")
        self.engine = engine
        self.stats = dict(requests=0, images=0)
        self._current: list[_Request] = []
        self._thread.start()

    def _in_flight(self):
        return self._current

    def _serve(self) -> None:
        while True:
            request = self._queue.get()
            if request is _STOP:
                return
            if not request.future.set_running_or_notify_cancel():
                continue
            self._current = [request]
            try:
                out = jax.device_get(self.engine(request.x, request.aux))
            except Exception as error:
                request.future.set_exception(error)
            else:
                self.stats["requests"] += 1
                self.stats["images"] += request.exit.shape[0]
                request.future.set_result(tuple(np.asarray(a) for a in out))
            self._current = []


def full_network(full_fn: Callable, num_exits: int) -> Engine:
    """The plain network ``full_fn(x) -> logits`` as an engine for :class:`PerRequestServer`:
    every row "exits" at the last exit; ``aux`` is ignored. Compiled once per batch shape."""
    fn = jax.jit(full_fn)

    def engine(x, aux=None):
        del aux
        # The exits are made on the host: jnp.full would compile a program per size.
        return np.full(x.shape[0], num_exits - 1, np.int32), fn(x)

    return engine
