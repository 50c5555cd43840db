"""glibc's malloc told to hand large blocks back at once (the one native call outside libbpf).

Here because memwatch.ebpf is where ctypes lives. glibc serves blocks of 128 KiB and more with
their own mmap, unmapped when freed, but raises that threshold to the size of any such block
freed (up to 32 MiB): after the first tick frees the kernel's process table (1.4 MB at 10,000
processes) or a 10,000-entry dict, blocks of that size come from the heap and the worker threads'
arenas instead, where what is freed between ticks stays mapped, in pieces. Measured with
bench/bench_memory.py --live at 10,000 processes: glibc held 8.8 MiB free of 18 MiB; with the
threshold fixed at its default it holds 1.3 MiB of 9.3, and the dashboard's RSS is 0.92x. The
cost is an mmap and munmap per large block, a few a tick.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("memwatch.malloc")

M_MMAP_THRESHOLD = -3
"""mallopt's parameter (malloc.h); setting it also turns the dynamic threshold off."""
MMAP_THRESHOLD = 128 << 10
"""glibc's own default."""


def keep_large_blocks_unmapped(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (see the module's docstring); False where it cannot be (not
    glibc, or the user chose a threshold: MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES win)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    log.debug("malloc's mmap threshold fixed at %d bytes: %s", threshold, done)
    return done
