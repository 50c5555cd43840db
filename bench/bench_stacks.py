"""What allocation stacks cost: in the kernel per traced call, for the process looked at and for
every other process, and in user space to unwind and symbolize.

Kernel: ns per mmap+munmap pair of bench/mmap_loop.c (pinned to one CPU) with
  - no tracer (the baseline),
  - memwatch's tracer with stacks enabled but no target,
  - the same with *another* process a stack target (what every other process pays: the flag),
  - the same with the loop itself a stack target, every call's stack copied (stacks_per_sec 0),
    the ring drained by a consumer on the other CPU,
  - the same with the default budget (1000 stacks a second; the rest of the calls arrive without).
Each configuration's run is timed between two baseline runs; the figure is the median over rounds
of its ratio against their mean, as in bench_tracer.py.

User space: unwinding one record of that loop (cold: no module read yet; warm: cached), and
opening libc and symbolizing its frames cold and warm; beside it, where pyelftools is installed,
what parsing libc's .eh_frame with it costs (the reason memwatch reads ELF and CFI itself).

    sudo python bench/bench_stacks.py [--pairs 100000] [--rounds 9]

MEMWATCH_BENCH_SMOKE=1 (bench/smoke.py) makes it one short round, for tests/test_readme.py.
"""

from __future__ import annotations

import argparse
import os
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

from memwatch.ebpf import Tracer, TracerConfig, parse_stack_record
from memwatch.stacks.elf import ElfFile
from memwatch.stacks.unwind import ElfCache, ProcessModules, unwind
from pinned_loop import LOOP_CPU, not_root, off_the_loop_cpu
from smoke import smoke_defaults

HERE = Path(__file__).parent
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def build_loop() -> Path:
    out = Path(tempfile.mkdtemp()) / "mmap_loop"
    subprocess.run(["cc", "-O2", "-o", str(out), str(HERE / "mmap_loop.c")], check=True)
    return out


def time_loop(loop: Path, n: int, before_start: Callable[[int], None] | None = None) -> float:
    """ns per pair as the loop measures it; ``before_start(pid)`` runs while the loop's process is
    stopped before its exec (so it can be made a stack target from its first call)."""
    if before_start is None:
        out = subprocess.run(["taskset", "-c", str(LOOP_CPU), str(loop), str(n)], capture_output=True,
                             text=True, check=True)
        return float(out.stdout)
    # a shell that stops itself, then becomes the loop (exec keeps the pid): the target is set
    # before the loop's first call
    proc = subprocess.Popen(["sh", "-c", f'kill -STOP $$; exec taskset -c {LOOP_CPU} "$0" {n}', str(loop)],
                            stdout=subprocess.PIPE, text=True)
    os.waitpid(proc.pid, os.WUNTRACED)
    before_start(proc.pid)
    os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate()
    return float(out)


@contextmanager
def tracer(**cfg: object) -> Iterator[Tracer]:
    """memwatch's tracer with stacks enabled, its rings drained (discarded) as fast as they fill
    by a thread on the other CPU: this measures the kernel's work, not the unwinding."""
    t = Tracer(TracerConfig(stacks=True, **cfg)).open()  # type: ignore[arg-type]
    stop = threading.Event()

    def drain() -> None:
        while not stop.wait(0.02):
            t.stacks.discard(1 << 16)
            t.ring.discard(1 << 16)

    th = threading.Thread(target=drain, daemon=True)
    th.start()
    try:
        yield t
    finally:
        stop.set()
        th.join()
        t.close()


def kernel_cost(loop: Path, pairs: int, rounds: int) -> None:
    other = subprocess.Popen(["sleep", "600"])

    def no_target(t: Tracer) -> Callable[[int], None] | None:
        return None

    def other_target(t: Tracer) -> Callable[[int], None] | None:
        t.set_stack_targets([other.pid])
        return None

    def self_target(t: Tracer) -> Callable[[int], None]:
        return lambda pid: t.set_stack_targets([pid]) and None

    configs: dict[str, tuple[Callable[[], AbstractContextManager[Tracer]],
                             Callable[[Tracer], Callable[[int], None] | None]]] = {
        "tracer, no stack target": (lambda: tracer(), no_target),
        "another process a target": (lambda: tracer(), other_target),
        "the loop a target, every call": (lambda: tracer(stacks_per_sec=0), self_target),
        "the loop a target, budget 1000/s": (lambda: tracer(), self_target),
    }
    ratios: dict[str, list[float]] = {name: [] for name in configs}
    ns: dict[str, list[float]] = {name: [] for name in configs}
    base: list[float] = []
    try:
        time_loop(loop, pairs)   # warm up
        for r in range(rounds):
            prev = time_loop(loop, pairs)
            base.append(prev)
            for name, (make, arm) in configs.items():
                with make() as t:
                    hook = arm(t)
                    v = time_loop(loop, pairs, hook)
                nxt = time_loop(loop, pairs)
                base.append(nxt)
                ns[name].append(v)
                ratios[name].append(v / ((prev + nxt) / 2))
                prev = nxt
            print(f"  round {r + 1}/{rounds}", file=sys.stderr)
    finally:
        other.kill()
        other.wait()
    print(f"kernel: mmap+munmap pairs, {pairs} per run x {rounds} rounds; ratio against the baseline runs either "
          "side (median, 25th-75th percentile)")
    print(f"  {'baseline (no tracer)':34s} {statistics.median(base):7.0f} ns   1.000")
    for name in configs:
        q = statistics.quantiles(ratios[name], n=4) if len(ratios[name]) > 1 else [0.0, 0.0, 0.0]
        print(f"  {name:34s} {statistics.median(ns[name]):7.0f} ns  {statistics.median(ratios[name]):6.3f}"
              f"  {q[0]:.3f}-{q[2]:.3f}")
    a, b = ratios["tracer, no stack target"], ratios["another process a target"]
    paired = [y / x for x, y in zip(a, b, strict=True)]
    print(f"  another process a target / no target, paired per round: median {statistics.median(paired):.3f}")


