"""jee.host_memory: after keep_host_memory(), a large block freed and allocated again is not
page-faulted in again; under glibc's default it is, page by page (the kernel's own count)."""

import subprocess
import sys

import pytest

from jee.host_memory import KEPT

MIB = 64
# Allocate and free a 64 MiB block (above glibc's largest mmap threshold) six times, and
# print the page faults of the last five; the first may fault wherever the block lands.
CYCLES = f"""
import resource, sys
import numpy as np
sys.path.insert(0, {sys.path[0]!r})
from jee.host_memory import host_memory, keep_host_memory
if sys.argv[1] == "keep":
    keep_host_memory()
print(host_memory(), file=sys.stderr)
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones({MIB} << 20, np.uint8)  # written, so every page is touched
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]) // 5)
"""


def faults_per_cycle(setting: str) -> tuple[int, str]:
    """(page faults per cycle, the allocator setting), from a fresh process: the setting
    stays for the life of a process, and this one's is left alone."""
    out = subprocess.run([sys.executable, "-c", CYCLES, setting], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip()), out.stderr.strip().splitlines()[-1]


def test_kept_memory_is_reused_without_page_faults():
    kept, setting = faults_per_cycle("keep")
    if setting != KEPT:
        pytest.skip(f"not glibc: the allocator is {setting}")
    default, setting = faults_per_cycle("default")
    assert setting.startswith("glibc default")
    # glibc's default: the block is mapped afresh and faulted in every time, at least once
    # per 2 MiB (transparent huge pages; once per 4 KiB without them).
    assert default >= MIB // 2
    # Kept: the heap block is reused, nothing faults.
    assert kept <= min(4, default // 10)
