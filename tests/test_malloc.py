"""glibc's mmap threshold fixed at start (memwatch.ebpf.malloc), in a fresh interpreter each time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PROBE = """
import ctypes, sys

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "tuned":
    from memwatch.ebpf.malloc import keep_large_blocks_unmapped
    print(keep_large_blocks_unmapped())
big = bytearray(4 << 20)   # a large block, freed: glibc's own threshold then rises to its size
del big
before = libc.mallinfo2().hblkhd
block = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


def mapped_apart(mode: str, **env: str) -> list[str]:
    """What the probe prints: (whether it tuned,) bytes of a 1 MiB block in a mapping of its own."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(SRC), **env})
    return out.stdout.split()


pytestmark = pytest.mark.skipif(not glibc(), reason="glibc's malloc only")


def test_a_large_block_is_mapped_apart_even_after_a_larger_one_was_freed() -> None:
    assert int(mapped_apart("plain")[0]) == 0, "glibc's dynamic threshold put it on the heap"
    tuned, apart = mapped_apart("tuned")
    assert tuned == "True" and int(apart) >= 1 << 20


def test_a_threshold_the_user_chose_is_left_alone() -> None:
    tuned, apart = mapped_apart("tuned", MALLOC_MMAP_THRESHOLD_="8388608")
    assert tuned == "False" and int(apart) == 0
