"""Run N processes of a jee entry point on this machine, as a multi-host job would.

    python scripts/launch_local.py --num_processes 2 --devices_per_process 2 -- \
        train.py --config configs/digits.py --workdir runs/digits_mp

Each process gets the standard jax.distributed settings through the environment
(JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), its own virtual CPU devices
(JAX_NUM_CPU_DEVICES) and collectives through gloo. On real hosts run the same command on every
host with those three variables set (or nothing at all on Cloud TPU: auto-detected).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pump(stream, prefix: str) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"{prefix} {line}")
    stream.close()


def launch(command: list[str], num_processes: int, devices_per_process: int,
           timeout: float | None = None) -> int:
    port = free_port()
    procs = []
    for pid in range(num_processes):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES=str(num_processes), JAX_PROCESS_ID=str(pid),
                   JAX_NUM_CPU_DEVICES=str(devices_per_process), JAX_PLATFORMS="cpu")
        p = subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=_pump, args=(p.stdout, f"[p{pid}]"), daemon=True).start()
        procs.append(p)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            return 124
    return max(codes, key=abs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=2)
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the script and its arguments, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    sys.exit(launch(command, args.num_processes, args.devices_per_process))


if __name__ == "__main__":
    main()
