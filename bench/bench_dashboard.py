"""Dashboard cost and responsiveness, measured against htop in the same run.

(a) CPU: the dashboard runs headless (``App.run_test``) against a synthetic source that yields a
    new 1000-process snapshot every ``--interval`` seconds (frames pre-built from the test frames,
    scaled up, so building them is not counted); its process CPU time over ``--seconds`` is printed as
    % of one core next to htop's (``htop -d <interval>`` in a pty, with 1000 spawned ``sleep``
    processes so it has as many rows to show), read from /proc/PID/stat, and the ratio.
(b) Latency: while a child process runs an mmap/munmap storm, keys (arrow down/up, sort keys) are
    pressed and the time until the table reflects the key *and* the next frame was composited and
    written out is measured; p50 and p95 are printed.

Usage: PYTHONPATH=src .venv/bin/python bench/bench_dashboard.py [--seconds 60] [--interval 3]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it --seconds 6 --interval 1 --processes 100 --presses 10: both figures, in seconds (at a 1 s
interval htop refreshes often enough in 6 s to use measurable CPU, so there is a ratio to print).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import pty
import random
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from fcntl import ioctl
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from frames import make_frames  # noqa: E402
from memwatch.model import ProcessKey, ProcessView, SmapsRollup, Snapshot  # noqa: E402
from memwatch.ui.app import MemwatchApp  # noqa: E402
from smoke import smoke_defaults  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STORM = (
    "import mmap\n"
    "while True:\n"
    "    m = mmap.mmap(-1, 1 << 20)\n"
    "    m[0] = 1\n"
    "    m.close()\n"
)


# ----- a synthetic 1000-process source ------------------------------------------------------------

def scaled_frames(processes: int, count: int, seed: int = 7) -> list[Snapshot]:
    """``count`` frames of ``processes`` processes cloned from the test frames, RSS jittered per frame."""
    rng = random.Random(seed)
    base = make_frames(5)[-2]
    templates = list(base.processes)
    frames: list[Snapshot] = []
    for i in range(count):
        views: list[ProcessView] = []
        for n in range(processes):
            t = templates[n % len(templates)]
            rss = max(0, t.sample.rss_kb + rng.randint(-4096, 4096) + n)
            sample = dataclasses.replace(t.sample, pid=10_000 + n, start_ticks=1_000 + n,
                                         name=f"{t.sample.name[:14]}-{n}", rss_kb=rss)
            views.append(dataclasses.replace(t, sample=sample, growth_kb_s=rng.uniform(-50, 50),
                                             rss_history=(*t.rss_history[-7:], rss)))
        frames.append(dataclasses.replace(base, timestamp=base.timestamp + i, processes=tuple(views),
                                          by_key={}))
    return frames


class SyntheticSource:
    """A live-like SnapshotSource cycling through pre-built frames, one per interval."""

    def __init__(self, frames: list[Snapshot], interval_s: float) -> None:
        self._frames = frames
        self._interval_s = interval_s
        self._i = 0
        self.produced = 0

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def set_interval(self, seconds: float) -> None:
        self._interval_s = seconds

    async def open(self) -> Snapshot:
        return self._frames[0]

    async def next(self) -> Snapshot:
        await asyncio.sleep(self._interval_s)
        self._i = (self._i + 1) % len(self._frames)
        self.produced += 1
        return self._frames[self._i]

    async def rollup(self, key: ProcessKey) -> SmapsRollup | None:
        return None

    async def send_signal(self, key: ProcessKey, signum: int) -> None:
        raise PermissionError("a synthetic benchmark source: nothing to signal")

    async def close(self) -> None:
        return None


class TimedApp(MemwatchApp):
    """Counts and timestamps every frame the compositor writes out (for the latency figure)."""

    displays = 0
    last_display = 0.0

    def _display(self, screen: Any, renderable: Any) -> None:
        super()._display(screen, renderable)
        self.displays += 1
        self.last_display = time.perf_counter()


# ----- htop in a pty --------------------------------------------------------------------------------

def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start_htop(delay_tenths: int, cols: int, rows: int) -> tuple[int, int, threading.Thread]:
    """htop in a pseudo-terminal; a thread drains its output so it never blocks."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.execv("/usr/bin/htop", ["htop", "-d", str(delay_tenths)])
    ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.kill(pid, signal.SIGWINCH)

    def drain() -> None:
        try:
            while os.read(fd, 65536):
                pass
        except OSError:
            pass

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return pid, fd, thread


