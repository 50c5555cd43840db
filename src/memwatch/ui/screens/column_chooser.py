"""The column chooser (``c`` or F2, as htop's setup): every figure of the field registry, shown
or hidden, in the table's order.

The shown columns come first, numbered in the table's order; the hidden ones follow in the
registry's order. Space, Enter or a click shows or hides the highlighted one (a column shown
joins the end); Shift+Up/Down, ``[``/``]`` or the buttons move it. Every change replaces the
app's view state at once, so the table behind the dialog follows as the user chooses and the
settings file (when there is one) keeps the choice.

A figure the table cannot fill is marked rather than left to look like a zero: kernel figures
while eBPF is off, PSS/USS (read on demand only), and chosen columns a narrow terminal has no
room for.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from memwatch.fields import DEFAULT_COLUMNS, FIELDS, Field
from memwatch.ui import keys
from memwatch.ui.view_state import ViewState

if TYPE_CHECKING:
    from memwatch.ui.app import MemwatchApp

LABEL_WIDTH = 10
EBPF_OFF = "eBPF off: shows -"
ON_DEMAND = "read on demand"
NO_ROOM = "no room at this width"
NOTE_WIDTH = max(len(n) for n in (EBPF_OFF, ON_DEMAND, NO_ROOM)) + 3
"""The marks take a column of their own, so every line's title starts at the same place."""


def entry_order(columns: tuple[str, ...]) -> list[Field]:
    """Every field: the shown ones in the table's order, then the others in the registry's."""
    by_key = {f.key: f for f in FIELDS}
    return [by_key[k] for k in columns] + [f for f in FIELDS if f.key not in columns]


def entry_text(f: Field, columns: tuple[str, ...], *, tracer_on: bool, visible: tuple[str, ...],
               width: int = 0) -> Text:
    """One line of the chooser: place, check box, header, what it is, and a mark when the table
    cannot fill it; cut to ``width`` cells (when given) rather than wrapped."""
    shown = f.key in columns
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{columns.index(f.key) + 1:>2} " if shown else "   ", style="dim")
    text.append("[x] " if shown else "[ ] ", style="bold green" if shown else "dim")
    text.append(f"{f.label:<{LABEL_WIDTH}} ", style="bold" if shown else "")
    note = ""
    if f.needs_kernel and not tracer_on:
        note = EBPF_OFF
    elif f.source == "rollup":
        note = ON_DEMAND
    elif shown and f.key not in visible:
        note = NO_ROOM
    # before the title, so a narrow dialog cuts the title, not the warning
    text.append(f"({note}) ".ljust(NOTE_WIDTH) if note else " " * NOTE_WIDTH, style="yellow")
    text.append(f.title)
    if width > 0:
        text.truncate(width, overflow="ellipsis")
    return text


def keys_hint() -> Text:
    """The dialog's keys, from the key list."""
    text = Text()
    for row in keys.documented(("columns",)):
        text.append(keys.row_label(row), style="bold cyan")
        text.append(f" {row.what}\n", style="dim")
    text.rstrip()
    return text


class ColumnChooser(ModalScreen[None]):
    """Show, hide and order the table's columns; changes apply as they are made."""

    DEFAULT_CSS = """
    ColumnChooser { align: center middle; }
    ColumnChooser > Vertical { width: 100; max-width: 100%; height: 90%; border: thick $primary;
        background: $surface; padding: 0 1; }
    ColumnChooser #columns-title { height: 1; text-style: bold; }
    ColumnChooser OptionList { height: 1fr; }
    ColumnChooser #columns-keys { height: auto; margin-top: 1; }
    ColumnChooser Horizontal { height: auto; }
    ColumnChooser Button { margin-right: 1; min-width: 10; }
    """
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("columns")

    @property
    def memwatch(self) -> MemwatchApp:
        return cast("MemwatchApp", self.app)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.memwatch.view.columns

    @property
    def entries(self) -> OptionList:
        return self.query_one("#column-list", OptionList)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Columns: the table shows the checked ones, in this order", id="columns-title")
            yield OptionList(id="column-list")
            yield Static(keys_hint(), id="columns-keys")
            with Horizontal():
                yield Button("Show/hide", id="toggle")
                yield Button("▲ Up", id="up")
                yield Button("▼ Down", id="down")
                yield Button("Defaults", id="defaults")
                yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self._drawn_for: tuple[bool, tuple[str, ...], tuple[str, ...], int] | None = None
        self._fill(self.columns[0] if self.columns else None)
        self.entries.focus()
        # the marks follow the tracer (a recording's frames may differ) and the terminal's width
        self.watch(self.memwatch, "snapshot", self._refill_if_marks_moved, init=False)

    def on_resize(self) -> None:
        self.call_after_refresh(self._refill_if_marks_moved)

    def _marks(self) -> tuple[bool, tuple[str, ...], tuple[str, ...], int]:
        """What the lines depend on: the tracer, the columns, those with room, the lines' width."""
        snap = self.memwatch.snapshot
        tracer_on = snap is None or snap.tracer.enabled
        width = self.entries.scrollable_content_region.width - 1  # the scroll bar may come and go
        return tracer_on, self.columns, self.memwatch.dashboard.table.visible_columns, width

    def _refill_if_marks_moved(self, _snap: object = None) -> None:
        if self.is_mounted and self._marks() != self._drawn_for:
            self._fill(self.highlighted_key)

    @property
    def highlighted_key(self) -> str | None:
        """The field key of the highlighted line."""
        index = self.entries.highlighted
        if index is None:
            return None
        return self.entries.get_option_at_index(index).id

    def _fill(self, highlight: str | None) -> None:
        """Draw every line again and put the highlight on ``highlight`` (it may have moved)."""
        self._drawn_for = marks = self._marks()
        tracer_on, columns, visible, width = marks
        entries = self.entries
        entries.clear_options()
        entries.add_options([Option(entry_text(f, columns, tracer_on=tracer_on, visible=visible, width=width),
                                    id=f.key)
                             for f in entry_order(columns)])
        if highlight is not None:
            entries.highlighted = entries.get_option_index(highlight)

    def _change(self, view: ViewState) -> None:
        key = self.highlighted_key
        if view.columns == self.columns:
            if key is not None and key in self.columns and len(self.columns) == 1:
                self.notify("The table needs at least one column.", severity="warning")
            return
        self.memwatch.view = view
        self._fill(key)

    # ----- actions -----------------------------------------------------------------------------

    def action_toggle_column(self) -> None:
        key = self.highlighted_key
        if key is not None:
            self._change(self.memwatch.view.with_column_toggled(key))

    def action_move(self, delta: int) -> None:
        key = self.highlighted_key
        if key is None:
            return
        if key not in self.columns:
            self.notify("Show the column first (space), then move it.", severity="warning")
            return
        self._change(self.memwatch.view.with_column_moved(key, delta))

    def action_defaults(self) -> None:
        self._change(replace(self.memwatch.view, columns=DEFAULT_COLUMNS))

    # ----- mouse -------------------------------------------------------------------------------

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter, or a click on a line."""
        event.stop()
        self.action_toggle_column()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {"toggle": self.action_toggle_column, "up": lambda: self.action_move(-1),
                   "down": lambda: self.action_move(1), "defaults": self.action_defaults}
        if event.button.id == "close":
            self.dismiss()
            return
        actions[event.button.id or "toggle"]()
        self.entries.focus()
