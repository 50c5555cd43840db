"""The process screen (Enter on a row): its figures, its memory map and its allocation sites, in
tabs; Escape returns to the table.

The memory map is read and the allocation stacks captured only while their tab is open (both
cost the process something: smaps takes its mmap lock, a stack capture copies its stack at every
call), and the capture stops when the tab is left or the screen closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import Screen
from textual.widgets import TabbedContent, TabPane

from memwatch.model import ProcessKey, Snapshot
from memwatch.ui import keys
from memwatch.ui.view_state import ViewState
from memwatch.ui.widgets.alloc_sites import AllocationSites
from memwatch.ui.widgets.detail import DetailPane
from memwatch.ui.widgets.footer import KeyFooter
from memwatch.ui.widgets.memory_map import MemoryMapView

if TYPE_CHECKING:
    from memwatch.ui.app import MemwatchApp

TABS = ("figures", "map", "sites")


class DetailScreen(Screen[None]):
    """One process, all its figures, kept up to date by watching the app's snapshot and units."""

    ROOMS: ClassVar[tuple[keys.Room, ...]] = ("detail", "shared")
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("detail") + keys.bindings("shared")  # its own first

    DEFAULT_CSS = """
    DetailScreen #detail-tabs { height: 1fr; }
    DetailScreen #detail-tabs > ContentSwitcher { height: 1fr; }
    DetailScreen TabPane { height: 1fr; padding: 0; }
    """

    def __init__(self, key: ProcessKey, tab: str = "figures") -> None:
        super().__init__()
        self.key = key
        self.initial_tab = tab if tab in TABS else "figures"
        self._gone_by = 0.0

    def compose(self) -> ComposeResult:
        app = cast("MemwatchApp", self.app)
        looking, why_not = app.feed.inspecting()
        shown = app.snapshot.by_key.get(self.key) if app.snapshot is not None else None
        if looking is not None and shown is not None and shown.sample.kernel_thread:
            looking, why_not = None, "a kernel thread has no user memory: no memory map, no allocation stacks"
        with TabbedContent(id="detail-tabs", initial=self.initial_tab):
            with TabPane("Figures", id="figures"):
                yield DetailPane(id="detail-full", rollup=app.feed.source.rollup, replay=app.feed.replay is not None)
            with TabPane("Memory map", id="map"):
                yield MemoryMapView(self.key, looking, why_not, id="memory-map")
            with TabPane("Allocation sites", id="sites"):
                yield AllocationSites(self.key, looking, why_not or "eBPF off: allocation stacks need the tracer",
                                      id="alloc-sites")
        yield KeyFooter()

    def on_mount(self) -> None:
        app = cast("MemwatchApp", self.app)
        self.watch(app, "snapshot", self._refresh_pane, init=False)
        self.watch(app, "view", self._refresh_pane, init=False)
        self.call_after_refresh(self._refresh_pane)  # the screen's first frame first, as a key's

    @property
    def pane(self) -> DetailPane:
        return self.query_one(DetailPane)

    @property
    def memory_map(self) -> MemoryMapView:
        return self.query_one(MemoryMapView)

    @property
    def sites(self) -> AllocationSites:
        return self.query_one(AllocationSites)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id
        self.memory_map.set_active(tab == "map")
        self.sites.set_active(tab == "sites")

    def action_show_tab(self, tab: str) -> None:
        if tab in TABS:
            self.query_one(TabbedContent).active = tab

    def _map_tab_open(self) -> bool:
        return self.query_one(TabbedContent).active == "map"

    def action_map_sort(self) -> None:
        if self._map_tab_open():
            self.memory_map.cycle_sort()

    def action_map_reverse(self) -> None:
        if self._map_tab_open():
            self.memory_map.reverse()

    def action_map_group(self) -> None:
        if self._map_tab_open():
            self.memory_map.toggle_group()

    def _refresh_pane(self, _changed: Snapshot | ViewState | None = None) -> None:
        app = cast("MemwatchApp", self.app)
        snap = app.snapshot
        human = app.view.human
        self.memory_map.set_human(human)
        self.sites.set_human(human)
        if snap is None:
            return
        view = snap.by_key.get(self.key)
        last = self.pane.shown_view
        if view is None and last is not None and last.key == self.key:  # it exited: keep its last figures
            gone_by = self._gone_by if self.pane.exited else snap.timestamp
            self._gone_by = gone_by
            self.pane.show_exited(last, human, app.events.exit_of(self.key), gone_by)
        else:
            self.pane.show(snap.current(view) if view is not None else None, human, snap.timestamp,
                           snap.interval_s, app.interval_since)
        if view is None and app.feed.replay is None:
            self.memory_map.process_gone()
            self.sites.process_gone()