def spawn_sleepers(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL) for _ in range(n)]


# ----- (a) CPU ----------------------------------------------------------------------------------------

def live_source(interval: float) -> Any:
    """The real collector (eBPF when root, /proc otherwise): the dashboard's whole cost, as htop's."""
    from memwatch.sources.live import LiveSource

    return LiveSource(interval)


async def measure_cpu(seconds: float, interval: float, processes: int, size: tuple[int, int],
                      warmup: float, live: bool = False) -> tuple[float, float | None, int]:
    # Enough distinct frames that none repeats during the run: a repeated frame would flatter any
    # cache keyed on cell values.
    if live:
        source = live_source(interval)
    else:
        source = SyntheticSource(scaled_frames(processes, int((seconds + warmup) / interval) + 3), interval)
    app = MemwatchApp(source, top=100)
    htop: tuple[int, int, threading.Thread] | None = None
    if shutil.which("htop") and os.path.exists("/usr/bin/htop"):
        htop = start_htop(max(1, round(interval * 10)), *size)
    try:
        async with app.run_test(size=size) as pilot:
            await pilot.pause(warmup)
            produced0 = getattr(source, "produced", 0)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            htop0 = proc_cpu_s(htop[0]) if htop else 0.0
            await asyncio.sleep(seconds)
            cpu1, wall1 = time.process_time(), time.perf_counter()
            htop1 = proc_cpu_s(htop[0]) if htop else 0.0
            produced = getattr(source, "produced", 0) - produced0
            await pilot.press("q")
    finally:
        if htop:
            os.kill(htop[0], signal.SIGTERM)
            os.waitpid(htop[0], 0)
            os.close(htop[1])
    wall = wall1 - wall0
    ours = 100 * (cpu1 - cpu0) / wall
    theirs = 100 * (htop1 - htop0) / wall if htop else None
    return ours, theirs, produced


# ----- (b) latency ------------------------------------------------------------------------------------

async def measure_latency(presses: int, processes: int, size: tuple[int, int], live: bool = False,
                          interval: float = 1.0) -> list[float]:
    # synthetic: ~0.1 s a press, one frame a second
    source = (live_source(interval) if live
              else SyntheticSource(scaled_frames(processes, int(presses * 0.1) + 10), interval))
    app = TimedApp(source, top=100)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(1.0)
        latencies = await press_keys(app, presses)
        await pilot.press("q")
    return latencies


