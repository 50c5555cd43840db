"""A list of exit/OOM events that draws only the lines on screen.

Textual's DataTable measures every cell of every row it is given; redrawn from a window of a
thousand exits each frame of a storm, that alone took a third of a second. This widget holds the
events as a plain list and builds the lines on screen when they are drawn, so a new window costs a
sort and a list, whatever its size.

It keeps the user's place: at the end (End, or moving down to the last row) it *follows*, the
cursor staying on the newest row as rows come; moving up (keys, click, wheel) stops that, and the
cursor then stays on its event while older events are trimmed above it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from memwatch.model import Event
from memwatch.ui import keys

Columns = Sequence[tuple[str, str, int]]
"""(key, header label, width) of each column."""
CellMaker = Callable[[Event, bool], list[Text]]
"""A row's cells (one Text per column) for an event, in KB or human units."""


def fit(cell: Text, width: int) -> Text:
    """``cell`` cut or padded to exactly ``width`` cells, as its justification asks."""
    text = cell.copy()
    text.truncate(width, overflow="ellipsis")
    gap = width - cell_len(text.plain)
    if gap > 0:
        if cell.justify == "right":
            text = Text(" " * gap) + text
        else:
            text.append(" " * gap)
    return text


class EventList(ScrollView, can_focus=True):
    """Rows of events under a fixed header; :meth:`fill` replaces them, keeping the user's place."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"event-list--header", "event-list--cursor"}
    DEFAULT_CSS = """
    EventList {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
        &:focus {
            background-tint: $foreground 5%;
            & > .event-list--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .event-list--header { text-style: bold; background: $panel; color: $foreground; }
        & > .event-list--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("event_table")

    def __init__(self, columns: Columns, cells: CellMaker, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._columns = tuple(columns)
        self._cells = cells
        self._events: list[Event] = []
        self._keys: list[str] = []
        self._human = False
        self.cursor_row = 0
        self.follow = True
        """The cursor stays on the last row as rows come (at the end, or opened so)."""
        self._lines: LRUCache[tuple[object, ...], Strip] = LRUCache(256)

    # ----- what the screen and tests read ---------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._events)

    @property
    def shown(self) -> list[Event]:
        """The events shown, top to bottom."""
        return list(self._events)

    @property
    def cursor_key(self) -> str | None:
        return self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None

    def row_cells(self, row: int) -> list[Text]:
        return self._make_cells(self._events[row])

    # ----- feeding it -----------------------------------------------------------------------------

    def fill(self, rows: Sequence[Event], keys_of_rows: Sequence[str], human: bool) -> None:
        """Show ``rows`` (filtered and sorted, with their identities) instead of the rows now."""
        old_key, old_row, old_top = self.cursor_key, self.cursor_row, round(self.scroll_y)
        if human != self._human:
            self._human = human
            self._lines.clear()
        self._events, self._keys = list(rows), list(keys_of_rows)
        self.virtual_size = Size(self.scrollable_content_region.width, len(rows) + 1)
        if self.follow:
            self.cursor_row = max(0, len(rows) - 1)
            self._scroll_to_row_end()
        else:
            row = self._keys.index(old_key) if old_key is not None and old_key in self._keys else old_row
            self.cursor_row = max(0, min(row, len(rows) - 1))
            # rows above may have gone (the oldest trimmed): the cursor keeps its place on screen
            self.scroll_to(y=max(0, old_top + self.cursor_row - old_row), animate=False, immediate=True)
        self.refresh()

    def _scroll_to_row_end(self) -> None:
        top = max(0, len(self._events) + 1 - self.scrollable_content_region.height)
        self.scroll_to(y=top, animate=False, immediate=True)

    # ----- cursor ---------------------------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def move_cursor(self, row: int) -> None:
        """Put the cursor on ``row`` (clamped), in view; following again only on the last row."""
        if not self._events:
            return
        self.cursor_row = max(0, min(row, len(self._events) - 1))
        self.follow = self.cursor_row == len(self._events) - 1
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + self._page:
            self.scroll_to(y=self.cursor_row - self._page + 1, animate=False, immediate=True)
        self.refresh()

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor_row - self._page)

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor_row + self._page)

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        """The last row, and follow the rows to come."""
        self.move_cursor(len(self._events) - 1)
        self.follow = True

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(round(self.scroll_y) + event.y - 1)

    def on_mouse_scroll_up(self, _event: events.MouseScrollUp) -> None:
        self.follow = False

    def on_resize(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._events) + 1)
        self._lines.clear()
        if self.follow:  # a taller or shorter view still ends at the newest row
            self._scroll_to_row_end()

    # ----- drawing ---------------------------------------------------------------------------------

    def _make_cells(self, event: Event) -> list[Text]:
        return self._cells(event, self._human)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            key: tuple[object, ...] = ("header", width, base)
        else:
            row = round(self.scroll_y) + y - 1
            if not 0 <= row < len(self._events):
                return Strip.blank(width, base)
            key = (self._keys[row], row == self.cursor_row, self.has_focus, self._human, width, base)
        strip = self._lines.get(key)
        if strip is None:
            strip = self._draw(y, width, base)
            self._lines[key] = strip
        return strip

    def _draw(self, y: int, width: int, base: Style) -> Strip:
        if y == 0:
            cells = [Text(label, justify="left") for _, label, _ in self._columns]
            style, post = base + self.get_component_rich_style("event-list--header"), None
        else:
            row = round(self.scroll_y) + y - 1
            cells = self._make_cells(self._events[row])
            style, post = base, None
            if row == self.cursor_row:
                cursor = self.get_component_rich_style("event-list--cursor")
                style += cursor
                post = Style.from_color(color=cursor.color)  # the cursor's colour wins, as in DataTable
        line = Text(" ")
        for (_, _, column_width), cell in zip(self._columns, cells, strict=True):
            line.append_text(fit(cell, column_width))
            line.append("  ")
        console = self.app.console
        lines = console.render_lines(line, console.options.update(width=max(width, 1), height=1, no_wrap=True,
                                                                  overflow="crop"), pad=True)
        segments = Segment.apply_style(lines[0] if lines else [], style, post)
        return Strip(list(segments), width).adjust_cell_length(width, style)
