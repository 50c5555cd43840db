"""A whole collection tick, the store's memory, and the consumer under an mmap storm.

1. Tick cost: LiveSource ticks (/proc + store, and with the tracer: the dump_tasks iterator + store
   + kernel maps) with 0, 1,000 and 10,000 extra idle processes, as ms per tick and us per process;
   baselines in the same run: psutil.process_iter with the fields a row needs, and the /proc tick.
   Per 1,000 processes: the whole tick and the process-table read alone (ProcReader against the
   tick's one pass of the dump_tasks iterator, which brings the table and the kernel counters, parsed
   by TaskTable and parse_counts), iterator against /proc as a ratio, with the pass's own share (the
   kernel's walk and the copy, us per process); and the tick in a steady
   state, once every history window is full (--steady-history ticks), where the store shares the
   views of processes that did not change.
2. Store memory with 5,000 extra processes and full histories (tracemalloc), against the memory of
   one tick's samples (what the store would hold with no history at all).
3. Storm: the consumer's CPU (% of one core) while bench/mmap_loop.c runs flat out, against the
   same source with no storm, plus events delivered, dropped and throttled.

    sudo python bench/bench_tick.py [--counts 1000,10000] [--ticks 10] [--storm-seconds 10]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it --counts 100 --ticks 2 --history 10 --storm-seconds 2: the same three parts, in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import psutil  # noqa: E402

from bench_procfs import PSUTIL_ATTRS, reap, spawn  # noqa: E402
from memwatch.cli import _raise_file_limit  # noqa: E402
from memwatch.model import KernelCounts, ProcessSample  # noqa: E402
from memwatch.procfs import ProcReader, read_processes, read_system_memory  # noqa: E402
from memwatch.sources.live import LiveSource  # noqa: E402
from memwatch.store import Store  # noqa: E402
from memwatch.task_table import TaskTable  # noqa: E402
from smoke import smoke_defaults  # noqa: E402


async def tick_times(source: LiveSource, ticks: int, warmup: int = 0) -> tuple[float, int]:
    """Median seconds per tick (after the first tick and ``warmup`` more) and the process count."""
    snap = await source.open()
    times = []
    try:
        for _ in range(warmup):
            await source._tick()
        for _ in range(ticks):
            t0 = time.perf_counter()
            snap = await source._tick()
            times.append(time.perf_counter() - t0)
    finally:
        await source.close()
    return statistics.median(times), len(snap.processes)


def steady_source(bpf: bool, history: int) -> LiveSource:
    return LiveSource(3.0, use_bpf=bpf, store=Store(history_len=history))


def table_reads(ticks: int) -> tuple[float, float | None, float | None, int]:
    """Median seconds of one process-table read (after a warm-up read): /proc's; the iterator's
    with its parse, table and counters (None without eBPF); the iterator's pass alone; and the
    process count."""
    from memwatch.ebpf import BpfUnavailable, Tracer

    def median(read: Callable[[], list[ProcessSample]]) -> tuple[float, int]:
        n = len(read())
        times = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            read()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), n

    with ProcReader() as reader:
        proc, n = median(reader.read_processes)
        try:
            tracer = Tracer().open()
        except BpfUnavailable:
            return proc, None, None, n
        with tracer:
            table = TaskTable(reader, start_ticks=tracer.start_ticks)
            it, _ = median(lambda: table.read(tracer.read_tasks()))
            passes = []
            for _ in range(ticks):
                t0 = time.perf_counter()
                tracer._run_iterator(tracer._tasks_iter)
                passes.append(time.perf_counter() - t0)
    return proc, it, statistics.median(passes), n


def psutil_tick() -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for p in psutil.process_iter(PSUTIL_ATTRS):
            _ = p.info
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def store_memory(history: int) -> tuple[int, int, int]:
    """Bytes held by a store with full histories, bytes of one tick's samples, and processes."""
    with ProcReader() as reader:
        samples = reader.read_processes()
    system = read_system_memory()
    from memwatch.model import TracerHealth

    health = TracerHealth(enabled=True, mode="raw")
    kernel = {s.key: KernelCounts(mmap_count=i, outstanding_bytes=i * 4096) for i, s in enumerate(samples)}
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    store = Store(history_len=history)
    for i in range(history):
        store.update(float(i * 3), 3.0, samples, kernel, system, health)
    gc.collect()
    held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    fresh = read_processes()  # one tick's samples, allocated while traced
    one = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    del fresh, store
    return held, max(one, 1), len(samples)