async def press_keys(app: TimedApp, presses: int, max_seconds: float | None = None) -> list[float]:
    """Press keys (arrows, sort keys) in a running app, ``presses`` of them or for ``max_seconds``
    (whichever ends first); each one's seconds from the key until the table reflects it *and* the
    next frame was composited and written out."""
    latencies: list[float] = []
    keys = ["down", "down", "up", "P", "M", "down", "N", "M"]
    stop = time.perf_counter() + max_seconds if max_seconds is not None else float("inf")
    for i in range(presses):
        if time.perf_counter() > stop:
            break
        key = keys[i % len(keys)]
        table = app.dashboard.table
        before = (table.cursor_row, table.row_order[:5], app.view.sort, app.view.descending)
        t0 = time.perf_counter()
        app.simulate_key(key)
        deadline = t0 + 5.0
        while (table.cursor_row, table.row_order[:5], app.view.sort, app.view.descending) == before:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"key {key!r} had no visible effect")
            await asyncio.sleep(0)
        shown = app.displays
        while app.displays == shown:
            if time.perf_counter() > deadline:
                raise RuntimeError("no frame was written after the key")
            await asyncio.sleep(0)
        latencies.append(app.last_display - t0)
        await asyncio.sleep(0.05)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="CPU measurement window (default 60)")
    parser.add_argument("--interval", type=float, default=3.0, help="snapshot / htop interval in s (default 3)")
    parser.add_argument("--processes", type=int, default=1000, help="processes per snapshot (default 1000)")
    parser.add_argument("--presses", type=int, default=200, help="key presses for the latency figure")
    parser.add_argument("--no-sleepers", action="store_true", help="do not spawn sleep processes for htop")
    parser.add_argument("--latency-interval", type=float, default=1.0,
                        help="snapshot interval while keys are pressed (default 1 s: a new frame every ~10 keys, "
                             "harsher than the dashboard's default 3 s)")
    parser.add_argument("--live", action="store_true",
                        help="feed the dashboard from the real collector (eBPF as root) over the spawned "
                             "processes instead of synthetic frames: data collection counted, as in htop")
    parser.add_argument("--latency-only", action="store_true", help="skip (a), the CPU figure")
    smoke_defaults(parser, seconds=6.0, interval=1.0, processes=100, presses=10)
    args = parser.parse_args()
    size = (200, 50)
    if not args.latency_only:
        measure_cpu_figure(args, size)
    measure_latency_figure(args, size)
    return 0


def measure_cpu_figure(args: argparse.Namespace, size: tuple[int, int]) -> None:
    sleepers = [] if args.no_sleepers else spawn_sleepers(args.processes)
    try:
        ours, theirs, produced = asyncio.run(measure_cpu(args.seconds, args.interval, args.processes, size, 3.0,
                                                         live=args.live))
    finally:
        for child in sleepers:
            child.kill()
        for child in sleepers:
            child.wait()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    feed = "live collector (eBPF + /proc)" if args.live else f"{produced} synthetic snapshots"
    print(f"(a) CPU over {args.seconds:g}s, {args.processes} processes, interval {args.interval:g}s, "
          f"{feed}, terminal {size[0]}x{size[1]}")
    print(f"    memwatch dashboard (headless): {ours:.2f}% of one core")
    if theirs is not None:
        print(f"    htop -d {round(args.interval * 10)} in a pty:        {theirs:.2f}% of one core "
              f"({len(sleepers)} sleep processes spawned)")
        print(f"    ratio memwatch/htop:           {ours / theirs:.2f}x" if theirs > 0 else
              "    htop used no measurable CPU; no ratio")
    else:
        print("    htop not installed: no baseline")
    print(f"    (max RSS of the bench process: {usage.ru_maxrss / 1024:.0f} MiB)")


def measure_latency_figure(args: argparse.Namespace, size: tuple[int, int]) -> None:
    storm = subprocess.Popen([sys.executable, "-c", STORM])
    sleepers = [] if args.no_sleepers or not args.live else spawn_sleepers(args.processes)
    try:
        latencies = asyncio.run(measure_latency(args.presses, args.processes, size, live=args.live,
                                                interval=args.latency_interval))
    finally:
        storm.kill()
        storm.wait()
        for child in sleepers:
            child.kill()
        for child in sleepers:
            child.wait()
    ms = [1000 * v for v in latencies]
    print(f"(b) key press -> updated frame written, {len(ms)} presses, a new snapshot every "
          f"{args.latency_interval:g} s, mmap storm running in a child:")
    p95 = percentile(ms, 0.95)
    print(f"    p50 {statistics.median(ms):.1f} ms   p95 {p95:.1f} ms   max {max(ms):.1f} ms"
          f"   (target p95 <= 50 ms: {p95 / 50:.2f}x of it)")


if __name__ == "__main__":
    raise SystemExit(main())
