"""Behaviour of the dashboard driven through Textual's Pilot."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text

sys.path.insert(0, str(Path(__file__).parent))

from frames import (
    BASE_TIMESTAMP,
    FRAME_GAP_S,
    HOG_PID,
    LEAKY_PID,
    MARKUP_NAME,
    SHORT_JOB_PID,
    make_frames,
)
from memwatch.model import EventKind
from memwatch.sources.replay import ReplaySource
from memwatch.ui.app import TOO_SMALL, MemwatchApp, theme_names
from memwatch.ui.columns import COLUMNS
from memwatch.ui.screens.dashboard import DashboardScreen, send_signal
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.screens.events_screen import EventsScreen
from memwatch.ui.screens.signal_modal import SIGNAL_CHOICES, SignalModal
from memwatch.ui.widgets.detail import DetailPane
from memwatch.ui.workers import SignalNotSent
from test_ui_support import ClosingReplay, ScriptedSource, with_process

SIZE = (200, 50)


def key_of(pid: int, frames_index: int = 0) -> str:
    frame = make_frames()[frames_index]
    view = next(v for v in frame.processes if v.pid == pid)
    return f"{view.pid}:{view.sample.start_ticks}"


def cell(app: MemwatchApp, row_key: str, column: str) -> str:
    value = app.dashboard.table.get_cell(row_key, column)
    assert isinstance(value, Text)
    return value.plain


def pids_in_table(app: MemwatchApp) -> list[int]:
    return [int(k.split(":")[0]) for k in app.dashboard.table.row_order]


async def test_sort_keys_rank_and_mark_the_header() -> None:
    frames = make_frames()
    app = MemwatchApp(ScriptedSource(frames[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        by_rss = [v.pid for v in frames[1].top(100, "rss", True)]
        assert pids_in_table(app) == by_rss
        await pilot.press("P")
        assert pids_in_table(app) == sorted(by_rss)
        assert "▲" in app.dashboard.table.header_text("pid").plain
        await pilot.press("P")
        assert pids_in_table(app) == sorted(by_rss, reverse=True)
        await pilot.press("N")
        names = [app.snapshot.by_key[(p, s)].sample.name.lower() for p, s in  # type: ignore[union-attr]
                 (map(int, k.split(":")) for k in app.dashboard.table.row_order)]
        assert names == sorted(names)
        await pilot.press("r")
        assert app.view.descending is True and app.view.sort == "name"


@pytest.mark.parametrize(("sort", "low_first"), [("pid", True), ("name", True), ("rss", False)])
async def test_the_first_sort_takes_the_fields_own_direction(sort: str, low_first: bool) -> None:
    """``--sort pid`` opens low to high, as ``--once --sort pid`` ranks and a click on PID sorts."""
    frames = make_frames()
    app = MemwatchApp(ScriptedSource(frames[1]), sort=sort)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.view.descending is not low_first
        assert pids_in_table(app) == [v.pid for v in frames[1].top(100, sort, not low_first)]
        assert ("▲" if low_first else "▼") in app.dashboard.table.header_text(sort).plain


async def test_clicking_a_header_sorts_and_clicking_again_reverses() -> None:
    frames = make_frames()
    app = MemwatchApp(ScriptedSource(frames[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        # x of the PID header: it is the first column; VIRT is after PID, NAME, RSS.
        x = 0
        for spec in COLUMNS:
            if spec.key == "virt":
                break
            x += spec.width + 2
        assert await pilot.click("#processes", offset=(x + 2, 0))
        await pilot.pause()
        assert app.view.sort == "virt" and app.view.descending is True
        virts = [app.snapshot.by_key[tuple(map(int, k.split(":")))].sample.virt_kb  # type: ignore[union-attr]
                 for k in app.dashboard.table.row_order]
        assert virts == sorted(virts, reverse=True)
        assert await pilot.click("#processes", offset=(x + 2, 0))
        await pilot.pause()
        assert app.view.descending is False


async def test_cursor_follows_its_process_across_frames_and_resorts() -> None:
    frames = make_frames()
    source = ScriptedSource(frames[0])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        target = key_of(LEAKY_PID)
        while app.dashboard.table.current_key != target:
            await pilot.press("down")
        source.push(frames[3])  # leaky-server grew: its rank changes
        await pilot.pause()
        await pilot.pause()
        assert app.snapshot is not None and app.snapshot.timestamp == frames[3].timestamp
        assert app.dashboard.table.current_key == target
        assert app.dashboard.table.cursor_row == app.dashboard.table.row_order.index(target)
        await pilot.press("P")
        assert app.dashboard.table.current_key == target
        assert app.dashboard.table.cursor_row == app.dashboard.table.row_order.index(target)


async def test_frames_patch_rows_instead_of_rebuilding() -> None:
    frames = make_frames()
    source = ScriptedSource(frames[2])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        short = key_of(SHORT_JOB_PID)
        assert short in app.dashboard.table.row_order
        source.push(frames[3])  # short-job exited
        await pilot.pause()
        await pilot.pause()
        assert short not in app.dashboard.table.row_order
        assert cell(app, key_of(LEAKY_PID), "rss") == str(
            frames[3].by_key[(LEAKY_PID, 70_000)].sample.rss_kb)


async def test_filter_by_name_pid_and_escape_clears() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        everyone = len(app.dashboard.table.row_order)
        await pilot.press("slash", *"leaky")
        assert pids_in_table(app) == [LEAKY_PID]
        await pilot.press("escape")
        assert len(app.dashboard.table.row_order) == everyone
        await pilot.press("slash", *str(HOG_PID), "enter")
        assert pids_in_table(app) == [HOG_PID]
        assert app.focused is app.dashboard.table
        await pilot.press("slash", *"[red]")  # reopening selects the old text; markup is text too
        assert app.view.filter == "[red]"
        assert pids_in_table(app) == [1234]  # "[red]x[/red]" matches literally


async def test_pause_keeps_the_frame_and_resume_shows_the_latest() -> None:
    frames = make_frames()
    source = ScriptedSource(frames[0])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("p")
        assert app.view.paused
        leaky = key_of(LEAKY_PID)
        before = cell(app, leaky, "rss")
        source.push(frames[1])
        source.push(frames[2])
        while source.taken < 2:
            await pilot.pause()
        await pilot.pause()
        assert app.snapshot is not None and app.snapshot.timestamp == frames[0].timestamp
        assert cell(app, leaky, "rss") == before
        await pilot.press("p")
        assert not app.view.paused
        assert app.snapshot is not None and app.snapshot.timestamp == frames[2].timestamp
        assert cell(app, leaky, "rss") != before


@pytest.fixture
def sleeper() -> Any:
    child = subprocess.Popen(["sleep", "60"])
    yield child
    if child.poll() is None:
        child.kill()
        child.wait()


async def _open_signal_modal(pilot: Any, app: MemwatchApp, child: subprocess.Popen[bytes]) -> None:
    await pilot.pause()
    await pilot.press("M")  # rss descending... the child's fake RSS is the largest
    if app.view.descending is False:
        await pilot.press("r")
    assert app.dashboard.table.current_key == f"{child.pid}:424242"
    await pilot.press("k")
    await pilot.pause()
    assert isinstance(app.screen, SignalModal)


async def _signal_workers_done(app: MemwatchApp) -> None:
    for worker in [w for w in app.workers if w.group == "signal"]:
        await worker.wait()


async def test_signal_is_sent_after_confirmation(sleeper: subprocess.Popen[bytes]) -> None:
    frame = with_process(make_frames()[1], sleeper.pid, "sleep [b]60[/b]")
    source = ScriptedSource(frame)
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await _open_signal_modal(pilot, app, sleeper)
        await pilot.press("enter")  # the list has the focus, SIGTERM highlighted
        await pilot.pause()
        await _signal_workers_done(app)
        assert sleeper.wait(timeout=5) == -signal.SIGTERM
        assert source.signalled == [((sleeper.pid, 424242), signal.SIGTERM)]  # pid and start time
        assert not isinstance(app.screen, SignalModal)


async def test_signal_choice_and_cancel(sleeper: subprocess.Popen[bytes]) -> None:
    frame = with_process(make_frames()[1], sleeper.pid, "sleep")
    app = MemwatchApp(ScriptedSource(frame))
    async with app.run_test(size=SIZE) as pilot:
        await _open_signal_modal(pilot, app, sleeper)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, SignalModal)
        with pytest.raises(subprocess.TimeoutExpired):
            sleeper.wait(timeout=0.3)
        await pilot.press("k")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, SignalModal)
        await pilot.press("k")  # an initial moves to it, sends nothing
        assert modal.chosen is signal.SIGKILL and app.screen is modal
        await pilot.press("2")  # a number too
        assert modal.chosen is signal.SIGINT
        await pilot.press("k", "y")
        await pilot.pause()
        await _signal_workers_done(app)
        assert sleeper.wait(timeout=5) == -signal.SIGKILL


async def test_down_down_down_enter_sends_the_fourth_signal(sleeper: subprocess.Popen[bytes]) -> None:
    """The list has the focus and Enter sends what is highlighted (it used to send SIGTERM, the
    Send button having the focus, whatever the arrows had moved)."""
    app = MemwatchApp(ScriptedSource(with_process(make_frames()[1], sleeper.pid, "sleep")))
    async with app.run_test(size=SIZE) as pilot:
        await _open_signal_modal(pilot, app, sleeper)
        await pilot.press("down", "down", "down", "enter")
        await pilot.pause()
        await _signal_workers_done(app)
        assert SIGNAL_CHOICES[3][0] is signal.SIGKILL
        assert sleeper.wait(timeout=5) == -signal.SIGKILL


async def test_a_click_on_a_signal_only_highlights_it(sleeper: subprocess.Popen[bytes]) -> None:
    app = MemwatchApp(ScriptedSource(with_process(make_frames()[1], sleeper.pid, "sleep")))
    async with app.run_test(size=SIZE) as pilot:
        await _open_signal_modal(pilot, app, sleeper)
        modal = app.screen
        assert isinstance(modal, SignalModal)
        assert await pilot.click("#signal-choice", offset=(4, 3))  # under the border, the third: SIGHUP
        await pilot.pause()
        assert modal.chosen is signal.SIGHUP and app.screen is modal
        assert await pilot.click("#send")
        await pilot.pause()
        await _signal_workers_done(app)
        assert sleeper.wait(timeout=5) == -signal.SIGHUP


async def test_signal_errors_are_sentences_not_tracebacks() -> None:
    """What the signal worker raises (the app's one handler shows it, as the replay test below sees)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    source = ScriptedSource(make_frames()[0])
    with pytest.raises(SignalNotSent) as raised:
        await send_signal(source, (gone.pid, 1), MARKUP_NAME, signal.SIGTERM)
    assert raised.value.severity == "warning" and "no longer exists" in raised.value.message
    assert "\\[red]x\\[/red]" in raised.value.message  # escaped for notify's markup
    assert await send_signal(source, (1, 1), "init", signal.SIGCONT) == "Sent SIGCONT to init (pid 1)."  # root


async def test_a_replay_refuses_to_signal_with_a_notification() -> None:
    frames = make_frames()
    app = MemwatchApp(ReplaySource(frames))
    messages: list[tuple[str, str]] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.notify = lambda message, **kw: messages.append((message, kw.get("severity", "")))  # type: ignore
        await pilot.press("k")
        await pilot.pause()
        assert not isinstance(app.screen, SignalModal)  # no dialog to fill in first
    assert messages == [("This is a recording: signals go to live processes.", "warning")]


async def test_quit_closes_the_source() -> None:
    source = ClosingReplay(make_frames())
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    assert source.closed >= 1
    assert app.return_code == 0


async def test_ctrl_c_quits_and_closes() -> None:
    source = ScriptedSource(make_frames()[0])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert source.closed == 1


async def test_degraded_shows_dashes_and_banner() -> None:
    frames = make_frames(degraded=True)
    app = MemwatchApp(ScriptedSource(frames[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        leaky = key_of(LEAKY_PID)
        for column in ("mmap", "munmap", "brk", "outstanding"):
            assert cell(app, leaky, column) == "-"
        assert app.query_one("#banner").display


async def test_odd_names_are_literal_and_units_toggle() -> None:
    frames = make_frames()
    app = MemwatchApp(ScriptedSource(frames[2]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        markup_key = key_of(1234)
        assert cell(app, markup_key, "name") == MARKUP_NAME
        assert cell(app, key_of(LEAKY_PID), "name").startswith("!")  # leak suspect marked
        assert cell(app, markup_key, "rss").isdigit()
        await pilot.press("u")
        assert cell(app, markup_key, "rss").endswith("MiB")


async def test_new_oom_kill_notifies_once_with_escaped_name() -> None:
    frames = make_frames()
    last = frames[-1]
    events = tuple(e if e.kind is not EventKind.OOM else
                   type(e)(**{**{f: getattr(e, f) for f in e.__dataclass_fields__}, "name": MARKUP_NAME})
                   for e in last.events)
    import dataclasses

    last = dataclasses.replace(last, events=events, by_key={})
    source = ScriptedSource(frames[0])
    app = MemwatchApp(source)
    seen: list[tuple[str, str]] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.notify = lambda message, **kw: seen.append((message, kw.get("severity", "")))  # type: ignore
        source.push(last)
        source.push(last)
        while source.taken < 2:
            await pilot.pause()
        await pilot.pause()
    ooms = [m for m in seen if "OOM" in m[0]]
    assert len(ooms) == 1 and ooms[0][1] == "error"
    assert "\\[red]x\\[/red]" in ooms[0][0]


async def test_events_screen_lists_exits_and_ooms() -> None:
    frames = make_frames()
    app = MemwatchApp(ScriptedSource(frames[-1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        assert [screen.exits_table.row_cells(i)[1].plain for i in range(screen.exits_table.row_count)] == ["exit"]
        assert [screen.oom_table.row_cells(0)[1].plain] == ["OOM"]  # apart, at the top
        await pilot.press("escape")
        assert not isinstance(app.screen, EventsScreen)


async def test_enter_opens_detail_full_screen_and_escape_returns() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[2]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_rollup_is_asked_for_the_highlighted_process() -> None:
    source = ScriptedSource(make_frames()[1])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("down")
        for _ in range(50):
            if len(source.rollups) >= 2:
                break
            await pilot.pause()
        current = app.dashboard.table.current_key
        assert current is not None
        assert tuple(map(int, current.split(":"))) in source.rollups
        assert "111 KB" in str(app.query_one("#detail-body").render())  # the PSS the source returned


class FrameCountingApp(MemwatchApp):
    """Counts the frames written out."""

    frames = 0

    def _display(self, screen: Any, renderable: Any) -> None:
        super()._display(screen, renderable)
        self.frames += 1


async def test_the_cursor_gets_its_own_frame_and_the_pane_follows() -> None:
    """An arrow key's frame carries the two table lines only; the pane is drawn after it (drawn in
    the same frame, the compositor would repaint the whole box around both)."""
    app = FrameCountingApp(ScriptedSource(make_frames()[1]))
    pane_drawn_at: list[int] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.query_one("#detail", DetailPane)
        show = pane.show

        def counting_show(*args: Any) -> None:
            pane_drawn_at.append(app.frames)
            show(*args)

        pane.show = counting_show  # type: ignore[method-assign]
        first, frames_before = app.dashboard.table.current_key, app.frames
        await pilot.press("down", "down")
        for _ in range(20):
            if pane_drawn_at:
                break
            await pilot.pause()
        assert app.dashboard.table.current_key != first
        assert pane_drawn_at and pane_drawn_at[0] > frames_before, "the cursor's frame went out first"
        assert len(pane_drawn_at) <= 2
        shown = pane.view_key
        assert shown is not None and f"{shown[0]}:{shown[1]}" == app.dashboard.table.current_key


async def test_interval_keys_call_set_interval() -> None:
    source = ScriptedSource(make_frames()[0], interval_s=3.0)
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("plus")
        assert source.interval_s == 2.0
        await pilot.press("minus", "minus")
        assert source.interval_s == 5.0


async def test_replay_time_controls() -> None:
    source = ReplaySource(make_frames())
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("left_square_bracket")
        assert source.position == 0 and app.view.paused
        await pilot.press("full_stop", "full_stop")
        assert source.position == 2
        await pilot.press("comma")
        assert source.position == 1
        await pilot.press("right_square_bracket")
        assert source.position == 4
        when = BASE_TIMESTAMP + FRAME_GAP_S * 2 + 1
        from memwatch.ui.formatting import utc_time

        await pilot.press("g", *utc_time(when))
        await pilot.press("enter")
        assert source.position == 2
        assert app.snapshot is not None and app.snapshot.replay_position == (2, 5)
        await pilot.press("g", *"nonsense", "enter")
        assert source.position == 2  # a bad time is a notification, not a jump


async def test_a_step_made_while_a_frame_is_on_its_way_wins() -> None:
    """The replay's pump may be fetching the next frame when the user steps: that frame must not
    move the position the user chose (under load it did, by one)."""
    import asyncio

    from memwatch.model import Snapshot

    class Gated(ReplaySource):
        gate = asyncio.Event()

        async def next(self) -> Snapshot:
            await self.gate.wait()
            return await super().next()

    source = Gated(make_frames())
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()                     # the pump waits at the gate, inside next()
        await pilot.press("full_stop")          # pauses and steps to frame 1
        assert source.position == 1 and app.view.paused
        Gated.gate.set()                        # the frame that was on its way arrives
        await pilot.pause()
        await pilot.pause()
        assert source.position == 1
        assert app.snapshot is not None and app.snapshot.replay_position == (1, 5)


async def test_too_small_terminal_shows_a_message() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[0]))
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.pause()
        assert app.query_one("#too-small").display
        assert not app.query_one("#main").display or app.screen.has_class("-too-small")
        assert TOO_SMALL.startswith("Terminal too small")


async def test_narrow_terminal_drops_low_priority_columns() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[0]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        visible = app.dashboard.table.visible_columns
        for key in ("pid", "name", "rss", "virt", "mmap", "munmap", "growth"):
            assert key in visible
        assert "trend" not in visible and "outstanding" not in visible


def test_bad_arguments_are_sentences() -> None:
    with pytest.raises(ValueError, match="unknown sort column"):
        MemwatchApp(ScriptedSource(make_frames()[0]), sort="bogus")
    with pytest.raises(ValueError, match="unknown theme 'nope'; choose one of ansi-dark, ansi-light, "):
        MemwatchApp(ScriptedSource(make_frames()[0]), theme="nope")


def test_the_cli_checks_themes_against_the_ones_the_app_takes() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[0]))
    assert theme_names() == sorted(app.available_themes)
    assert "textual-dark" in theme_names() and "nord" in theme_names()


async def test_a_valid_theme_is_applied() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[0]), theme="nord")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "nord"


async def test_a_quit_queued_behind_a_failed_start_keeps_its_status() -> None:
    class Failing(ScriptedSource):
        async def open(self) -> Any:
            raise OSError("no such thing")

    app = MemwatchApp(Failing(make_frames()[0]))
    async with app.run_test(size=SIZE):
        await app.action_quit()  # as SIGTERM's handler runs it once on_mount has given up
    assert app.return_value == 1


async def test_a_crash_still_closes_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = make_frames()
    source = ScriptedSource(frames[0])
    app = MemwatchApp(source)

    def broken(self: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            monkeypatch.setattr(DashboardScreen, "_render_table", broken)  # drawing the next frame fails
            source.push(frames[1])
            for _ in range(20):
                await pilot.pause()
    assert source.closed == 1


# --- the items fixed with the rooms restructure --------------------------------------------------

async def test_top_and_pid_are_honoured_as_by_once() -> None:
    """--top 5 --pid S shows the top 5 and S; --pid alone shows only those processes."""
    frame = make_frames()[1]
    small = min(frame.processes, key=lambda v: v.sample.rss_kb).pid
    top5 = [v.pid for v in frame.top(5, "rss", True)]
    assert small not in top5
    app = MemwatchApp(ScriptedSource(frame), top=5, pids=(small,))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert pids_in_table(app) == [*top5, small]
        assert f"with pid {small}" in str(app.query_one("#status").render())
    app = MemwatchApp(ScriptedSource(frame), pids=(small, HOG_PID))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert pids_in_table(app) == [HOG_PID, small]  # ranked, nothing else
        await pilot.press("slash", *"hog", "enter")
        assert pids_in_table(app) == [HOG_PID]  # the filter still applies


def test_the_cli_hands_top_and_pid_to_the_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    from memwatch import cli
    from memwatch.ui import app as app_module

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(app_module, "run_dashboard", lambda source, **kw: seen.append(kw) or 0)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    args = cli.build_parser().parse_args(["--replay", "x", "--top", "5", "--pid", "42", "--pid", "7"])
    monkeypatch.setattr(cli, "_replay_source", lambda path: ScriptedSource(make_frames()[0]))
    assert cli.run_dashboard(args) == 0
    assert seen[0]["top"] == 5 and seen[0]["pids"] == (42, 7)
    assert seen[0]["descending"] is None  # no direction asked: the field's own (pid low first)
    cli.run_dashboard(cli.build_parser().parse_args(["--replay", "x", "--pid", "42"]))
    assert seen[1]["top"] is None and seen[1]["pids"] == (42,)  # the app: None with pids is "only these"


async def test_escape_on_the_table_clears_an_applied_filter() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        everyone = len(app.dashboard.table.row_order)
        await pilot.press("slash", *"leaky", "enter")
        assert pids_in_table(app) == [LEAKY_PID] and app.focused is app.dashboard.table
        await pilot.press("escape")
        assert app.view.filter == ""
        assert len(app.dashboard.table.row_order) == everyone
        assert "filter" not in str(app.query_one("#status").render())


async def test_keys_of_the_table_do_nothing_on_the_events_screen() -> None:
    """/ typed on the events screen used to open the hidden table's filter and take the keys:
    now / s k are the events screen's own (filter, sort) or nothing (no signal from here)."""
    app = MemwatchApp(ScriptedSource(make_frames()[-1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        await pilot.press("slash", *"hog", "enter", "s", "k")
        await pilot.pause()
        assert app.screen is screen
        assert screen.order.filter == "hog" and screen.order.sort == "pid"
        assert app.view.filter == "" and app.view.sort == "rss"
        assert not app.dashboard.query_one("#prompt").display
        await pilot.press("u")  # what all main screens share still works
        assert app.view.human is True
        await pilot.press("escape")
        assert app.screen is app.dashboard and app.focused is app.dashboard.table


@pytest.mark.parametrize("typed", ["epoch", "iso", "time"])
async def test_go_to_takes_what_at_takes(typed: str) -> None:
    from memwatch.headless import iso_utc
    from memwatch.ui.formatting import utc_time

    source = ReplaySource(make_frames())
    app = MemwatchApp(source)
    when = BASE_TIMESTAMP + FRAME_GAP_S * 3
    text = {"epoch": f"{when:.0f}", "iso": iso_utc(when), "time": utc_time(when)}[typed]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("g", *text, "enter")
        assert source.position == 3
        assert app.snapshot is not None and app.snapshot.replay_position == (3, 5)


async def test_a_time_that_cannot_be_read_gives_the_keys_back() -> None:
    """After the error the line is closed and the table has the focus: the next key is a command."""
    source = ReplaySource(make_frames())
    app = MemwatchApp(source)
    seen: list[tuple[str, str]] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("left_square_bracket")
        app.notify = lambda message, **kw: seen.append((message, kw.get("severity", "")))  # type: ignore
        await pilot.press("g", *"nonsense", "enter")
        assert source.position == 0
        assert seen and seen[0][1] == "error" and "cannot read 'nonsense'" in seen[0][0]
        assert app.focused is app.dashboard.table
        assert not app.dashboard.query_one("#prompt").display
        await pilot.press("full_stop")
        assert source.position == 1


def _tracer_line(app: MemwatchApp) -> str:
    return str(app.query_one("#tracer-text").render())


async def test_the_header_says_a_recording_is_one_and_of_which_host() -> None:
    app = MemwatchApp(ReplaySource(make_frames()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        line = _tracer_line(app)
        assert "Recording of testhost, traced by eBPF (raw)" in line and "attached" not in line
    app = MemwatchApp(ReplaySource(make_frames(degraded=True)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "Recording of testhost, eBPF was off" in _tracer_line(app)
        assert "Recorded on testhost: eBPF is off: memwatch needs root" in str(app.query_one("#banner").render())
    app = MemwatchApp(ScriptedSource(make_frames()[0]))  # live: this machine, now
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        line = _tracer_line(app)
        assert "eBPF attached (raw)" in line and "Recording" not in line


async def test_interval_keys_show_the_interval_in_the_header_without_toasts() -> None:
    source = ScriptedSource(make_frames()[0], interval_s=3.0)
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("plus", "plus", "plus")
        await pilot.pause()
        assert source.interval_s == 0.5
        assert "every 0.5s" in _tracer_line(app)
        assert len(app._notifications) == 0  # one per press used to pile up


async def test_a_worker_failure_is_shown_by_the_one_handler() -> None:
    """A worker that fails, however, is a notification naming what it was doing; the app goes on."""
    from memwatch.ui import workers

    app = MemwatchApp(ScriptedSource(make_frames()[0]))
    seen: list[tuple[str, str, str]] = []

    async def broken() -> None:
        raise KeyError("surprise")

    async def refused() -> None:
        raise workers.UIError("A sentence for you.", severity="warning", title="Said")

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.notify = lambda message, **kw: seen.append(  # type: ignore
            (message, kw.get("severity", ""), kw.get("title", "")))
        for work in (broken(), refused()):
            worker = workers.start(app.dashboard, work, name="test", description="testing [the] handler")
            for _ in range(20):
                if worker.is_finished:
                    break
                await pilot.pause()
        await pilot.pause()
        assert app.is_running
    assert seen[0] == ("testing \\[the] handler failed: 'surprise'", "error", "memwatch")
    assert seen[1] == ("A sentence for you.", "warning", "Said")


async def test_the_pane_under_the_detail_screen_keeps_its_pss() -> None:
    """Each pane reads PSS/USS for itself: the full-screen pane's read must not cancel the one the
    table's pane has in flight (it would say "reading…" when the user comes back)."""
    import asyncio

    from memwatch.model import SmapsRollup

    gate = asyncio.Event()

    class SlowRollups(ScriptedSource):
        async def rollup(self, key: Any) -> SmapsRollup | None:
            await gate.wait()
            return await super().rollup(key)

    app = MemwatchApp(SlowRollups(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("down")
        await pilot.pause()
        await pilot.press("enter")  # the pane's read is still waiting at the gate
        for _ in range(5):
            await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        gate.set()
        for _ in range(10):
            await pilot.pause()
        assert "111 KB" in str(app.screen.query_one("#detail-body").render())
        await pilot.press("escape")
        await pilot.pause()
        assert "111 KB" in str(app.query_one("#detail-body").render())
