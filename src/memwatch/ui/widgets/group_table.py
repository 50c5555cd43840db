"""The table of the group views: the process tree, the memory cgroups or the users.

It is the process table's widget with other rows and columns (:mod:`memwatch.ui.group_columns`):
the same quiet redraws, fixed widths, header clicks and cursor that follows its row across
frames; a tree row is followed by its process, a cgroup by its path, a user by uid. Its messages
are the process table's (``on_process_table_row_selected`` and friends), told apart by ``table``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from rich.text import Text

from memwatch.model import ProcessView, UserView
from memwatch.ui import formatting as fmt
from memwatch.ui.columns import fit_columns
from memwatch.ui.group_columns import COLUMNS_OF
from memwatch.ui.group_rows import CgroupRow, Mode, TreeRow
from memwatch.ui.view_state import ViewState
from memwatch.ui.widgets.process_table import CELL_PADDING, ProcessTable

GroupRow = TreeRow | CgroupRow | UserView
NOUNS: dict[Mode, str] = {"tree": "processes in the tree", "cgroups": "memory cgroups", "users": "users"}


def group_row_key(row: GroupRow) -> str:
    """How a row is followed across frames: a process by pid and start time, a cgroup by path, a
    user by uid (and name, for data recorded before uids were kept)."""
    if isinstance(row, TreeRow):
        s = row.node.view.sample  # its key's parts, read directly: this runs for every process of the tree
        return f"{s.pid}:{s.start_ticks}"
    if isinstance(row, CgroupRow):
        return f"cgroup:{row.view.path}"
    return f"user:{row.uid}:{row.name}"


class GroupTable(ProcessTable):
    """One group view at a time; :meth:`set_mode` chooses it, :meth:`show_rows` feeds it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._mode: Mode = "tree"
        self._use_columns("tree")

    @property
    def mode(self) -> Mode:
        return self._mode

    def _use_columns(self, mode: Mode) -> None:
        self._columns = COLUMNS_OF[mode]
        self._specs = fit_columns(10_000, CELL_PADDING, self._columns)  # until the width is known
        self._fit_width = -1
        self._cells.clear()

    def set_mode(self, mode: Mode) -> None:
        """Show another view: its columns, the cursor back at the top."""
        if mode == self._mode or mode == "processes":
            return
        self._mode = mode
        self._use_columns(mode)
        self.fit_to_width()
        self._order = []
        self.cursor_row = 0
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    def show_rows(self, rows: Sequence[GroupRow]) -> None:
        """Show ``rows`` (already ordered), keeping the cursor on its row."""
        # the table keeps its rows where a process table keeps views: row_key and the columns'
        # renderers are this view's, so nothing takes them for processes
        self.show(cast("Sequence[ProcessView]", rows))

    def row_key(self, view: ProcessView) -> str:
        return group_row_key(cast("GroupRow", view))

    @property
    def visible_sorts(self) -> tuple[str, ...]:
        """The sort keys of the columns on screen."""
        return tuple(s.sort for s in self._specs if s.sort is not None)

    @property
    def current_row(self) -> GroupRow | None:
        """The row under the cursor, as last shown."""
        key = self.current_key
        return cast("GroupRow | None", self._views.get(key)) if key is not None else None

    @property
    def current_process(self) -> ProcessView | None:
        """The process under the cursor of the tree (None in the other views)."""
        row = self.current_row
        return row.view if isinstance(row, TreeRow) else None

    def select_key(self, key: str) -> bool:
        """Put the cursor on the row of ``key`` if it is shown."""
        index = self._index.get(key)
        if index is None:
            return False
        self.move_cursor(index)
        return True


def group_status(view: ViewState, shown: int, total: int | None, sort_label: str) -> Text:
    """The status line's start in a group view (how many of what, the sort), or, on a group's
    processes, which group it is and how to go back."""
    text = Text()
    if view.group is not None:
        text.append(view.group.kind + " ", style="bold")
        text.append(fmt.printable(view.group.name), style="bold cyan")
        text.append(" (Escape: back)  ", style="dim")
        return text
    text.append(f"{shown}" + (f" of {total}" if total is not None and total != shown else "")
                + f" {NOUNS.get(view.mode, view.mode)}")
    sort, descending = view.group_sort
    text.append(f"  sort {sort_label or sort} {'▼' if descending else '▲'}")
    return text
