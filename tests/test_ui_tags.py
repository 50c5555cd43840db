"""Tagging processes (space) and signalling them together (Pilot, real child processes)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from frames import LEAKY_PID, SHORT_JOB_PID, make_frames
from memwatch.model import ProcessKey, Snapshot
from memwatch.ui.app import MemwatchApp
from memwatch.ui.screens.signal_modal import SignalModal
from memwatch.ui.widgets.process_table import ProcessTable
from test_ui_support import ScriptedSource, move_to, push_and_show, with_process

SIZE = (200, 50)


def line_of(table: ProcessTable, row_key: str) -> str:
    """The text drawn on screen for a row."""
    y = table.row_order.index(row_key) - round(table.scroll_y) + 1
    return "".join(segment.text for segment in table.render_line(y))


def key_str(snap: Snapshot, pid: int) -> str:
    view = next(v for v in snap.processes if v.pid == pid)
    return f"{pid}:{view.sample.start_ticks}"


async def test_space_tags_the_process_across_sorts_and_frames_until_it_exits() -> None:
    frames = make_frames()
    source = ScriptedSource(frames[2])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.dashboard.table
        short, leaky = key_str(frames[2], SHORT_JOB_PID), key_str(frames[2], LEAKY_PID)
        for row_key in (short, leaky):
            await move_to(pilot, row_key)
            await pilot.press("space")
        assert table.tagged == {short, leaky}
        assert line_of(table, leaky).startswith("*") and line_of(table, short).startswith("*")
        untagged = next(k for k in table.row_order if k not in (short, leaky))
        assert line_of(table, untagged).startswith(" ")
        await pilot.press("P")  # re-sorted: the marks go with their processes
        assert line_of(table, leaky).startswith("*")
        await push_and_show(pilot, source, frames[3])  # short-job exited
        assert table.tagged == {leaky} and app.dashboard.tags == {(LEAKY_PID, 70_000)}
        assert line_of(table, leaky).startswith("*")
        await move_to(pilot, leaky)
        await pilot.press("space")  # untags
        assert table.tagged == frozenset() and line_of(table, leaky).startswith(" ")
        await pilot.press("space", "U")
        assert app.dashboard.tags == set()


class DenyingSource(ScriptedSource):
    """Signals real children, but is not allowed to signal ``denied`` (as EPERM from the kernel)."""

    def __init__(self, first: Snapshot, denied: int) -> None:
        super().__init__(first)
        self.denied = denied

    async def send_signal(self, key: ProcessKey, signum: int) -> None:
        if key[0] == self.denied:
            raise PermissionError(1, "Operation not permitted")
        await super().send_signal(key, signum)


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    children = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_the_signal_goes_to_every_tagged_process_and_failures_come_in_one_notification(
        sleepers: list[subprocess.Popen[bytes]]) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    frame = make_frames()[1]
    for n, child in enumerate(sleepers):
        frame = with_process(frame, child.pid, f"sleeper-{n}", rss_kb=10**9 + n)
    frame = with_process(frame, gone.pid, "gone", rss_kb=10**9 + 10)
    denied = sleepers[2].pid
    source = DenyingSource(frame, denied)
    app = MemwatchApp(source)
    seen: list[tuple[str, str]] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.notify = lambda message, **kw: seen.append((message, kw.get("severity", "")))  # type: ignore
        tagged = [f"{p}:424242" for p in (gone.pid, *(c.pid for c in sleepers))]
        for row_key in tagged:
            await move_to(pilot, row_key)
            await pilot.press("space")
        await move_to(pilot, key_str(frame, 1))  # the cursor elsewhere: the tags decide
        await pilot.press("k")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, SignalModal)
        assert "4 tagged processes" in modal.question().plain
        await pilot.press("enter")
        for _ in range(50):
            if seen:
                break
            await pilot.pause()
    for child in sleepers[:2]:
        assert child.wait(timeout=5) == -signal.SIGTERM
    assert sleepers[2].poll() is None  # the one not allowed
    assert sorted(pid for (pid, _), _sig in source.signalled) == sorted([gone.pid, *(c.pid for c in sleepers[:2])])
    assert len(seen) == 1
    message, severity = seen[0]
    assert severity == "warning" and message.startswith("Sent SIGTERM to 2 of 4 processes.")
    assert f"gone (pid {gone.pid}) no longer exists" in message
    assert f"Not allowed to signal sleeper-2 (pid {denied}): permission denied" in message
