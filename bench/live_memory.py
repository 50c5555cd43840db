"""bench_memory.py --live: the real dashboard's RSS over time at N processes, and where it sits.

See bench_memory.py's docstring for what is printed. The dashboard runs through bench/memprobe.py,
which reports from inside the process; this side reads /proc/PID/smaps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IN_NAMESPACE = "MEMWATCH_BENCH_PIDNS"
HISTORY = 120
"""The dashboard's history length (Store's default): full after this many ticks."""
ARENA_ALIGN = 64 << 20
"""glibc's per-thread arenas are heaps of HEAP_MAX_SIZE (64 MiB on 64-bit), aligned to it."""
COLUMNS = ("anon mmaps", "glibc heap", "glibc arenas", "bpf maps", "files", "other")


def smaps_kib(pid: int) -> dict[str, int]:
    """The process's RSS in KiB by kind of mapping: anonymous mmaps (pymalloc's 1 MiB arenas,
    large blocks, thread stacks), glibc's main heap ([heap]) and its per-thread arenas, BPF maps
    (ring buffers the consumer mmaps), files (the interpreter, libraries) and the rest."""
    out = dict.fromkeys(COLUMNS, 0)
    kind = "other"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                parts = line.split(None, 5)
                lo = int(parts[0].split("-")[0], 16)
                name = parts[5].strip() if len(parts) > 5 else ""
                if name.startswith("/"):
                    kind = "files"
                elif name == "[heap]":
                    kind = "glibc heap"
                elif name.startswith("anon_inode:bpf"):
                    kind = "bpf maps"
                elif name:
                    kind = "other"
                elif lo % ARENA_ALIGN == 0 and parts[1].startswith("rw"):
                    kind = "glibc arenas"
                else:
                    kind = "anon mmaps"
            elif line.startswith("Rss:"):
                out[kind] += int(line.split()[1])
    return out


def in_namespace(argv: list[str]) -> list[str] | None:
    """The command that reruns this bench in a private pid namespace (with its own /proc), or
    None when it already runs in one (or cannot: not root, no unshare)."""
    if os.environ.get(IN_NAMESPACE) or os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    return ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, *argv]


class Round:
    """One program in a pty (bench_dashboard's), sampled every ``every`` seconds."""

    def __init__(self, argv: list[str], env: dict[str, str], every: float) -> None:
        from bench_dashboard import start_in_pty

        self.report = Path(tempfile.mkstemp(prefix="memprobe-", suffix=".jsonl")[1])
        self.every = every
        env = {"PYTHONPATH": str(ROOT / "src"), "MEMPROBE_EVERY": f"{every:g}", **env}
        self.monitor = start_in_pty([sys.executable, str(HERE / "memprobe.py"), str(self.report), "--", *argv],
                                    120, 40, env)
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, dict[str, int]]] = []

    def sample(self) -> tuple[float, dict[str, int]]:
        pid = self.monitor[0]
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            raise SystemExit("the program under measurement exited; its report: " + self.report.read_text()[-2000:])
        got = (time.monotonic() - self.t0, smaps_kib(pid))
        self.samples.append(got)
        return got

    def run_for(self, seconds: float, show: bool = False, between: Callable[[], None] | None = None) -> None:
        while time.monotonic() - self.t0 < seconds:
            time.sleep(min(self.every, max(0.0, seconds - (time.monotonic() - self.t0))))
            t, kib = self.sample()
            if show:
                print(row(f"{t:5.0f}s", kib, self.inside(t)), flush=True)
            if between is not None:
                between()

    def sites(self) -> list[tuple[str, int, int]]:
        """tracemalloc's top allocation sites in the last report (MEMPROBE_TRACEMALLOC=N)."""
        lines = [json.loads(x) for x in self.report.read_text().splitlines() if x.strip()]
        return [tuple(site) for site in lines[-1].get("sites", [])] if lines else []  # type: ignore[misc]

    def inside(self, t: float) -> dict[str, object] | None:
        """The memprobe line nearest to ``t`` (the process's own view)."""
        lines = [json.loads(x) for x in self.report.read_text().splitlines() if x.strip()]
        return min(lines, key=lambda d: abs(float(d["t"]) - t)) if lines else None

    def stop(self) -> None:
        from bench_dashboard import stop

        stop(self.monitor)
        self.report.unlink(missing_ok=True)


def mib(kib: float) -> str:
    return f"{kib / 1024:6.1f}"


def row(label: str, kib: dict[str, int], inside: dict[str, object] | None) -> str:
    text = f"  {label:<14}{mib(sum(kib.values()))}  " + " ".join(f"{mib(kib[c]):>12}" for c in COLUMNS)
    if inside is not None:
        py, mc = inside["pymalloc"], inside["malloc"]
        assert isinstance(py, dict) and isinstance(mc, dict)
        text += (f"  | {mib(py['used_kb'])} /{mib(py['free_kb'])}  {mib(mc['in_use_kb'])} /"
                 f"{mib(mc['free_kb'])} {mc['arenas']:3d}")
    return text


