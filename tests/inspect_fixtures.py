"""Fixed memory maps and allocation stacks for the dashboard's process tabs, and a live-like source
that serves them (``InspectingScripted``); nothing here reads the clock, /proc or the kernel.
"""

from __future__ import annotations

import asyncio

from frames import BASE_TIMESTAMP, LEAKY_PID
from memwatch.maps import Mapping, MemoryMap, kind_of
from memwatch.model import ProcessKey, Snapshot
from memwatch.sources.base import StackReport, StacksUnavailable
from memwatch.stacks.table import AllocationStack, Frame
from test_ui_support import ScriptedSource

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
APP = "/opt/leaky/bin/leaky-server"


def _m(start: int, size_kb: int, perms: str, path: str, rss: int, pss: int, swap: int = 0, anon: int = 0,
       mapped: tuple[float, int] | None = None) -> Mapping:
    return Mapping(start, start + size_kb * 1024, perms, 0, path, kind_of(path, perms), rss, pss, swap, anon,
                   mapped[0] if mapped else None, mapped[1] if mapped else None)


def memory_map(pid: int = LEAKY_PID) -> MemoryMap:
    """A small process: its binary, libc, heap, two anonymous arenas (one traced), shared memory,
    the stack and the vdso; one path with a markup-looking name and one with an escape in it."""
    return MemoryMap(pid, (
        _m(0x55d0_0000_0000, 64, "r--p", APP, 64, 64),
        _m(0x55d0_0001_0000, 512, "r-xp", APP, 480, 480),
        _m(0x55d0_0009_0000, 16, "rw-p", APP, 16, 16, anon=16),
        _m(0x55d0_1000_0000, 40960, "rw-p", "[heap]", 39000, 39000, swap=1200, anon=39000),
        _m(0x7f10_0000_0000, 131072, "rw-p", "", 120000, 120000, swap=4096, anon=120000,
           mapped=(BASE_TIMESTAMP + 7.25, LEAKY_PID + 3)),
        _m(0x7f10_1000_0000, 8192, "rw-p", "", 2048, 2048, anon=2048),
        _m(0x7f20_0000_0000, 160, "r--p", LIBC, 160, 40),
        _m(0x7f20_0002_8000, 1600, "r-xp", LIBC, 1200, 300),
        _m(0x7f20_0020_0000, 16, "rw-p", LIBC, 16, 16, anon=16),
        _m(0x7f30_0000_0000, 65536, "rw-s", "/dev/shm/[red]pool[/red]", 30000, 15000),
        _m(0x7f40_0000_0000, 4, "r--p", "/tmp/odd\x1bname", 4, 4),
        _m(0x7ffc_0000_0000, 132, "rw-p", "[stack]", 48, 48, anon=48),
        _m(0x7ffc_1000_0000, 8, "r-xp", "[vdso]", 8, 0),
    ))


def stack_report(pid: int = LEAKY_PID) -> StackReport:
    """Three stacks: a large leak through the app's arena, a churn that unmapped everything, and
    calls whose stack was not captured."""
    def f(symbol: str | None, module: str, offset: int) -> Frame:
        return Frame(symbol, module, offset)

    leak = AllocationStack("mmap", (f("__mmap", LIBC, 0x11b8a0), f("arena_grow", APP, 0x4a10),
                                    f("[b]handle[/b]_request", APP, 0x51c2), f("main", APP, 0x2210)),
                           calls=32, bytes=128 << 20, unmapped_bytes=0, outstanding_bytes=128 << 20, truncated=False)
    brk = AllocationStack("brk", (f("__brk", LIBC, 0x11a010), f("sbrk", LIBC, 0x11a0b0), f(None, APP, 0x7777)),
                          calls=40, bytes=40 << 20, unmapped_bytes=0, outstanding_bytes=38 << 20, truncated=True)
    churn = AllocationStack("mmap", (f("__mmap", LIBC, 0x11b8a0), f("scratch_buffer", APP, 0x6100),
                                     f("main", APP, 0x2210)),
                            calls=5000, bytes=5000 << 16, unmapped_bytes=5000 << 16, outstanding_bytes=0,
                            truncated=False)
    lost = AllocationStack("mmap", (), calls=12, bytes=12 << 16, unmapped_bytes=0, outstanding_bytes=12 << 16,
                           truncated=False)
    return StackReport(pid, BASE_TIMESTAMP + 9.0, (leak, brk, lost, churn), captured=5072, throttled=12,
                       dropped=0, unreadable={})


class InspectingScripted(ScriptedSource):
    """A ScriptedSource that can also look inside processes, as a live source does: memory maps
    and stack captures come from the fixtures above, or fail as told (``map_error``,
    ``stacks_error``); ``map_gate`` holds reads until set, to see the "reading" state."""

    def __init__(self, first: Snapshot, interval_s: float = 1.0) -> None:
        super().__init__(first, interval_s)
        self.map_reads: list[ProcessKey] = []
        self.map_error: BaseException | None = None
        self.map_gate: asyncio.Event | None = None
        self.stacks_error: BaseException | None = None
        self.targets: set[int] = set()
        self.started: list[ProcessKey] = []
        self.stopped: list[int] = []
        self.report: StackReport | None = None
        """What stack_report gives while capturing (None: the fixture's)."""

    async def memory_map_of(self, key: ProcessKey, timeout_s: float) -> MemoryMap:
        self.map_reads.append(key)
        if self.map_gate is not None:
            await self.map_gate.wait()
        if self.map_error is not None:
            raise self.map_error
        return memory_map(key[0])

    async def start_stacks(self, key: ProcessKey) -> None:
        if self.stacks_error is not None:
            raise self.stacks_error
        self.started.append(key)
        self.targets.add(key[0])

    async def stop_stacks(self, pid: int) -> None:
        self.stopped.append(pid)
        self.targets.discard(pid)

    async def stack_report(self, pid: int) -> StackReport | None:
        if pid not in self.targets:
            return None
        return self.report if self.report is not None else stack_report(pid)


__all__ = ["InspectingScripted", "StacksUnavailable", "memory_map", "stack_report"]
