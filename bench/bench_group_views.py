"""What the dashboard's group views cost a frame, against the process table's ranking.

Each frame the dashboard orders the rows of the view on screen: the process table ranks the
snapshot's processes (top 100 by RSS); the tree view builds the process tree of the snapshot (with
subtree sums) and orders its rows; the cgroup and user views order the snapshot's cgroups and users.
This times each on the same synthetic snapshot (``--processes`` processes in a tree as deep as a
desktop's, 1 in 10 under init, in ``--cgroups`` memory cgroups, 20 users), taking the views in turn
round after round so the host's drift hits them alike, and prints each one's median as a ratio of
the process table's. Drawing the rows on screen is the same widget's work in every view and is not
counted here (``bench_dashboard.py`` measures the process table's).

    .venv/bin/python bench/bench_group_views.py [--processes 2000] [--cgroups 200] [--rounds 40]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command):
200 processes, 20 cgroups, 3 rounds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from memwatch.groups import build_cgroups, build_users, process_tree  # noqa: E402
from memwatch.model import (  # noqa: E402
    KernelCounts,
    ProcessSample,
    ProcessView,
    Snapshot,
    SystemMemory,
    TracerHealth,
)
from memwatch.ui.group_rows import cgroup_rows, tree_rows, user_rows  # noqa: E402
from memwatch.ui.view_state import ViewState  # noqa: E402
from smoke import smoke_defaults  # noqa: E402


def snapshot(processes: int, cgroups: int, seed: int = 1) -> Snapshot:
    """A snapshot whose tree, cgroups and users look like a busy machine's."""
    rnd = random.Random(seed)
    paths = [f"/system.slice/svc-{i}.service" for i in range(cgroups // 2)]
    paths += [f"/user.slice/user-{1000 + i % 20}.slice/session-{i}.scope" for i in range(cgroups - len(paths))]
    views = []
    for pid in range(1, processes + 1):
        ppid = 0 if pid == 1 else (1 if rnd.random() < 0.1 else rnd.randint(max(1, pid - 50), pid - 1))
        uid = 0 if rnd.random() < 0.3 else 1000 + rnd.randrange(19)
        rss = rnd.randint(1_000, 500_000)
        sample = ProcessSample(pid, ppid, f"proc-{pid % 97}", f"/usr/bin/proc-{pid}", f"user{uid}", pid * 10,
                               0.0, 1, rss, rss * 4, rss, pid % 7 * 64, rss // 5, rss - rss // 5, "", False,
                               uid=uid, memory_cgroup=paths[pid % len(paths)])
        counts = KernelCounts(mmap_count=pid % 500, munmap_count=pid % 250, brk_count=pid % 60,
                              outstanding_bytes=pid * 4096)
        views.append(ProcessView(sample, counts, growth_kb_s=float(pid % 11 - 5)))
    system = SystemMemory(16_000_000, 8_000_000, 8_000_000, 6_000_000, 0, 0)
    return Snapshot(0.0, 3.0, "bench", system, TracerHealth(enabled=True), tuple(views),
                    cgroups=build_cgroups(views, version=2), users=build_users(views))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--cgroups", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=40)
    smoke_defaults(parser, processes=200, cgroups=20, rounds=3)
    args = parser.parse_args()
    snap = snapshot(args.processes, args.cgroups)
    view = ViewState()
    built = process_tree(snap)
    views: dict[str, Callable[[], object]] = {
        "process table (top 100 by RSS)": lambda: view.rank(snap),
        "tree: build and order": lambda: tree_rows(process_tree(snap)),
        "tree: order (same frame)": lambda: tree_rows(built),
        "tree: filtered": lambda: tree_rows(process_tree(snap), matches=lambda v: v.pid % 100 == 0),
        "cgroups: order": lambda: cgroup_rows(snap.cgroups),
        "users: order": lambda: user_rows(snap.users),
    }
    times: dict[str, list[float]] = {name: [] for name in views}
    for _ in range(args.rounds):
        for name, work in views.items():
            started = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["process table (top 100 by RSS)"])
    print(f"{args.processes} processes, {len(snap.cgroups)} cgroups, {len(snap.users)} users; "
          f"medians of {args.rounds} rounds, views in turn")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:<32} {median * 1000:8.2f} ms  {median / base:6.2f}x the process table")


if __name__ == "__main__":
    main()
