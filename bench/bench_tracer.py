"""Added cost per traced syscall: an mmap+munmap loop without and with the tracer, in one run.

Prints ns per mmap+munmap pair for: no tracer (baseline); the same object with empty syscall
handlers (`make -C bpf bench-empty`: what attaching the syscall programs costs, the floor of this
design); memwatch in its default configuration (events on, consumer draining): per-syscall
tracepoints, which it mounts tracefs for where it can, and the raw-tracepoint mode it falls back
to where it cannot; and, where bpftrace is installed, a bpftrace one-liner that only counts mmap and munmap per
pid (the peer). A second loop of getppid(), a call memwatch does not trace, shows what the
rest of the system pays: any syscall tracepoint puts every syscall on the kernel's slower path, and
the raw mode also runs a program for each.

The machines are noisy (a VM on a shared host: the same loop varies by 10-20 % from one second to
the next), so every configuration's run is timed between two baseline runs and its ratio is taken
against their mean; the figure is the median of those ratios over many rounds, with the spread
(25th-75th percentile) beside it.

    sudo python bench/bench_tracer.py [--pairs 100000] [--rounds 15]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it --pairs 20000 --rounds 2: every configuration timed twice, in seconds.

memwatch has the kernel time its own programs (BPF run-time statistics) over one interval in ten,
to show what it costs; "measuring its cost" is the tracer while that timing is on.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from memwatch.ebpf import Tracer, TracerConfig
from pinned_loop import LOOP_CPU, not_root, off_the_loop_cpu
from smoke import smoke_defaults

HERE = Path(__file__).parent
BPFTRACE_PROG = ("tracepoint:syscalls:sys_enter_mmap,tracepoint:syscalls:sys_enter_munmap "
                 "{ @calls[pid] = count(); }")


def build_loop(source: str) -> Path:
    out = Path(tempfile.mkdtemp()) / Path(source).stem
    subprocess.run(["cc", "-O2", "-o", str(out), str(HERE / source)], check=True)
    return out


def time_loop(loop: Path, n: int) -> float:
    """ns per iteration, as measured inside the loop process."""
    out = subprocess.run(["taskset", "-c", str(LOOP_CPU), str(loop), str(n)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


@contextmanager
def nothing() -> Iterator[None]:
    yield


def build_empty() -> Path | None:
    """The program with empty handlers, built from bpf/ (needs clang, llvm and bpftool)."""
    out = Path(tempfile.mkdtemp()) / "empty.bpf.o"
    res = subprocess.run(["make", "-s", "-C", str(HERE.parent / "bpf"), "bench-empty", f"OUT_EMPTY={out}"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        print(f"no floor figure: building the empty program failed: {res.stderr.strip()}", file=sys.stderr)
        return None
    return out


@contextmanager
def memwatch_tracer(mode: str, obj: Path | None = None, run_stats: bool = False) -> Iterator[None]:
    """The tracer with default settings and a consumer draining like the live source does;
    ``run_stats``: with the kernel timing its programs, as during one interval in ten."""
    cfg = TracerConfig(mode=mode) if obj is None else TracerConfig(mode=mode, object_path=obj)  # type: ignore[arg-type]
    tracer = Tracer(cfg).open()
    if run_stats:
        tracer.start_run_stats()
    stop = threading.Event()

    def consume() -> None:
        # the live source's cadence: the ring every 0.25 s, the counters every tick (1 s here,
        # the dashboard's fastest setting; the default is 3 s)
        n = 0
        while not stop.wait(0.25):
            tracer.ring.drain()
            n += 1
            if n % 4 == 0:
                tracer.read_stats()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        c = tracer.counters()
        print(f"    [{mode}] events {c.events} dropped {c.dropped} throttled {c.throttled}", file=sys.stderr)
        tracer.close()


@contextmanager
def bpftrace_counter() -> Iterator[None]:
    proc = subprocess.Popen(["bpftrace", "-e", BPFTRACE_PROG], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for _ in range(10):  # warnings may come before "Attaching 2 probes..."
        line = proc.stdout.readline()
        seen.append(line.strip())
        if not line or "Attaching" in line:
            break
    if "Attaching" not in seen[-1]:
        proc.kill()
        raise RuntimeError("bpftrace did not start: " + " | ".join(seen))
    out = proc.stdout
    threading.Thread(target=lambda: out.read(), daemon=True).start()  # its exit print never blocks
    time.sleep(0.3)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # bpftrace's own way to stop: print the map, detach
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--object", action="append", default=[], metavar="LABEL=PATH",
                    help="also time this build of the program (tracepoint mode), e.g. a variant under study")
    ap.add_argument("--only", action="store_true", help="skip the bpftrace peer and the raw mode")
    smoke_defaults(ap, pairs=20_000, rounds=2)
    args = ap.parse_args()
    if not_root():
        return 2
    with off_the_loop_cpu():
        configs: dict[str, Callable[[], AbstractContextManager[None]]] = {
            "baseline (no tracer)": nothing,
        }
        empty = build_empty()
        if empty is not None:
            configs["floor: empty handlers"] = lambda: memwatch_tracer("tracepoint", empty)
        configs["memwatch default: tracepoints"] = lambda: memwatch_tracer("tracepoint")
        # the kernel timing every program run (BPF_ENABLE_STATS), as while memwatch measures its
        # own cost: one interval in ten
        configs["memwatch measuring its cost"] = lambda: memwatch_tracer("tracepoint", run_stats=True)
        if not args.only:
            configs["memwatch raw (if no tracefs)"] = lambda: memwatch_tracer("raw")
        for spec in args.object:
            label, _, path = spec.partition("=")
            configs[label] = lambda path=Path(path): memwatch_tracer("tracepoint", path)  # type: ignore[misc]
        if args.only:
            pass
        elif shutil.which("bpftrace"):
            configs["bpftrace count one-liner"] = bpftrace_counter
        else:
            print("bpftrace not installed: no peer figure", file=sys.stderr)
        # (label, loop, iterations per run): the traced pair, and a syscall memwatch does not
        # trace, which the syscall tracepoints being on at all still slow down
        loops = [("mmap+munmap pair", build_loop("mmap_loop.c"), args.pairs),
                 ("getppid(), not traced", build_loop("getppid_loop.c"), args.pairs * 10)]
        results = {lp[0]: {name: list[float]() for name in configs} for lp in loops}
        ratios = {lp[0]: {name: list[float]() for name in configs} for lp in loops}

        def time_all() -> dict[str, float]:
            return {label: time_loop(loop, n) for label, loop, n in loops}

        time_all()  # warm up
        for r in range(args.rounds):
            prev = time_all()
            for name, make in configs.items():
                if make is nothing:
                    continue
                with make():
                    t = time_all()
                nxt = time_all()
                for label, _, _ in loops:
                    results[label][name].append(t[label])
                    ratios[label][name].append(t[label] / ((prev[label] + nxt[label]) / 2))
                    results[label]["baseline (no tracer)"].append(nxt[label])
                    ratios[label]["baseline (no tracer)"].append(1.0)
                prev = nxt
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)
        for label, _, n in loops:
            print(f"{label}: {n} per run x {args.rounds} rounds; ratio against the baseline runs "
                  "either side, median and 25th-75th percentile")
            print(f"  {'':30s} {'ns':>8s} {'added':>7s} {'ratio':>6s}  {'spread':>13s}")
            base = statistics.median(results[label]["baseline (no tracer)"])
            for name, vals in results[label].items():
                med = statistics.median(vals)
                rs = ratios[label][name]
                q = statistics.quantiles(rs, n=4) if len(rs) > 1 else [1.0, 1.0, 1.0]
                print(f"  {name:30s} {med:8.0f} {med - base:+7.0f} {statistics.median(rs):6.3f}"
                      f"  {q[0]:6.3f}-{q[2]:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
