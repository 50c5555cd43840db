"""The detail pane when its process exits (last figures under how it ended) and the PSS/USS
states it can be in: permission denied, kernel thread, replay (Pilot, ScriptedSource frames)."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from frames import KERNEL_THREAD_PID, SHORT_JOB_PID, make_frames
from memwatch.model import ProcessKey, SmapsRollup, Snapshot
from memwatch.sources.replay import ReplaySource
from memwatch.ui.app import MemwatchApp
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.widgets.detail import DENIED, IN_REPLAY, KERNEL_THREAD
from test_ui_support import ScriptedSource, move_to, push_and_show

SIZE = (200, 50)
SHORT_JOB_EXIT = "exited (code 0) at 22:13:27"
"""frames.py: short-job exits 1.25 s after frame 2 (1_700_000_006 + 1.25), with code 0."""


def body(app: MemwatchApp, pane: str = "#detail") -> str:
    return str(app.screen.query_one(f"{pane} #detail-body").render())


def row_key(snap: Snapshot, pid: int) -> str:
    view = next(v for v in snap.processes if v.pid == pid)
    return f"{pid}:{view.sample.start_ticks}"


async def highlight(pilot: Any, app: MemwatchApp, key: str) -> None:
    """The cursor on ``key``, and the pane showing it (drawn a frame after the cursor)."""
    await move_to(pilot, key)
    for _ in range(20):
        view = app.dashboard.pane.view_key
        if view is not None and f"{view[0]}:{view[1]}" == key:
            break
        await pilot.pause()


async def short_job_exits(pilot: Any, app: MemwatchApp, source: ScriptedSource, *, full_screen: bool) -> None:
    """short-job highlighted (full screen if asked) in frame 2, then frame 3, where it has exited."""
    await pilot.pause()
    await highlight(pilot, app, row_key(make_frames()[2], SHORT_JOB_PID))
    if full_screen:
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
    await push_and_show(pilot, source, make_frames()[3])


async def test_the_pane_keeps_an_exited_process_under_how_it_ended_until_the_cursor_moves() -> None:
    source = ScriptedSource(make_frames()[2])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await short_job_exits(pilot, app, source, full_screen=False)
        text = body(app)
        assert SHORT_JOB_EXIT in text and "short-job --once" in text  # the last figures, still there
        assert "No process selected" not in text
        await pilot.press("u")  # units: still the exited process
        assert SHORT_JOB_EXIT in body(app)
        await pilot.press("up")  # the user moves on: the pane follows the cursor again
        for _ in range(20):
            if SHORT_JOB_EXIT not in body(app):
                break
            await pilot.pause()
        assert SHORT_JOB_EXIT not in body(app) and "short-job" not in body(app)


async def test_the_detail_screen_keeps_an_exited_process() -> None:
    source = ScriptedSource(make_frames()[2])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await short_job_exits(pilot, app, source, full_screen=True)
        await push_and_show(pilot, source, make_frames()[4])  # and in the frames after
        text = body(app, "#detail-full")
        assert SHORT_JOB_EXIT in text and "short-job --once" in text
        assert "No process selected" not in text


class DenyingRollups(ScriptedSource):
    """PSS/USS not allowed (EACCES), as for another user's process without CAP_SYS_PTRACE."""

    async def rollup(self, key: ProcessKey) -> SmapsRollup | None:
        self.rollups.append(key)
        raise PermissionError(errno.EACCES, "Permission denied")


async def test_pss_says_permission_denied_not_exited() -> None:
    frames = make_frames()
    app = MemwatchApp(DenyingRollups(frames[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for _ in range(50):
            if DENIED in body(app):
                break
            await pilot.pause()
        assert f"PSS/USS {DENIED}" in body(app) and "exited" not in body(app)


async def test_pss_of_a_kernel_thread_is_not_asked_for() -> None:
    frames = make_frames()
    source = ScriptedSource(frames[1])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await highlight(pilot, app, row_key(frames[1], KERNEL_THREAD_PID))
        await pilot.pause()
        assert f"PSS/USS {KERNEL_THREAD}" in body(app)
        assert all(key[0] != KERNEL_THREAD_PID for key in source.rollups)


async def test_pss_in_a_replay_says_so_instead_of_reading_forever() -> None:
    app = MemwatchApp(ReplaySource(make_frames()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("right_square_bracket")
        await highlight(pilot, app, "1:10")  # systemd: the recording holds no PSS for it
        for _ in range(10):
            await pilot.pause()
        assert f"PSS/USS {IN_REPLAY}" in body(app) and "reading" not in body(app)
