"""The memory map tab: one process's mappings from /proc/PID/smaps, grouped by path or kind.

smaps walks every mapping under the target's mmap lock, so it is read only while this tab is
open, through the source (never /proc from here), in a worker with a time cap, every
``MAP_REFRESH_S``. Whatever happens the tab says so in its status line: reading, timed out,
permission denied, process has exited, not available in a replay; it never waits for good.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from memwatch.maps import Mapping, MemoryMap
from memwatch.model import ProcessKey
from memwatch.sources.base import InspectingSource
from memwatch.ui import formatting as fmt
from memwatch.ui import workers
from memwatch.ui.widgets.quiet_update import set_static

MAP_REFRESH_S = 5.0
MAP_TIMEOUT_S = 2.0
MAP_PER_GROUP = 12
"""Mappings listed under a group at most (the first by the sort column)."""
MAP_ROWS_MAX = 250
"""Table lines at most, about."""
GroupBy = Literal["path", "kind"]


@dataclass(frozen=True, slots=True)
class MapColumn:
    key: str
    label: str
    width: int
    value: Callable[[Mapping], float | str]
    """What a mapping is sorted by in this column."""
    figure: bool = True
    """A KB figure (summed over a group, right-aligned)."""


MAP_COLUMNS: tuple[MapColumn, ...] = (
    MapColumn("start", "RANGE", 25, lambda m: m.start, figure=False),
    MapColumn("perms", "PERM", 4, lambda m: m.perms, figure=False),
    MapColumn("name", "PATH OR KIND", 36, lambda m: m.path or f"[{m.kind}]", figure=False),
    MapColumn("size_kb", "SIZE", 9, lambda m: m.size_kb),
    MapColumn("rss_kb", "RSS", 9, lambda m: m.rss_kb),
    MapColumn("pss_kb", "PSS", 9, lambda m: m.pss_kb),
    MapColumn("swap_kb", "SWAP", 9, lambda m: m.swap_kb),
    MapColumn("anon_kb", "ANON", 9, lambda m: m.anon_kb),
    MapColumn("mapped", "MAPPED (UTC, TID)", 17, lambda m: m.mapped_at or 0.0, figure=False),
)
MAP_BY_KEY = {c.key: c for c in MAP_COLUMNS}
MAP_SORTS = ("rss_kb", "pss_kb", "swap_kb", "anon_kb", "size_kb", "start", "name")
"""What ``s`` cycles through, in order; a click on any of these headers sorts by it too."""
FIGURES = ("size_kb", "rss_kb", "pss_kb", "swap_kb", "anon_kb")


@dataclass(frozen=True, slots=True)
class MapGroup:
    """Mappings of one path (or kind) with their sums."""

    name: str
    kind: str
    members: tuple[Mapping, ...]

    def total(self, key: str) -> int:
        return sum(int(getattr(m, key)) for m in self.members)

    def sort_value(self, key: str) -> float | str:
        if key in FIGURES:
            return self.total(key)
        if key == "start":
            return min(m.start for m in self.members)
        if key == "name":
            return self.name
        return 0


def group_mappings(mm: MemoryMap, group_by: GroupBy, sort: str, descending: bool) -> list[MapGroup]:
    """Groups ranked by ``sort`` (their sum, or lowest address, or name), each group's mappings
    ranked the same way; ties keep address order."""
    by: dict[str, list[Mapping]] = {}
    for m in mm.mappings:
        by.setdefault((m.path or f"[{m.kind}]") if group_by == "path" else m.kind, []).append(m)
    column = MAP_BY_KEY[sort]
    groups = []
    for name, members in by.items():
        ordered = sorted(members, key=lambda m: m.start)
        ordered.sort(key=column.value, reverse=descending)
        groups.append(MapGroup(name, members[0].kind, tuple(ordered)))
    groups.sort(key=lambda g: g.name)
    groups.sort(key=lambda g: g.sort_value(sort), reverse=descending)
    return groups


def listed(groups: list[MapGroup], per_group: int = MAP_PER_GROUP, rows: int = MAP_ROWS_MAX,
           ) -> Iterator[tuple[str, MapGroup | Mapping | str, int]]:
    """The table's lines: each group, then its first ``per_group`` mappings and a line saying how
    many more it has, at most about ``rows`` lines, then a line for what did not fit. A table
    line costs the dashboard's thread about 0.1 ms (DataTable), and a process can have tens of
    thousands of mappings: the sums of every group, and the status line, still count them all."""
    used = 0
    for i, g in enumerate(groups):
        if used >= rows:
            yield "rest", f"{i}", sum(len(g.members) for g in groups[i:])
            return
        yield "group", g, 0
        shown = g.members[:max(1, min(per_group, rows - used - 1))]
        yield from (("mapping", m, 0) for m in shown)
        used += 1 + len(shown)
        if len(g.members) > len(shown):
            yield "in-group", g.name, len(g.members) - len(shown)
            used += 1


def _kb(kb: int, human: bool) -> Text:
    return Text(fmt.human_kb(kb) if human else str(kb), justify="right")


def _mapped(m: Mapping) -> Text:
    if m.mapped_at is None:
        return Text("")
    return Text(f"{fmt.utc_time(m.mapped_at)} {m.mapped_by}", style="dim")


def fit_path(text: str, width: int) -> str:
    """A path cut at the left to ``width`` cells: the file's name is what tells mappings apart."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def group_cells(g: MapGroup, group_by: GroupBy, human: bool) -> list[Text]:
    suffix = f" ({g.kind})" if group_by == "path" and g.name != f"[{g.kind}]" else ""
    name = Text(fit_path(fmt.printable(g.name), MAP_BY_KEY["name"].width - len(suffix)), style="bold")
    name.append(suffix, style="dim")
    count = len(g.members)
    cells = [Text(f"{count} mapping{'s' if count != 1 else ''}", style="bold"), Text(""), name]
    cells += [_kb(g.total(k), human) for k in FIGURES]
    return [*cells, Text("")]


