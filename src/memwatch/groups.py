"""Groups of processes: sums over a subtree, a memory cgroup or a user, and the process tree.

Everything here is a pure function of processes (and of what the cgroup reader found), so a view
can ask for it of any snapshot, live or replayed: :func:`process_tree` builds the parent/child
tree by ppid with subtree sums; :func:`build_cgroups` and :func:`build_users` make what the store
puts in each snapshot; :func:`rank` orders any of them by a figure.

Kernel threads are left out of every sum: they have no user memory (what the kernel uses for them
is in a cgroup's kernel figure), and counting them would make the root cgroup and root's processes
look like hundreds of processes using nothing.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from memwatch.cgroups import CgroupReading, describe
from memwatch.model import CgroupView, GroupTotals, ProcessKey, ProcessView, Snapshot, UserView

__all__ = [
    "GROUP_SORTS",
    "GroupTally",
    "ProcessTree",
    "TreeNode",
    "ancestors",
    "build_cgroups",
    "build_users",
    "process_tree",
    "rank",
    "totals_of",
]


class _Sums:
    """A GroupTotals being added up (mutable; frozen on demand). Processes can be taken out again
    (:meth:`sub`), so the store keeps one per group across ticks and touches it only for the
    processes that changed. Growth rates are kept as a multiset and added with ``math.fsum``: the
    exact sum rounded once, whatever the order they came and went in."""

    __slots__ = ("brk", "growth_n", "growths", "kernel", "mmap", "mremap", "munmap", "n", "outstanding", "pss",
                 "pss_n", "rss", "swap")

    def __init__(self) -> None:
        self.n = self.rss = self.swap = self.pss = self.pss_n = 0
        self.kernel = 0
        """Processes with kernel counters (none: the sums of counters are unknown, not 0)."""
        self.mmap = self.munmap = self.brk = self.mremap = self.outstanding = 0
        self.growth_n = 0
        self.growths: dict[float, int] = {}
        """Non-zero growth rates, each with how many processes have it."""

    def add(self, v: ProcessView, sign: int = 1) -> None:
        s = v.sample
        if s.kernel_thread:
            return
        self.n += sign
        self.rss += sign * s.rss_kb
        self.swap += sign * s.swap_kb
        if v.rollup is not None:
            self.pss += sign * v.rollup.pss_kb
            self.pss_n += sign
        k = v.kernel
        if k is not None:
            self.kernel += sign
            self.mmap += sign * k.mmap_count
            self.munmap += sign * k.munmap_count
            self.brk += sign * k.brk_count
            self.mremap += sign * k.mremap_count
            self.outstanding += sign * k.outstanding_bytes
        g = v.growth_kb_s
        if g is not None:
            self.growth_n += sign
            if g:
                left = self.growths.get(g, 0) + sign
                if left:
                    self.growths[g] = left
                else:
                    del self.growths[g]

    def sub(self, v: ProcessView) -> None:
        """Take out a process :meth:`add` put in (the same view)."""
        self.add(v, -1)

    def merge(self, o: _Sums) -> None:
        self.n += o.n
        self.rss += o.rss
        self.swap += o.swap
        self.pss += o.pss
        self.pss_n += o.pss_n
        self.kernel += o.kernel
        self.mmap += o.mmap
        self.munmap += o.munmap
        self.brk += o.brk
        self.mremap += o.mremap
        self.outstanding += o.outstanding
        self.growth_n += o.growth_n
        for g, count in o.growths.items():
            self.growths[g] = self.growths.get(g, 0) + count

    def frozen(self) -> GroupTotals:
        k = self.kernel > 0
        growth = None
        if self.growth_n:
            growth = math.fsum(itertools.chain.from_iterable(
                itertools.repeat(g, c) for g, c in self.growths.items()))
        return GroupTotals(
            processes=self.n, rss_kb=self.rss, swap_kb=self.swap,
            pss_kb=self.pss if self.pss_n else None, pss_processes=self.pss_n,
            mmap_count=self.mmap if k else None, munmap_count=self.munmap if k else None,
            brk_count=self.brk if k else None, mremap_count=self.mremap if k else None,
            outstanding_bytes=self.outstanding if k else None, growth_kb_s=growth,
        )


_EMPTY = GroupTotals()


def totals_of(views: Iterable[ProcessView]) -> GroupTotals:
    """The sums of these processes (kernel threads left out)."""
    sums = _Sums()
    for v in views:
        sums.add(v)
    return sums.frozen()


# ---------------------------------------------------------------------------------------------
# Ranking.

GROUP_SORTS: dict[str, str] = {
    "rss": "rss_kb", "swap": "swap_kb", "pss": "pss_kb", "outstanding": "outstanding_bytes",
    "growth": "growth_kb_s", "mmap": "mmap_count", "munmap": "munmap_count", "brk": "brk_count",
    "mremap": "mremap_count", "processes": "processes",
}
"""The figures groups rank by (``--sort`` with ``--group``): their processes' sums, plus ``name``,
and for cgroups ``memory``, the kernel's usage."""
GROUP_SORT_KEYS: tuple[str, ...] = (*GROUP_SORTS, "name", "memory")

