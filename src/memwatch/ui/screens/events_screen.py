"""Process exits (with their final figures) and OOM kills.

The screen draws what the app's :class:`~memwatch.ui.event_log.EventLog` keeps: every OOM kill of
the run in a table of its own at the top, which no number of exits can scroll away, and the
newest exits below (a bounded window: a storm of exits costs a fixed number of rows, not memory
without end). Its own keys filter (``/``: name, pid, kind, signal) and sort (time, pid, name,
peak); End goes to the last row and the view then follows new exits until the user moves away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import Screen
from textual.widgets import Static

from memwatch.model import Event, EventKind, Snapshot
from memwatch.ui import event_log, keys
from memwatch.ui import formatting as fmt
from memwatch.ui.event_log import event_key
from memwatch.ui.view_state import ViewState
from memwatch.ui.widgets.event_list import EventList
from memwatch.ui.widgets.footer import KeyFooter
from memwatch.ui.widgets.prompt import Prompt
from memwatch.ui.widgets.quiet_update import set_static

if TYPE_CHECKING:
    from memwatch.ui.app import MemwatchApp

EVENT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("time", "TIME (UTC)", 19), ("kind", "KIND", 4), ("pid", "PID", 7), ("name", "NAME", 20),
    ("code", "EXIT", 7), ("peak", "PEAK/RSS", 10), ("mmap", "MMAP#", 7), ("munmap", "MUNMAP#", 7),
    ("brk", "BRK#", 6), ("outst", "OUTST", 10),
)
OOM_ROWS = 6
"""OOM kills shown at once above the exits (more scroll, in their own table)."""
SORT_LABELS = {"time": "time", "pid": "pid", "name": "name", "peak": "peak/RSS"}

__all__ = ["EVENT_COLUMNS", "EventTable", "EventsScreen", "event_cells", "event_key"]


def _ending(event: Event, dash: Text) -> Text:
    """The exit code, or the signal that killed the process (in red: it did not choose to end)."""
    if event.signal is not None:
        return Text(event.signal.removeprefix("SIG"), justify="right", style="red")
    if event.exit_code is not None:
        return Text(str(event.exit_code), justify="right", style="yellow" if event.exit_code else "")
    return dash


def event_cells(event: Event, human: bool) -> list[Text]:
    """One row: exits show exit code, peak RSS and final counters; OOM kills the victim's RSS."""

    def right(value: str, style: str = "") -> Text:
        return Text(value, justify="right", style=style)

    dash = right("-", "dim")
    oom = event.kind is EventKind.OOM
    kb = event_log.peak_kb(event)
    c = event.counts
    return [
        Text(fmt.utc_time(event.timestamp, with_date=True).removesuffix(" UTC")),
        Text("OOM" if oom else "exit", style="bold red" if oom else ""),
        right(str(event.pid)),
        Text(fmt.printable(event.name)[:20]),
        _ending(event, dash),
        right(fmt.size_kb(kb, human, 10)) if kb is not None else dash,
        right(fmt.count(c.mmap_count)) if c else dash,
        right(fmt.count(c.munmap_count)) if c else dash,
        right(fmt.count(c.brk_count)) if c else dash,
        right(fmt.size_bytes(c.outstanding_bytes, human, 10)) if c else dash,
    ]


