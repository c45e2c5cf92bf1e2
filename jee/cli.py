"""Shared start-up of the entry points: flag parsing, distributed runtime, readable errors.

A user error (a missing config file, an unknown config key, a bad workdir, bad data, a missing
checkpoint) ends the program with one line on stderr and exit code 2; a real bug keeps its
traceback.
"""

from __future__ import annotations

import os
import sys

import jax
from absl import flags, logging

from jee.config import ConfigError, check_key, load_config
from jee.errors import USER_ERRORS

USER_ERROR_EXIT = 2


def fail(message: str) -> None:
    """Ends the program with ``message`` as one line on stderr and exit code 2."""
    text = " ".join(str(message).split())
    print(f"error: {text}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT)


def _config_args(argv: list[str]) -> tuple[str | None, list[tuple[str, str]]]:
    """``(--config spec, [(dotted key, the argument)]) `` as written on the command line."""
    spec, overrides = None, []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in ("--config", "-config") and i + 1 < len(argv):
            spec = argv[i + 1]
        elif arg.startswith(("--config=", "-config=")):
            spec = arg.split("=", 1)[1]
        elif arg.startswith(("--config.", "-config.")):
            key = arg.split("config.", 1)[1].split("=", 1)[0]
            overrides.append((key, arg))
    return spec, overrides


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parser, with the config file and every ``--config.KEY`` checked first so
    that their mistakes are one-line errors (``app.run(main, flags_parser=parse_flags)``)."""
    spec, overrides = _config_args(argv[1:])
    if spec is not None:
        try:
            config = load_config(spec)
            for key, arg in overrides:
                check_key(config, key, arg)
        except (ConfigError, ValueError, KeyError) as e:
            fail(e if not isinstance(e, KeyError) else e.args[0])
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (see --helpshort)")


def quiet_logs() -> None:
    """Orbax logs every checkpoint step at INFO and routine read-only restores at WARNING; keep
    the console for jee's own lines."""
    logging.set_verbosity(logging.ERROR)


def define_distributed_flags() -> None:
    flags.DEFINE_bool("distributed", False,
                      "Start jax.distributed (multi-process / multi-host). On Cloud TPU and with "
                      "SLURM/Open MPI the other settings are detected automatically.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (or env "
                        "JAX_COORDINATOR_ADDRESS).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (or env JAX_NUM_PROCESSES).")
    flags.DEFINE_integer("process_id", None, "This process's index (or env JAX_PROCESS_ID).")


def start_distributed(flag_values) -> None:
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
    """Runs ``fn``; a user error ends the program with its one-line message instead of a
    traceback (``JEE_TRACEBACK=1`` shows it)."""
    try:
        return fn()
    except USER_ERRORS as e:
        if os.environ.get("JEE_TRACEBACK"):
            raise
        fail(f"{e.args[0] if isinstance(e, KeyError) and e.args else e} "
             "(JEE_TRACEBACK=1 shows the traceback)")