_G = TypeVar("_G", CgroupView, UserView)


def _figure(totals: GroupTotals, key: str) -> float:
    value = getattr(totals, GROUP_SORTS[key])
    return float("-inf") if value is None else float(value)


def rank(groups: Sequence[_G], sort: str) -> list[_G]:
    """Groups largest first by ``sort`` (a key of :data:`GROUP_SORT_KEYS`; ``name`` A-Z); ``memory``
    ranks cgroups by the kernel's usage, those without it after, by their processes' RSS."""
    if sort == "name":
        return sorted(groups, key=lambda g: (g.name.lower(), _key(g)))
    if sort == "memory":
        def usage(g: _G) -> tuple[float, float]:
            m = g.memory if isinstance(g, CgroupView) else None
            cur = m.current_kb if m is not None else None
            return (float("-inf") if cur is None else float(cur), float(g.totals.rss_kb))
        return sorted(groups, key=lambda g: (usage(g), _neg(g)), reverse=True)
    if sort not in GROUP_SORTS:
        raise ValueError(f"groups cannot be sorted by {sort!r}; choose one of {', '.join(GROUP_SORT_KEYS)}")
    return sorted(groups, key=lambda g: (_figure(g.totals, sort), _neg(g)), reverse=True)


def _key(g: CgroupView | UserView) -> str:
    return g.path if isinstance(g, CgroupView) else f"{g.uid:012d}"


def _neg(g: CgroupView | UserView) -> tuple[int, ...]:
    """Equal figures: the smaller path or uid first, in a sort that is reversed."""
    return tuple(-ord(c) for c in _key(g))


# ---------------------------------------------------------------------------------------------
# Cgroups and users, as the store puts them in a snapshot.


def ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a/b", "/a", "/"]``; the root and an empty path have none."""
    out = []
    while path not in ("/", ""):
        path = path.rsplit("/", 1)[0] or "/"
        out.append(path)
    return out


def with_ancestors(cgroups: Iterable[CgroupView], paths: Iterable[str]) -> list[CgroupView]:
    """The cgroups at ``paths`` and those above them, in the given order: what a tree of the
    chosen ones needs to keep its shape."""
    keep = set(paths)
    keep.update(a for p in list(keep) for a in ancestors(p))
    return [c for c in cgroups if c.path in keep]


def cgroup_children(cgroups: Iterable[CgroupView]) -> dict[str | None, list[CgroupView]]:
    """Each cgroup under its parent among ``cgroups``; under None the top ones (the root, or any
    whose parent is not among them)."""
    groups = list(cgroups)
    present = {c.path for c in groups}
    children: dict[str | None, list[CgroupView]] = {}
    for c in groups:
        children.setdefault(c.parent_path if c.parent_path in present else None, []).append(c)
    return children


