"""The process table: a small line-based widget that re-renders only what changed.

Textual's DataTable keys its render caches on one table-wide counter, so any update re-renders
every visible cell; for a table that changes a little every tick that was most of the dashboard's
CPU. This widget keeps the state a monitor needs and nothing more:

* rows are process keys (``"pid:start_ticks"``) in the order the snapshot ranked them; sorting is
  reordering that list, a new frame is a new list plus the views behind it;
* cells (``rich.text.Text``, so a name like ``[red]x`` is literal) are built lazily, only for rows
  that are drawn or asked for, and only again when that row's view changed;
* each drawn line is cached by what it shows (its cells' fingerprints, cursor and hover state and
  the styles of this render), and :meth:`show` refreshes only the screen lines whose picture
  changed, so a frame in which nothing visible changed costs a comparison per visible row;
* the header is drawn on line 0 and never scrolls; columns have fixed widths and are dropped by
  priority when the terminal is narrow (see :mod:`memwatch.ui.columns`).

The cursor follows its process across frames and re-sorts. Keys: up/down, PgUp/PgDn, Home/End,
Enter (select). Mouse: click a header to sort by it, click a row to highlight it, click the
highlighted row to select it. The look (header, cursor, hover) copies DataTable's default CSS.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from memwatch.fields import DEFAULT_COLUMNS
from memwatch.model import ProcessView
from memwatch.ui import keys
from memwatch.ui.columns import BY_KEY, ColumnSpec, column_cost, fit_columns, header_label, row_cells

CELL_PADDING = 1
# Sized to a frame or two of the top 100 rows (lines: with and without the cursor; bodies: one per
# cell): every cached Strip carries seven small caches of its own, and a cache far larger than
# what one frame can reuse only gives the garbage collector more to walk.
LINE_CACHE_SIZE = 400
BODY_CACHE_SIZE = 4000
TextPrint = tuple[object, ...]
RowPrint = tuple[TextPrint, ...]


@lru_cache(maxsize=64)
def column_meta(column: int) -> Style:
    """Style metadata naming a column (shared, so equal styles stay equal and hash fast)."""
    return Style.from_meta({"column": column})


def row_key_of(view: ProcessView) -> str:
    """The table row key of a process: pid alone is not an identity."""
    return f"{view.sample.pid}:{view.sample.start_ticks}"


def text_print(text: Text) -> TextPrint:
    """Everything about a Text that changes how it renders, as a hashable key."""
    return (text.plain, text.style, tuple(text.spans), text.justify)


def cell_body(text: Text, width: int, console: Console) -> list[Segment]:
    """A one-line cell exactly ``width`` cells wide, as Rich would draw the Text in that width
    (justified, first line only). Plain single-style text that fits is drawn directly; anything
    else (spans, wide characters, too long) goes through Rich."""
    plain = text.plain
    used = cell_len(plain)
    if not text.spans and used <= width:
        style = console.get_style(text.style) if isinstance(text.style, str) else text.style
        gap = " " * (width - used)
        body = gap + plain if text.justify == "right" else plain + gap
        return [Segment(body, style)]
    lines = console.render_lines(text, console.options.update(width=width, height=1, no_wrap=True,
                                                              overflow="crop"), pad=True)
    return list(lines[0]) if lines else [Segment(" " * width)]


class ProcessTable(ScrollView, can_focus=True):
    """Top processes; call :meth:`show` with the ranked views of each frame."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "process-table--header", "process-table--cursor", "process-table--hover",
        "process-table--header-hover", "process-table--tagged",
    }
    DEFAULT_CSS = """
    ProcessTable {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
        &:focus {
            background-tint: $foreground 5%;
            & > .process-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .process-table--header { background-tint: $foreground 5%; }
        }
        & > .process-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .process-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .process-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .process-table--hover { background: $block-hover-background; }
        & > .process-table--header-hover { background: $accent 30%; }
        & > .process-table--tagged { color: $warning; text-style: bold; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("table")

    class _TableMessage(Message):
        """A message from a ProcessTable; ``control`` lets handlers match on the widget."""

        def __init__(self, table: ProcessTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> ProcessTable:
            return self.table

    class RowHighlighted(_TableMessage):
        """The cursor moved to another process (``key`` None: the table is empty); ``by_user``:
        moved by a key or a click, not because its row went (the process exited) in a new frame."""

        def __init__(self, table: ProcessTable, key: str | None, by_user: bool = False) -> None:
            super().__init__(table)
            self.key = key
            self.by_user = by_user

    class RowSelected(_TableMessage):
        """Enter on a row, or a click on the highlighted row."""

        def __init__(self, table: ProcessTable, key: str) -> None:
            super().__init__(table)
            self.key = key

    class HeaderSelected(_TableMessage):
        """A column header was clicked; ``column`` is its ColumnSpec."""

        def __init__(self, table: ProcessTable, column: ColumnSpec) -> None:
            super().__init__(table)
            self.column = column

    def __init__(self, *, columns: Sequence[str] = DEFAULT_COLUMNS, id: str | None = None) -> None:
        super().__init__(id=id)
        self._columns: tuple[ColumnSpec, ...] = tuple(BY_KEY[key] for key in columns)
        self._specs: tuple[ColumnSpec, ...] = fit_columns(10_000, CELL_PADDING, self._columns)
        self._fit_width = -1
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._views: dict[str, ProcessView] = {}
        self._cells: dict[str, tuple[ProcessView, list[Text], RowPrint]] = {}
        self._human = False
        self._sort = "rss"
        self._descending = True
        self.cursor_row = 0
        self._hover_row: int | None = None  # -1: the header
        self._show_hover = False
        self._styles: tuple[Style, ...] = ()
        self._lines: LRUCache[tuple[object, ...], Strip] = LRUCache(LINE_CACHE_SIZE)
        self._bodies: LRUCache[tuple[object, ...], list[Segment]] = LRUCache(BODY_CACHE_SIZE)
        self._drawn: dict[int, tuple[object, ...]] = {}
        self._tagged: frozenset[str] = frozenset()

    # ----- what the app and the tests read ------------------------------------------------------

    @property
    def columns(self) -> tuple[str, ...]:
        """Field keys of the columns asked for, in order (a narrow terminal shows fewer)."""
        return tuple(spec.key for spec in self._columns)

    @columns.setter
    def columns(self, keys: Sequence[str]) -> None:
        columns = tuple(BY_KEY[key] for key in keys)  # KeyError: no such field
        if columns != self._columns:
            self._columns = columns
            self._fit_width = -1
            self.fit_to_width()
            self.refresh()

    @property
    def visible_columns(self) -> tuple[str, ...]:
        """Keys of the columns on screen, in order (what the current width allows)."""
        return tuple(s.key for s in self._specs)

    @property
    def row_order(self) -> list[str]:
        """Row keys top to bottom as last shown."""
        return list(self._order)

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def current_key(self) -> str | None:
        """Row key under the cursor, or None when the table is empty."""
        if 0 <= self.cursor_row < len(self._order):
            return self._order[self.cursor_row]
        return None

    @property
    def current_view(self) -> ProcessView | None:
        """The process under the cursor, as the table was last given it."""
        key = self.current_key
        return self._views.get(key) if key is not None else None

    def get_cell(self, row_key: str, column: str) -> Text:
        """The Text a visible column shows for a row (KeyError for an unknown row or column)."""
        keys = self.visible_columns
        if column not in keys:
            raise KeyError(column)
        return self._row(row_key)[0][keys.index(column)]

    def header_text(self, column: str) -> Text:
        """The header label of a column as drawn (unit and sort arrow included)."""
        spec = next(s for s in self._specs if s.key == column)
        return header_label(spec, self._sort, self._descending, self._human)

    def column_at(self, x: int) -> ColumnSpec | None:
        """The column under screen column ``x`` (padding included), or None past the last."""
        left = 0
        for spec in self._specs:
            left += column_cost(spec, CELL_PADDING)
            if x < left:
                return spec
        return None

    @property
    def tagged(self) -> frozenset[str]:
        """Row keys of the tagged processes (marked with a ``*`` before the first column)."""
        return self._tagged

    # ----- feeding it ---------------------------------------------------------------------------

    def set_tagged(self, row_keys: frozenset[str]) -> None:
        """Mark these rows (tagged processes); only lines whose mark changed are redrawn."""
        if row_keys != self._tagged:
            self._tagged = row_keys
            self._refresh_changed_lines()

    def set_presentation(self, *, sort: str, descending: bool, human: bool) -> None:
        """Sort column, direction and units; the caller re-ranks and calls :meth:`show`."""
        if (sort, descending, human) == (self._sort, self._descending, self._human):
            return
        units_changed = human != self._human
        self._sort, self._descending, self._human = sort, descending, human
        if units_changed:
            self._cells.clear()
            self.refresh()
        else:
            self._refresh_screen_line(0)  # the header's arrow moved

    def show(self, views: Sequence[ProcessView]) -> None:
        """Show ``views`` (already ranked) keeping the cursor on its process and the scroll where it
        was; only screen lines whose picture changed are redrawn."""
        followed = self.current_key
        self._order = [self.row_key(v) for v in views]
        self._index = {k: i for i, k in enumerate(self._order)}
        self._views = dict(zip(self._order, views, strict=True))
        for gone in [k for k in self._cells if k not in self._views]:
            del self._cells[gone]
        if followed is not None and followed in self._index:
            self.cursor_row = self._index[followed]
        else:
            self.cursor_row = max(0, min(self.cursor_row, len(self._order) - 1))
        self._update_virtual_size()
        scrolled = self._scroll_cursor_into_view()
        if not scrolled:
            self._refresh_changed_lines()
        if self.current_key != followed:
            self.post_message(self.RowHighlighted(self, self.current_key))

    def row_key(self, view: ProcessView) -> str:
        """The key a row is followed by across frames (a subclass that shows other rows says its own)."""
        return row_key_of(view)

    # ----- cursor and scrolling -----------------------------------------------------------------

    @property
    def _page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def move_cursor(self, row: int) -> None:
        """Put the cursor on ``row`` (clamped), scroll it into view and say so if it moved."""
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        old = self.cursor_row
        if row == old:
            return
        self.cursor_row = row
        if not self._scroll_cursor_into_view():
            self._refresh_rows(old, row)
        self.post_message(self.RowHighlighted(self, self.current_key, by_user=True))

    def _scroll_cursor_into_view(self) -> bool:
        """Scroll so the cursor row is on screen; True if the view scrolled (a full redraw)."""
        top = round(self.scroll_y)
        page = self._page_rows
        if self.cursor_row < top:
            target = self.cursor_row
        elif self.cursor_row >= top + page:
            target = self.cursor_row - page + 1
        else:
            return False
        self.scroll_to(y=target, animate=False, immediate=True)
        self.refresh()
        return True

    def action_cursor_up(self) -> None:
        self._show_hover = False
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self._show_hover = False
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self._show_hover = False
        self.move_cursor(self.cursor_row - self._page_rows)

    def action_page_down(self) -> None:
        self._show_hover = False
        self.move_cursor(self.cursor_row + self._page_rows)

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._order) - 1)

    def action_select_cursor(self) -> None:
        key = self.current_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    # ----- mouse --------------------------------------------------------------------------------

    def _row_at(self, y: int) -> int | None:
        """-1 for the header, a row index, or None below the last row."""
        if y == 0:
            return -1
        row = round(self.scroll_y) + y - 1
        return row if 0 <= row < len(self._order) else None

    def on_click(self, event: events.Click) -> None:
        row = self._row_at(event.y)
        if row is None:
            return
        event.stop()
        if row == -1:
            spec = self.column_at(event.x + round(self.scroll_x))
            if spec is not None:
                self.post_message(self.HeaderSelected(self, spec))
        elif row == self.cursor_row:
            self.action_select_cursor()
        else:
            self.move_cursor(row)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        self._show_hover = True
        self._set_hover(self._row_at(event.y))

    def on_leave(self, event: events.Leave) -> None:
        self._set_hover(None)

    def _set_hover(self, row: int | None) -> None:
        if row != self._hover_row:
            old, self._hover_row = self._hover_row, row
            self._refresh_rows(old, row)

    # ----- layout -------------------------------------------------------------------------------

    def on_resize(self) -> None:
        self.fit_to_width()
        self._update_virtual_size()
        self.refresh()

    def fit_to_width(self) -> None:
        """Choose the columns that fit the width; re-render only when the choice changes."""
        width = self.size.width
        if width <= 0 or width == self._fit_width:
            return
        self._fit_width = width
        specs = fit_columns(width - 1, CELL_PADDING, self._columns)
        if specs != self._specs:
            self._specs = specs
            self._cells.clear()

    def _update_virtual_size(self) -> None:
        size = Size(self.scrollable_content_region.width, len(self._order) + 1)
        if size != self.virtual_size:
            self.virtual_size = size

    # ----- rendering ----------------------------------------------------------------------------

    def _row(self, key: str) -> tuple[list[Text], RowPrint]:
        """A row's cells and their fingerprint, rebuilt only when its view changed."""
        view = self._views[key]
        cached = self._cells.get(key)
        if cached is not None and cached[0] is view:
            return cached[1], cached[2]
        cells = row_cells(view, self._specs, self._human)
        prints = tuple(text_print(c) for c in cells)
        self._cells[key] = (view, cells, prints)
        return cells, prints

    def _line_key(self, row: int) -> tuple[object, ...]:
        """What a screen line shows; equal keys draw equal lines."""
        hover = self._show_hover and self._hover_row == row
        width = self.scrollable_content_region.width
        if row == -1:
            return ("header", self._specs, self._sort, self._descending, self._human, hover, self._styles,
                    width)
        if not 0 <= row < len(self._order):
            return ("blank", self._styles, width)
        key = self._order[row]
        return ("row", self._row(key)[1], row == self.cursor_row, hover, key in self._tagged, self._styles, width)

    def _screen_row(self, y: int) -> int:
        return -1 if y == 0 else round(self.scroll_y) + y - 1

    def _refresh_rows(self, *rows: int | None) -> None:
        top = round(self.scroll_y)
        for row in rows:
            if row is None:
                continue
            y = 0 if row == -1 else row - top + 1
            if 0 <= y < self.size.height:
                self._refresh_screen_line(y)

    def _refresh_screen_line(self, y: int) -> None:
        self.refresh(Region(0, y, self.size.width, 1))

    def _refresh_changed_lines(self) -> None:
        """Refresh the screen lines whose key differs from what was last drawn there."""
        dirty = [y for y in range(self.size.height)
                 if self._drawn.get(y) != self._line_key(self._screen_row(y))]
        if len(dirty) > self.size.height // 2:
            self.refresh()
            return
        for y in dirty:
            self._refresh_screen_line(y)

    def _current_styles(self) -> tuple[Style, ...]:
        get = self.get_component_rich_style
        return (self.rich_style, get("process-table--header"), get("process-table--cursor"),
                get("process-table--hover"), get("process-table--header-hover"), get("process-table--tagged"))

    def render_lines(self, crop: Region) -> list[Strip]:
        styles = self._current_styles()
        if styles != self._styles:
            self._styles = styles
            self._drawn.clear()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        key = self._line_key(self._screen_row(y))
        self._drawn[y] = key
        strip = self._lines.get(key)
        if strip is None:
            strip = self._draw_row(self._screen_row(y))
            self._lines[key] = strip
        return strip

    def _cell_segments(self, spec: ColumnSpec, cell: Text) -> list[Segment]:
        """One cell with its padding and lead. A header wider than its column (the sort arrow,
        see columns.ARROW_ROOM) takes the padding on its justified side. Each cell carries its
        column in the style's metadata, as DataTable's cells do: it keeps cells apart as separate
        runs (exports draw each cell where it belongs)."""
        extra = min(max(cell_len(cell.plain) - spec.width, 0), CELL_PADDING)
        body = cell_body(cell, spec.width + extra, self.app.console)
        left = spec.lead + CELL_PADDING - (extra if spec.justify == "right" else 0)
        right = CELL_PADDING - (0 if spec.justify == "right" else extra)
        return [Segment(" " * left), *body, Segment(" " * right)]

    def _draw_row(self, row: int) -> Strip:
        base, header, cursor, hover, header_hover, tagged = self._styles or self._current_styles()
        mark = False
        width = self.scrollable_content_region.width
        if not 0 <= row < len(self._order) and row != -1:
            return Strip.blank(width, base)
        post = Style.null()
        if row == -1:
            cells = [header_label(s, self._sort, self._descending, self._human) for s in self._specs]
            prints = tuple(text_print(c) for c in cells)
            pre = header
            if self._show_hover and self._hover_row == -1:
                pre += hover + header_hover
        else:
            cells, prints = self._row(self._order[row])
            pre = base
            mark = self._order[row] in self._tagged
            if mark:
                pre += tagged
            if self._show_hover and self._hover_row == row:
                pre += hover
            if row == self.cursor_row:
                pre += cursor
                post = Style.from_color(color=cursor.color)  # the cursor's colour wins, as in DataTable
        line: list[Segment] = []
        for column, (spec, cell, fingerprint) in enumerate(zip(self._specs, cells, prints, strict=True)):
            key = (fingerprint, spec.width, spec.lead, spec.justify, column, pre, post)
            styled = self._bodies.get(key)
            if styled is None:
                styled = list(Segment.apply_style(self._cell_segments(spec, cell), pre + column_meta(column), post))
                self._bodies[key] = styled
            line.extend(styled)
        if mark and line:  # the padding before the first column carries the mark
            first = line[0]
            line[0] = Segment("*" + first.text[1:], first.style)
        used = sum(column_cost(s, CELL_PADDING) for s in self._specs)
        if used < width:
            line.append(Segment(" " * (width - used), pre))
            return Strip(line, width)
        return Strip(line).crop(0, width)
