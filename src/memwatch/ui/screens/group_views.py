"""The dashboard's group views: the process tree, the memory cgroups and the users.

The dashboard screen builds on this class: it holds the second table (:class:`GroupTable`) and
the keys of the views (switch, collapse and expand the tree, Enter on a group). Which view is on
screen, its sort, the collapsed processes and the chosen group live in the app's ViewState like
every other setting; this class turns keys into new states and draws the group table from the
snapshot (:mod:`memwatch.ui.group_rows` orders the rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from rich.markup import escape
from rich.text import Text
from textual.screen import Screen

from memwatch.groups import ProcessTree, process_tree
from memwatch.model import ProcessView, Snapshot
from memwatch.ui.group_columns import COLUMNS_OF
from memwatch.ui.group_rows import MODES, TreeRow, cgroup_rows, choice_of, tree_rows, user_rows
from memwatch.ui.view_state import ViewState, matches_filter
from memwatch.ui.widgets.group_table import GroupRow, GroupTable, group_status
from memwatch.ui.widgets.process_table import ProcessTable

if TYPE_CHECKING:
    from memwatch.ui.app import MemwatchApp

NO_CGROUPS = ("no memory cgroups here (no memory controller mounted, or recorded before memwatch kept them)")


class GroupViews(Screen[None]):
    """The group views' part of the dashboard (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._tree: tuple[Snapshot, ProcessTree] | None = None
        self.group_counts: tuple[int, int | None] = (0, None)
        """Rows the group table shows, of how many, as last drawn (the status line says them)."""

    @property
    def memwatch(self) -> MemwatchApp:
        return cast("MemwatchApp", self.app)

    @property
    def table(self) -> ProcessTable:
        return self.query_one("#processes", ProcessTable)

    @property
    def groups(self) -> GroupTable:
        return self.query_one("#groups", GroupTable)

    def _set_view(self, view: ViewState) -> None:
        self.memwatch.view = view

    # ----- which table --------------------------------------------------------------------------------

    def _show_mode(self, view: ViewState) -> None:
        """The table of the view on screen (focused if the other had the focus); the pane only
        where a row is a process."""
        processes = view.mode == "processes"
        table, groups = self.table, self.groups
        had_focus = self.focused in (table, groups)
        table.display = processes
        groups.display = not processes
        if not processes:
            groups.set_mode(view.mode)
        self.set_class(view.mode in ("cgroups", "users"), "-no-pane")
        if had_focus:
            (table if processes else groups).focus()

    def groups_changed(self, old: ViewState, new: ViewState) -> bool:
        """Did the view, its sort, the collapsed processes or the group change (the table must
        be drawn again)? Switches the table on screen when the view changed."""
        if (new.mode, new.group) != (old.mode, old.group):
            self._show_mode(new)
        return (new.mode, new.group, new.group_sorts, new.collapsed) != (
            old.mode, old.group, old.group_sorts, old.collapsed) or (
            new.mode != "processes" and new.human != old.human)

    @property
    def active_table(self) -> ProcessTable:
        return self.table if self.memwatch.view.mode == "processes" else self.groups

    # ----- drawing -------------------------------------------------------------------------------------

    def _process_tree(self, snap: Snapshot) -> ProcessTree:
        """The tree of a snapshot, built once per frame (keys redraw the same frame)."""
        if self._tree is None or self._tree[0] is not snap:
            self._tree = (snap, process_tree(snap))
        return self._tree[1]

    def render_groups(self) -> None:
        """Draw the group table from the snapshot; :attr:`group_counts` says how many rows."""
        app = self.memwatch
        view, snap = app.view, app.snapshot
        table = self.groups
        mode = view.mode
        table.set_mode(mode)
        sort, descending = view.group_sort
        table.set_presentation(sort=sort, descending=descending, human=view.human)
        if snap is None:
            table.show_rows([])
            self.group_counts = (0, None)
            return
        needle = view.filter
        rows: Sequence[GroupRow]
        if mode == "tree":
            tree = self._process_tree(snap)
            rows = tree_rows(tree, sort=sort, descending=descending, collapsed=view.collapsed,
                             matches=(lambda v: matches_filter(v, needle)) if needle else None)
            total = len(tree)
        elif mode == "cgroups":
            rows = cgroup_rows(snap.cgroups, sort=sort, descending=descending, needle=needle)
            total = len(snap.cgroups)
        else:
            rows = user_rows(snap.users, sort=sort, descending=descending, needle=needle)
            total = len(snap.users)
        table.show_rows(rows)
        self.group_counts = (len(rows), total)

    def status_lead(self, shown: int, total: int | None) -> Text | None:
        """The status line's start for the group views (None: the processes view's own)."""
        view = self.memwatch.view
        if view.mode == "processes" and view.group is None:
            return None
        if view.mode == "processes":
            return group_status(view, shown, total, "")
        sort = view.group_sort[0]
        label = next((c.label for c in COLUMNS_OF[view.mode] if c.sort == sort), sort)
        text = group_status(view, shown, total, label)
        if view.mode == "cgroups" and total == 0:
            text.append(f"  {NO_CGROUPS}", style="italic")
        return text

    def highlighted_process(self) -> ProcessView | None:
        """The process under the cursor of the view on screen (none on a cgroup or a user)."""
        if self.memwatch.snapshot is None:
            return None
        if self.memwatch.view.mode == "processes":
            return self.table.current_view
        return self.groups.current_process if self.memwatch.view.mode == "tree" else None

    # ----- keys ----------------------------------------------------------------------------------------

    def action_cycle_view(self) -> None:
        self._set_view(self.memwatch.view.next_mode())

    def action_view(self, mode: str) -> None:
        for known in MODES:
            if mode == known:
                self._set_view(self.memwatch.view.switched(known))

    def action_collapse(self) -> None:
        """Hide the children of the process under the cursor; on one without shown children, go
        to its parent (as a file tree does)."""
        view = self.memwatch.view
        row = self.groups.current_row if view.mode == "tree" else None
        if not isinstance(row, TreeRow):
            return
        if row.node.children and not row.collapsed and not view.filter:
            self._set_view(view.folded(row.key, True))
        elif row.node.parent is not None:
            self.groups.select_key(f"{row.node.parent[0]}:{row.node.parent[1]}")

    def action_expand(self) -> None:
        view = self.memwatch.view
        row = self.groups.current_row if view.mode == "tree" else None
        if isinstance(row, TreeRow) and row.key in view.collapsed:
            self._set_view(view.folded(row.key, False))

    def enter_group(self) -> bool:
        """Enter on a cgroup or a user: its processes. False on anything else."""
        row = self.groups.current_row
        if self.memwatch.view.mode not in ("cgroups", "users") or row is None or isinstance(row, TreeRow):
            return False
        self._set_view(self.memwatch.view.entered(choice_of(row)))
        return True

    def sort_in_view(self, column: str) -> None:
        """Sort by ``column``, or say why this view cannot."""
        try:
            self._set_view(self.memwatch.view.sorted_by(column))
        except ValueError as error:
            self.notify(escape(str(error)), severity="warning")