@functools.lru_cache(maxsize=8192)
def _ancestors(path: str) -> tuple[str, ...]:
    """:func:`ancestors`, remembered: the same few hundred paths come back every tick."""
    return tuple(ancestors(path))


@functools.lru_cache(maxsize=8192)
def _tree_key(path: str) -> tuple[str, ...]:
    return tuple(c for c in path.split("/") if c)


def build_cgroups(views: Iterable[ProcessView], readings: Mapping[str, CgroupReading] | None = None, *,
                  version: int = 0, oom_events: Mapping[str, int] | None = None,
                  names: dict[str, tuple[str, str]] | None = None) -> tuple[CgroupView, ...]:
    """One view per memory cgroup that holds processes, per ancestor of one, and per cgroup the
    reader read (``readings``), in tree order. ``names`` caches :func:`~memwatch.cgroups.describe`
    between calls (it is replaced by the names of this call's cgroups)."""
    tally = GroupTally()
    tally.add_all(views)
    return tally.cgroups(readings, version=version, oom_events=oom_events, names=names)


def build_users(views: Iterable[ProcessView]) -> tuple[UserView, ...]:
    """One view per user with processes (kernel threads left out), by uid; a process of unknown
    uid (recorded before uids were kept) is grouped by its user name."""
    tally = GroupTally()
    tally.add_all(views)
    return tally.users()


_UserKey = tuple[int, str]


