"""How long one /proc tick takes for every process, against psutil measured in the same run.

Spawns N idle children (``sleep 600``) per step, then times, interleaved round by round so that
machine noise hits every contender alike:

* ``cold``   memwatch.procfs.read_processes(): a fresh reader, every file read (one-shot use)
* ``exact``  a warm ProcReader(status_every=1): stat + status every tick, cmdline/cgroup cached
* ``warm``   a warm ProcReader() with defaults: status only when stat shows a change or every
             10th tick, which is what a collector ticking once a second pays
* ``moving`` the same, but every child's stat changed since its last tick, as if each had run:
             what a process that ran costs (parse stat, read what it reads when stat moved).
             Before its tick, untimed, the children are reniced (stat's nice field changes,
             their memory does not); after it they are set back, so the others still see them
             idle. Needs root (lowering nice again); left out otherwise
* ``psutil`` psutil.process_iter([...]) with the fields a table row needs (its own Process cache
             is warm too)

Then the cost of each file one process's tick may read, per process over all of them, against
reading status (the files are kept open where the reader keeps them open).

Usage: python bench/bench_procfs.py [--counts 1000,5000] [--rounds 15]
All children are killed at the end, also on Ctrl+C.

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it --counts 100 --rounds 3: the same tables for 0 and 100 extra processes, in seconds.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import psutil

from memwatch.procfs import ProcReader, read_processes
from smoke import smoke_defaults

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


def _nothing() -> None:
    pass


@dataclass
class Contender:
    """One timed call, and what must happen around it without being timed."""

    tick: Callable[[], int]
    before: Callable[[], None] = _nothing
    after: Callable[[], None] = _nothing


def measure(contenders: dict[str, Contender], rounds: int) -> dict[str, tuple[float, int]]:
    """Median seconds per call of each contender, and the number of processes it returned."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    counts: dict[str, int] = {}
    for c in contenders.values():  # warm caches (dentries, our reader, psutil's _pmap)
        for _ in range(2):
            c.before()
            c.tick()
            c.after()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, c in contenders.items():
                c.before()
                start = time.perf_counter()
                counts[name] = c.tick()
                times[name].append(time.perf_counter() - start)
                c.after()
    finally:
        gc.enable()
    return {name: (statistics.median(t), counts[name]) for name, t in times.items()}


def renicer(children: list[subprocess.Popen[bytes]]) -> tuple[Callable[[], None], Callable[[], None]]:
    """(move, restore): move gives every child a nice it did not have at the last move."""
    nice = [0]

    def move() -> None:
        nice[0] = 2 if nice[0] == 1 else 1
        for child in children:
            os.setpriority(os.PRIO_PROCESS, child.pid, nice[0])

    def restore() -> None:
        for child in children:
            os.setpriority(os.PRIO_PROCESS, child.pid, 0)

    return move, restore


WARM_READERS = 3


def kept_files_each() -> int:
    """The warm readers' share of the open-files limit.

    Each reader's default budget is half the soft limit: three of them at once run out of file
    descriptors (EMFILE) on a machine with as many processes as a third of the limit. Past its
    share a reader reads stat by path, as a collector does past its budget.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(0, (soft - min(1024, soft // 4)) // WARM_READERS)


def contenders(children: list[subprocess.Popen[bytes]]) -> dict[str, Contender]:
    share = kept_files_each()
    warm = ProcReader(keep_open=share)
    exact = ProcReader(status_every=1, keep_open=share)
    moving = ProcReader(keep_open=share)
    out = {
        "cold": Contender(lambda: len(read_processes())),
        "exact": Contender(lambda: len(exact.read_processes())),
        "warm": Contender(lambda: len(warm.read_processes())),
    }
    if children and os.geteuid() == 0:
        move, restore = renicer(children)
        out["moving"] = Contender(lambda: len(moving.read_processes()), move, restore)
    out["psutil"] = Contender(lambda: len(list(psutil.process_iter(PSUTIL_ATTRS))))
    return out


def _read_path(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return len(os.read(fd, 8192))
    finally:
        os.close(fd)


def file_costs(pids: list[int], rounds: int) -> dict[str, float]:
    """Median seconds per process to read each file, over all pids, interleaved round by round."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            continue
    reads: dict[str, Callable[[], object]] = {
        "stat (kept open, pread)": lambda: [os.pread(fd, 8192, 0) for fd in fds],
        "statm": lambda: [_read_path(f"/proc/{pid}/statm") for pid in pids],
        "status": lambda: [_read_path(f"/proc/{pid}/status") for pid in pids],
    }
    times: dict[str, list[float]] = {name: [] for name in reads}
    try:
        for _ in range(rounds):
            for name, fn in reads.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    finally:
        for fd in fds:
            os.close(fd)
    return {name: statistics.median(t) / max(len(pids), 1) for name, t in times.items()}


def report(extra: int, results: dict[str, tuple[float, int]]) -> None:
    base = results["psutil"][0]
    print(f"\n+{extra} idle processes")
    print(f"  {'reader':<8} {'procs':>6} {'ms/tick':>9} {'us/proc':>8} {'vs psutil':>10}")
    for name, (secs, count) in results.items():
        per = secs / max(count, 1) * 1e6
        print(f"  {name:<8} {count:>6} {secs * 1e3:>9.2f} {per:>8.2f} {secs / base:>9.3f}x")


def report_files(costs: dict[str, float]) -> None:
    base = costs["status"]
    print(f"  {'file':<24} {'us/proc':>8} {'vs status':>10}")
    for name, secs in costs.items():
        print(f"  {name:<24} {secs * 1e6:>8.2f} {secs / base:>9.3f}x")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1000,5000",
                        help="comma-separated numbers of extra idle processes (0 is always measured)")
    parser.add_argument("--rounds", type=int, default=15, help="timed ticks per contender and step")
    smoke_defaults(parser, counts="100", rounds=3)
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
          f"median of {args.rounds} ticks, warm readers keep up to {kept_files_each()} stat files open")
    try:
        for extra in counts:
            spawn(children, extra - len(children))
            time.sleep(0.5)  # let the children reach sleep() so their memory is settled
            report(extra, measure(contenders(children), args.rounds))
            if children:
                report_files(file_costs([c.pid for c in children], args.rounds))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        reap(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
