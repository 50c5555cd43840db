"""The process table: a DataTable that is patched, never cleared, on every snapshot.

Rows are keyed by ``"pid:start_ticks"``; each frame removes the rows of processes that left, adds
the newcomers, updates only the cells whose text changed, re-sorts once to the order the snapshot
ranked, and puts the cursor back on the process it was on. Column widths are fixed so nothing is
re-measured per tick. Columns are only rebuilt when the terminal width changes which ones fit.

Rendering is kept proportional to what changed. DataTable keys all its render caches on one
table-wide update counter, so a single ``update_cell`` (or a sort, or a cursor move for the row
cache) makes it re-render every visible cell through Rich, which is most of the dashboard's CPU.
This table adds two caches keyed on a per-row version instead: rendered cells and rendered row
lines survive frames in which their row did not change, and a reordered row reuses its cells with
only the row/column mouse metadata swapped in. They rely on DataTable's ``_render_cell`` and
``_render_line_in_row`` hooks (textual 8.2); the misses still go through DataTable's own code.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from memwatch.model import ProcessView
from memwatch.ui.columns import COLUMNS, ColumnSpec, fit_columns, header_label, row_cells

CellFingerprint = tuple[str, str]
SegmentLines = list[list[Segment]]
CELL_CACHE_SIZE = 8000
ROW_CACHE_SIZE = 1000
REBUILD_AFTER_REMOVALS = 10


def row_key_of(view: ProcessView) -> str:
    """The table row key of a process: pid alone is not an identity."""
    return f"{view.sample.pid}:{view.sample.start_ticks}"


def _fingerprint(cell: Text) -> CellFingerprint:
    return (cell.plain, str(cell.style))


TextFingerprint = tuple[object, ...]


def text_fingerprint(text: Text) -> TextFingerprint:
    """Everything about a Text that changes how it renders, as a hashable key."""
    return (text.plain, text.style, tuple(text.spans), text.justify, text.overflow, text.no_wrap)


def text_body_segments(text: Text, width: int, console: Console) -> list[Segment] | None:
    """The segments Rich renders for a one-line Text justified in ``width`` cells (no wrap), or None
    when the text needs Rich's general path (several lines, too wide, centred or full justify)."""
    if "\n" in text.plain or text.cell_len > width or text.justify not in (None, "default", "left", "right"):
        return None
    line = text.copy()
    if text.justify == "right":
        line.rstrip()
        line.pad_left(width - line.cell_len)
    elif text.justify == "left":
        line.pad_right(width - line.cell_len)
    line = Text("\n").join([line])  # as Rich does: the base style becomes a span
    segments = [segment for segment in line.render(console, end="") if segment.text]
    gap = width - line.cell_len
    if gap:
        segments.append(Segment(" " * gap, Style.null()))
    return segments


