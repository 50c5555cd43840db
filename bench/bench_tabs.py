"""What the process screen's memory map and allocation sites tabs cost the dashboard's thread.

Both tabs draw on the UI thread (reading smaps and unwinding happen elsewhere); this measures the
drawing, in a headless dashboard fed by the test fixtures (tests/inspect_fixtures.py), so no
kernel or process is needed:

- memory map: filling the table from a map of 13 mappings (the fixture: the baseline), of 1,000
  and of 20,000 mappings (a group lists 12 and the table about 250 lines, whatever the size);
- allocation sites: a refresh of 4 stacks (the fixture, every figure changed: the baseline), of
  100 stacks whose figures all changed (the lines relabelled), and of 100 stacks re-ranked (the
  tree rebuilt).

Each figure is the median over rounds of one call's wall time, and its ratio against the
baseline measured in the same run.

    python bench/bench_tabs.py [--rounds 15]

MEMWATCH_BENCH_SMOKE=1 (bench/smoke.py) makes it one short round, for tests/test_readme.py.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from frames import LEAKY_PID, make_frames
from inspect_fixtures import InspectingScripted, memory_map, stack_report
from memwatch.maps import Mapping, MemoryMap
from memwatch.stacks.table import AllocationStack, Frame
from memwatch.ui.app import MemwatchApp
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.widgets.alloc_sites import AllocationSites
from memwatch.ui.widgets.memory_map import MemoryMapView
from smoke import smoke_defaults


def big_map(n: int) -> MemoryMap:
    """``n`` mappings: a third anonymous, the rest spread over 300 libraries."""
    base = 0x7F00_0000_0000
    return MemoryMap(LEAKY_PID, tuple(
        Mapping(base + i * 0x10000, base + i * 0x10000 + 0x8000, "rw-p", 0,
                f"/usr/lib/lib{i % 300}.so" if i % 3 else "", "file" if i % 3 else "anonymous", i % 97, i % 53)
        for i in range(n)))


def many_stacks(n: int, calls: int, reverse: bool = False) -> tuple[AllocationStack, ...]:
    stacks = tuple(AllocationStack("mmap", tuple(Frame(f"fn{i}_{d}", "/usr/lib/libx.so", 0x1000 + d)
                                                 for d in range(10)),
                                   calls=calls + i, bytes=(n - i) << 16, unmapped_bytes=0,
                                   outstanding_bytes=(n - i) << 16, truncated=False) for i in range(n))
    return stacks[::-1] if reverse else stacks


def median_ms(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


async def measure(rounds: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    frame = make_frames()[2]
    key = next(v.key for v in frame.processes if v.pid == LEAKY_PID)
    app = MemwatchApp(InspectingScripted(frame))
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        await app.push_screen(DetailScreen(key, tab="sites"))
        for _ in range(200):
            await pilot.pause(0.02)
            sites = app.screen.query_one(AllocationSites)
            if sites.report is not None:
                break
        view = app.screen.query_one(MemoryMapView)
        maps = []
        for label, mm in (("13 mappings (the fixture)", memory_map()), ("1,000 mappings", big_map(1000)),
                          ("20,000 mappings", big_map(20_000))):
            maps.append((label, median_ms(lambda mm=mm: view._fill(view.table, mm), rounds)))
            await pilot.pause()
        report = sites.report
        assert report is not None, "the allocation tab never showed its report"
        bump = iter(range(1, 1_000_000))

        def refresh(stacks: Callable[[], tuple[AllocationStack, ...]]) -> Callable[[], None]:
            def go() -> None:
                sites.report = dataclasses.replace(report, stacks=stacks())
                sites._draw()
            return go

        few = stack_report().stacks
        trees = [("4 stacks, every figure changed (the fixture)",
                  median_ms(refresh(lambda: tuple(dataclasses.replace(s, calls=s.calls + next(bump)) for s in few)),
                            rounds))]
        sites.report = dataclasses.replace(report, stacks=many_stacks(100, 0))
        sites._draw()
        trees.append(("100 stacks, every figure changed (relabelled)",
                      median_ms(refresh(lambda: many_stacks(100, next(bump))), rounds)))
        flip = iter(range(1_000_000))
        trees.append(("100 stacks, re-ranked (rebuilt)",
                      median_ms(refresh(lambda: many_stacks(100, 0, reverse=next(flip) % 2 == 0)), rounds)))
        await pilot.pause()
    return maps, trees


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    smoke_defaults(parser, rounds=1)
    args = parser.parse_args()
    maps, trees = asyncio.run(measure(max(1, args.rounds)))
    print(f"memory map tab: filling the table, median of {args.rounds} rounds, ratio against the fixture's")
    for label, ms in maps:
        print(f"  {label:<48} {ms:8.2f} ms  {ms / maps[0][1]:8.2f}x")
    print(f"allocation sites tab: one refresh, median of {args.rounds} rounds, ratio against the fixture's")
    for label, ms in trees:
        print(f"  {label:<48} {ms:8.2f} ms  {ms / trees[0][1]:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
