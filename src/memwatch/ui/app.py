"""The memwatch dashboard: a Textual app fed by any SnapshotSource.

A worker loops ``await source.next()`` and posts each snapshot as a message whose ``can_replace``
drops stale ones, so a slow UI shows the latest frame instead of falling behind. Everything the
UI shows comes from the immutable Snapshot; the only other calls into the core are
``source.rollup`` (PSS/USS, in a worker), ``source.set_interval`` and, for replays, ``seek``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.theme import BUILTIN_THEMES
from textual.widgets import Footer, Input, Static

from memwatch.fields import SORT_KEYS
from memwatch.model import EventKind, ProcessKey, ProcessView, Snapshot
from memwatch.sources.base import SeekableSource, SnapshotSource
from memwatch.ui import formatting as fmt
from memwatch.ui.columns import ASCENDING_BY_DEFAULT, BY_KEY, SORTABLE
from memwatch.ui.gc_pacing import GcPacer
from memwatch.ui.messages import SnapshotArrived, SourceEnded
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.screens.events_screen import EventsScreen, event_key
from memwatch.ui.screens.help_screen import HelpScreen
from memwatch.ui.screens.signal_modal import SignalModal
from memwatch.ui.widgets.detail import DetailPane
from memwatch.ui.widgets.header import SystemHeader, degraded_banner
from memwatch.ui.widgets.process_table import ProcessTable
from memwatch.ui.widgets.quiet_update import set_static

log = logging.getLogger("memwatch.ui")

MIN_WIDTH, MIN_HEIGHT = 60, 15
TOO_SMALL = f"Terminal too small: need at least {MIN_WIDTH}x{MIN_HEIGHT}"
PANE_RIGHT_MIN_WIDTH = 170
PANE_BOTTOM_MIN_HEIGHT = 34
INTERVAL_STEPS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
ROLLUP_REFRESH_S = 5.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that end the dashboard the way q does. SIGINT is not among them: the terminal sends
Ctrl+C as a key, and a SIGINT from elsewhere keeps Python's KeyboardInterrupt (exit 130)."""


