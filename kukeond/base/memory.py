"""Keep freed memory in the process for the next large reply, instead of returning it at once.

glibc's malloc serves a block above its mmap threshold with a fresh mmap;
freeing one raises that threshold to the block's size and the trim
threshold to twice that, and memory free at the top of the heap beyond the
trim threshold goes back to the kernel. A ListCells of 1000 cells is a
1.5 MB reply copied three times on its way to the socket: the three copies
freed together exceed twice one of them, so after every such reply the heap
was trimmed and the next one came in fresh pages, about a thousand page
faults each zeroing a page. That cost more than building the reply: 6.8 ms
of CPU per ListCells of 1000 cells against 2.2 ms with the thresholds
raised (p50 16 against 7 ms, on our 2-core machine). The price is that
memory freed after a burst of large replies stays in the process, up to
the trim threshold.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20
"""Blocks up to this size come from the heap (glibc's own dynamic ceiling)."""
TRIM_THRESHOLD = 64 << 20
"""Free memory at the top of the heap kept for reuse."""


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; whether it was done (False elsewhere)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
