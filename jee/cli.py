"""Shared start-up of the entry points: distributed runtime flags and readable errors."""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from jee.checkpoint import CheckpointError
from jee.train_errors import TrainingDiverged

# Errors whose message already says what is wrong and how to fix it: print it, no traceback.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, CheckpointError, TrainingDiverged)


def quiet_logs() -> None:
    """Orbax and JAX log every checkpoint step at INFO; keep the console for jee's own lines."""
    logging.set_verbosity(logging.WARNING)


def define_distributed_flags() -> None:
    flags.DEFINE_bool("distributed", False,
                      "Start jax.distributed (multi-process / multi-host). On Cloud TPU and with "
                      "SLURM/Open MPI the other settings are detected automatically.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (or env "
                        "JAX_COORDINATOR_ADDRESS).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (or env JAX_NUM_PROCESSES).")
    flags.DEFINE_integer("process_id", None, "This process's index (or env JAX_PROCESS_ID).")


def start_distributed(flag_values) -> None:
    import jax

    env = os.environ
    wanted = flag_values.distributed or flag_values.coordinator_address or \
        "JAX_COORDINATOR_ADDRESS" in env
    if not wanted:
        return
    kwargs = {}
    address = flag_values.coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
    if address:
        kwargs["coordinator_address"] = address
    n = flag_values.num_processes or env.get("JAX_NUM_PROCESSES")
    pid = flag_values.process_id if flag_values.process_id is not None else env.get(
        "JAX_PROCESS_ID")
    if n is not None:
        kwargs["num_processes"] = int(n)
    if pid is not None:
        kwargs["process_id"] = int(pid)
    if env.get("JAX_PLATFORMS", "") == "cpu":
        # CPU collectives across processes (tests, local launches) need gloo.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)


def run_reporting_errors(fn):
    """Runs ``fn``; a user error ends the program with its message instead of a traceback."""
    try:
        return fn()
    except USER_ERRORS as e:
        if os.environ.get("JEE_TRACEBACK"):
            raise
        print(f"error: {e}\n(set JEE_TRACEBACK=1 for the full traceback)", file=sys.stderr)
        sys.exit(1)
