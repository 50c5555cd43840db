"""memwatch's command line (or, with ``--idle``, its imports alone) reporting its memory from inside.

bench_memory.py --live starts the real dashboard through this wrapper (``python bench/memprobe.py
OUT -- memwatch-args``): every MEMPROBE_EVERY seconds (default 5) one JSON line is appended to OUT
with what only the process itself can see:

- ``blocks``: objects/blocks Python's allocator has handed out and not yet freed
  (``sys.getallocatedblocks``);
- ``arenas``: pymalloc's 1 MiB arenas now allocated, and its bytes in used and free blocks
  (parsed from ``sys._debugmallocstats``, which writes to the C stderr: fd 2 is pointed at a pipe
  for the call, a few milliseconds);
- ``malloc``: glibc's own accounting (``mallinfo2``, over every arena): bytes in use, free bytes
  it keeps, bytes in mmapped chunks, and the number of malloc arenas (``malloc_info``);
- ``traced``: with MEMPROBE_TRACEMALLOC=N (frames), tracemalloc's current total and its top
  allocation sites, MEMPROBE_SITES of them (tracing costs memory and time itself: a run of its own);
- with MEMPROBE_UNTUNED=1, memwatch leaves glibc's malloc as it is (memwatch.ebpf.malloc not called);
- ``threads``, ``gc`` counts and, with MEMPROBE_TRIM=1, the RSS ``malloc_trim(0)`` gave back
  (memory glibc held free: what fragmentation and idle arenas cost).

ctypes is the bench's (only memwatch.ebpf may import it in memwatch itself).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import sys
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mallinfo2.restype = _Mallinfo2
_libc.malloc_trim.argtypes = [ctypes.c_size_t]
_libc.open_memstream.restype = ctypes.c_void_p
_libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t)]
_libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.fclose.argtypes = [ctypes.c_void_p]


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def malloc_figures() -> dict[str, int]:
    m = _libc.mallinfo2()
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = _libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    _libc.malloc_info(0, stream)
    _libc.fclose(stream)
    xml = (buf.value or b"").decode()
    _libc.free(buf)
    heaps = len(re.findall(r'<heap nr="\d+">', xml))
    return {"heap_kb": m.arena // 1024, "mmapped_kb": m.hblkhd // 1024, "in_use_kb": m.uordblks // 1024,
            "free_kb": m.fordblks // 1024, "top_kb": m.keepcost // 1024, "arenas": heaps}


def pymalloc_figures() -> dict[str, int]:
    r, w = os.pipe()
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(w, 2)
        os.close(w)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    chunks = []
    while True:
        data = os.read(r, 1 << 16)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    text = b"".join(chunks).decode(errors="replace")

    def num(label: str) -> int:
        m = re.search(re.escape(label) + r"\s*=\s*([\d,]+)", text)
        return int(m.group(1).replace(",", "")) if m else -1

    return {"arenas": num("# arenas allocated current"), "arenas_highwater": num("# arenas highwater mark"),
            "used_kb": num("# bytes in allocated blocks") // 1024, "free_kb": (
                num("# bytes in available blocks") + num("# bytes in free pools")) // 1024}


def report(out: Path, every: float, trim: bool, top_sites: int) -> None:
    t0 = time.monotonic()
    while True:
        time.sleep(every)
        line: dict[str, object] = {"t": round(time.monotonic() - t0, 1), "rss_kb": rss_kb(),
                                   "blocks": sys.getallocatedblocks(), "threads": threading.active_count(),
                                   "gc": gc.get_count(), "malloc": malloc_figures(),
                                   "pymalloc": pymalloc_figures()}
        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot()
            stats = snap.statistics("lineno")
            line["traced_kb"] = sum(s.size for s in stats) // 1024
            line["sites"] = [(str(s.traceback[0]), s.size // 1024, s.count) for s in stats[:top_sites]]
            del snap, stats
        if trim:
            before = rss_kb()
            _libc.malloc_trim(0)
            line["trimmed_kb"] = before - rss_kb()
        with out.open("a") as f:
            f.write(json.dumps(line) + "\n")


def main() -> int:
    out = Path(sys.argv[1])
    argv = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    frames = int(os.environ.get("MEMPROBE_TRACEMALLOC", "0"))
    if frames:
        tracemalloc.start(frames)
    every = float(os.environ.get("MEMPROBE_EVERY", "5"))
    trim, sites = os.environ.get("MEMPROBE_TRIM") == "1", int(os.environ.get("MEMPROBE_SITES", "15"))
    threading.Thread(target=report, args=(out, every, trim, sites), daemon=True, name="memprobe").start()
    if argv == ["--idle"]:   # the baseline: the dashboard's modules imported, nothing running
        import memwatch.cli
        import memwatch.sources.live
        import memwatch.ui.app

        while True:
            time.sleep(3600)
    import memwatch.cli

    if os.environ.get("MEMPROBE_UNTUNED") == "1":   # the "before" of memwatch.ebpf.malloc, to compare
        memwatch.cli._tune_malloc = lambda: None
    return memwatch.cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