def storm(seconds: float) -> None:
    loop = Path(tempfile.mkdtemp()) / "mmap_loop"
    subprocess.run(["cc", "-O2", "-o", str(loop), str(HERE / "mmap_loop.c")], check=True)

    async def run(with_storm: bool) -> tuple[float, int, int, int]:
        source = LiveSource(1.0)
        snap = await source.open()
        if not snap.tracer.enabled:
            raise SystemExit(f"storm: {snap.tracer.reason}")
        proc = subprocess.Popen([str(loop), "100000000"], stdout=subprocess.DEVNULL) if with_storm else None
        cpu0, t0 = time.process_time(), time.monotonic()
        while time.monotonic() - t0 < seconds:
            snap = await source.next()
        cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
        if proc:
            proc.kill()
            proc.wait()
        await source.close()
        t = snap.tracer
        return cpu, t.events, t.events_dropped, t.events_throttled

    quiet = asyncio.run(run(False))
    loud = asyncio.run(run(True))
    print(f"storm ({seconds:.0f} s, 1 s interval): consumer CPU {loud[0] * 100:.1f}% of a core with the "
          f"storm vs {quiet[0] * 100:.1f}% without (ratio {loud[0] / max(quiet[0], 1e-6):.2f}); "
          f"events {loud[1]}, dropped {loud[2]}, throttled {loud[3]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--history", type=int, default=120)
    ap.add_argument("--storm-seconds", type=float, default=10.0)
    ap.add_argument("--steady-history", type=int, default=30,
                    help="history length of the steady-state ticks (warmed up past it)")
    smoke_defaults(ap, counts="100", ticks=2, history=10, storm_seconds=2.0, steady_history=3)
    args = ap.parse_args()
    _raise_file_limit()  # as the memwatch command does: the /proc reader keeps stat files open
    bpf = os.geteuid() == 0
    children: list[subprocess.Popen[bytes]] = []
    try:
        steps = [0, *[int(c) for c in args.counts.split(",")]]
        have = 0
        print("tick cost (median of", args.ticks, "ticks; ms per tick, us per process; ratio vs psutil)")
        for extra in steps:
            spawn(children, extra - have)
            have = extra
            time.sleep(1)
            base = psutil_tick()
            proc_only, n = asyncio.run(tick_times(LiveSource(3.0, use_bpf=False), args.ticks))
            line = (f"  +{extra:5d} extra ({n:5d} processes): /proc only {proc_only * 1e3:7.2f} ms "
                    f"({proc_only / n * 1e6:5.1f} us/proc, {proc_only / base:.2f}x psutil)")
            with_bpf = None
            if bpf:
                with_bpf, _ = asyncio.run(tick_times(LiveSource(3.0), args.ticks))
                line += f"; with eBPF {with_bpf * 1e3:7.2f} ms ({with_bpf / base:.2f}x psutil)"
            print(line + f"; psutil {base * 1e3:7.2f} ms")
            read_proc, read_iter, one_pass, m = table_reads(args.ticks)
            per = 1000 / n
            line = f"    per 1,000 processes: tick /proc {proc_only * per * 1e3:6.2f} ms"
            if with_bpf is not None:
                line += f", iterator {with_bpf * per * 1e3:6.2f} ms ({with_bpf / proc_only:.2f}x /proc)"
            line += f"; table read /proc {read_proc * 1000 / m * 1e3:6.2f} ms"
            if read_iter is not None and one_pass is not None:
                line += (f", iterator (table + counters) {read_iter * 1000 / m * 1e3:6.2f} ms "
                         f"({read_iter / read_proc:.2f}x /proc; its one pass {one_pass / m * 1e6:.2f} us/process, "
                         f"{one_pass / read_iter:.0%} of it)")
            print(line)
            # a dashboard that has run a while: every idle process's history window is full of
            # unchanged ticks, and the store shares its view (a shorter window, to get there sooner)
            steady = args.steady_history
            proc_steady, n = asyncio.run(tick_times(steady_source(False, steady), args.ticks, steady + 1))
            line = (f"    steady state, {steady}-tick histories full, per 1,000 processes: tick /proc "
                    f"{proc_steady * 1000 / n * 1e3:6.2f} ms")
            if bpf:
                iter_steady, n = asyncio.run(tick_times(steady_source(True, steady), args.ticks, steady + 1))
                line += (f", iterator {iter_steady * 1000 / n * 1e3:6.2f} ms "
                         f"({iter_steady / proc_steady:.2f}x /proc)")
            print(line)
        held, one, n = store_memory(args.history)
        print(f"store memory, {n} processes x {args.history} samples: {held / 2**20:.1f} MiB "
              f"({held / n / 1024:.1f} KiB/process), {held / one:.1f}x one tick's samples")
    finally:
        reap(children)
    if bpf and args.storm_seconds > 0:
        storm(args.storm_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
