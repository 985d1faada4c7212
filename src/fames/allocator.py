"""Keep large freed blocks in the process heap, so that activations are reused rather than re-faulted.

glibc's malloc serves every block above its mmap threshold (dynamic, at most 32 MiB) with fresh pages from
the kernel and returns them on free. A batch of 512 images makes activations of 25-100 MB, so every layer
output of every batch is first-touched page by page; on the 2-core VMs this project runs on, those page
faults cost about as much as the layer ops themselves (an exact VGG validation pass: 7.6 s with the
default threshold, 4.2 s with the threshold at 2 GiB). `keep_large_blocks_in_heap` raises the threshold,
so that freed activations stay in the heap for the next batch, and raises the trim threshold with it: setting
one threshold turns off glibc's dynamic adjustment of both, which left the trim threshold at 128 KiB, so every
freed block at the top of the heap went back to the kernel and was faulted in again on the next allocation
(`fames select` on ResNet, six runs each: 1.5-1.7 M minor page faults and 3.6-8.3 s of system time before,
0.55-0.62 M and 1.3-4.4 s after, at the same peak memory; the wall time moved within the machine's noise, a mean
of 51.9 s before and 49.7 s after). The price is that the process keeps its peak heap until it exits.
The CLI and the benchmarks call it at start; library users may call it themselves. ``FAMES_MALLOC_TUNING=0``
turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD = -3
HEAP_THRESHOLD = 2**31 - 1  # the largest value mallopt's int takes: blocks below 2 GiB come from the heap
# and up to 2 GiB of free space at the heap's top stays there


def keep_large_blocks_in_heap() -> bool:
    """Serve blocks below 2 GiB from the heap and keep freed ones there (glibc ``mallopt``); process-wide.

    Returns:
        True when the setting took effect; False with ``FAMES_MALLOC_TUNING=0`` or where the C library has
        no such setting (macOS, Windows, musl), where nothing changes.
    """
    if os.environ.get("FAMES_MALLOC_TUNING", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all([bool(mallopt(M_MMAP_THRESHOLD, HEAP_THRESHOLD)), bool(mallopt(M_TRIM_THRESHOLD, HEAP_THRESHOLD))])