def mapping_cells(m: Mapping, group_by: GroupBy, human: bool) -> list[Text]:
    label = m.kind if group_by == "path" else (m.path or f"[{m.kind}]")
    cells = [Text(f"{m.start:012x}-{m.end:012x}", style="dim"), Text(m.perms),
             Text("  " + fit_path(fmt.printable(label), MAP_BY_KEY["name"].width - 2))]
    cells += [_kb(int(getattr(m, k)), human) for k in FIGURES]
    return [*cells, _mapped(m)]


def map_summary(mm: MemoryMap, human: bool) -> str:
    def kb(n: int) -> str:
        return fmt.human_kb(n) if human else f"{n} KB"

    tot = {k: sum(int(getattr(m, k)) for m in mm.mappings) for k in FIGURES}
    return (f"{len(mm.mappings)} mappings, {kb(tot['size_kb'])} mapped: RSS {kb(tot['rss_kb'])}, "
            f"PSS {kb(tot['pss_kb'])}, swap {kb(tot['swap_kb'])}, anonymous {kb(tot['anon_kb'])}")


def read_failure(error: BaseException, timeout_s: float) -> str:
    """What the tab says when a read failed (the figures shown, if any, are the last read's)."""
    if isinstance(error, TimeoutError):
        return (f"timed out: smaps waits for the process's mmap lock and gave no answer within {timeout_s:g} s; "
                f"trying again every {MAP_REFRESH_S:g} s")
    if isinstance(error, ProcessLookupError):
        return "process has exited"
    if isinstance(error, PermissionError):
        return "permission denied: another user's memory map needs root (or CAP_SYS_PTRACE)"
    if isinstance(error, OSError):
        return f"cannot read its memory map: {fmt.printable(error.strerror or str(error))}"
    return f"cannot read its memory map: {fmt.printable(str(error))}"


