"""Helpers of the tests that run train.py / evaluate.py as a user would, in a subprocess."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "configs", "digits.py")
# A digits run whose validation accuracy peaks before the end: at epoch 3 the step schedule
# multiplies the learning rate by 40 (clipped gradients keep it finite), and the last epoch
# falls far below the second and third.
PEAKED = ["--config.max_steps=0", "--config.num_epochs=4", "--config.log_every_steps=5",
          "--config.optimizer.schedule=step", "--config.optimizer.decay_epochs=(3,)",
          "--config.optimizer.decay_factor=40", "--config.optimizer.learning_rate=0.05",
          "--config.optimizer.grad_clip_norm=1.0"]


def env() -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")


def command(script: str, config: str, workdir, *extra) -> list[str]:
    return [sys.executable, os.path.join(ROOT, script), "--config", config,
            "--workdir", str(workdir), *extra]


def run(script: str, config: str, workdir, *extra, timeout: int = 300):
    return subprocess.run(command(script, config, workdir, *extra), cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def start(script: str, config: str, workdir, *extra) -> subprocess.Popen:
    return subprocess.Popen(command(script, config, workdir, *extra), cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records(workdir) -> list[dict]:
    path = os.path.join(str(workdir), "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]
