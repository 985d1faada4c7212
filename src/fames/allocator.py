"""Keep large freed blocks in the process heap, so that activations are reused rather than re-faulted.

glibc's malloc serves every block above its mmap threshold (dynamic, at most 32 MiB) with fresh pages from
the kernel and returns them on free. A batch of 512 images makes activations of 25-100 MB, so every layer
output of every batch is first-touched page by page; on the 2-core VMs this project runs on, those page
faults cost about as much as the layer ops themselves (an exact VGG validation pass: 7.6 s with the
default threshold, 4.2 s with the threshold at 2 GiB). `keep_large_blocks_in_heap` raises the threshold,
so that freed activations stay in the heap for the next batch. The CLI and the benchmarks call it at
start; library users may call it themselves. ``FAMES_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)
HEAP_THRESHOLD = 2**31 - 1  # the largest value mallopt's int takes: blocks below 2 GiB come from the heap


def keep_large_blocks_in_heap() -> bool:
    """Serve blocks below 2 GiB from the heap (glibc ``mallopt``); process-wide.

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
    return bool(mallopt(M_MMAP_THRESHOLD, HEAP_THRESHOLD))
