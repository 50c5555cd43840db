"""The events screen: bounded during a storm of exits, OOM kills apart, its own filter, sort,
End-and-follow and footer (Pilot, fed by ScriptedSource frames)."""

from __future__ import annotations

import dataclasses
import gc
import sys
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from frames import BASE_TIMESTAMP, HOG_PID, SHORT_JOB_PID, make_frames
from memwatch.model import Event, EventKind, Snapshot
from memwatch.ui import event_log, keys
from memwatch.ui.app import MemwatchApp
from memwatch.ui.event_log import EXIT_WINDOW, EventLog
from memwatch.ui.screens.events_screen import EventsScreen, EventTable
from test_ui_support import ScriptedSource, push_and_show

SIZE = (160, 40)
STORE_LOG = 1000
"""What the store keeps in a snapshot's log (Store events_len)."""


def exit_event(n: int, *, name: str | None = None, peak_kb: int | None = None) -> Event:
    return Event(timestamp=BASE_TIMESTAMP + 10 + n * 1e-3, kind=EventKind.EXIT, pid=100_000 + n, tid=100_000 + n,
                 name=name or f"job-{n}", exit_code=n % 3, peak_rss_kb=peak_kb if peak_kb is not None else n % 997,
                 start_ticks=n)


def oom_event(n: int) -> Event:
    return Event(timestamp=BASE_TIMESTAMP + 10 + n * 1e-3, kind=EventKind.OOM, pid=90_000 + n, tid=90_000 + n,
                 name=f"victim-{n}", rss_kb=5_000_000, start_ticks=n)


class Storm:
    """Frames as the store makes them: each carries the newest STORE_LOG events and what is new."""

    def __init__(self) -> None:
        self.base = make_frames()[1]
        self.log: deque[Event] = deque(maxlen=STORE_LOG)
        self.frames = 0

    def frame(self, new: list[Event]) -> Snapshot:
        self.log.extend(new)
        self.frames += 1
        return dataclasses.replace(self.base, timestamp=self.base.timestamp + self.frames, events=tuple(self.log),
                                   new_events=tuple(new), by_key={})


async def open_events(pilot: Any, app: MemwatchApp) -> EventsScreen:
    await pilot.pause()
    await pilot.press("e")
    await pilot.pause()
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, EventsScreen)
    return screen


def cursor_key(table: EventTable) -> str | None:
    return table.cursor_key


def names(table: EventTable) -> list[str]:
    return [e.name for e in table.shown]


async def test_end_reaches_the_newest_exit_and_the_view_follows_until_the_user_moves_up() -> None:
    storm = Storm()
    source = ScriptedSource(storm.frame([exit_event(n) for n in range(100)]))
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(pilot, app)
        table = screen.exits_table
        assert table.row_count == 100
        assert cursor_key(table) == event_log.event_key(exit_event(99))  # opens at the newest
        await push_and_show(pilot, source, storm.frame([exit_event(n) for n in range(100, 150)]))
        assert cursor_key(table) == event_log.event_key(exit_event(149))  # followed
        assert table.scroll_y == table.max_scroll_y
        await pilot.press("up", "up")
        held = cursor_key(table)
        await push_and_show(pilot, source, storm.frame([exit_event(n) for n in range(150, 160)]))
        assert cursor_key(table) == held  # moved up: stays on its row
        await pilot.press("end")
        assert cursor_key(table) == event_log.event_key(exit_event(159))
        await push_and_show(pilot, source, storm.frame([exit_event(n) for n in range(160, 170)]))
        assert cursor_key(table) == event_log.event_key(exit_event(169))  # following again
        await pilot.pause()
        assert table.scroll_y == table.max_scroll_y
        await pilot.press("home")
        assert table.cursor_row == 0