class GroupTally:
    """Cgroup and user sums kept up to date as processes come, change and go.

    The store tells it of each view it replaces (:meth:`replace`), so a snapshot of 10,000 mostly
    idle processes costs work for the changed ones and for the groups (a few hundred at most),
    never a pass over every process. Groups whose sums did not move keep their view objects.
    """

    def __init__(self) -> None:
        self._own: dict[str, _Sums] = {}
        """Each memory cgroup's own processes' sums."""
        self._members: dict[str, int] = {}
        """Processes in each cgroup, kernel threads included (they keep a cgroup listed)."""
        self._users: dict[_UserKey, _Sums] = {}
        self._user_names: dict[_UserKey, str] = {}
        self._dirty_cgroups: set[str] = set()
        self._dirty_users: set[_UserKey] = set()
        self._user_views: dict[_UserKey, UserView] = {}
        self._users_out: tuple[UserView, ...] = ()
        self._totals: dict[str, tuple[GroupTotals, GroupTotals]] = {}
        """Per cgroup as last frozen: (its subtree's totals, its own)."""
        self._cgroup_views: dict[str, CgroupView] = {}
        self._order: tuple[frozenset[str], list[str]] = (frozenset(), [])

    def add_all(self, views: Iterable[ProcessView]) -> None:
        for v in views:
            self.replace(None, v)

    def replace(self, old: ProcessView | None, new: ProcessView | None) -> None:
        """``old`` (a view added before) is out, ``new`` is in; either may be None."""
        for v, sign in ((old, -1), (new, 1)):
            if v is None:
                continue
            s = v.sample
            path = s.memory_cgroup
            if path:
                sums = self._own.get(path)
                if sums is None:
                    sums = self._own[path] = _Sums()
                sums.add(v, sign)
                left = self._members[path] = self._members.get(path, 0) + sign
                if left <= 0:
                    del self._own[path], self._members[path]
                self._dirty_cgroups.add(path)
            if not s.kernel_thread:
                key = (s.uid, "" if s.uid >= 0 else s.user)
                acc = self._users.get(key)
                if acc is None:
                    acc = self._users[key] = _Sums()
                    self._user_names[key] = s.user or str(s.uid)
                acc.add(v, sign)
                if acc.n <= 0:
                    del self._users[key], self._user_names[key]
                self._dirty_users.add(key)

    def users(self) -> tuple[UserView, ...]:
        """One view per user with processes, by uid (see :func:`build_users`)."""
        if self._dirty_users:
            for key in self._dirty_users:
                acc = self._users.get(key)
                if acc is None:
                    self._user_views.pop(key, None)
                else:
                    self._user_views[key] = UserView(uid=key[0], name=self._user_names[key], totals=acc.frozen())
            self._dirty_users.clear()
            self._users_out = tuple(self._user_views[k] for k in sorted(self._user_views))
        return self._users_out

    def cgroups(self, readings: Mapping[str, CgroupReading] | None = None, *, version: int = 0,
                oom_events: Mapping[str, int] | None = None,
                names: dict[str, tuple[str, str]] | None = None) -> tuple[CgroupView, ...]:
        """One view per cgroup (see :func:`build_cgroups`), remade only where something moved."""
        own = self._own
        paths: set[str] = set(own)
        if readings:
            paths.update(readings)
        for p in list(paths):
            paths.update(_ancestors(p))
        # totals to freeze again: the cgroups whose own processes changed, and those above them
        stale = set()
        for p in self._dirty_cgroups:
            stale.add(p)
            stale.update(_ancestors(p))
        self._dirty_cgroups.clear()
        stale.update(p for p in paths if p not in self._totals)
        below: dict[str, _Sums] = {}
        if stale:
            for p, sums in own.items():
                for a in _ancestors(p):
                    if a in stale:
                        acc = below.get(a)
                        if acc is None:
                            acc = below[a] = _Sums()
                        acc.merge(sums)
        totals = self._totals
        for p in stale:
            if p not in paths:
                totals.pop(p, None)
                continue
            mine = own.get(p)
            own_totals = mine.frozen() if mine is not None else _EMPTY
            rest = below.get(p)
            if rest is not None and mine is not None:
                rest.merge(mine)
            totals[p] = (rest.frozen() if rest is not None else own_totals, own_totals)
        key = frozenset(paths)
        if key != self._order[0]:
            self._order = (key, sorted(paths, key=_tree_key))
            for gone in self._cgroup_views.keys() - key:
                del self._cgroup_views[gone]
            for gone in totals.keys() - key:
                del totals[gone]
        cache = names if names is not None else {}
        fresh: dict[str, tuple[str, str]] = {}
        oom = oom_events or {}
        made = self._cgroup_views
        out = []
        for p in self._order[1]:
            named = cache.get(p)
            if named is None:
                ident = describe(p)
                named = (ident.name, ident.kind)
            fresh[p] = named
            r = readings.get(p) if readings else None
            subtree, own_totals = totals[p]
            view = made.get(p)
            ino, memory, kills = (r.ino if r is not None else 0), (r.memory if r is not None else None), oom.get(p, 0)
            if (view is None or view.totals is not subtree or view.own is not own_totals or view.name != named[0]
                    or view.kind != named[1] or view.version != version or view.ino != ino
                    or view.memory != memory or view.oom_events != kills):
                view = made[p] = CgroupView(path=p, name=named[0], kind=named[1], version=version, ino=ino,
                                            memory=memory, totals=subtree, own=own_totals, oom_events=kills)
            out.append(view)
        if names is not None:
            names.clear()
            names.update(fresh)
        return tuple(out)


# ---------------------------------------------------------------------------------------------
# The process tree.


@dataclass(frozen=True, slots=True)
class TreeNode:
    """A process in the tree."""

    view: ProcessView
    parent: ProcessKey | None
    """None for a root: no parent in the snapshot (pid 1, kthreadd, an orphan of another pid
    namespace, or a parent that exited)."""
    children: tuple[ProcessKey, ...]
    depth: int
    subtree: GroupTotals
    """The process and everything below it (kernel threads left out)."""

    @property
    def key(self) -> ProcessKey:
        return self.view.key


