"""The dashboard's view state and feed, without an app: ranking, sort transitions, seek rules."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from frames import HOG_PID, LEAKY_PID, make_frames
from memwatch.model import Snapshot
from memwatch.sources.replay import ReplaySource
from memwatch.ui.feed import INTERVAL_STEPS, Feed, next_interval
from memwatch.ui.view_state import ViewState


def pids(views: list[object]) -> list[int]:
    return [v.pid for v in views]  # type: ignore[attr-defined]


def test_rank_is_the_headless_selection() -> None:
    """No filter: exactly Snapshot.top with the pids, as --once ranks (top None with pids: only them)."""
    frame = make_frames()[2]
    assert pids(ViewState.initial(top=3, pids=(1,)).rank(frame)) == pids(frame.top(3, "rss", True, (1,)))
    assert pids(ViewState.initial(pids=(1, HOG_PID)).rank(frame)) == [HOG_PID, 1]
    assert pids(ViewState.initial(top=0).rank(frame)) == pids(frame.top(0, "rss", True))
    assert ViewState().rank(None) == []


def test_the_filter_comes_before_top_and_applies_to_pids() -> None:
    frame = make_frames()[2]
    state = ViewState.initial(top=1, pids=(LEAKY_PID, HOG_PID))
    assert pids(replace(state, filter="leaky").rank(frame)) == [LEAKY_PID]  # hog is pinned, yet filtered out
    shell = replace(state, filter="-bash")
    assert pids(shell.rank(frame)) == [1001]  # the top 1 of those that match; the pids do not
    only = replace(ViewState.initial(pids=(LEAKY_PID, HOG_PID)), filter="hog")
    assert pids(only.rank(frame)) == [HOG_PID]


def test_sort_transitions() -> None:
    state = ViewState()
    assert state.sorted_by("rss") == ViewState(descending=False)  # again: reversed
    assert state.sorted_by("pid").descending is False  # a name or pid starts A-Z / low first
    assert state.sorted_by("growth").descending is True
    assert ViewState.initial(sort="pid").descending is False  # a first sort: the field's own direction
    assert ViewState.initial(sort="pid", descending=True).descending is True
    assert state.next_sort(("pid", "name", "rss")).sort == "pid"  # rss is last of the visible: wraps
    with pytest.raises(ValueError, match="unknown sort column"):
        ViewState(sort="bogus")
    with pytest.raises(ValueError, match="top must be 0"):
        ViewState.initial(top=-1)


def test_interval_steps() -> None:
    assert next_interval(3.0, True) == 2.0 and next_interval(3.0, False) == 5.0
    assert next_interval(INTERVAL_STEPS[0], True) == INTERVAL_STEPS[0]
    assert next_interval(7.0, False) == 10.0  # off the steps: the next one up


async def test_a_seek_wins_over_the_frame_on_its_way() -> None:
    frames = make_frames()
    gate = asyncio.Event()

    class Gated(ReplaySource):
        async def next(self) -> Snapshot:
            await gate.wait()
            return await super().next()

    feed = Feed(Gated(frames))
    delivered: list[Snapshot] = []
    pump = asyncio.create_task(feed.pump(delivered.append, lambda reason: None))
    await asyncio.sleep(0)  # the pump waits inside next()
    feed.pause(True)
    shown = feed.seek(lambda replay: replay.seek(3))
    assert shown is not None and shown.replay_position == (3, 5)
    gate.set()
    await asyncio.sleep(0.05)
    assert feed.replay is not None and feed.replay.position == 3 and delivered == []
    feed.pause(False)
    await asyncio.sleep(0.05)
    assert delivered and delivered[0].replay_position == (4, 5)
    pump.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pump


async def test_a_live_source_cannot_seek() -> None:
    from test_ui_support import ScriptedSource

    assert Feed(ScriptedSource(make_frames()[0])).seek(lambda replay: replay.seek(0)) is None


def test_columns_toggle_and_move_as_the_chooser_does() -> None:
    state = ViewState(columns=("pid", "name", "rss"))
    assert state.with_column_toggled("pss").columns == ("pid", "name", "rss", "pss")  # shown: joins the end
    assert state.with_column_toggled("name").columns == ("pid", "rss")
    assert state.with_column_moved("rss", -1).columns == ("pid", "rss", "name")
    assert state.with_column_moved("rss", -9).columns == ("rss", "pid", "name")  # clamped to the ends
    assert state.with_column_moved("pid", 1).columns == ("name", "pid", "rss")
    assert state.with_column_moved("pid", -1) == state  # already first
    assert state.with_column_moved("pss", -1) == state  # hidden: not moved
    only = ViewState(columns=("rss",))
    assert only.with_column_toggled("rss") == only  # the last column stays


@pytest.mark.parametrize(("columns", "message"), [
    (("pid", "bogus"), "unknown column 'bogus'"),
    ((), "at least one"),
    (("pid", "rss", "pid"), "'pid' is listed twice"),
])
def test_columns_are_checked(columns: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ViewState(columns=columns)
