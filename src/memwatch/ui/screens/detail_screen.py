"""The detail pane full screen (Enter on a row); Escape returns to the table."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import Screen

from memwatch.model import ProcessKey, Snapshot
from memwatch.ui import keys
from memwatch.ui.view_state import ViewState
from memwatch.ui.widgets.detail import DetailPane
from memwatch.ui.widgets.footer import KeyFooter

if TYPE_CHECKING:
    from memwatch.ui.app import MemwatchApp


class DetailScreen(Screen[None]):
    """One process, all its figures, kept up to date by watching the app's snapshot and units."""

    ROOMS: ClassVar[tuple[keys.Room, ...]] = ("detail", "shared")
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("detail") + keys.bindings("shared")  # its own first

    def __init__(self, key: ProcessKey) -> None:
        super().__init__()
        self.key = key
        self._gone_by = 0.0

    def compose(self) -> ComposeResult:
        app = cast("MemwatchApp", self.app)
        yield DetailPane(id="detail-full", rollup=app.feed.source.rollup, replay=app.feed.replay is not None)
        yield KeyFooter()

    def on_mount(self) -> None:
        app = cast("MemwatchApp", self.app)
        self.watch(app, "snapshot", self._refresh_pane, init=False)
        self.watch(app, "view", self._refresh_pane, init=False)
        self.call_after_refresh(self._refresh_pane)  # the screen's first frame first, as a key's

    @property
    def pane(self) -> DetailPane:
        return self.query_one(DetailPane)

    def _refresh_pane(self, _changed: Snapshot | ViewState | None = None) -> None:
        app = cast("MemwatchApp", self.app)
        snap = app.snapshot
        if snap is None:
            return
        view = snap.by_key.get(self.key)
        last = self.pane.shown_view
        if view is None and last is not None and last.key == self.key:  # it exited: keep its last figures
            gone_by = self._gone_by if self.pane.exited else snap.timestamp
            self._gone_by = gone_by
            self.pane.show_exited(last, app.view.human, app.events.exit_of(self.key), gone_by)
        else:
            self.pane.show(view, app.view.human, snap.timestamp, snap.interval_s, app.interval_since)
