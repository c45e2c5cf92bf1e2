"""Counting XLA compilations, to prove that a serving path does not recompile.

JAX reports every backend compilation (of a ``jax.jit`` program or of a single eager op) as a
monitoring duration event; :class:`CompileCounter` listens to it for the duration of a
``with`` block. It counts compilations in the whole process, so keep other work out of the
block.
"""

from __future__ import annotations

import jax

# The event JAX records around each backend compilation (jax/_src/dispatch.py).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """``with CompileCounter() as c: ...`` then ``c.count`` compilations taking ``c.seconds``."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.count += 1
            self.seconds += duration

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listen)
