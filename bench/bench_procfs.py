"""How long one /proc tick takes for every process, against psutil measured in the same run.

Spawns N idle children (``sleep 600``) per step, then times, interleaved round by round so that
machine noise hits every contender alike:

* ``cold``   memwatch.procfs.read_processes(): a fresh reader, every file read (one-shot use)
* ``exact``  a warm ProcReader(status_every=1): stat + status every tick, cmdline/cgroup cached
* ``warm``   a warm ProcReader() with defaults: status only when stat shows a change or every
             10th tick, which is what a collector ticking once a second pays
* ``psutil`` psutil.process_iter([...]) with the fields a table row needs (its own Process cache
             is warm too)

Usage: python bench/bench_procfs.py [--counts 1000,5000] [--rounds 15]
All children are killed at the end, also on Ctrl+C.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import psutil

from memwatch.procfs import ProcReader, read_processes

PSUTIL_ATTRS = ["pid", "ppid", "name", "memory_info", "num_threads", "username", "create_time"]


def spawn(children: list[subprocess.Popen[bytes]], n: int) -> None:
    """Start n more idle processes; they sleep, like most processes of a real machine."""
    for _ in range(n):
        children.append(
            subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, close_fds=True)
        )


def reap(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
    for child in children:
        child.wait()
    children.clear()


def measure(contenders: dict[str, Callable[[], int]], rounds: int) -> dict[str, tuple[float, int]]:
    """Median seconds per call of each contender, and the number of processes it returned."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    counts: dict[str, int] = {}
    for fn in contenders.values():  # warm caches (dentries, our reader, psutil's _pmap)
        fn()
        fn()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in contenders.items():
                start = time.perf_counter()
                counts[name] = fn()
                times[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return {name: (statistics.median(t), counts[name]) for name, t in times.items()}


def contenders() -> dict[str, Callable[[], int]]:
    warm = ProcReader()
    exact = ProcReader(status_every=1)
    return {
        "cold": lambda: len(read_processes()),
        "exact": lambda: len(exact.read_processes()),
        "warm": lambda: len(warm.read_processes()),
        "psutil": lambda: len(list(psutil.process_iter(PSUTIL_ATTRS))),
    }


def report(extra: int, results: dict[str, tuple[float, int]]) -> None:
    base = results["psutil"][0]
    print(f"\n+{extra} idle processes")
    print(f"  {'reader':<8} {'procs':>6} {'ms/tick':>9} {'us/proc':>8} {'vs psutil':>10}")
    for name, (secs, count) in results.items():
        per = secs / max(count, 1) * 1e6
        print(f"  {name:<8} {count:>6} {secs * 1e3:>9.2f} {per:>8.2f} {secs / base:>9.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1000,5000",
                        help="comma-separated numbers of extra idle processes (0 is always measured)")
    parser.add_argument("--rounds", type=int, default=15, help="timed ticks per contender and step")
    args = parser.parse_args()
    try:
        counts = sorted({int(c) for c in args.counts.split(",") if c.strip()} | {0})
    except ValueError:
        parser.error(f"--counts must be comma-separated integers, got {args.counts!r}")
    if any(c < 0 for c in counts) or args.rounds < 1:
        parser.error("counts must be >= 0 and --rounds >= 1")

    # SIGTERM should clean up like Ctrl+C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    children: list[subprocess.Popen[bytes]] = []
    print(f"python {sys.version.split()[0]}, psutil {psutil.__version__}, {os.cpu_count()} CPUs, "
          f"median of {args.rounds} ticks")
    try:
        for extra in counts:
            spawn(children, extra - len(children))
            time.sleep(0.5)  # let the children reach sleep() so their memory is settled
            report(extra, measure(contenders(), args.rounds))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        reap(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
