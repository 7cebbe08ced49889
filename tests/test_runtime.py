"""Process-wide CPU settings: choosing the CPU makes glibc keep freed memory, so re-allocated activation buffers do
not fault fresh pages in (a quarter of a CPU training step without it, docs/performance.md)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_FAULTS_PER_ALLOCATION = """
import resource, torch
from paperlib.core.runtime import resolve_device

def faults_per_allocation():  # the median over 7 allocations of 64 MiB, written (every page touched)
    faults = []
    for _ in range(7):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(1 << 24)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sorted(faults)[3]

default = faults_per_allocation()
resolve_device("cpu")
print(default, faults_per_allocation())
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_cpu_work_reuses_freed_buffers_instead_of_faulting_pages_in():
    # A fresh interpreter: the setting is process-wide, and this test process has already chosen the CPU.
    out = subprocess.run([sys.executable, "-c", _FAULTS_PER_ALLOCATION], capture_output=True, text=True, check=True)
    default, retained = map(float, out.stdout.split())
    pages = (64 << 20) // 4096
    assert default > pages / 2  # glibc's default: fresh pages for every 64 MiB buffer
    assert retained < pages / 100
