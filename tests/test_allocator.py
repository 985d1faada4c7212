"""`keep_large_blocks_in_heap`: takes effect on glibc (freed blocks are reused without page faults), and the
opt-out is honoured."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from fames.allocator import keep_large_blocks_in_heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_takes_effect_on_glibc(monkeypatch) -> None:
    monkeypatch.delenv("FAMES_MALLOC_TUNING", raising=False)
    assert keep_large_blocks_in_heap() is True


def test_opt_out(monkeypatch) -> None:
    monkeypatch.setenv("FAMES_MALLOC_TUNING", "0")
    assert keep_large_blocks_in_heap() is False


_REFAULT_PROBE = """
import ctypes, ctypes.util, resource
from fames.allocator import keep_large_blocks_in_heap
keep_large_blocks_in_heap()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n = 64 * 2**20
def faults_per_page():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (n / resource.getpagesize())
faults_per_page()
print(max(faults_per_page() for _ in range(3)))
"""


def _refault_fraction(tuning: str) -> float:
    """Minor page faults per page of a 64 MiB block malloc'ed, written and freed after a first such block, in a
    fresh process (the most of three)."""
    env = {**os.environ, "FAMES_MALLOC_TUNING": tuning}
    out = subprocess.run([sys.executable, "-c", _REFAULT_PROBE], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    # untuned, glibc returns the freed block to the kernel (munmap), so the next one faults every page again;
    # with only the mmap threshold raised, free() trims the heap's top (trim threshold 128 KiB) to the same
    # effect; tuned, the next block reuses the heap's pages
    assert _refault_fraction("0") > 0.5
    assert _refault_fraction("1") < 0.05