class MemoryMapView(Vertical):
    """The memory map of one process, read while the tab is open."""

    DEFAULT_CSS = """
    MemoryMapView { height: 1fr; }
    MemoryMapView #map-status { height: auto; padding: 0 1; }
    MemoryMapView #map-table { height: 1fr; }
    """

    def __init__(self, key: ProcessKey, source: InspectingSource | None, unavailable: str, *,
                 id: str | None = None) -> None:
        """``source`` None: ``unavailable`` says why (a replay, a source with no process to look at)."""
        super().__init__(id=id)
        self.key = key
        self._source = source
        self.state = unavailable if source is None else "opens with the tab"
        """What the status line says about the read (empty: the figures are fresh)."""
        self.memory_map: MemoryMap | None = None
        self.group_by: GroupBy = "path"
        self.sort = "rss_kb"
        self.descending = True
        self.human = False
        self.active = False
        self.reads = 0
        """Reads finished, for tests."""
        self._reading = False
        self._gone = False

    def compose(self) -> ComposeResult:
        yield Static(self.state, id="map-status")
        yield DataTable(id="map-table", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        self._timer = self.set_interval(MAP_REFRESH_S, self._read_now, pause=True)
        self._draw()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#map-table", DataTable)

    def set_active(self, active: bool) -> None:
        """The tab was opened (read now, then every MAP_REFRESH_S) or left (no more reads)."""
        self.active = active
        if active and self.is_attached:
            self.table.focus()
        if active and self._source is not None and not self._gone:
            self._timer.resume()
            self._read_now()
        else:
            self._timer.pause()

    def process_gone(self) -> None:
        """The process exited: no more reads; what was read last stays, marked."""
        if self._gone or self._source is None:
            return
        self._gone = True
        self._timer.pause()
        self.state = "process has exited (the figures are from the last read)" if self.memory_map else \
            "process has exited"
        self._draw()

    def set_human(self, human: bool) -> None:
        if human != self.human:
            self.human = human
            self._draw(rebuild=True)

    def cycle_sort(self) -> None:
        i = MAP_SORTS.index(self.sort) if self.sort in MAP_SORTS else -1
        self.sort_by(MAP_SORTS[(i + 1) % len(MAP_SORTS)], toggle=False)

    def sort_by(self, key: str, toggle: bool = True) -> None:
        """Sort by column ``key``; the same column again reverses (``toggle``)."""
        if key not in MAP_SORTS:
            return
        if key == self.sort and toggle:
            self.descending = not self.descending
        else:
            self.sort, self.descending = key, key not in ("start", "name")
        self._draw(rebuild=True)

    def reverse(self) -> None:
        self.descending = not self.descending
        self._draw(rebuild=True)

    def toggle_group(self) -> None:
        self.group_by = "kind" if self.group_by == "path" else "path"
        self._draw(rebuild=True)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    # -- reading -----------------------------------------------------------------------------

    def _read_now(self) -> None:
        if self._source is None or self._reading or self._gone or not self.active:
            return
        self._reading = True
        if self.memory_map is None:
            self.state = f"reading /proc/{self.key[0]}/smaps…"
            self._draw()
        workers.start(self, self._read(self._source), name="memory-map", group=f"memory-map-{id(self)}",
                      description=f"reading the memory map of pid {self.key[0]}")

    async def _read(self, source: InspectingSource) -> None:
        try:
            # the source caps its own read; this cap is for one that does not
            async with asyncio.timeout(MAP_TIMEOUT_S + 1.0):
                mm: MemoryMap | None = await source.memory_map_of(self.key, MAP_TIMEOUT_S)
            state = ""
        except Exception as error:  # every failure is a state of the tab, shown, never raised
            mm, state = None, read_failure(error, MAP_TIMEOUT_S)
            if isinstance(error, ProcessLookupError):
                self._gone = True
        finally:
            self._reading = False
        if not self.is_attached:
            return
        self.reads += 1
        changed = mm is not None and mm != self.memory_map
        if mm is not None:
            self.memory_map = mm
        elif self.memory_map is not None and not self._gone:
            state += " (the figures are from the last read)"
        self.state = state
        if self._gone:
            self._timer.pause()
        self._draw(rebuild=changed)   # the same map again: the rows stay as they are

    # -- drawing -----------------------------------------------------------------------------

    def _draw(self, rebuild: bool = False) -> None:
        status = Text()
        mm = self.memory_map
        if mm is not None:
            status.append(map_summary(mm, self.human))
            arrow = "▼" if self.descending else "▲"
            sort = MAP_BY_KEY[self.sort].label.lower()
            status.append(f"   by {self.group_by}, sorted by {sort} {arrow}", style="dim")
        if self.state:
            if status:
                status.append("\n")
            status.append(self.state, style="yellow" if mm is not None or self._gone else "dim")
        set_static(self.query_one("#map-status", Static), status)
        table = self.table
        if table.display != (mm is not None):
            table.display = mm is not None
            if mm is not None and self.active:
                table.focus()   # hidden until now, so the tab's opening could not focus it
        if mm is not None and (rebuild or not table.row_count):
            self._fill(table, mm)

    def _fill(self, table: DataTable[Text], mm: MemoryMap) -> None:
        """Rows anew (the map changes little and seldom), the cursor kept on its row."""
        cursor = None
        if table.row_count:
            cursor = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear(columns=True)
        for c in MAP_COLUMNS:
            label = c.label + (" KB" if c.figure and not self.human else "")
            if c.key == self.sort:
                label += " ▼" if self.descending else " ▲"
            table.add_column(Text(label, justify="right" if c.figure else "left"), key=c.key, width=c.width)
        for kind, item, more in listed(group_mappings(mm, self.group_by, self.sort, self.descending)):
            if isinstance(item, MapGroup):
                table.add_row(*group_cells(item, self.group_by, self.human), key=f"g:{item.name}")
            elif isinstance(item, Mapping):
                table.add_row(*mapping_cells(item, self.group_by, self.human), key=f"m:{item.start:x}")
            else:
                what = f"… {more} more mapping{'s' if more != 1 else ''} not listed"
                what += " (in the sums above)" if kind == "in-group" else " in the groups ranked below these"
                table.add_row(Text(""), Text(""), Text(what, style="dim italic"), key=f"more:{kind}:{item}")
        if cursor is not None:
            with contextlib.suppress(RowDoesNotExist):  # that row is gone: the cursor stays at the top
                table.move_cursor(row=table.get_row_index(cursor), animate=False)
