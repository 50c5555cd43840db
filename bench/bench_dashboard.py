"""Dashboard cost and responsiveness, measured against htop and btop in the same run.

(a) CPU: with ``--live``, memwatch (the real command, eBPF as root), ``htop -d <interval>`` and
    btop (``update_ms`` = the interval, from a scratch config) run side by side, each in its own
    120x40 pseudo-terminal, over 1,000 and then 10,000 extra ``sleep`` processes (``--counts``);
    each monitor's CPU time over ``--seconds``, after a warm-up that covers memwatch's start-up (its
    first ten ticks merge every process; ``--warmup`` to choose, 0 to measure the start) (utime +
    stime of its process, all threads, from
    /proc/PID/stat) is printed as % of one core with its RSS at the end, and the ratios
    memwatch/htop and memwatch/btop. eBPF programs run in the traced processes, not memwatch's:
    their cost is bench_tracer.py's. Without ``--live`` the dashboard runs in its own pty on
    synthetic ``--processes``-process snapshots (pre-built, so building them is not counted) beside
    htop and btop over as many spawned processes, then alone with no new frame: the UI's own cost.
(b) Latency: while a child process runs an mmap/munmap storm, keys (arrow down/up, sort keys) are
    pressed and the time until the table reflects the key *and* the next frame was composited and
    written out is measured; p50 and p95 are printed.

Usage: .venv/bin/python bench/bench_dashboard.py --live [--seconds 60] [--interval 3] [--counts 1000,10000]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it --seconds 6 --interval 1 --processes 100 --counts 100 --presses 10: both figures, in
seconds (at a 1 s interval htop and btop refresh often enough in 6 s to use measurable CPU, so
there are ratios to print).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import pty
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
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
from memwatch.cli import _raise_file_limit  # noqa: E402
from memwatch.model import SHARED_MIN_POINTS, ProcessKey, ProcessView, SmapsRollup, Snapshot  # noqa: E402
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

def scaled_frames(processes: int, count: int, seed: int = 7, changing: float = 1.0) -> list[Snapshot]:
    """``count`` frames of ``processes`` processes cloned from the test frames, RSS jittered per
    frame. With ``changing`` < 1 only that share of them (drawn anew each frame) changes; the
    others keep their view object from the frame before, as the store hands on the views of
    processes that did not change."""
    rng = random.Random(seed)
    base = make_frames(5)[-2]
    templates = list(base.processes)
    frames: list[Snapshot] = []
    for i in range(count):
        views: list[ProcessView] = []
        for n in range(processes):
            if frames and rng.random() >= changing:
                views.append(frames[-1].processes[n])
                continue
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


# ----- monitors in ptys -----------------------------------------------------------------------------

PTY_SIZE = (120, 40)
"""Columns and rows of each monitor's pseudo-terminal in the side-by-side run (as issue 13's table)."""

Monitor = tuple[int, int, threading.Thread]
"""A program in a pseudo-terminal: its pid, the pty's master fd, the thread draining its output."""


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """(main thread, all the other threads) utime + stime of a process, in seconds. memwatch's main
    thread runs the event loop: the UI (and the eBPF ring drain); its worker threads collect."""
    main = proc_cpu_s(pid)
    with open(f"/proc/{pid}/task/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    loop = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return loop, main - loop


def proc_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_in_pty(argv: list[str], cols: int, rows: int, env: dict[str, str] | None = None) -> Monitor:
    """A program in a pseudo-terminal of cols x rows (set before it starts); a thread drains its
    output so it never blocks."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(argv[0], argv, {**os.environ, "TERM": "xterm-256color", **(env or {})})
        finally:
            os._exit(127)

    def drain() -> None:
        try:
            while os.read(fd, 65536):
                pass
        except OSError:
            pass

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return pid, fd, thread


def start_htop(delay_tenths: int, cols: int, rows: int) -> Monitor:
    return start_in_pty(["/usr/bin/htop", "-d", str(delay_tenths)], cols, rows)


def start_btop(update_ms: int, cols: int, rows: int, config_home: str) -> Monitor:
    """btop reads $XDG_CONFIG_HOME/btop/btop.conf: a scratch one sets its update interval."""
    os.makedirs(os.path.join(config_home, "btop"), exist_ok=True)
    with open(os.path.join(config_home, "btop", "btop.conf"), "w") as f:
        f.write(f"update_ms = {update_ms}\n")
    env = {"XDG_CONFIG_HOME": config_home, "HOME": config_home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    return start_in_pty([shutil.which("btop") or "btop", "--utf-force"], cols, rows, env)


def stop(monitor: Monitor) -> None:
    """SIGTERM, then SIGKILL after 5 s; reaped (unless it was already) and its pty closed."""
    pid, fd, _ = monitor
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)
    os.close(fd)


def spawn_sleepers(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL) for _ in range(n)]


# ----- (a) CPU ----------------------------------------------------------------------------------------

def start_baselines(monitors: dict[str, Monitor], interval: float, config_home: str) -> None:
    """htop and btop (those installed) at ``interval``, each in its own pty, into ``monitors``."""
    cols, rows = PTY_SIZE
    if os.path.exists("/usr/bin/htop"):
        monitors[f"htop -d {round(interval * 10)}"] = start_htop(max(1, round(interval * 10)), cols, rows)
    if shutil.which("btop"):
        monitors[f"btop update_ms {round(interval * 1000)}"] = start_btop(round(interval * 1000), cols, rows,
                                                                          config_home)


@dataclasses.dataclass
class Measured:
    """What :func:`measure` read over its window."""

    cpu: dict[str, float]
    """Each monitor's CPU, % of one core."""
    rss: dict[str, float]
    """Each monitor's RSS at the end, MiB."""
    threads: tuple[float, float]
    """The first monitor's (main thread, other threads) CPU, % of one core."""


def measure(monitors: dict[str, Monitor], seconds: float, warmup: float) -> Measured:
    """Each monitor's CPU over ``seconds`` after ``warmup`` (the first one's by thread too)."""
    time.sleep(warmup)
    for name, (pid, _, _) in monitors.items():
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            raise SystemExit(f"{name} exited during the warm-up")
    first = next(iter(monitors.values()))[0]
    before = {name: proc_cpu_s(m[0]) for name, m in monitors.items()}
    threads0 = thread_cpu_s(first)
    wall0 = time.perf_counter()
    time.sleep(seconds)
    after = {name: proc_cpu_s(m[0]) for name, m in monitors.items()}
    threads1 = thread_cpu_s(first)
    wall = time.perf_counter() - wall0
    loop, others = (100 * (b - a) / wall for a, b in zip(threads0, threads1, strict=True))
    return Measured({name: 100 * (after[name] - before[name]) / wall for name in monitors},
                    {name: proc_rss_mib(m[0]) for name, m in monitors.items()}, (loop, others))


def stop_all(monitors: dict[str, Monitor], children: list[subprocess.Popen[bytes]]) -> None:
    for monitor in monitors.values():
        stop(monitor)
    for child in children:
        child.kill()
    for child in children:
        child.wait()


def print_ratios(ours: str, figure: float, cpu: dict[str, float], label: str | None = None) -> None:
    """``figure`` (% of one core) against each baseline in ``cpu`` (all but ``ours``)."""
    label = label or ours
    for name in cpu:
        if name == ours:
            continue
        other = name.split()[0]
        head = f"    ratio {label}/{other}:"
        head = f"{head:<{max(28, len(head) + 1)}}"
        print(f"{head}{figure / cpu[name]:.2f}x" if cpu[name] > 0 else
              f"{head}{other} used no measurable CPU; no ratio")


def monitors_side_by_side(seconds: float, interval: float, extra: int, warmup: float) -> None:
    """memwatch, htop and btop over ``extra`` spawned sleep processes, each in its own pty; prints
    each one's CPU (% of one core) and RSS, and memwatch's ratios to the other two."""
    cols, rows = PTY_SIZE
    children: list[subprocess.Popen[bytes]] = []
    monitors: dict[str, Monitor] = {}
    with tempfile.TemporaryDirectory(prefix="bench-btop-") as config_home:
        try:
            children = spawn_sleepers(extra)
            monitors["memwatch"] = start_in_pty([sys.executable, "-m", "memwatch", "--interval", f"{interval:g}"],
                                                cols, rows, {"PYTHONPATH": str(ROOT / "src")})
            start_baselines(monitors, interval, config_home)
            got = measure(monitors, seconds, warmup)
        finally:
            stop_all(monitors, children)
    print(f"(a) CPU over {seconds:g}s after a {warmup:g}s warm-up, +{extra} extra processes, interval {interval:g}s, "
          f"live collector, each monitor in its own {cols}x{rows} pty")
    for name in monitors:
        print(f"    {name + ':':<22}{got.cpu[name]:6.2f}% of one core, RSS {got.rss[name]:6.1f} MiB")
    loop, workers = got.threads
    print(f"    memwatch by thread: event loop (UI, ring drain) {loop:.2f}%, workers (collection) {workers:.2f}%")
    print_ratios("memwatch", got.cpu["memwatch"], got.cpu)
    print_ratios("memwatch", loop, got.cpu, "memwatch event loop")
    for other in ("htop", "btop"):
        if not any(name.startswith(other) for name in monitors):
            print(f"    {other} not installed: no baseline")


def live_source(interval: float) -> Any:
    """The real collector (eBPF when root, /proc otherwise): the dashboard's whole cost, as htop's."""
    from memwatch.sources.live import LiveSource

    return LiveSource(interval)


def start_synthetic_ui(args: argparse.Namespace, interval: float, frames: int, ready: str) -> Monitor:
    """The dashboard alone, fed pre-built synthetic frames, in its own pty (a real terminal, whose
    writes count): a child running this file with --serve-synthetic."""
    argv = [sys.executable, __file__, "--serve-synthetic", "--processes", str(args.processes),
            "--interval", f"{interval:g}", "--frames", str(frames), "--changing", f"{args.changing:g}",
            "--ready", ready]
    return start_in_pty(argv, *PTY_SIZE, {"PYTHONPATH": str(ROOT / "src")})


def serve_synthetic(args: argparse.Namespace) -> int:
    """The child of :func:`start_synthetic_ui`: builds its frames, says so, runs the dashboard."""
    source = SyntheticSource(scaled_frames(args.processes, args.frames, changing=args.changing), args.interval)
    Path(args.ready).touch()
    return MemwatchApp(source, top=100).run() or 0


def wait_ready(path: str, monitor: Monitor, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if os.waitpid(monitor[0], os.WNOHANG) != (0, 0) or time.monotonic() > deadline:
            raise SystemExit("the synthetic dashboard did not start")
        time.sleep(0.2)


def ui_side_by_side(args: argparse.Namespace, warmup: float) -> None:
    """(a) without --live: the dashboard on synthetic frames (the UI's own cost, in a pty) beside
    htop and btop over as many spawned processes, then the dashboard alone with no new frame."""
    cols, rows = PTY_SIZE
    seconds, interval = args.seconds, args.interval
    children: list[subprocess.Popen[bytes]] = []
    monitors: dict[str, Monitor] = {}
    idle: dict[str, Monitor] = {}
    idle_seconds = min(seconds, 10.0)
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as scratch:
        try:
            children = [] if args.no_sleepers else spawn_sleepers(args.processes)
            # Enough distinct frames that none repeats during the run: a repeated frame would
            # flatter any cache keyed on cell values.
            ready = os.path.join(scratch, "ready")
            monitors["memwatch UI"] = start_synthetic_ui(args, interval, int((seconds + warmup) / interval) + 3, ready)
            wait_ready(ready, monitors["memwatch UI"])
            start_baselines(monitors, interval, os.path.join(scratch, "config"))
            got = measure(monitors, seconds, warmup)
            done = dict(monitors)
            monitors.clear()
            stop_all(done, [])
            ready = os.path.join(scratch, "idle-ready")
            idle["idle"] = start_synthetic_ui(args, 1e6, 1, ready)  # one frame, the next never comes
            wait_ready(ready, idle["idle"])
            still = measure(idle, idle_seconds, warmup).cpu["idle"]
        finally:
            stop_all({**monitors, **idle}, children)
    changing = "all" if args.changing >= 1 else f"{100 * args.changing:g}%"
    print(f"(a) CPU over {seconds:g}s, {args.processes} processes ({changing} of them changing each frame), "
          f"interval {interval:g}s, synthetic frames (the UI alone), each monitor in its own {cols}x{rows} pty")
    for name in got.cpu:
        print(f"    {name + ':':<22}{got.cpu[name]:6.2f}% of one core, RSS {got.rss[name]:6.1f} MiB")
    print(f"    memwatch UI, no new frame for {idle_seconds:g}s: {still:.3f}% of one core")
    print_ratios("memwatch UI", got.cpu["memwatch UI"], got.cpu)


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
                        help="(a) runs the real memwatch beside htop and btop, each in a pty, over --counts "
                             "spawned processes; (b) feeds the dashboard from the real collector")
    parser.add_argument("--counts", default="1000,10000",
                        help="extra processes of each --live round (default 1000,10000)")
    parser.add_argument("--latency-only", action="store_true", help="skip (a), the CPU figure")
    parser.add_argument("--warmup", type=float, default=None,
                        help="--live: seconds before the window (default: memwatch's first 10 ticks, its start-up)")
    parser.add_argument("--changing", type=float, default=1.0,
                        help="without --live: the share of processes that change each frame (default 1: all)")
    parser.add_argument("--serve-synthetic", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    smoke_defaults(parser, seconds=6.0, interval=1.0, processes=100, presses=10, counts="100", warmup=5.0)
    args = parser.parse_args()
    if args.serve_synthetic:
        return serve_synthetic(args)
    size = (200, 50)
    if not args.latency_only and args.live:
        _raise_file_limit()
        # memwatch merges every process at each of its first SHARED_MIN_POINTS ticks (until their
        # histories hold what the TREND column draws), then only those that change: the window
        # measures the steady state, which is what runs for hours (--warmup 0 measures the start)
        warmup = args.warmup if args.warmup is not None else max(5.0, (SHARED_MIN_POINTS + 2) * args.interval)
        for extra in (int(c) for c in args.counts.split(",")):
            monitors_side_by_side(args.seconds, args.interval, extra, warmup=warmup)
    elif not args.latency_only:
        ui_side_by_side(args, warmup=max(5.0, 3 * args.interval))
    measure_latency_figure(args, size)
    return 0


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
