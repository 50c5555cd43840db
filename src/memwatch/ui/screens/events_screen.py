"""Process exits (with their final figures) and OOM kills, newest at the bottom.

Events are append-only, so the table only ever gains rows keyed by the event's identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Static

from memwatch.model import Event, EventKind, Snapshot
from memwatch.ui import formatting as fmt
from memwatch.ui import keys
from memwatch.ui.widgets.footer import KeyFooter

if TYPE_CHECKING:
    from memwatch.ui.app import MemwatchApp

EVENT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("time", "TIME (UTC)", 19), ("kind", "KIND", 4), ("pid", "PID", 7), ("name", "NAME", 20),
    ("code", "EXIT", 7), ("peak", "PEAK/RSS", 10), ("mmap", "MMAP#", 7), ("munmap", "MUNMAP#", 7),
    ("brk", "BRK#", 6), ("outst", "OUTST", 10),
)


def event_key(event: Event) -> str:
    """Identity of an exit/OOM event across snapshots."""
    return f"{event.kind.value}:{event.pid}:{event.start_ticks}:{event.timestamp!r}"


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
    kb = event.rss_kb if oom else event.peak_rss_kb
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


class EventsScreen(Screen[None]):
    """The exits and OOM kills seen so far; new ones are added as the app's snapshot changes."""

    ROOMS: ClassVar[tuple[keys.Room, ...]] = ("events", "shared")
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("events") + keys.bindings("shared")  # its own first
    DEFAULT_CSS = """
    EventsScreen #events-title { height: 1; text-style: bold; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static("Exited processes and OOM kills (Escape returns)", id="events-title")
        table: DataTable[Text] = DataTable(id="events-table", cursor_type="row")
        yield table
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one("#events-table", DataTable)
        for key, label, width in EVENT_COLUMNS:
            table.add_column(label, width=width, key=key)
        app = cast("MemwatchApp", self.app)
        self.watch(app, "snapshot", self._snapshot_changed, init=False)
        self.call_after_refresh(lambda: self._snapshot_changed(app.snapshot))  # after the screen's first frame

    def _snapshot_changed(self, snap: Snapshot | None) -> None:
        if snap is not None:
            self.add_events(snap.events, cast("MemwatchApp", self.app).view.human)

    def add_events(self, events: Sequence[Event], human: bool) -> int:
        """Append the exits/OOM kills not shown yet; returns how many were added."""
        table: DataTable[Text] = self.query_one("#events-table", DataTable)
        added = 0
        for event in events:
            if event.kind not in (EventKind.EXIT, EventKind.OOM):
                continue
            key = event_key(event)
            if key in self._seen:
                continue
            self._seen.add(key)
            table.add_row(*event_cells(event, human), key=key)
            added += 1
        return added
