"""What the dashboard's group views show, as plain rows: the process tree, the memory cgroups and
the users of one snapshot, filtered, collapsed and ordered; and which processes a chosen group holds.

Pure functions of a snapshot and the view state's settings (no Textual), so the views' order,
filter and collapse rules are tested without an app; :mod:`memwatch.groups` does the sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from memwatch.groups import GROUP_SORTS, ProcessTree, TreeNode, cgroup_children, rank, with_ancestors
from memwatch.model import CgroupView, ProcessKey, ProcessView, UserView

Mode = Literal["processes", "tree", "cgroups", "users"]
MODES: tuple[Mode, ...] = ("processes", "tree", "cgroups", "users")
GroupKind = Literal["cgroup", "user"]

TREE_SORTS: tuple[str, ...] = (*GROUP_SORTS, "name", "pid")
CGROUP_SORTS: tuple[str, ...] = ("memory", *GROUP_SORTS, "name")
USER_SORTS: tuple[str, ...] = (*GROUP_SORTS, "name", "uid")
SORTS: dict[Mode, tuple[str, ...]] = {"tree": TREE_SORTS, "cgroups": CGROUP_SORTS, "users": USER_SORTS}
"""The figures each group view ranks by (its columns' sort keys)."""
DEFAULT_SORT: dict[Mode, str] = {"tree": "rss", "cgroups": "memory", "users": "rss"}
ASCENDING = frozenset({"name", "pid", "uid"})
"""Sorts whose natural direction is A-Z / smallest first."""


@dataclass(frozen=True, slots=True)
class GroupChoice:
    """A group whose processes the process table shows (Enter on a cgroup or a user)."""

    kind: GroupKind
    key: str
    """The cgroup's path, or the user's uid (as text; a user of unknown uid: ``name:<name>``)."""
    name: str
    """What the status line calls it (not yet made printable)."""


def choice_of(row: CgroupRow | UserView) -> GroupChoice:
    if isinstance(row, CgroupRow):
        return GroupChoice("cgroup", row.view.path, row.view.name)
    key = str(row.uid) if row.uid >= 0 else f"name:{row.name}"
    return GroupChoice("user", key, row.name)


def in_group(view: ProcessView, group: GroupChoice) -> bool:
    """Is the process in the group: its memory cgroup or one below it (as the cgroup's sums count
    them), or its user. Kernel threads are in no group's sums, and in no group's list."""
    s = view.sample
    if s.kernel_thread:
        return False
    if group.kind == "cgroup":
        path = s.memory_cgroup
        if not path:
            return False
        return group.key == "/" or path == group.key or path.startswith(group.key + "/")
    if group.key.startswith("name:"):
        return s.uid < 0 and s.user == group.key[5:]
    return str(s.uid) == group.key


# ---------------------------------------------------------------------------------------------
# The process tree.


@dataclass(frozen=True, slots=True)
class TreeRow:
    """A process of the tree as drawn: its node and the glyphs before its name."""

    node: TreeNode
    prefix: str
    """``│  ├─`` and the like: where it hangs."""
    collapsed: bool
    """It has children and they are hidden."""

    @property
    def key(self) -> ProcessKey:
        return self.node.key

    @property
    def view(self) -> ProcessView:
        return self.node.view


def _tree_order(tree: ProcessTree, sort: str, descending: bool) -> Callable[[ProcessKey], tuple[object, ...]]:
    nodes = tree.nodes
    if sort == "name":
        return lambda k: (nodes[k].view.sample.name.lower(), k)
    if sort == "pid":
        return lambda k: (k,)
    if sort not in GROUP_SORTS:
        raise ValueError(f"the tree cannot be sorted by {sort!r}; choose one of {', '.join(TREE_SORTS)}")
    field = GROUP_SORTS[sort]

    def figure(k: ProcessKey) -> tuple[object, ...]:
        value = getattr(nodes[k].subtree, field)
        # unknown last whichever the direction; equal figures: the lower pid first
        known = value is not None
        v = float(value) if known else 0.0
        return (known, v if descending else -v, -k[0])

    return figure


def tree_rows(tree: ProcessTree, *, sort: str = "rss", descending: bool = True,
              collapsed: Iterable[ProcessKey] = (), matches: Callable[[ProcessView], bool] | None = None,
              ) -> list[TreeRow]:
    """The rows of the tree depth first, siblings ranked by their subtree's ``sort`` figure.

    The children of a ``collapsed`` process are hidden. With ``matches``, only the processes it
    accepts are shown, with their ancestors (so each still hangs where it lives), collapsed or not.
    """
    order = _tree_order(tree, sort, descending)
    # figures: the key holds the direction, largest first; names and pids: A-Z unless descending
    reverse = descending if sort in ("name", "pid") else True
    shown: set[ProcessKey] | None = None
    if matches is not None:
        shown = set()
        for key, node in tree.nodes.items():
            if key not in shown and matches(node.view):
                shown.update(n.key for n in tree.path_to(key))
    folded = set(collapsed) if shown is None else set()
    out: list[TreeRow] = []

    def kids(key: ProcessKey | None) -> list[ProcessKey]:
        keys = tree.roots if key is None else tree.nodes[key].children
        if shown is not None:
            keys = tuple(k for k in keys if k in shown)
        return sorted(keys, key=order, reverse=reverse) if len(keys) > 1 else list(keys)  # most have none

    # (key, the glyphs of its ancestors' columns, last among its siblings, is a root)
    stack: list[tuple[ProcessKey, str, bool, bool]] = []
    roots = kids(None)
    stack.extend((k, "", i == len(roots) - 1, True) for i, k in reversed(list(enumerate(roots))))
    while stack:
        key, lead, last, root = stack.pop()
        node = tree.nodes[key]
        hidden = key in folded and bool(node.children)
        prefix = "" if root else lead + ("└─" if last else "├─")
        out.append(TreeRow(node, prefix, hidden))
        if hidden:
            continue
        below = kids(key)
        if below:
            inner = "" if root else lead + ("   " if last else "│  ")
            stack.extend((k, inner, i == len(below) - 1, False) for i, k in reversed(list(enumerate(below))))
    return out


# ---------------------------------------------------------------------------------------------
# Memory cgroups and users.


@dataclass(frozen=True, slots=True)
class CgroupRow:
    """A memory cgroup as drawn: its view and the glyphs before its name."""

    view: CgroupView
    prefix: str


def cgroup_matches(c: CgroupView, needle: str) -> bool:
    lowered = needle.lower()
    return lowered in c.name.lower() or lowered in c.path.lower()


def cgroup_rows(cgroups: Sequence[CgroupView], *, sort: str = "memory", descending: bool = True,
                needle: str = "") -> list[CgroupRow]:
    """Cgroups in tree order (each right after its parent), siblings ranked by ``sort``; with a
    ``needle``, those whose name or path has it, and their ancestors."""
    groups = list(cgroups)
    if needle:
        groups = with_ancestors(groups, [c.path for c in groups if cgroup_matches(c, needle)])
    children = cgroup_children(groups)

    def ranked(path: str | None) -> list[CgroupView]:
        out = rank(children.get(path, []), sort)
        return out if descending != (sort == "name") else out[::-1]

    rows: list[CgroupRow] = []
    stack = [(c, "", True, i == 0) for i, c in enumerate(reversed(ranked(None)))]
    while stack:
        c, lead, root, last = stack.pop()
        rows.append(CgroupRow(c, "" if root else lead + ("└─" if last else "├─")))
        inner = "" if root else lead + ("   " if last else "│  ")
        below = ranked(c.path)
        stack.extend((k, inner, False, i == 0) for i, k in enumerate(reversed(below)))
    return rows


def user_rows(users: Sequence[UserView], *, sort: str = "rss", descending: bool = True,
              needle: str = "") -> list[UserView]:
    """Users ranked by ``sort`` (``uid`` by number); with a ``needle``, those whose name has it or
    whose uid it is."""
    chosen = list(users)
    if needle:
        lowered = needle.lower()
        chosen = [u for u in chosen if lowered in u.name.lower() or needle == str(u.uid)]
    if sort == "uid":
        return sorted(chosen, key=lambda u: (u.uid, u.name), reverse=descending)
    out = rank(chosen, sort)
    return out if descending != (sort == "name") else out[::-1]
