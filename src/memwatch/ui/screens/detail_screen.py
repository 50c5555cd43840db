"""The detail pane full screen (Enter on a row); Escape returns to the table."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from memwatch.model import ProcessKey
from memwatch.ui.widgets.detail import DetailPane


class DetailScreen(Screen[None]):
    """One process, all its figures; the app keeps feeding it new snapshots."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("q", "app.pop_screen", "Back", show=False)]

    def __init__(self, key: ProcessKey) -> None:
        super().__init__()
        self.key = key

    def compose(self) -> ComposeResult:
        yield DetailPane(id="detail-full")
        yield Footer()

    @property
    def pane(self) -> DetailPane:
        return self.query_one(DetailPane)
