"""What groups add to a collection tick: 200 real memory cgroups holding 600 processes, 1,000 processes.

Makes 200 cgroups under the machine's memory hierarchy (v1 memory controller or v2 with memory),
puts 1 to 5 idle processes in each (600 in all) and 400 more outside them, then times LiveSource
ticks with groups (cgroup files read, cgroups and users summed) against ticks without: two
sources open side by side tick in turn, so the host's drift (10-20 % from one second to the next
on the VM this was written on) hits both alike. The figure is the ratio of the median tick times,
wall and CPU; the mean is reported too, as one tick in five also reads limits and memory.stat.
It also times the parts alone: the cgroup reader's pass and the sums. Everything made is removed.

    sudo python bench/bench_groups.py [--cgroups 200] [--processes 1000] [--ticks 25] [--rounds 5] [--bpf]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command):
20 cgroups, 100 processes, 3 ticks in one round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench_procfs import reap, spawn  # noqa: E402
from memwatch.cgroups import CgroupReader, find_memory_hierarchy  # noqa: E402
from memwatch.cli import _raise_file_limit  # noqa: E402
from memwatch.groups import GroupTally, build_cgroups, build_users  # noqa: E402
from memwatch.procfs import ProcReader  # noqa: E402
from memwatch.sources.live import LiveSource  # noqa: E402
from smoke import smoke_defaults  # noqa: E402


async def paired_ticks(bpf: bool, ticks: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(wall, CPU) seconds of each tick, without groups and with, the two sources open side by side
    and ticking in turn (which one first alternates), after a first tick that fills their caches."""
    plain = LiveSource(3.0, use_bpf=bpf, groups=False)
    grouped = LiveSource(3.0, use_bpf=bpf, groups=True)
    out: tuple[list[tuple[float, float]], list[tuple[float, float]]] = ([], [])
    await plain.open()
    await grouped.open()
    try:
        for i in range(ticks):
            order = ((0, plain), (1, grouped)) if i % 2 == 0 else ((1, grouped), (0, plain))
            for which, source in order:
                w0, c0 = time.perf_counter(), time.process_time()
                await source._tick()
                out[which].append((time.perf_counter() - w0, time.process_time() - c0))
    finally:
        await plain.close()
        await grouped.close()
    return out


def parts(ticks: int) -> tuple[float, float, float, int]:
    """Median seconds of the cgroup reader's pass, of the sums made afresh and of the sums as the
    store keeps them (its GroupTally, told of changed processes only: none here), and the cgroups
    read."""
    reads, sums, kept = [], [], []
    n = 0
    names: dict[str, tuple[str, str]] = {}   # as the store keeps them between ticks
    with ProcReader() as procs, CgroupReader() as reader:
        samples = procs.read_processes()
        reader.read(procs.memory_cgroup_paths())
        from memwatch.model import ProcessView

        views = [ProcessView(s, None) for s in samples]
        tally = GroupTally()
        tally.add_all(views)
        for _ in range(ticks):
            procs.read_processes()
            t0 = time.perf_counter()
            got = reader.read(procs.memory_cgroup_paths())
            reads.append(time.perf_counter() - t0)
            n = len(got)
            t0 = time.perf_counter()
            build_cgroups(views, got, version=reader.version, names=names)
            build_users(views)
            sums.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tally.cgroups(got, version=reader.version, names=names)
            tally.users()
            kept.append(time.perf_counter() - t0)
    return statistics.median(reads), statistics.median(sums), statistics.median(kept), n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cgroups", type=int, default=200)
    ap.add_argument("--processes", type=int, default=1000, help="extra processes in all, in cgroups or not")
    ap.add_argument("--ticks", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bpf", action="store_true", help="time with the tracer attached too")
    smoke_defaults(ap, cgroups=20, processes=100, ticks=3, rounds=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_groups: run as root (it makes cgroups)")
    h = find_memory_hierarchy()
    if h is None or not h.memory:
        raise SystemExit("bench_groups: no memory cgroup hierarchy is mounted")
    _raise_file_limit()
    made: list[bytes] = []
    children: list[subprocess.Popen[bytes]] = []
    try:
        in_groups = 0
        for i in range(args.cgroups):
            raw = h.root.rstrip(b"/") + f"/memwatch-bench-{os.getpid()}-{i:03d}".encode()
            directory = h.directory(raw)
            assert directory is not None
            os.mkdir(directory)
            made.append(directory)
            before = len(children)
            spawn(children, i % 5 + 1)
            with open(directory + b"/cgroup.procs", "w") as procs:
                for child in children[before:]:
                    procs.write(f"{child.pid}\n")
                    procs.flush()
            in_groups += i % 5 + 1
        spawn(children, max(0, args.processes - in_groups))
        time.sleep(1)
        total = sum(1 for d in os.listdir("/proc") if d.isdigit())
        print(f"{args.cgroups} cgroups ({h.version and f'v{h.version}'}), {in_groups} processes in them, "
              f"{len(children)} extra in all, {total} on the machine; {args.ticks} ticks x {args.rounds} rounds")
        modes = [False, True] if args.bpf else [False]
        for bpf in modes:
            plain: list[tuple[float, float]] = []
            grouped: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                a, b = asyncio.run(paired_ticks(bpf, args.ticks))
                plain += a
                grouped += b
            label = "with eBPF" if bpf else "/proc only"
            for i, what in ((0, "wall"), (1, "CPU")):
                mp = statistics.median(t[i] for t in plain)
                mg = statistics.median(t[i] for t in grouped)
                ap_ = statistics.mean(t[i] for t in plain)
                ag = statistics.mean(t[i] for t in grouped)
                print(f"  {label}, {what}: tick without groups {mp * 1e3:6.2f} ms, with groups {mg * 1e3:6.2f} ms: "
                      f"{mg / mp:.2f}x (median); mean {ap_ * 1e3:6.2f} -> {ag * 1e3:6.2f} ms, {ag / ap_:.2f}x")
        read, sums, kept, n = parts(args.ticks)
        print(f"  parts: the cgroup reader's pass over {n} cgroups {read * 1e3:.2f} ms "
              f"({read / max(n, 1) * 1e6:.1f} us a cgroup), the cgroup and user sums {sums * 1e3:.2f} ms made "
              f"afresh, {kept * 1e3:.2f} ms kept by the store's tally ({kept / sums:.2f}x)")
    finally:
        reap(children)
        for directory in reversed(made):
            for _ in range(100):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
