#!/usr/bin/env bash
# The first GPU measurement of jee in one command (scripts/device_check.py says what it
# measures): writes $OUT/device_check.json when $OUT is set (the device machine's output
# folder), else docs/device_check.json; extra arguments go to the Python script, e.g.
#   bash scripts/device_check.sh --budget_s 300      bash scripts/device_check.sh --cpu
#   bash scripts/device_check.sh --out /tmp/check.json
#
# Installs nothing: the device machine has no internet and gets only the working tree and
# what its image holds. It needs JAX with CUDA support installed (jax[cuda12], or the cuda13
# plugin that the lent machines' image ships) plus flax and optax; grain, orbax and
# ml_collections, which only data loading, checkpoints and configs need, are stood in for
# when missing (the JSON's device.stand_ins lists them). If
#   python -c "import jax; print(jax.default_backend())"
# does not print gpu, the script still runs, in CPU mode with tiny shapes, and says so on
# stdout and in the JSON (device.mode, device.mode_reason).
set -euo pipefail
cd "$(dirname "$0")/.."
# The first of python, python3 that has jax (the lent machines' image keeps JAX in the venv
# of its python3, and a 'python' there, if any, may be another interpreter); $PYTHON wins.
if [ -z "${PYTHON:-}" ]; then
  for candidate in python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c \
        "import importlib.util, sys; sys.exit(importlib.util.find_spec('jax') is None)" \
        >/dev/null 2>&1; then
      PYTHON="$candidate"
      break
    fi
  done
fi
exec "${PYTHON:-python3}" scripts/device_check.py --out "${OUT:-docs}/device_check.json" "$@"
