"""The store's memory at 10,000 processes as its histories fill, and once they are full.

A Store is fed synthetic ticks (no /proc, no kernel: the figure is the store's alone) for
--processes processes, --busy of them with RSS, CPU and kernel counters that change every tick,
the others idle (as most of a machine's processes are). At one minute of a 3 s interval, when
the histories are full, and --after ticks later, it prints the bytes the store and the latest
snapshot hold (every object reachable from them, counted once), per process, and as ratios:

- against the same points kept as plain typed arrays, three ``array.array`` of --history values
  per process and nothing else (the baseline, measured in the same run);
- full-plus-after against full: 1.00 means flat once the histories are full.

    .venv/bin/python bench/bench_memory.py [--processes 10000] [--history 120] [--busy 0.1]

With ``--live`` (as root) it measures the real dashboard instead: ``memwatch --interval S`` in a
120x40 pseudo-terminal, eBPF on, over --processes extra ``sleep`` processes, in a private pid
namespace (so that nobody else's processes are counted: the kernel's task iterator and /proc
show memwatch only that namespace's). Its RSS is sampled every --every seconds for --seconds
(at a 1 s interval the 120-point histories are full after two minutes; --seconds 420 --interval 3
is the real length), broken down from /proc/PID/smaps: pymalloc's arenas and other anonymous
mmaps, glibc's heap and its per-thread arenas (64 MiB-aligned), BPF maps, files; with what the
process sees from inside (bench/memprobe.py: pymalloc's used/free bytes, glibc's in-use/free
bytes and arena count). In the same run, baselines: the same interpreter with the dashboard's
modules imported, idle; and the dashboard over no extra process. It prints the RSS at one
minute, when the histories are full and at the end (end/full: 1.00 is flat), and the cost per
1,000 processes over the empty dashboard. ``--env K=V`` (repeatable) adds a round with that
environment, printed as a ratio to the plain round (``--env MEMPROBE_TRACEMALLOC=1`` prints the
top allocation sites at the end). ``--churn S`` replaces the sleepers by new ones every S seconds
(exits, births: what a build machine does).

    .venv/bin/python bench/bench_memory.py --live [--processes 10000] [--interval 1] [--seconds 150]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it --processes 500 --history 20 --after 5 (--live: 200 processes, 0.5 s interval, 12 s):
the same lines, in seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import time
import types
from array import array
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from memwatch.model import KernelCounts, ProcessSample, SystemMemory, TracerHealth  # noqa: E402
from memwatch.store import Store  # noqa: E402
from smoke import smoke_defaults  # noqa: E402

INTERVAL_S = 3.0
SYSTEM = SystemMemory(8 << 20, 4 << 20, 4 << 20, 1 << 20, 0, 0)
HEALTH = TracerHealth(enabled=True, mode="tracepoint")
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def deep_size(*roots: object) -> int:
    """Bytes of every object reachable from roots, each counted once (classes and code left out)."""
    seen: set[int] = set()
    todo = list(roots)
    total = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return total


def samples_at(n: int, busy: int, tick: int, idle: list[ProcessSample]) -> list[ProcessSample]:
    """One tick: the idle processes as they were, the busy ones grown by a little."""
    out = list(idle)
    for i in range(busy):
        base = idle[i]
        rss = base.rss_kb + (tick * 37) % 4096
        out[i] = dataclasses.replace(base, rss_kb=rss, anon_kb=rss - 1000, cpu_time_s=tick * 0.01)
    return out


def make_idle(n: int) -> list[ProcessSample]:
    return [ProcessSample(
        pid=10_000 + i, ppid=1, name="worker", cmdline=f"/usr/bin/worker --id {i}", user="root",
        start_ticks=1000 + i, start_time=1e9, threads=1, rss_kb=4000 + i % 997, virt_kb=20_000,
        peak_kb=5000, swap_kb=0, shared_kb=1000, anon_kb=3000, cgroup="/system.slice/worker.service",
        kernel_thread=False, state="S", cpu_time_s=1.0, uid=0, memory_cgroup="/system.slice/worker.service",
    ) for i in range(n)]


def typed_arrays(n: int, history: int) -> int:
    """The baseline: each process's three histories as plain typed arrays, full."""
    rings = [(array("q", range(history)), array("q", range(history)), array("d", [0.5] * history))
             for _ in range(n)]
    return deep_size(rings) - deep_size([])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=10_000)
    ap.add_argument("--history", type=int, default=120, help="points per history (the store's default)")
    ap.add_argument("--busy", type=float, default=0.1, help="share of processes that change every tick")
    ap.add_argument("--after", type=int, default=40, help="ticks after the histories are full")
    ap.add_argument("--live", action="store_true", help="the real dashboard's RSS over time, broken down")
    ap.add_argument("--interval", type=float, default=1.0, help="--live: the dashboard's interval (default 1 s)")
    ap.add_argument("--seconds", type=float, default=150.0, help="--live: how long the main round runs")
    ap.add_argument("--every", type=float, default=10.0, help="--live: seconds between samples")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="--live: one more round with this in the dashboard's environment (repeatable; "
                         "several K=V joined by commas make one round)")
    ap.add_argument("--churn", type=float, default=0.0, metavar="S",
                    help="--live: every S seconds the sleep processes exit and as many new ones start")
    live_smoke = {"interval": 0.5, "seconds": 12.0, "every": 3.0} if "--live" in sys.argv else {}
    smoke_defaults(ap, processes=200 if "--live" in sys.argv else 500, history=20, after=5, **live_smoke)
    args = ap.parse_args()
    if args.live:
        from live_memory import live_main

        return live_main(args)
    n, busy = args.processes, int(args.processes * args.busy)
    idle = make_idle(n)
    kernel_idle = {s.key: KernelCounts() for s in idle}
    store = Store(history_len=args.history, groups=False)
    minute = round(60 / INTERVAL_S)
    marks = {min(minute, args.history): "1 min", args.history: "full", args.history + args.after: "full+after"}
    baseline = typed_arrays(n, args.history)
    print(f"{n} processes ({busy} busy), {args.history}-point histories; baseline: the same points as "
          f"three typed arrays a process, {baseline / 2**20:.1f} MiB ({baseline / n:.0f} B/process)")
    held: dict[str, int] = {}
    t0 = time.perf_counter()
    for tick in range(1, args.history + args.after + 1):
        samples = samples_at(n, busy, tick, idle)
        kernel = dict(kernel_idle)
        for s in samples[:busy]:
            kernel[s.key] = KernelCounts(mmap_count=tick, outstanding_bytes=tick * 4096)
        snap = store.update(tick * INTERVAL_S, INTERVAL_S, samples, kernel, SYSTEM, HEALTH)
        del samples, kernel
        if tick in marks:
            size = deep_size(store, snap)
            held[marks[tick]] = size
            print(f"  {marks[tick]:>10} (tick {tick:3d}): store + snapshot {size / 2**20:6.1f} MiB, "
                  f"{size / n:6.0f} B/process, {size / baseline:.2f}x the typed arrays")
    full, after = held["full"], held["full+after"]
    print(f"flat once full: full+{args.after} ticks / full = {after / full:.2f}; "
          f"{(time.perf_counter() - t0) / (args.history + args.after) * 1e3:.0f} ms a tick")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