class EventTable(EventList):
    """A table of the events screen: the event columns, from :func:`event_cells`."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(EVENT_COLUMNS, event_cells, id=id)

    def show(self, events: Sequence[Event], human: bool) -> None:
        self.fill(events, [event_key(e) for e in events], human)


@dataclass(frozen=True, slots=True)
class EventOrder:
    """How the events screen shows its events: sorted by what, which way, filtered by what."""

    sort: str = "time"
    descending: bool = False
    filter: str = ""


class EventsScreen(Screen[None]):
    """The exits and OOM kills the app kept; redrawn when the app's snapshot or units change."""

    ROOMS: ClassVar[tuple[keys.Room, ...]] = ("events", "shared")
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("events") + keys.bindings("shared")  # its own first
    DEFAULT_CSS = """
    EventsScreen .events-title { height: 1; text-style: bold; padding: 0 1; }
    EventsScreen #oom-table { height: 2; }
    EventsScreen #events-table { height: 1fr; }
    EventsScreen #events-prompt { height: 3; margin: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.order = EventOrder()
        self._drawn: tuple[object, ...] = ()

    @property
    def memwatch(self) -> MemwatchApp:
        return cast("MemwatchApp", self.app)

    @property
    def exits_table(self) -> EventTable:
        return self.query_one("#events-table", EventTable)

    @property
    def oom_table(self) -> EventTable:
        return self.query_one("#oom-table", EventTable)

    def compose(self) -> ComposeResult:
        yield Static(id="oom-title", classes="events-title")
        yield EventTable(id="oom-table")
        yield Static(id="exits-title", classes="events-title")
        yield Prompt(id="events-prompt")
        yield EventTable(id="events-table")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.exits_table.focus()
        app = self.memwatch
        self.watch(app, "snapshot", self._snapshot_changed, init=False)
        self.watch(app, "view", self._view_changed, init=False)
        self.call_after_refresh(self.redraw)  # after the screen's first frame

    def _snapshot_changed(self, _snap: Snapshot | None) -> None:
        self.redraw()

    def _view_changed(self, old: ViewState, new: ViewState) -> None:
        if old.human != new.human:
            self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        """Both tables and their titles, if the log, the order or the units moved since last time."""
        log, human, order = self.memwatch.events, self.memwatch.view.human, self.order
        state = (log.version, human, order)
        if state == self._drawn and not force:
            return
        self._drawn = state
        ooms = event_log.arrange(log.ooms, order.sort, order.descending, order.filter)
        exits = event_log.arrange(log.exits, order.sort, order.descending, order.filter)
        self.oom_table.display = bool(ooms)
        self.oom_table.styles.height = len(ooms) + 1 if len(ooms) < OOM_ROWS else OOM_ROWS + 1
        self.oom_table.show(ooms, human)
        self.exits_table.show(exits, human)
        set_static(self.query_one("#oom-title", Static), self._oom_title(len(ooms)))
        set_static(self.query_one("#exits-title", Static), self._exits_title(len(exits)))

    def _oom_title(self, shown: int) -> Text:
        log = self.memwatch.events
        if not log.ooms_seen:
            return Text("OOM kills: none seen", style="dim")
        text = Text(f"OOM kills: {log.ooms_seen} (kept for the whole run)", style="bold red")
        if shown != len(log.ooms):
            text.append(f", {shown} shown", style="")
        return text

    def _exits_title(self, shown: int) -> Text:
        log, order = self.memwatch.events, self.order
        text = Text(f"Exits: {log.exits_seen}")
        if log.exits_dropped:
            text.append(f" (the newest {len(log.exits)} kept)", style="yellow")
        arrow = "▼" if order.descending else "▲"
        text.append(f"   sorted by {SORT_LABELS[order.sort]} {arrow}", style="dim")
        if order.filter:
            text.append(f"   filter {order.filter!r}: {shown} shown", style="")
        text.append("   Escape returns", style="dim")
        return text

    # ----- keys -------------------------------------------------------------------------------------

    def _set_order(self, order: EventOrder) -> None:
        if order != self.order:
            self.order = order
            self.redraw()

    def action_sort_by(self, column: str) -> None:
        """Sort by a column; asking for the current one again reverses it (time: oldest first,
        so the newest is at the end; the figures: largest first)."""
        order = self.order
        if column == order.sort:
            self._set_order(EventOrder(column, not order.descending, order.filter))
        else:
            self._set_order(EventOrder(column, column == "peak", order.filter))

    def action_cycle_sort(self) -> None:
        sorts = event_log.SORTS
        self.action_sort_by(sorts[(sorts.index(self.order.sort) + 1) % len(sorts)])

    def action_reverse_sort(self) -> None:
        order = self.order
        self._set_order(EventOrder(order.sort, not order.descending, order.filter))

    def action_start_filter(self) -> None:
        self.query_one(Prompt).ask("events", self.order.filter)

    @on(Prompt.FilterChanged)
    def _filter_changed(self, event: Prompt.FilterChanged) -> None:
        event.stop()
        order = self.order
        self._set_order(EventOrder(order.sort, order.descending, event.text))

    @on(Prompt.Closed)
    def _prompt_closed(self, event: Prompt.Closed) -> None:
        event.stop()
        self.exits_table.focus()
