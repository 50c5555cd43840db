"""The process table: a DataTable that is patched, never cleared, on every snapshot.

Rows are keyed by ``"pid:start_ticks"``; each frame removes the rows of processes that left, adds
the newcomers, updates only the cells whose text changed, re-sorts once to the order the snapshot
ranked, and puts the cursor back on the process it was on. Column widths are fixed so nothing is
re-measured per tick. Columns are only rebuilt when the terminal width changes which ones fit.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from memwatch.model import ProcessView
from memwatch.ui.columns import COLUMNS, ColumnSpec, fit_columns, header_label, row_cells

CellFingerprint = tuple[str, str]


def row_key_of(view: ProcessView) -> str:
    """The table row key of a process: pid alone is not an identity."""
    return f"{view.sample.pid}:{view.sample.start_ticks}"


def _fingerprint(cell: Text) -> CellFingerprint:
    return (cell.plain, str(cell.style))


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
        for key in [k for k in self._cells if k not in wanted_set]:
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
        for spec in self._specs:
            column = self.columns.get(ColumnKey(spec.key))
            if column is not None:
                column.label = header_label(spec, self._sort, self._descending, self._human)
        self.notify_style_update()  # header labels are cached per update; drop the caches once

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