class ProcessTable(DataTable[Text]):
    """Top processes; call :meth:`show` with the ranked views of each frame."""

    DEFAULT_CSS = """
    ProcessTable { scrollbar-size-vertical: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=1)
        self._specs: tuple[ColumnSpec, ...] = ()
        self._cells: dict[str, list[CellFingerprint]] = {}
        self._order: list[str] = []
        self._views: list[ProcessView] = []
        self._human = False
        self._sort = "rss"
        self._descending = True
        self._fit_width = -1
        # Render caches keyed on per-row versions (see the module docstring).
        self._version_counter = 0
        self._row_versions: dict[RowKey, int] = {}
        self._style_epoch = 0
        self._cell_lines: LRUCache[tuple[object, ...], SegmentLines] = LRUCache(CELL_CACHE_SIZE)
        self._row_lines: LRUCache[tuple[object, ...], tuple[SegmentLines, SegmentLines]] = LRUCache(
            ROW_CACHE_SIZE)
        self._position_styles: dict[tuple[int, int], Style] = {}
        self._text_bodies: LRUCache[tuple[TextFingerprint, int], list[Segment]] = LRUCache(CELL_CACHE_SIZE)
        self._cell_prints: dict[tuple[RowKey, ColumnKey], TextFingerprint] = {}

    @property
    def visible_columns(self) -> tuple[str, ...]:
        """Keys of the columns on screen, in order (what the current width allows)."""
        return tuple(s.key for s in self._specs)

    @property
    def row_order(self) -> list[str]:
        """Row keys top to bottom as last shown."""
        return list(self._order)

    @property
    def current_key(self) -> str | None:
        """Row key under the cursor, or None when the table is empty."""
        if not self._order or not self.is_valid_row_index(self.cursor_row):
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value

    def on_mount(self) -> None:
        self._rebuild_columns(fit_columns(10_000))

    def on_resize(self) -> None:
        self.fit_to_width()

    def fit_to_width(self) -> None:
        """Choose the columns that fit; rebuild only when the choice changes."""
        width = self.size.width
        if width <= 0 or width == self._fit_width:
            return
        self._fit_width = width
        specs = fit_columns(width - 1, self.cell_padding)
        if specs != self._specs:
            self._rebuild_columns(specs)

    def set_presentation(self, *, sort: str, descending: bool, human: bool) -> None:
        """Sort column, direction and units; the caller re-ranks and calls :meth:`show`."""
        units_changed = human != self._human
        self._sort, self._descending, self._human = sort, descending, human
        self._relabel()
        if units_changed:
            self._refresh_all_cells()

    def show(self, views: Sequence[ProcessView]) -> None:
        """Patch the table to ``views`` (already ranked) keeping the cursor on its process."""
        followed = self.current_key
        old_top = self.scroll_y
        self._views = list(views)
        wanted = [row_key_of(v) for v in views]
        wanted_set = set(wanted)
        leaving = [k for k in self._cells if k not in wanted_set]
        if len(leaving) > REBUILD_AFTER_REMOVALS:
            self._replace_rows(views, wanted, followed, old_top)
            return
        for key in leaving:
            self.remove_row(key)
            del self._cells[key]
        for view, key in zip(views, wanted, strict=True):
            cells = row_cells(view, self._specs, self._human)
            prints = [_fingerprint(c) for c in cells]
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
            else:
                for spec, cell, new_print, old_print in zip(self._specs, cells, prints, old, strict=True):
                    if new_print != old_print:
                        self.update_cell(key, spec.key, cell)
            self._cells[key] = prints
        if wanted != self._order:
            rank = {k: i for i, k in enumerate(wanted)}
            self._apply_order(rank)
            self._order = wanted
        self._restore_cursor(followed, old_top)

    def _replace_rows(self, views: Sequence[ProcessView], wanted: list[str], followed: str | None,
                      old_top: float) -> None:
        """Most rows leave (a new sort column, a filter): refill in rank order instead.

        DataTable.remove_row re-indexes every row, so removing many one by one is quadratic; a
        cleared table refilled in order needs no sort either. The cursor keeps its process if it
        is still shown, otherwise its screen position, as row removals would.
        """
        old_row = self.cursor_row
        self.clear()
        self._cells.clear()
        for view, key in zip(views, wanted, strict=True):
            cells = row_cells(view, self._specs, self._human)
            self.add_row(*cells, key=key)
            self._cells[key] = [_fingerprint(c) for c in cells]
        self._order = wanted
        if followed is not None and followed in self._cells:
            self._restore_cursor(followed, old_top)
        elif wanted:
            self.scroll_to(y=old_top, animate=False, immediate=True)
            self.move_cursor(row=min(old_row, len(wanted) - 1), scroll=True)

    def _apply_order(self, rank: dict[str, int]) -> None:
        """Reorder rows to ``rank`` with DataTable.sort, keyed by each row's PID+NAME cells."""
        pid_rank: dict[tuple[str, str], int] = {}
        for key, index in rank.items():
            cells = self._cells[key]
            pid_rank[(cells[0][0], cells[1][0])] = index
        self.sort("pid", "name", key=lambda pair: pid_rank.get((pair[0].plain, pair[1].plain), len(rank)))

    def _restore_cursor(self, followed: str | None, old_top: float) -> None:
        if followed is None or followed not in self._cells:
            return
        index = self.get_row_index(followed)
        if index != self.cursor_row:
            self.scroll_to(y=old_top, animate=False, immediate=True)
            self.move_cursor(row=index, scroll=True)

    def _rebuild_columns(self, specs: tuple[ColumnSpec, ...]) -> None:
        """Width changed which columns fit: the one time the table is rebuilt from scratch."""
        followed = self.current_key
        self.clear(columns=True)
        self._cells.clear()
        self._order = []
        self._specs = specs
        for spec in specs:
            self.add_column(header_label(spec, self._sort, self._descending, self._human),
                            width=spec.width, key=spec.key)
        if self._views:
            self.show(self._views)
            if followed in self._cells:
                self.move_cursor(row=self.get_row_index(followed))

    def _relabel(self) -> None:
        """New header labels; only the header row is re-rendered, and only if a label changed."""
        changed = False
        for spec in self._specs:
            column = self.columns.get(ColumnKey(spec.key))
            if column is None:
                continue
            label = header_label(spec, self._sort, self._descending, self._human)
            if label.plain != column.label.plain or label.spans != column.label.spans:
                column.label = label
                changed = True
        if changed:
            self._bump_row(self._header_row_key)
            self._update_count += 1  # DataTable's own caches hold the old header strips
            self.refresh()

    # ----- render caches (see the module docstring) -------------------------------------------------

    def _bump_row(self, row_key: RowKey) -> None:
        self._version_counter += 1
        self._row_versions[row_key] = self._version_counter

    def add_row(self, *cells: Text, height: int | None = 1, key: str | None = None,
                label: Text | str | None = None) -> RowKey:
        row_key = super().add_row(*cells, height=height, key=key, label=label)
        if height == 1:  # fixed widths and height: nothing for DataTable to measure when idle
            self._new_rows.discard(row_key)
        for column, cell in zip(self.ordered_columns, cells, strict=False):
            self._cell_prints[(row_key, column.key)] = text_fingerprint(cell)
        self._bump_row(row_key)
        return row_key

    def update_cell(self, row_key: RowKey | str, column_key: ColumnKey | str, value: Text, *,
                    update_width: bool = False) -> None:
        super().update_cell(row_key, column_key, value, update_width=update_width)
        row_key = row_key if isinstance(row_key, RowKey) else RowKey(row_key)
        column_key = column_key if isinstance(column_key, ColumnKey) else ColumnKey(column_key)
        self._cell_prints[(row_key, column_key)] = text_fingerprint(value)
        self._bump_row(row_key)

    def remove_row(self, row_key: RowKey | str) -> None:
        super().remove_row(row_key)
        row_key = row_key if isinstance(row_key, RowKey) else RowKey(row_key)
        self._row_versions.pop(row_key, None)
        for column_key in self.columns:
            self._cell_prints.pop((row_key, column_key), None)

    def clear(self, columns: bool = False) -> ProcessTable:
        super().clear(columns)
        self._cell_prints.clear()
        self._row_versions.clear()
        self._cell_lines.clear()
        self._row_lines.clear()
        return self

    def notify_style_update(self) -> None:
        self._style_epoch += 1  # theme, focus or CSS changed: every cached picture is stale
        super().notify_style_update()

    def _position_style(self, row_index: int, column_index: int) -> Style:
        """The mouse metadata DataTable puts on every cell (clicks and hover read it), cached."""
        style = self._position_styles.get((row_index, column_index))
        if style is None:
            style = Style.from_meta({"row": row_index, "column": column_index})
            self._position_styles[(row_index, column_index)] = style
        return style

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> SegmentLines:
        """A cell's lines, cached by what the cell shows: unchanged values are never re-rendered,
        wherever their row moved, and equal values in different rows share one rendering."""
        column_key = self._column_locations.get_key(column_index)
        row_key = self._header_row_key if row_index == -1 else self._row_locations.get_key(row_index)
        fingerprint: TextFingerprint | None = None
        if column_key is None or row_key is None:
            pass
        elif row_index == -1:
            column = self.columns.get(column_key)
            label = column.label if column is not None else None
            fingerprint = text_fingerprint(label) if isinstance(label, Text) else None
        else:
            fingerprint = self._cell_prints.get((row_key, column_key))
        if fingerprint is None or row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if row_index >= 0:
            position = self._position_style(row_index, column_index)
            return [self._render_text_cell(row_key, column_key, fingerprint, base_style, position, width,
                                           cursor, hover)]
        cache_key = (fingerprint, base_style, width, cursor, hover, self._show_hover_cursor, self.show_cursor,
                     self._pseudo_class_state, self._style_epoch, row_index == -1,
                     row_index < self.fixed_rows)
        lines = self._cell_lines.get(cache_key)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._cell_lines[cache_key] = lines
            return lines
        position = self._position_style(row_index, column_index)
        return [[Segment(text, style + position if style is not None else position, control)
                 for text, style, control in line] for line in lines]

    def _render_text_cell(self, row_key: RowKey, column_key: ColumnKey, fingerprint: TextFingerprint,
                          base_style: Style, position: Style, width: int, cursor: bool,
                          hover: bool) -> list[Segment]:
        """A one-line body cell rendered straight to segments, equal to what DataTable's Rich path
        (Padding in Styled through Console.render_lines) makes for a single-line Text that fits,
        at a fraction of the cost; anything else goes through that path."""
        row_index, column_index = position.meta["row"], position.meta["column"]
        cell = self._data[row_key][column_key]
        content_width = width - 2 * self.cell_padding
        key = (fingerprint, content_width)
        body = self._text_bodies.get(key)
        if body is None:
            body = text_body_segments(cell, content_width, self.app.console) if isinstance(cell, Text) else None
            if body is None or self.rows[row_key].height != 1:
                return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)[0]
            self._text_bodies[key] = body
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, row_index < self.fixed_rows, hover, cursor, self.show_cursor,
            self._show_hover_cursor, self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css")
        pre_style = base_style + position + component_style
        pad = Segment(" " * self.cell_padding, Style.null())
        return list(Segment.apply_style([pad, *body, pad], pre_style, post_style))

    def _render_line_in_row(self, row_key: RowKey, line_no: int, base_style: Style,
                            cursor_location: Coordinate,
                            hover_location: Coordinate) -> tuple[SegmentLines, SegmentLines]:
        """A row's line, reused until the row changes, moves, or the cursor/hover enters or leaves it."""
        if self.cursor_type != "row":
            return super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)
        located = self._row_locations.get(row_key)
        row_index = -1 if located is None else located
        cache_key = (row_key, self._row_versions.get(row_key, 0), row_index, line_no, base_style,
                     cursor_location.row == row_index, hover_location.row == row_index,
                     self._show_hover_cursor, self.show_cursor, self._pseudo_class_state, self._style_epoch,
                     self.size.width, self._specs)
        pair = self._row_lines.get(cache_key)
        if pair is None:
            pair = super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)
            self._row_lines[cache_key] = pair
        return pair

    def _refresh_all_cells(self) -> None:
        by_key = {row_key_of(v): v for v in self._views}
        for key in list(self._cells):
            view = by_key.get(key)
            if view is None:
                continue
            cells = row_cells(view, self._specs, self._human)
            for spec, cell in zip(self._specs, cells, strict=True):
                self.update_cell(RowKey(key), spec.key, cell)
            self._cells[key] = [_fingerprint(c) for c in cells]

    def column_at_header(self, column_key: ColumnKey) -> ColumnSpec | None:
        """The spec behind a clicked header."""
        for spec in COLUMNS:
            if spec.key == column_key.value:
                return spec
        return None
