"""How the user wants the processes shown, as one immutable value.

The dashboard keeps a single :class:`ViewState` in a reactive; every change replaces it whole, so
watchers see one change however many settings moved (a sort key and its direction together), and
a settings file can save and load it as plain fields. Nothing here imports Textual: ranking and
the transitions are plain functions, tested without an app.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from memwatch.fields import BY_KEY, DEFAULT_COLUMNS, SORT_KEYS
from memwatch.model import ProcessKey, ProcessView, Snapshot, rank_views
from memwatch.ui.group_rows import ASCENDING, DEFAULT_SORT, MODES, SORTS, GroupChoice, Mode, in_group

DEFAULT_TOP = 100


def own_direction(key: str) -> bool:
    """The direction a first sort by ``key`` takes: the registry's (largest first for figures,
    A-Z / low first for names and pids). An unknown key is left to ViewState to refuse."""
    f = BY_KEY.get(key)
    return True if f is None else f.descending


def check_columns(columns: tuple[str, ...]) -> None:
    """A ValueError, in one sentence, unless ``columns`` are known fields, each once, and some."""
    unknown = [key for key in columns if key not in BY_KEY]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; choose among {', '.join(BY_KEY)}")
    if not columns:
        raise ValueError("no columns: the table needs at least one")
    if len(set(columns)) != len(columns):
        twice = next(key for key in columns if columns.count(key) > 1)
        raise ValueError(f"column {twice!r} is listed twice")


def toggle_column(columns: tuple[str, ...], key: str) -> tuple[str, ...]:
    """Hide ``key`` if shown, else show it last, as the column chooser does. Hiding the only
    column left changes nothing: a table without columns would show no process at all."""
    if key in columns:
        return columns if len(columns) == 1 else tuple(c for c in columns if c != key)
    if key not in BY_KEY:
        raise ValueError(f"unknown column {key!r}")
    return (*columns, key)


def move_column(columns: tuple[str, ...], key: str, delta: int) -> tuple[str, ...]:
    """``columns`` with ``key`` moved ``delta`` places (clamped to the ends); unchanged when it is
    not shown."""
    if key not in columns:
        return columns
    rest = [c for c in columns if c != key]
    place = max(0, min(len(rest), columns.index(key) + delta))
    rest.insert(place, key)
    return tuple(rest)


def matches_filter(view: ProcessView, needle: str) -> bool:
    """Filter on name, command line or pid (case-insensitive substring; a number also matches the pid)."""
    if not needle:
        return True
    lowered = needle.lower()
    s = view.sample
    return lowered in s.name.lower() or lowered in s.cmdline.lower() or needle == str(s.pid)


@dataclass(frozen=True, slots=True)
class ViewState:
    """Sort, direction, units, pause, filter, columns and which processes: what the table shows."""

    sort: str = "rss"
    descending: bool = True
    human: bool = False
    """KiB/MiB/GiB instead of KB."""
    paused: bool = False
    filter: str = ""
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    """Field keys of the table's columns, in order (a narrow terminal drops some by priority)."""
    top: int = DEFAULT_TOP
    """Rank this many (0: all); negative: only the ``pids``, as ``--pid`` alone means."""
    pids: tuple[int, ...] = ()
    """Processes shown whatever their rank (``--pid``)."""
    mode: Mode = "processes"
    """Which view: the processes, the process tree, the memory cgroups or the users."""
    group_sorts: tuple[tuple[Mode, str, bool], ...] = ()
    """(view, sort, descending) of the group views sorted away from their default."""
    group: GroupChoice | None = None
    """The cgroup or user whose processes the table shows (Enter on a group); Escape returns."""
    back_filter: str = ""
    """The group view's filter, given back when Escape leaves the group."""
    collapsed: frozenset[ProcessKey] = frozenset()
    """Processes of the tree whose children are hidden."""

    def __post_init__(self) -> None:
        if self.sort not in SORT_KEYS:
            raise ValueError(f"unknown sort column {self.sort!r}; choose one of {', '.join(SORT_KEYS)}")
        check_columns(self.columns)
        if self.mode not in MODES:
            raise ValueError(f"unknown view {self.mode!r}; choose one of {', '.join(MODES)}")

    @classmethod
    def initial(cls, *, sort: str = "rss", descending: bool | None = None, top: int | None = None,
                pids: tuple[int, ...] = (), columns: tuple[str, ...] = DEFAULT_COLUMNS,
                human: bool = False) -> ViewState:
        """The state the command line asks for: ``top`` None is 100, or the ``pids`` alone when
        there are some (the same rule as ``--once``). ``descending`` None is the sort field's own
        direction, as a click on its header picks: ``--sort pid`` opens low to high, as ``--once``
        ranks, not the other way round."""
        if top is not None and top < 0:
            raise ValueError(f"top must be 0 (all) or a positive number, got {top}")
        chosen = top if top is not None else (-1 if pids else DEFAULT_TOP)
        if descending is None:
            descending = own_direction(sort)
        return cls(sort=sort, descending=descending, top=chosen, pids=tuple(pids), columns=tuple(columns),
                   human=human)

    def sorted_by(self, column: str) -> ViewState:
        """Sort by ``column``; asking for the current one again reverses it, a new one starts in
        its natural direction (largest first for figures, A-Z for names). In a group view, the
        view's own sort (ValueError for a figure it has not)."""
        if self.mode != "processes":
            if column not in SORTS[self.mode]:
                raise ValueError(f"the {self.mode} view cannot be sorted by {column}")
            if column == self.group_sort[0]:
                return self.reversed()
            return self._group_sorted(column, column not in ASCENDING)
        if column == self.sort:
            return self.reversed()
        return replace(self, sort=column, descending=own_direction(column))

    def with_column_toggled(self, key: str) -> ViewState:
        """``key`` shown (at the end) if hidden, hidden if shown; the last column stays."""
        return replace(self, columns=toggle_column(self.columns, key))

    def with_column_moved(self, key: str, delta: int) -> ViewState:
        """A shown column ``delta`` places left (negative) or right; a hidden one does not move."""
        return replace(self, columns=move_column(self.columns, key, delta))

    def reversed(self) -> ViewState:
        if self.mode != "processes":
            sort, descending = self.group_sort
            return self._group_sorted(sort, not descending)
        return replace(self, descending=not self.descending)

    def next_sort(self, visible: tuple[str, ...]) -> ViewState:
        """The next sortable column among ``visible`` ones (all sortable ones if none is)."""
        if self.mode == "processes":
            keys, current = SORT_KEYS, self.sort
            order = [c for c in keys if c in visible] or list(keys)
        else:  # a group view's columns come in their own order
            keys, current = SORTS[self.mode], self.group_sort[0]
            order = [c for c in visible if c in keys] or list(keys)
        index = order.index(current) if current in order else -1
        column = order[(index + 1) % len(order)]
        if self.mode != "processes":
            return self._group_sorted(column, column not in ASCENDING)
        return replace(self, sort=column, descending=own_direction(column))

    # ----- the group views ---------------------------------------------------------------------

    @property
    def group_sort(self) -> tuple[str, bool]:
        """(sort, descending) of the current group view."""
        for mode, sort, descending in self.group_sorts:
            if mode == self.mode:
                return sort, descending
        return DEFAULT_SORT.get(self.mode, "rss"), True

    def _group_sorted(self, sort: str, descending: bool) -> ViewState:
        others = tuple(s for s in self.group_sorts if s[0] != self.mode)
        return replace(self, group_sorts=(*others, (self.mode, sort, descending)))

    def switched(self, mode: Mode) -> ViewState:
        """Another view; leaving a group's processes gives the group view's filter back."""
        if self.group is not None:
            return replace(self, mode=mode, group=None, filter=self.back_filter, back_filter="")
        return replace(self, mode=mode)

    def next_mode(self) -> ViewState:
        """The next view in turn (a group's processes count as the processes view)."""
        current = "processes" if self.group is not None else self.mode
        return self.switched(MODES[(MODES.index(current) + 1) % len(MODES)])

    def entered(self, group: GroupChoice) -> ViewState:
        """The processes of ``group``: the process table, filtered to it (its own filter empty)."""
        return replace(self, mode="processes", group=group, back_filter=self.filter, filter="")

    def left_group(self) -> ViewState:
        """Back to the view the group was chosen in, with its filter."""
        if self.group is None:
            return self
        return self.switched("cgroups" if self.group.kind == "cgroup" else "users")

    def folded(self, key: ProcessKey, collapse: bool) -> ViewState:
        """The tree with the children of ``key`` hidden (or shown again)."""
        collapsed = self.collapsed | {key} if collapse else self.collapsed - {key}
        return replace(self, collapsed=collapsed)

    def rank(self, snap: Snapshot | None) -> list[ProcessView]:
        """The processes the table shows, in order: the filter first, then the top N plus the
        ``pids`` (which the filter still applies to)."""
        if snap is None:
            return []
        if self.group is not None:
            return self._rank_group(snap)
        # Choose first, rank what is left: ranking only the processes shown (the top N of those
        # the filter keeps, or the --pid ones) costs a fraction of sorting all of them.
        views: Sequence[ProcessView] = snap.processes
        if self.filter:
            views = [v for v in views if matches_filter(v, self.filter)]
        if self.top < 0:
            wanted = set(self.pids)
            return rank_views([v for v in views if v.pid in wanted], 0, self.sort, self.descending)
        return rank_views(views, self.top, self.sort, self.descending, self.pids)

    def _rank_group(self, snap: Snapshot) -> list[ProcessView]:
        """A group's processes: every one of them (the group is the choice, not the top N),
        filtered and sorted as the table asks."""
        group = self.group
        assert group is not None
        return rank_views([v for v in snap.processes if in_group(v, group) and matches_filter(v, self.filter)],
                          0, self.sort, self.descending)
