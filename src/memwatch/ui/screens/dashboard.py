"""The dashboard screen: header, the process table with its detail pane, the bars and the prompt.

It shows what the app holds (``app.snapshot``, ``app.view``, ``app.source_ended``,
``app.interval_s``) through watchers, and turns keys into new values of them: a key never draws
anything itself. Latency-minded details stay here: the detail pane is drawn one frame after the
cursor moved, and every line is updated quietly (``set_static``).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar

from rich.markup import escape
from textual import events, on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from memwatch.model import ProcessKey, ProcessView, Snapshot
from memwatch.sources.base import SeekableSource, SnapshotSource
from memwatch.ui import formatting as fmt
from memwatch.ui import keys, workers
from memwatch.ui.screens.column_chooser import ColumnChooser
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.screens.events_screen import EventsScreen
from memwatch.ui.screens.group_views import GroupViews
from memwatch.ui.screens.signal_modal import SignalModal
from memwatch.ui.view_state import ViewState
from memwatch.ui.widgets.bars import ReplayBar, StatusBar
from memwatch.ui.widgets.detail import DetailPane
from memwatch.ui.widgets.footer import KeyFooter
from memwatch.ui.widgets.group_table import GroupTable
from memwatch.ui.widgets.header import SystemHeader, degraded_banner
from memwatch.ui.widgets.process_table import ProcessTable
from memwatch.ui.widgets.prompt import Prompt
from memwatch.ui.widgets.quiet_update import set_static

MIN_WIDTH, MIN_HEIGHT = 60, 15
TOO_SMALL = f"Terminal too small: need at least {MIN_WIDTH}x{MIN_HEIGHT}"
PANE_RIGHT_MIN_WIDTH = 170
PANE_BOTTOM_MIN_HEIGHT = 34
RECORDINGS_ONLY = "Time controls work on recordings only (memwatch --replay FILE)."
NO_SIGNALS_IN_REPLAY = "This is a recording: signals go to live processes."


def layout_class(width: int, height: int) -> str:
    """Where the detail pane goes for a terminal size: right, below, or away."""
    if width >= PANE_RIGHT_MIN_WIDTH:
        return "-pane-right"
    if height >= PANE_BOTTOM_MIN_HEIGHT:
        return "-pane-bottom"
    return "-pane-hidden"


async def send_signal(source: SnapshotSource, key: ProcessKey, name: str, sig: signal.Signals) -> str:
    """Ask the source to signal exactly that process (pid and start time, so never a process that
    reused the pid). Returns what to tell the user; every failure a user can meet is a
    :class:`~memwatch.ui.workers.SignalNotSent` with its sentence."""
    who = f"{escape(fmt.printable(name))} (pid {key[0]})"
    try:
        await source.send_signal(key, sig)
    except ProcessLookupError:
        raise workers.SignalNotSent(f"{who} no longer exists.", severity="warning") from None
    except PermissionError as error:
        if error.errno is None and str(error):  # a sentence from the source (e.g. a recording)
            raise workers.SignalNotSent(f"Cannot signal {who}: {escape(str(error))}.") from None
        raise workers.SignalNotSent(
            f"Not allowed to signal {who}: permission denied (run as its owner or root).") from None
    except OSError as error:
        raise workers.SignalNotSent(f"Could not signal {who}: {escape(error.strerror or str(error))}") from None
    return f"Sent {sig.name} to {who}."


async def send_signals(source: SnapshotSource, targets: list[tuple[ProcessKey, str]],
                       sig: signal.Signals) -> tuple[str, workers.Severity]:
    """:func:`send_signal` to each target, all of them whatever fails; one sentence for the lot
    and how grave it is. Raises :class:`~memwatch.ui.workers.SignalNotSent` (every failure in it)
    if none was sent."""
    if len(targets) == 1:
        return await send_signal(source, *targets[0], sig), "information"
    failures: list[workers.SignalNotSent] = []
    for key, name in targets:
        try:
            await send_signal(source, key, name, sig)
        except workers.SignalNotSent as failure:
            failures.append(failure)
    sent = len(targets) - len(failures)
    if not failures:
        return f"Sent {sig.name} to {sent} processes.", "information"
    why = " ".join(f.message for f in failures)
    if not sent:
        severity: workers.Severity = "warning" if all(f.severity == "warning" for f in failures) else "error"
        raise workers.SignalNotSent(f"{sig.name} sent to none of {len(targets)} processes. {why}", severity=severity)
    return f"Sent {sig.name} to {sent} of {len(targets)} processes. Not sent: {why}", "warning"


class DashboardScreen(GroupViews):
    """The main screen, and the bottom of the stack: the app's default screen. The group views
    (tree, cgroups, users) and their keys come from :class:`GroupViews`."""

    ROOMS: ClassVar[tuple[keys.Room, ...]] = ("dashboard", "shared", "replay")
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings(*ROOMS)

    def __init__(self) -> None:
        super().__init__()
        self._layout_class = ""
        self._detail_due = False
        self._exited: tuple[ProcessView, float] | None = None
        """The pane's process exited (its last view, and the first frame without it): the pane
        keeps it, under how it ended, until the user moves the cursor."""
        self.tags: set[ProcessKey] = set()
        """Tagged processes (space): the signal dialog's targets; pruned as they exit."""

    @property
    def pane(self) -> DetailPane:
        return self.query_one("#detail", DetailPane)

    def compose(self) -> ComposeResult:
        app = self.memwatch
        with Vertical(id="main"):
            yield SystemHeader(id="header")
            yield Static(id="banner")
            yield ReplayBar(id="replay-bar")
            yield Prompt(id="prompt")
            with Horizontal(id="body"):
                yield ProcessTable(id="processes", columns=app.view.columns)
                yield GroupTable(id="groups")
                yield DetailPane(id="detail", rollup=app.feed.source.rollup, replay=app.feed.replay is not None)
            yield StatusBar(id="status")
            yield KeyFooter()
        yield Static(TOO_SMALL, id="too-small")

    def on_mount(self) -> None:
        app = self.memwatch
        if app.return_code is not None:  # the source failed to start: the app is on its way out
            return
        self.query_one("#replay-bar").display = app.feed.replay is not None
        self._apply_size(app.size.width, app.size.height)
        view = app.view
        self.table.set_presentation(sort=view.sort, descending=view.descending, human=view.human)
        self.table.focus()
        self._show_mode(view)
        self.watch(app, "view", self._view_changed, init=False)
        self.watch(app, "snapshot", self._show_snapshot)  # init: a frame that came before this screen
        self.watch(app, "source_ended", self._render_status, init=False)
        self.watch(app, "interval_s", self._render_header, init=False)

    def on_resize(self, event: events.Resize) -> None:
        self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int, height: int) -> None:
        """Too small: the message only. Otherwise the detail pane goes right, below, or away."""
        self.set_class(width < MIN_WIDTH or height < MIN_HEIGHT, "-too-small")
        layout = layout_class(width, height)
        if layout != self._layout_class:
            if self._layout_class:
                self.remove_class(self._layout_class)
            self.add_class(layout)
            self._layout_class = layout

    # ----- what the app holds, shown ---------------------------------------------------------------

    def _show_snapshot(self, snap: Snapshot | None) -> None:
        if snap is None:
            return
        if self.tags:
            self._set_tags(self.tags & snap.by_key.keys())  # an exited process is no longer tagged
        if self._exited is not None and self._exited[0].key in snap.by_key:
            self._exited = None  # alive in this frame after all (a replay moved back)
        shown = self.pane.shown_view
        if self._exited is None and shown is not None and shown.key not in snap.by_key:
            self._exited = (shown, snap.timestamp)
        self._render_header()
        self._render_table()
        self._render_detail()
        self._render_replay_bar()

    def _view_changed(self, old: ViewState, new: ViewState) -> None:
        """One change of the view state, however many settings it moved, redraws once."""
        table = self.table
        groups_moved = self.groups_changed(old, new)
        if new.columns != old.columns:
            table.columns = new.columns
        presentation = (new.sort, new.descending, new.human)
        if presentation != (old.sort, old.descending, old.human):
            table.set_presentation(sort=new.sort, descending=new.descending, human=new.human)
        if presentation != (old.sort, old.descending, old.human) or (new.filter, new.top, new.pids) != (
                old.filter, old.top, old.pids) or new.columns != old.columns or groups_moved:
            self._render_table()
        else:
            self._render_status()
        if new.filter != old.filter or groups_moved:
            self._exited = None
            self._render_detail()
        elif new.human != old.human:
            self._show_detail()
        if new.human != old.human or new.paused != old.paused:
            self._render_header()
        if new.paused != old.paused:
            self._render_replay_bar()

    def _render_header(self) -> None:
        app = self.memwatch
        snap = app.snapshot
        if snap is None:
            return
        self.query_one(SystemHeader).update_from(snap, interval_s=app.interval_s, paused=app.view.paused,
                                                 steady_since=app.interval_since)
        banner = degraded_banner(snap)
        widget = self.query_one("#banner", Static)
        widget.display = banner is not None
        if banner is not None:
            set_static(widget, banner)

    def _render_table(self) -> None:
        app = self.memwatch
        if app.view.mode == "processes":
            self.table.show(app.view.rank(app.snapshot))
        else:
            self.render_groups()
        self._render_status()

    def _render_status(self) -> None:
        app = self.memwatch
        if app.view.mode == "processes":
            shown = self.table.row_count
            total = len(app.snapshot.processes) if app.snapshot is not None else None
        else:
            shown, total = self.group_counts
        lead = self.status_lead(shown, total)
        self.query_one(StatusBar).show(app.view, shown, total, app.source_ended, lead)

    def _render_replay_bar(self) -> None:
        app = self.memwatch
        replay, snap = app.feed.replay, app.snapshot
        if replay is None or snap is None:
            return
        index, total = snap.replay_position or (replay.position, replay.frame_count)
        self.query_one(ReplayBar).show(snap, index, total, app.view.paused)

    def _highlighted_view(self) -> ProcessView | None:
        return self.highlighted_process()

    def _render_detail(self) -> None:
        """The pane, for the process under the cursor (or the one that exited under it)."""
        snap = self.memwatch.snapshot
        if self._show_exited():
            return
        view = self._highlighted_view()
        if snap is not None and view is not None:
            view = snap.current(view)   # the chart draws its whole history
        self.pane.show(view, self.memwatch.view.human, snap.timestamp if snap else 0.0,
                       snap.interval_s if snap else 0.0, self.memwatch.interval_since)

    def _show_exited(self) -> bool:
        if self._exited is None:
            return False
        view, gone_by = self._exited
        self.pane.show_exited(view, self.memwatch.view.human, self.memwatch.events.exit_of(view.key), gone_by)
        return True

    def _show_detail(self) -> None:
        """The pane again, for the process it shows (new units)."""
        snap = self.memwatch.snapshot
        if self._show_exited():
            return
        if snap is not None:
            key = self.pane.view_key
            view = snap.by_key.get(key) if key else None
            self.pane.show(snap.current(view) if view is not None else None, self.memwatch.view.human,
                           snap.timestamp, snap.interval_s, self.memwatch.interval_since)

    # ----- the table ---------------------------------------------------------------------------------

    def on_process_table_row_highlighted(self, event: ProcessTable.RowHighlighted) -> None:
        if event.by_user:  # the user moved on from a process that exited
            self._exited = None
        # The cursor's frame first, the pane in the next one: Textual repaints the box around
        # all dirty regions, and the pane's box spans most of the table's rows; apart, the
        # cursor's frame holds its two lines. Keys that come faster than frames draw it once.
        if event.table in (self.table, self.groups) and not self._detail_due:
            self._detail_due = True
            self.call_after_refresh(self._render_due_detail)

    def _render_due_detail(self) -> None:
        self._detail_due = False
        self._render_detail()

    def on_process_table_row_selected(self, event: ProcessTable.RowSelected) -> None:
        if event.table is self.groups and self.enter_group():
            return
        view = self._highlighted_view()
        if event.table in (self.table, self.groups) and view is not None:
            self.app.push_screen(DetailScreen(view.key), callback=self._refocus_table)

    def _refocus_table(self, _result: object = None) -> None:
        self.active_table.focus()

    def on_process_table_header_selected(self, event: ProcessTable.HeaderSelected) -> None:
        if event.table in (self.table, self.groups) and event.column.sort is not None:
            self.sort_in_view(event.column.sort)

    # ----- actions -----------------------------------------------------------------------------------

    def action_sort_by(self, column: str) -> None:
        """Sort by a column; asking for the current one again reverses it."""
        self.sort_in_view(column)

    def action_cycle_sort(self) -> None:
        table = self.active_table
        visible = self.groups.visible_sorts if table is self.groups else table.visible_columns
        self._set_view(self.memwatch.view.next_sort(visible))

    def action_reverse_sort(self) -> None:
        self._set_view(self.memwatch.view.reversed())

    def action_start_filter(self) -> None:
        self.query_one(Prompt).ask("filter", self.memwatch.view.filter)

    def action_clear_filter(self) -> None:
        if self.memwatch.view.filter:
            self._set_view(replace(self.memwatch.view, filter=""))
        elif self.memwatch.view.group is not None:
            self._set_view(self.memwatch.view.left_group())

    def _set_tags(self, tags: set[ProcessKey]) -> None:
        self.tags = tags
        self.table.set_tagged(frozenset(f"{pid}:{start}" for pid, start in tags))

    def action_toggle_tag(self) -> None:
        view = self._highlighted_view()
        if view is not None:
            self._set_tags(self.tags ^ {view.key})

    def action_clear_tags(self) -> None:
        self._set_tags(set())

    def _signal_targets(self) -> list[tuple[ProcessKey, str]]:
        """The tagged processes (by pid), or else the highlighted one."""
        snap = self.memwatch.snapshot
        if self.tags and snap is not None:
            tagged = (snap.by_key.get(key) for key in sorted(self.tags))
            return [(v.key, v.sample.name) for v in tagged if v is not None]
        view = self._highlighted_view()
        return [(view.key, view.sample.name)] if view is not None else []

    def action_kill(self) -> None:
        if self.memwatch.feed.replay is not None:  # say no before asking anything
            self.notify(NO_SIGNALS_IN_REPLAY, severity="warning")
            return
        targets = self._signal_targets()
        if not targets:
            self.notify("No process highlighted.", severity="warning")
            return
        source = self.memwatch.feed.source

        def send(sig: signal.Signals | None) -> None:
            self.active_table.focus()
            if sig is not None:
                who = f"pid {targets[0][0][0]}" if len(targets) == 1 else f"{len(targets)} processes"
                workers.start(self, self._signal(source, targets, sig), name="signal",
                              description=f"sending {sig.name} to {who}")

        self.app.push_screen(SignalModal([(key[0], name) for key, name in targets]), callback=send)

    async def _signal(self, source: SnapshotSource, targets: list[tuple[ProcessKey, str]],
                      sig: signal.Signals) -> None:
        message, severity = await send_signals(source, targets, sig)
        self.notify(message, severity=severity)

    def action_columns(self) -> None:
        self.app.push_screen(ColumnChooser(), callback=self._refocus_table)

    def action_events(self) -> None:
        self.app.push_screen(EventsScreen(), callback=self._refocus_table)

    # ----- the prompt ----------------------------------------------------------------------------------

    @on(Prompt.FilterChanged)
    def _filter_changed(self, event: Prompt.FilterChanged) -> None:
        self._set_view(replace(self.memwatch.view, filter=event.text))

    @on(Prompt.Closed)
    def _prompt_closed(self) -> None:
        self.active_table.focus()

    @on(Prompt.GotoAsked)
    def _goto_asked(self, event: Prompt.GotoAsked) -> None:
        snap = self.memwatch.snapshot
        if snap is None:
            return
        try:
            when = fmt.parse_utc_time(event.text, snap.timestamp)
        except ValueError as error:
            self.notify(escape(str(error)), severity="error")
            return
        self._seek(lambda replay: replay.seek_time(when))

    # ----- replay --------------------------------------------------------------------------------------

    def _seek(self, where: Callable[[SeekableSource], Snapshot]) -> None:
        app = self.memwatch
        snap = app.feed.seek(where)
        if snap is None:
            self.notify(RECORDINGS_ONLY, severity="warning")
        else:
            app.show_seek(snap)

    def action_step(self, delta: int) -> None:
        self._seek(lambda replay: replay.seek(replay.position + delta))

    def action_jump(self, where: str) -> None:
        self._seek(lambda replay: replay.seek(0 if where == "start" else replay.frame_count - 1))

    def action_goto(self) -> None:
        if self.memwatch.feed.replay is None:
            self.notify(RECORDINGS_ONLY, severity="warning")
            return
        self.query_one(Prompt).ask("goto")