class LineInput(Input):
    """An Input that Escape cancels (the app clears and hides it)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", show=False)]

    class Cancelled(Input.Changed):
        """Escape was pressed in the input."""

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled(self, self.value))


def theme_names() -> list[str]:
    """The themes ``--theme`` takes: Textual's own, by the names it knows them (the CLI checks
    before anything starts, since an unknown one would only fail once the app is drawing)."""
    return sorted(BUILTIN_THEMES)


def unknown_theme(name: str, known: Iterable[str]) -> str:
    """The one sentence for a bad theme, wherever it is caught: it lists what would work."""
    return f"unknown theme {name!r}; choose one of {', '.join(sorted(known))}"


def matches_filter(view: ProcessView, needle: str) -> bool:
    """Filter on name, command line or pid (case-insensitive substring; a number also matches the pid)."""
    if not needle:
        return True
    lowered = needle.lower()
    s = view.sample
    return lowered in s.name.lower() or lowered in s.cmdline.lower() or needle == str(s.pid)


class MemwatchApp(App[int]):
    """The dashboard. ``run_dashboard`` is the usual way to start it."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere still find it
    TITLE = "memwatch"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("p,space", "toggle_pause", "Pause"),
        Binding("slash", "start_filter", "Filter"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("r", "reverse_sort", "Reverse", show=False),
        Binding("M", "sort_by('rss')", "Sort RSS", show=False),
        Binding("P", "sort_by('pid')", "Sort PID", show=False),
        Binding("N", "sort_by('name')", "Sort name", show=False),
        Binding("G", "sort_by('growth')", "Sort growth", show=False),
        Binding("O", "sort_by('outstanding')", "Sort outstanding", show=False),
        Binding("u", "toggle_units", "Units"),
        Binding("plus,equals_sign", "faster", "Faster", show=False),
        Binding("minus", "slower", "Slower", show=False),
        Binding("k", "kill", "Signal"),
        Binding("e", "events", "Events"),
        Binding("question_mark", "help", "Help"),
        Binding("comma", "step(-1)", "Back", show=False),
        Binding("full_stop", "step(1)", "Forward", show=False),
        Binding("left_square_bracket", "jump('start')", "Start", show=False),
        Binding("right_square_bracket", "jump('end')", "End", show=False),
        Binding("g", "goto", "Go to", show=False),
    ]

    def __init__(self, source: SnapshotSource, *, top: int = 100, sort: str = "rss",
                 descending: bool = True, theme: str | None = None) -> None:
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort column {sort!r}; choose one of {', '.join(SORT_KEYS)}")
        if top < 0:
            raise ValueError(f"top must be 0 (all) or a positive number, got {top}")
        super().__init__()
        if theme is not None and theme not in self.available_themes:
            raise ValueError(unknown_theme(theme, self.available_themes))
        self.source = source
        self.top_n = top
        self.sort_column = sort
        self.descending = descending
        self.human_units = False
        self.paused = False
        self.filter_text = ""
        self.snapshot: Snapshot | None = None
        self.source_ended: str | None = None
        self.seekable = isinstance(source, SeekableSource)
        self._requested_theme = theme
        self._pending: Snapshot | None = None
        self._resume = asyncio.Event()
        self._resume.set()
        self._closed = False
        self._quitting = False
        self._oom_seen: set[str] = set()
        self._rollup_asked: dict[ProcessKey, float] = {}
        self._layout_class = ""
        self._gc = GcPacer()
        self._detail_due = False
        self._seeks = 0
        """Steps and jumps made by the user, so that a frame the replay was fetching meanwhile
        cannot move the position they chose."""
        self._seek_position = 0

    # ----- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="main"):
            yield SystemHeader(id="header")
            yield Static(id="banner")
            yield Static(id="replay-bar")
            yield LineInput(placeholder="go to time (UTC): HH:MM:SS or YYYY-MM-DD HH:MM:SS", id="goto-input")
            yield LineInput(placeholder="filter by name, command line or pid (Escape clears)", id="filter-input")
            with Horizontal(id="body"):
                yield ProcessTable(id="processes")
                yield DetailPane(id="detail")
            yield Static(id="status")
            yield Footer()
        yield Static(TOO_SMALL, id="too-small")

    @property
    def table(self) -> ProcessTable:
        return self.query_one("#processes", ProcessTable)

    def on_load(self) -> None:
        """SIGTERM (kill, a service manager) and SIGHUP (the terminal went away) leave the way q
        does, so the terminal is restored and the probes detached instead of dying mid-screen.

        Load comes before the terminal enters application mode, and the handlers stay until the
        loop closes, after the terminal is restored: no moment in between dies with it raw. Not in
        headless runs (tests), which would take over the test runner's own signals."""
        if self.is_headless:
            return
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(sig, self._stop_on_signal, sig)

    def _stop_on_signal(self, sig: signal.Signals) -> None:
        # Queued behind whatever runs now (on_mount still opening the source, say), so the source
        # is closed after it has opened; a second signal while on the way out changes nothing.
        if not self._quitting:
            log.info("%s: quitting as q does", sig.name)
            self._quitting = True
            self.call_later(self.action_quit)

    async def on_mount(self) -> None:
        if self._requested_theme:
            self.theme = self._requested_theme
        self.query_one("#replay-bar").display = self.seekable
        self.query_one("#goto-input").display = False
        self.query_one("#filter-input").display = False
        self._apply_size(self.size.width, self.size.height)
        self.table.set_presentation(sort=self.sort_column, descending=self.descending, human=False)
        self.table.focus()
        try:
            first = await self.source.open()
        except Exception as error:  # a source that cannot start says why; no traceback
            await self._close_source()
            self.exit(1, message=f"memwatch: cannot start the data source: {error}")
            return
        self._receive(first)
        # Everything alive now (modules, widgets, styles) lives as long as the app: moving it out
        # of the collector's reach keeps full collections short; the pacer keeps them off keys.
        gc.collect()
        gc.freeze()
        self._gc.start()
        self.set_interval(self._gc.check_every_s, self._gc.tick, name="gc-pacer")
        self.run_worker(self._pump(), name="snapshot-pump", group="source", exclusive=True)

    def on_resize(self, event: events.Resize) -> None:
        self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int, height: int) -> None:
        """Too small: the message only. Otherwise the detail pane goes right, below, or away."""
        if not self.screen_stack:
            return
        screen = self.screen_stack[0]
        too_small = width < MIN_WIDTH or height < MIN_HEIGHT
        screen.set_class(too_small, "-too-small")
        if width >= PANE_RIGHT_MIN_WIDTH:
            layout = "-pane-right"
        elif height >= PANE_BOTTOM_MIN_HEIGHT:
            layout = "-pane-bottom"
        else:
            layout = "-pane-hidden"
        if layout != self._layout_class:
            if self._layout_class:
                screen.remove_class(self._layout_class)
            screen.add_class(layout)
            self._layout_class = layout

    # ----- the source ---------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Drain the source forever; the UI decides what to show."""
        while True:
            if self.seekable:
                await self._resume.wait()  # a paused replay does not need to move on
            seeks = self._seeks
            before = self.source.position if isinstance(self.source, SeekableSource) else 0
            try:
                snap = await self.source.next()
            except asyncio.CancelledError:
                raise
            except (EOFError, StopAsyncIteration):
                self.post_message(SourceEnded("end of recording"))
                return
            except Exception as error:  # the source failed: say so in the status line, keep the UI
                self.post_message(SourceEnded(f"source stopped: {error}"))
                return
            if isinstance(self.source, SeekableSource) and (self.paused or seeks != self._seeks):
                # the user paused or stepped while this frame was on its way: their position wins
                self.source.seek(self._seek_position if seeks != self._seeks else before)
                continue
            self.post_message(SnapshotArrived(snap))

    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        self._receive(message.snapshot)

    def on_source_ended(self, message: SourceEnded) -> None:
        self.source_ended = message.reason
        self._render_status()

    def _receive(self, snap: Snapshot) -> None:
        self._notify_new_ooms(snap)
        if self.paused:
            self._pending = snap
            return
        self.apply_snapshot(snap)

    def _notify_new_ooms(self, snap: Snapshot) -> None:
        for event in snap.events:
            if event.kind is not EventKind.OOM:
                continue
            key = event_key(event)
            if key in self._oom_seen:
                continue
            self._oom_seen.add(key)
            rss = fmt.human_kb(event.rss_kb) if event.rss_kb is not None else "?"
            self.notify(
                f"OOM kill: {escape(fmt.printable(event.name))} (pid {event.pid}), RSS {rss}"
                f" at {fmt.utc_time(event.timestamp, with_date=True)}",
                title="Out of memory", severity="error", timeout=10,
            )

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Show one snapshot everywhere it is visible."""
        self.snapshot = snap
        self._render_header()
        self._render_table()
        self._render_detail()
        self._render_replay_bar()
        for screen in self.screen_stack:
            if isinstance(screen, EventsScreen):
                screen.add_events(snap.events, self.human_units)

    async def _close_source(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.source.close()

    async def action_quit(self) -> None:
        self._quitting = True
        self.workers.cancel_group(self, "source")
        await self._close_source()
        if self.return_code is None:  # a quit queued behind a failed start keeps the failure's status
            self.exit(0)

    async def on_unmount(self) -> None:
        self._gc.stop()
        await self._close_source()  # crash or any other exit path: detach anyway

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)):
            self._gc.note_input()
        await super().on_event(event)

    # ----- rendering ----------------------------------------------------------------------------

    def _render_header(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        self.query_one(SystemHeader).update_from(snap, interval_s=self.source.interval_s, paused=self.paused)
        banner = degraded_banner(snap)
        widget = self.query_one("#banner", Static)
        widget.display = banner is not None
        if banner is not None:
            set_static(widget, banner)

    def ranked_views(self) -> list[ProcessView]:
        """The processes the table shows, in order: filter first, then top N."""
        snap = self.snapshot
        if snap is None:
            return []
        if not self.filter_text:
            return snap.top(self.top_n, self.sort_column, self.descending)
        ranked = [v for v in snap.top(0, self.sort_column, self.descending)
                  if matches_filter(v, self.filter_text)]
        return ranked if self.top_n <= 0 else ranked[: self.top_n]

    def _render_table(self) -> None:
        self.table.show(self.ranked_views())
        self._render_status()

    def _render_status(self) -> None:
        snap = self.snapshot
        text = Text()
        if self.paused:
            text.append(" PAUSED ", style="bold reverse yellow")
            text.append("  ")
        if snap is not None:
            text.append(f"{len(self.table.row_order)} of {len(snap.processes)} processes")
        spec = BY_KEY.get(self.sort_column)
        label = spec.label if spec else self.sort_column
        text.append(f"  sort {label} {'▼' if self.descending else '▲'}")
        text.append(f"  units {'KiB/MiB/GiB' if self.human_units else 'KB'}")
        if self.filter_text:
            text.append("  filter ")
            text.append(repr(self.filter_text), style="bold")
        if self.source_ended:
            text.append(f"  {self.source_ended}", style="italic")
        set_static(self.query_one("#status", Static), text)

    def _render_replay_bar(self) -> None:
        if not self.seekable or self.snapshot is None:
            return
        source = self.source
        assert isinstance(source, SeekableSource)
        index, total = self.snapshot.replay_position or (source.position, source.frame_count)
        width = 20
        filled = round(width * (index + 1) / total) if total else 0
        text = Text("REPLAY ", style="bold magenta")
        text.append("paused " if self.paused else "playing ")
        text.append(f"frame {index + 1}/{total}  ")
        text.append("█" * filled + "░" * (width - filled), style="magenta")
        text.append(f"  {fmt.utc_time(self.snapshot.timestamp, with_date=True)}")
        text.append("   , . step  [ ] start/end  g go to", style="dim")
        set_static(self.query_one("#replay-bar", Static), text)

    def _highlighted_view(self) -> ProcessView | None:
        return self.table.current_view if self.snapshot is not None else None

    def _render_detail(self) -> None:
        view = self._highlighted_view()
        panes = [self.query_one("#detail", DetailPane)]
        for screen in self.screen_stack:
            if isinstance(screen, DetailScreen):
                panes.append(screen.pane)
        for pane in panes:
            shown = view
            if pane.id == "detail-full" and self.snapshot is not None:
                screen = pane.screen
                assert isinstance(screen, DetailScreen)
                shown = self.snapshot.by_key.get(screen.key)
            pane.show(shown, self.human_units)
            if shown is not None:
                self._maybe_fetch_rollup(shown.key)

    def _maybe_fetch_rollup(self, key: ProcessKey) -> None:
        now = self.snapshot.timestamp if self.snapshot else 0.0
        last = self._rollup_asked.get(key)
        if last is not None and now - last < ROLLUP_REFRESH_S and last <= now:
            return
        self._rollup_asked = {key: now}
        self.run_worker(self._fetch_rollup(key), name="rollup", group="rollup", exclusive=True)

    async def _fetch_rollup(self, key: ProcessKey) -> None:
        """PSS/USS/SwapPss off the UI: the source reads smaps_rollup in its own thread, time-capped."""
        try:
            rollup = await self.source.rollup(key)
            state = "process has exited" if rollup is None else ""
        except Exception as error:  # permission denied and the like: shown in the pane, not raised
            rollup, state = None, f"unavailable: {error}"
        for pane in self._all_panes():
            pane.set_rollup(key, rollup, state)
        self._render_detail_only()

    def _all_panes(self) -> list[DetailPane]:
        panes = [self.query_one("#detail", DetailPane)]
        panes += [s.pane for s in self.screen_stack if isinstance(s, DetailScreen)]
        return panes

    def _render_detail_only(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        for pane in self._all_panes():
            key = pane.view_key
            pane.show(snap.by_key.get(key) if key else None, self.human_units)

    def on_process_table_row_highlighted(self, event: ProcessTable.RowHighlighted) -> None:
        # The cursor's frame first, the pane in the next one: Textual repaints the box around
        # all dirty regions, and the pane's box spans most of the table's rows; apart, the
        # cursor's frame holds its two lines. Keys that come faster than frames draw it once.
        if event.table is self.table and not self._detail_due:
            self._detail_due = True
            self.call_after_refresh(self._render_due_detail)

    def _render_due_detail(self) -> None:
        self._detail_due = False
        self._render_detail()

    def on_process_table_row_selected(self, event: ProcessTable.RowSelected) -> None:
        if event.table is not self.table:
            return
        view = self._highlighted_view()
        if view is not None:
            self.push_screen(DetailScreen(view.key), callback=self._refocus_table)
            self.call_after_refresh(self._render_detail)

    def _refocus_table(self, _result: object = None) -> None:
        self.table.focus()

    def on_process_table_header_selected(self, event: ProcessTable.HeaderSelected) -> None:
        if event.table is not self.table:
            return
        spec = event.column
        if spec.sort is None:
            return
        if spec.sort == self.sort_column:
            self._set_sort(spec.sort, not self.descending)
        else:
            self._set_sort(spec.sort, spec.sort not in ASCENDING_BY_DEFAULT)

    # ----- actions ------------------------------------------------------------------------------

    def _set_sort(self, column: str, descending: bool) -> None:
        self.sort_column, self.descending = column, descending
        self.table.set_presentation(sort=column, descending=descending, human=self.human_units)
        self._render_table()

    def action_sort_by(self, column: str) -> None:
        """Sort by a column; asking for the current one again reverses it."""
        if column == self.sort_column:
            self._set_sort(column, not self.descending)
        else:
            self._set_sort(column, column not in ASCENDING_BY_DEFAULT)

    def action_cycle_sort(self) -> None:
        visible = [c for c in SORTABLE if c in self.table.visible_columns]
        order = visible or list(SORTABLE)
        index = order.index(self.sort_column) if self.sort_column in order else -1
        column = order[(index + 1) % len(order)]
        self._set_sort(column, column not in ASCENDING_BY_DEFAULT)

    def action_reverse_sort(self) -> None:
        self._set_sort(self.sort_column, not self.descending)

    def action_toggle_units(self) -> None:
        self.human_units = not self.human_units
        self.table.set_presentation(sort=self.sort_column, descending=self.descending, human=self.human_units)
        self._render_table()
        self._render_header()
        self._render_detail_only()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if self.paused:
            self._resume.clear()
        else:
            self._resume.set()
            pending, self._pending = self._pending, None
            if pending is not None and not self.seekable:
                self.apply_snapshot(pending)
        self._render_header()
        self._render_status()
        self._render_replay_bar()

    def _change_interval(self, faster: bool) -> None:
        current = self.source.interval_s
        if faster:
            smaller = [s for s in INTERVAL_STEPS if s < current - 1e-9]
            new = smaller[-1] if smaller else INTERVAL_STEPS[0]
        else:
            larger = [s for s in INTERVAL_STEPS if s > current + 1e-9]
            new = larger[0] if larger else INTERVAL_STEPS[-1]
        self.source.set_interval(new)
        self._render_header()
        self.notify(f"Interval {new:g} s", timeout=2)

    def action_faster(self) -> None:
        self._change_interval(True)

    def action_slower(self) -> None:
        self._change_interval(False)

    def action_start_filter(self) -> None:
        box = self.query_one("#filter-input", LineInput)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter-input")
    def _filter_changed(self, event: Input.Changed) -> None:
        if isinstance(event, LineInput.Cancelled):
            return
        self.filter_text = event.value.strip()
        self._render_table()
        self._render_detail()

    @on(Input.Submitted, "#filter-input")
    def _filter_done(self) -> None:
        self.query_one("#filter-input").display = False
        self.table.focus()

    @on(LineInput.Cancelled, "#filter-input")
    def _filter_cancelled(self) -> None:
        box = self.query_one("#filter-input", LineInput)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self._render_table()
        self.table.focus()

    def action_kill(self) -> None:
        view = self._highlighted_view()
        if view is None:
            self.notify("No process highlighted.", severity="warning")
            return
        key, name = view.key, view.sample.name

        def send(sig: signal.Signals | None) -> None:
            self.table.focus()
            if sig is None:
                return
            self.run_worker(self.send_signal(key, name, sig), name="signal", group="signal")

        self.push_screen(SignalModal(view.pid, name), callback=send)

    async def send_signal(self, key: ProcessKey, name: str, sig: signal.Signals) -> bool:
        """Ask the source to signal exactly that process (pid and start time, so never a process
        that reused the pid); every failure a user can meet is reported as a notification."""
        who = f"{escape(fmt.printable(name))} (pid {key[0]})"
        try:
            await self.source.send_signal(key, sig)
        except ProcessLookupError:
            self.notify(f"{who} no longer exists.", severity="warning")
        except PermissionError as error:
            if error.errno is None and str(error):  # a sentence from the source (e.g. a recording)
                self.notify(f"Cannot signal {who}: {escape(str(error))}.", severity="error")
            else:
                self.notify(f"Not allowed to signal {who}: permission denied (run as its owner or root).",
                            severity="error")
        except OSError as error:
            self.notify(f"Could not signal {who}: {escape(error.strerror or str(error))}", severity="error")
        else:
            self.notify(f"Sent {sig.name} to {who}.")
            return True
        return False

    def action_events(self) -> None:
        if isinstance(self.screen, EventsScreen):
            self.pop_screen()
            return
        screen = EventsScreen()

        def fill() -> None:
            if self.snapshot is not None:
                screen.add_events(self.snapshot.events, self.human_units)

        self.push_screen(screen, callback=self._refocus_table)
        self.call_after_refresh(fill)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # ----- replay ---------------------------------------------------------------------------------

    def _seekable(self) -> SeekableSource | None:
        source = self.source
        if isinstance(source, SeekableSource):
            return source
        self.notify("Time controls work on recordings only (memwatch replay FILE).", severity="warning")
        return None

    def _show_seek(self, snap: Snapshot) -> None:
        self._seeks += 1
        self._seek_position = snap.replay_position[0] if snap.replay_position else 0
        if not self.paused:
            self.action_toggle_pause()  # stepping by hand stops playback
        self._pending = None
        self._notify_new_ooms(snap)
        self.apply_snapshot(snap)

    def action_step(self, delta: int) -> None:
        source = self._seekable()
        if source is not None:
            self._show_seek(source.seek(source.position + delta))

    def action_jump(self, where: str) -> None:
        source = self._seekable()
        if source is not None:
            self._show_seek(source.seek(0 if where == "start" else source.frame_count - 1))

    def action_goto(self) -> None:
        if self._seekable() is None:
            return
        box = self.query_one("#goto-input", LineInput)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#goto-input")
    def _goto_submitted(self, event: Input.Submitted) -> None:
        source = self._seekable()
        box = self.query_one("#goto-input", LineInput)
        if source is None or self.snapshot is None:
            return
        try:
            when = fmt.parse_utc_time(event.value, self.snapshot.timestamp)
        except ValueError as error:
            self.notify(escape(str(error)), severity="error")
            return
        box.value = ""
        box.display = False
        self.table.focus()
        self._show_seek(source.seek_time(when))

    @on(LineInput.Cancelled, "#goto-input")
    def _goto_cancelled(self) -> None:
        box = self.query_one("#goto-input", LineInput)
        box.value = ""
        box.display = False
        self.table.focus()

    # ----- command palette ------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume", "Stop or restart applying new snapshots", self.action_toggle_pause)
        yield SystemCommand("Toggle units", "KB or KiB/MiB/GiB", self.action_toggle_units)
        yield SystemCommand("Filter processes", "By name, command line or pid", self.action_start_filter)
        yield SystemCommand("Reverse sort", "Flip the sort direction", self.action_reverse_sort)
        for key in SORTABLE:
            yield SystemCommand(f"Sort by {BY_KEY[key].label}", f"Rank processes by {BY_KEY[key].label}",
                                lambda key=key: self._set_sort(key, key not in ASCENDING_BY_DEFAULT))
        yield SystemCommand("Faster sampling", "Shorter interval", self.action_faster)
        yield SystemCommand("Slower sampling", "Longer interval", self.action_slower)
        yield SystemCommand("Signal process", "Send a signal to the highlighted process", self.action_kill)
        yield SystemCommand("Events", "Exited processes and OOM kills", self.action_events)
        yield SystemCommand("Keys", "What every key does", self.action_help)
        if self.seekable:
            yield SystemCommand("Replay: start", "Jump to the first frame", lambda: self.action_jump("start"))
            yield SystemCommand("Replay: end", "Jump to the last frame", lambda: self.action_jump("end"))
            yield SystemCommand("Replay: go to time", "Type a UTC time", self.action_goto)


def run_dashboard(source: SnapshotSource, **kw: Any) -> int:
    """Run the dashboard until the user quits; returns the process exit code."""
    try:
        app = MemwatchApp(source, **kw)
    except ValueError as error:
        print(f"memwatch: {error}", file=sys.stderr)
        return 2
    result = app.run()
    _forget_a_closed_terminal()
    return result if isinstance(result, int) else (app.return_code or 0)


def _forget_a_closed_terminal() -> None:
    """After a hangup (the terminal window closed) output still buffered for the terminal cannot
    be written, and Python would turn a clean exit into status 120 trying at shutdown: send it
    to /dev/null instead, there is no one left to read it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