@dataclass(frozen=True, slots=True)
class ProcessTree:
    """Processes by parent (ppid), with subtree sums; immutable, a pure function of a snapshot."""

    nodes: Mapping[ProcessKey, TreeNode]
    roots: tuple[ProcessKey, ...]

    def __len__(self) -> int:
        return len(self.nodes)

    def rows(self, sort: str = "rss") -> list[TreeNode]:
        """Every node depth first, each parent before its children and siblings ranked by their
        subtree's ``sort`` figure (a key of :data:`GROUP_SORTS`, ``name`` or ``pid``)."""
        if sort == "name":
            def order(key: ProcessKey) -> tuple[object, ...]:
                return (self.nodes[key].view.sample.name.lower(), key)
            descending = False
        elif sort == "pid":
            def order(key: ProcessKey) -> tuple[object, ...]:
                return (key,)
            descending = False
        elif sort in GROUP_SORTS:
            def order(key: ProcessKey) -> tuple[object, ...]:
                return (_figure(self.nodes[key].subtree, sort), -key[0])
            descending = True
        else:
            raise ValueError(f"the tree cannot be sorted by {sort!r}; choose one of "
                             f"{', '.join((*GROUP_SORTS, 'name', 'pid'))}")
        out: list[TreeNode] = []
        stack = sorted(self.roots, key=order, reverse=not descending)
        while stack:
            node = self.nodes[stack.pop()]
            out.append(node)
            stack.extend(sorted(node.children, key=order, reverse=not descending))
        return out

    def path_to(self, key: ProcessKey) -> list[TreeNode]:
        """The node's ancestors, its root first, and the node itself last."""
        out = []
        node: TreeNode | None = self.nodes.get(key)
        while node is not None:
            out.append(node)
            node = self.nodes.get(node.parent) if node.parent is not None else None
        out.reverse()
        return out


def process_tree(processes: Snapshot | Iterable[ProcessView]) -> ProcessTree:
    """The tree of a snapshot's processes (or of any processes) by ppid.

    A process's parent is the process with its ppid that started no later than it did (a pid
    reused by a younger process is not its parent). Data from a damaged recording may hold a
    loop; a process in one becomes a root. Built without recursion: a chain of thousands of
    processes is fine.
    """
    views = {v.key: v for v in (processes.processes if isinstance(processes, Snapshot) else processes)}
    by_pid: dict[int, ProcessKey] = {}
    for key in views:
        by_pid[key[0]] = key
    parent: dict[ProcessKey, ProcessKey | None] = {}
    for key, v in views.items():
        pk = by_pid.get(v.sample.ppid)
        if pk is None or pk == key or views[pk].sample.start_ticks > v.sample.start_ticks:
            pk = None
        parent[key] = pk
    # break loops: walk up from each process; a walk that comes back to a process on its own
    # path found a loop, and the process where it closed becomes a root
    state: dict[ProcessKey, int] = {}   # 1: on the current walk, 2: done
    for start in views:
        walk = []
        up: ProcessKey | None = start
        while up is not None and state.get(up) is None:
            state[up] = 1
            walk.append(up)
            up = parent[up]
        if up is not None and state.get(up) == 1:
            parent[up] = None
        for k in walk:
            state[k] = 2
    children: dict[ProcessKey, list[ProcessKey]] = {k: [] for k in views}
    roots = []
    for key, pk in parent.items():
        if pk is None:
            roots.append(key)
        else:
            children[pk].append(key)
    # depth first from the roots (parents before children), then sums from the leaves up
    order: list[ProcessKey] = []
    depth: dict[ProcessKey, int] = {}
    stack = [(r, 0) for r in roots]
    while stack:
        key, d = stack.pop()
        depth[key] = d
        order.append(key)
        stack.extend((c, d + 1) for c in children[key])
    sums = {k: _Sums() for k in views}
    for key in reversed(order):
        sums[key].add(views[key])
        pk = parent[key]
        if pk is not None:
            sums[pk].merge(sums[key])
    nodes = {k: TreeNode(views[k], parent[k], tuple(children[k]), depth[k], sums[k].frozen()) for k in order}
    return ProcessTree(MappingProxyType(nodes), tuple(roots))