def header() -> str:
    return (f"  {'':<14}{'RSS':>6}  " + " ".join(f"{c:>12}" for c in COLUMNS)
            + "  | pymalloc used/free    malloc used/free arenas   (MiB)")


def at(samples: list[tuple[float, dict[str, int]]], t: float) -> tuple[float, dict[str, int]]:
    """The first sample at or after t (else the last)."""
    return next((s for s in samples if s[0] >= t), samples[-1])


def spawn(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL) for _ in range(n)]


def dashboard(args: argparse.Namespace, config: str) -> list[str]:
    return ["--interval", f"{args.interval:g}", "--config", config]


def rss(sample: tuple[float, dict[str, int]]) -> float:
    return sum(sample[1].values())


def measure(args: argparse.Namespace, env: dict[str, str], config: str, show: bool) -> dict[str, float]:
    """Baselines and the main round with ``env``; the RSS (KiB) at each mark."""
    base_s = min(args.seconds, max(10.0, 3 * args.every))
    idle = Round(["--idle"], env, args.every)
    try:
        idle.run_for(base_s)
        idle_kib = idle.samples[-1]
    finally:
        idle.stop()
    empty = Round(dashboard(args, config), env, args.every)
    try:
        empty.run_for(base_s)
        empty_kib = empty.samples[-1]
        empty_inside = empty.inside(empty_kib[0])
    finally:
        empty.stop()
    sleepers = spawn(args.processes)
    try:
        seen = sum(1 for e in os.listdir("/proc") if e.isdigit())
        if show:
            print(header())
            print(row("idle modules", idle_kib[1], None))
            print(row("no extra proc", empty_kib[1], empty_inside))
            print(f"  dashboard over {args.processes} sleep processes ({seen} in the namespace), every "
                  f"{args.every:g} s:")
        main = Round(dashboard(args, config), env, args.every)
        last_churn = [time.monotonic()]

        def churn() -> None:
            """--churn: every so many seconds the sleepers exit and as many new ones start."""
            if args.churn and time.monotonic() - last_churn[0] >= args.churn:
                for child in sleepers:
                    child.kill()
                for child in sleepers:
                    child.wait()
                sleepers[:] = spawn(args.processes)
                last_churn[0] = time.monotonic()

        try:
            main.run_for(args.seconds, show=show, between=churn)
            sites = main.sites()
        finally:
            main.stop()
        if show and sites:
            print("  top allocation sites at the end (tracemalloc), KiB and blocks:")
            for where, kib, count in sites:
                print(f"    {kib:8d} KiB {count:8d}  {where.replace(str(ROOT) + '/', '')}")
    finally:
        for child in sleepers:
            child.kill()
        for child in sleepers:
            child.wait()
    warm = 5.0
    full_t = warm + HISTORY * args.interval
    marks = {"1 min": at(main.samples, 60.0), "full": at(main.samples, full_t), "end": main.samples[-1]}
    if show:
        for name, sample in marks.items():
            print(row(f"{name} ({sample[0]:.0f}s)", sample[1], None))
        full, end = rss(marks["full"]), rss(marks["end"])
        note = "" if main.samples[-1][0] >= full_t else f" (the histories fill at ~{full_t:.0f}s: not reached)"
        print(f"  end/full {end / full:.2f} (1.00 is flat){note}; full / idle modules {full / rss(idle_kib):.2f}x,"
              f" / no extra process {full / rss(empty_kib):.2f}x; per 1,000 processes "
              f"{(full - rss(empty_kib)) / 1024 / args.processes * 1000:.2f} MiB")
    return {"idle": rss(idle_kib), "empty": rss(empty_kib), **{k: rss(v) for k, v in marks.items()}}


def live_main(args: argparse.Namespace) -> int:
    command = in_namespace(sys.argv)
    if command is not None:
        env = {**os.environ, IN_NAMESPACE: "1"}
        return subprocess.run(command, env=env).returncode
    if os.geteuid() != 0:
        print("not root: the dashboard runs on /proc alone, over every process of the machine", file=sys.stderr)
    from memwatch.cli import _raise_file_limit

    _raise_file_limit()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        config = os.path.join(scratch, "config.toml")
        print(f"memwatch --interval {args.interval:g} (eBPF {'on' if os.geteuid() == 0 else 'off'}), "
              f"{'private pid namespace' if os.environ.get(IN_NAMESPACE) else 'whole machine'}, "
              f"{args.seconds:g} s; RSS by mapping from smaps, MiB")
        plain = measure(args, {}, config, show=True)
        for spec in args.env:
            env = dict(kv.split("=", 1) for kv in spec.split(","))
            print(f"with {spec}:")
            other = measure(args, env, config, show=True)
            print(f"  {spec} / plain: " + ", ".join(f"{k} {other[k] / plain[k]:.2f}x" for k in plain))
    return 0


if __name__ == "__main__":   # pragma: no cover - run through bench_memory.py --live
    raise SystemExit("run bench/bench_memory.py --live")