async def test_a_storm_of_exits_keeps_the_screen_bounded_and_the_oom_kills() -> None:
    """50,000 exits in 25 frames with the screen open (each frame's log holds the newest 1000 of
    the 2000 new ones, as the store's would): the rows stay at the window, the memory held stops
    growing once the window is full (the same after 16,000 and after 40,000 more exits), and the
    one OOM kill, long gone from the store's log, is still on screen."""
    storm = Storm()
    source = ScriptedSource(storm.frame([oom_event(0), exit_event(0)]))
    app = MemwatchApp(source)
    sizes: list[int] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_events(pilot, app)
            for batch in range(25):
                new = [exit_event(n) for n in range(1 + 2000 * batch, 1 + 2000 * (batch + 1))]
                await push_and_show(pilot, source, storm.frame(new))
                if batch == 4:  # the window is full: from here on the memory should stay put
                    tracemalloc.start()
                if batch in (12, 24):  # what was allocated since and is still held, twice
                    gc.collect()
                    sizes.append(tracemalloc.get_traced_memory()[0])
            table = screen.exits_table
            assert table.row_count == EXIT_WINDOW == len(app.events.exits)
            assert len(table._lines) <= table._lines.maxsize  # drawn lines: a bounded cache
            assert app.events.exits_seen == 50_001
            assert names(table)[-1] == "job-50000"
            assert names(screen.oom_table) == ["victim-0"]
            assert "50001" in str(screen.query_one("#exits-title").render())
    finally:
        tracemalloc.stop()
    grown = sizes[1] - sizes[0]
    print(f"held after 16,000 / 40,000 more exits: {sizes[0]} / {sizes[1]} bytes")
    # Rich's and the widget's line caches still fill a little (both bounded); a row kept per exit
    # would be 24,000 rows, megabytes: the screen once grew by 4 MB every thousand exits
    assert grown < 1024 * 1024, f"24,000 more exits left {grown / 2**20:.1f} MiB more allocated"


def test_the_log_counts_exits_that_never_reached_a_snapshot_and_keeps_such_an_oom_kill() -> None:
    log = EventLog(window=10)
    new = [exit_event(n) for n in range(5000)]
    new.insert(10, oom_event(1))  # pushed out of the store's log by the exits after it
    added = log.add(new[-STORE_LOG:], new)
    assert [e.name for e in added.ooms] == ["victim-1"]
    assert log.exits_seen == 5000 and len(log.exits) == 10 and log.exits[-1].name == "job-4999"
    assert not log.add(new[-STORE_LOG:], ()).exits  # the same log again: nothing new
    assert len(log._known) <= 2 * STORE_LOG


async def test_filter_by_name_pid_and_kind_on_the_events_screen() -> None:
    frames = make_frames()
    app = MemwatchApp(ScriptedSource(frames[-1]))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(pilot, app)
        await pilot.press("slash", *"oom")
        assert screen.exits_table.row_count == 0 and names(screen.oom_table) == ["hog"]
        await pilot.press("escape")  # clears the filter
        assert screen.order.filter == "" and names(screen.exits_table) == ["short-job"]
        await pilot.press("slash", *str(SHORT_JOB_PID), "enter")
        assert names(screen.exits_table) == ["short-job"] and not screen.oom_table.display
        await pilot.press("slash", *"HOG", "enter")  # replaces the old filter; any case
        assert screen.exits_table.row_count == 0 and names(screen.oom_table) == ["hog"]
        assert app.focused is screen.exits_table
        assert screen.oom_table.row_cells(0)[2].plain == str(HOG_PID)


async def test_sort_by_time_pid_name_and_peak() -> None:
    storm = Storm()
    events = [exit_event(0, name="b", peak_kb=30), exit_event(1, name="c", peak_kb=10),
              exit_event(2, name="a", peak_kb=20)]
    # pids in the opposite order of time
    events = [dataclasses.replace(e, pid=300 - i) for i, e in enumerate(events)]
    app = MemwatchApp(ScriptedSource(storm.frame(events)))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(pilot, app)
        table = screen.exits_table
        assert names(table) == ["b", "c", "a"]  # time, oldest first
        await pilot.press("P")
        assert names(table) == ["a", "c", "b"]
        await pilot.press("N")
        assert names(table) == ["a", "b", "c"]
        await pilot.press("N")
        assert names(table) == ["c", "b", "a"]
        await pilot.press("M")  # peak: largest first
        assert names(table) == ["b", "a", "c"]
        await pilot.press("r")
        assert names(table) == ["c", "a", "b"]
        await pilot.press("s")  # cycles on to time
        assert screen.order.sort == "time" and names(table) == ["b", "c", "a"]
        assert app.view.sort == "rss"  # the dashboard's sort did not move


async def test_the_footer_shows_only_keys_of_the_events_screen() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[-1]))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(pilot, app)
        shown = {binding.description for _, binding, enabled, _ in screen.active_bindings.values()
                 if binding.show and enabled}
        ours = {k.title for k in keys.keys_of("events", "shared", "event_table") if k.show}
        assert shown == ours == {"Back", "Filter", "Sort", "Pause", "Units", "Help"}


async def test_a_following_view_stays_at_the_end_when_the_terminal_changes_size() -> None:
    storm = Storm()
    app = MemwatchApp(ScriptedSource(storm.frame([exit_event(n) for n in range(300)])))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(pilot, app)
        table = screen.exits_table
        await pilot.resize_terminal(160, 25)
        await pilot.pause()
        await pilot.pause()
        assert table.cursor_key == event_log.event_key(exit_event(299))
        assert table.scroll_y == table.max_scroll_y > 0