def user_cost() -> None:
    """Unwinding the records of tests/stacks_workload.c (built -O2 -fomit-frame-pointer), a live
    process: cold (a new module cache: libc and the binary opened, nothing known) and warm."""
    binary = Path(tempfile.mkdtemp()) / "stacks_workload"
    subprocess.run(["cc", "-O2", "-fomit-frame-pointer", "-o", str(binary),
                    str(HERE.parent / "tests" / "stacks_workload.c")], check=True)
    proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        with tracer(stacks_per_sec=0) as t:
            t.set_stack_targets([proc.pid])
            proc.stdin.write("churn 200 4096\n")
            proc.stdin.flush()
            proc.stdout.readline()
            time.sleep(0.1)
        # the drain thread discarded some: take what the next run leaves
        with Tracer(TracerConfig(stacks=True, stacks_per_sec=0)).open() as t:
            t.set_stack_targets([proc.pid])
            proc.stdin.write("churn 200 4096\n")
            proc.stdin.flush()
            proc.stdout.readline()
            recs = [r for r in map(parse_stack_record, t.stacks.drain_raw(1 << 16)) if r is not None and r.regs]
        cold_times, warm_times, depth = [], [], []
        for _ in range(7):
            t0 = time.perf_counter()
            mods = ProcessModules(proc.pid, cache=ElfCache())
            u = unwind(recs[0].regs, recs[0].stack, mods)
            cold_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for r in recs:
                depth.append(len(unwind(r.regs, r.stack, mods).frames))
            warm_times.append((time.perf_counter() - t0) / len(recs))
        cold, warm = statistics.median(cold_times), statistics.median(warm_times)
        print(f"user space: unwinding a record of stacks_workload ({statistics.median(depth):.0f} frames, "
              f"{len(u.frames)} in the first, complete: {u.complete})")
        print(f"  cold (modules opened, nothing cached) {cold * 1e6:9.0f} us")
        print(f"  warm (modules and rules cached)       {warm * 1e6:9.1f} us   warm/cold {warm / cold:.3f}")
    finally:
        proc.stdin.close()
        proc.wait()


def libc_cost() -> None:
    """Opening libc and symbolizing and finding CFI for 200 of its function addresses."""
    probe = ElfFile(LIBC)
    starts = probe._load_symbols()[0]
    addrs = [starts[i] + 4 for i in range(0, len(starts), max(1, len(starts) // 200))]
    probe.close()

    def run(cache: ElfCache) -> float:
        t0 = time.perf_counter()
        elf = cache.open(LIBC)
        for a in addrs:
            elf.symbol_at(a)
            cfi = elf.cfi
            if cfi is not None:
                cfi.rule_at(a)
        return time.perf_counter() - t0

    colds, warms = [], []
    for _ in range(7):
        cache = ElfCache()
        colds.append(run(cache))
        warms.append(run(cache))
    cold, warm = statistics.median(colds), statistics.median(warms)
    print(f"symbolization: libc, {len(addrs)} addresses (symbol and CFI rule each)")
    print(f"  cold {cold * 1e3:8.2f} ms    warm {warm * 1e3:8.3f} ms   warm/cold {warm / cold:.3f}")
    try:
        from elftools.elf.elffile import ELFFile  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("  (pyelftools not installed: no comparison)")
        return
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        with open(LIBC, "rb") as f:
            ELFFile(f).get_dwarf_info().EH_CFI_entries()
        times.append(time.perf_counter() - t0)
    print(f"  pyelftools: parsing libc's .eh_frame alone {statistics.median(times) * 1e3:8.1f} ms, "
          f"{statistics.median(times) / cold:.0f}x memwatch's cold figure")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--skip-kernel", action="store_true")
    smoke_defaults(ap, pairs=20_000, rounds=2)
    args = ap.parse_args()
    if not_root():
        return 2
    with off_the_loop_cpu():
        loop = build_loop()
        if not args.skip_kernel:
            kernel_cost(loop, args.pairs, args.rounds)
        user_cost()
        libc_cost()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
