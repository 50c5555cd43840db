"""Sources and helpers for the dashboard tests (no tests of its own).

``ScriptedSource`` is a live-like (not seekable) source whose frames the test pushes one by one,
so a test decides exactly when the app sees a new snapshot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from memwatch.model import ProcessKey, ProcessSample, ProcessView, SmapsRollup, Snapshot
from memwatch.sources.replay import ReplaySource


class ScriptedSource:
    """A SnapshotSource fed by the test: ``push(frame)`` makes ``next()`` return it."""

    def __init__(self, first: Snapshot, interval_s: float = 1.0) -> None:
        self.first = first
        self._interval_s = interval_s
        self.queue: asyncio.Queue[Snapshot] = asyncio.Queue()
        self.opened = 0
        self.closed = 0
        self.rollups: list[ProcessKey] = []
        self.taken = 0
        self.signalled: list[tuple[ProcessKey, int]] = []

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def set_interval(self, seconds: float) -> None:
        self._interval_s = seconds

    async def open(self) -> Snapshot:
        self.opened += 1
        return self.first

    async def next(self) -> Snapshot:
        snap = await self.queue.get()
        self.taken += 1
        return snap

    def push(self, snap: Snapshot) -> None:
        self.queue.put_nowait(snap)

    async def rollup(self, key: ProcessKey) -> SmapsRollup | None:
        self.rollups.append(key)
        return SmapsRollup(pss_kb=111, uss_kb=99, swap_pss_kb=0)

    async def send_signal(self, key: ProcessKey, signum: int) -> None:
        """Signals by pid (the tests signal a real child of their own, so the pid is theirs)."""
        self.signalled.append((key, signum))
        os.kill(key[0], signum)

    async def close(self) -> None:
        self.closed += 1


class ClosingReplay(ReplaySource):
    """A ReplaySource that counts close() calls."""

    def __init__(self, frames: Sequence[Snapshot]) -> None:
        super().__init__(frames)
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1
        await super().close()


def with_process(snap: Snapshot, pid: int, name: str, rss_kb: int = 10**9) -> Snapshot:
    """A copy of ``snap`` with one more process (e.g. a real child to signal), ranked first by RSS."""
    template = snap.processes[0]
    sample = dataclasses.replace(template.sample, pid=pid, name=name, cmdline=name, start_ticks=424242,
                                 rss_kb=rss_kb)
    view = ProcessView(sample=sample, kernel=None)
    return dataclasses.replace(snap, processes=(*snap.processes, view), by_key={})


async def until(pilot: Any, done: Callable[[], bool], what: str, tries: int = 250) -> None:
    """Let the app run until ``done()`` (workers and timers included), or fail saying ``what``."""
    for _ in range(tries):
        if done():
            return
        await pilot.pause(0.04)
    raise AssertionError(f"never: {what}")


async def push_and_show(pilot: Any, source: ScriptedSource, snap: Snapshot) -> None:
    """Push a frame and wait until the app shows it and its screens have drawn it."""
    source.push(snap)
    for _ in range(200):
        if pilot.app.snapshot is snap:
            break
        await pilot.pause()
    assert pilot.app.snapshot is snap
    await pilot.pause()
    await pilot.pause()


async def move_to(pilot: Any, row_key: str) -> None:
    """Move the dashboard table's cursor to ``row_key`` ("pid:start_ticks") with the arrow keys."""
    table = pilot.app.dashboard.table
    await pilot.press("home")
    while table.current_key != row_key:
        await pilot.press("down")


def sample_names(views: Sequence[ProcessView]) -> list[str]:
    return [v.sample.name for v in views]


__all__ = ["ClosingReplay", "ProcessSample", "ScriptedSource", "move_to", "push_and_show", "sample_names",
           "until", "with_process"]
