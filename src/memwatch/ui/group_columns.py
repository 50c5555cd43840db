"""The columns of the group views: the process tree, the memory cgroups, the users.

They are :class:`~memwatch.ui.columns.ColumnSpec` s like the process table's, so the same table
widget fits, sorts and draws them (widths, drop priorities, the header's unit and arrow); their
sort keys are the group views' (:data:`memwatch.ui.group_rows.SORTS`). A group column renders a
row of its view (a TreeRow, a CgroupRow, a UserView), not a process.

Names and paths go through :func:`memwatch.text.printable` and into ``Text``, never markup. Sums
that cover only some processes are marked: PSS read for some processes only is a lower bound
('≥'); a kernel sum without eBPF is a dash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from rich.text import Text

from memwatch.fields import Field, Unit
from memwatch.model import CgroupMemory, GroupTotals, ProcessView
from memwatch.ui import formatting as fmt
from memwatch.ui.columns import DASH, ColumnSpec, Justify
from memwatch.ui.group_rows import CgroupRow, Mode, TreeRow

BAR_WIDTH = 10
Render = Callable[[Any, bool], Text]


def _right(text: str, style: str = "") -> Text:
    return Text(text, justify="right", style=style)


def _column(key: str, label: str, unit: Unit, title: str, render: Render, *, width: int = 8, drop: int = 5,
            sort: str | None = None) -> ColumnSpec:
    """A group column; ``sort`` (default: the key; "": none) is what a click on its header ranks by."""
    f = Field(key, label, unit, title, lambda v: None, "store", width=width, drop_priority=drop)
    justify: Justify = "left" if unit is Unit.TEXT else "right"
    # the renderer takes the view's row; ColumnSpec calls its argument a ProcessView
    return ColumnSpec(key, label, width, drop, key if sort is None else (sort or None), justify,
                      cast("Callable[[ProcessView, bool], Text]", render), f)


# ----- sums (GroupTotals) of a row, whatever the view -------------------------------------------------


def _totals(row: Any) -> GroupTotals:
    if isinstance(row, TreeRow):
        return row.node.subtree
    if isinstance(row, CgroupRow):
        return row.view.totals
    return cast("GroupTotals", row.totals)


def _kb(read: Callable[[GroupTotals], int | None], width: int) -> Render:
    def render(row: Any, human: bool) -> Text:
        value = read(_totals(row))
        return DASH if value is None else _right(fmt.size_kb(value, human, width))
    return render


def _pss(width: int) -> Render:
    def render(row: Any, human: bool) -> Text:
        t = _totals(row)
        if t.pss_kb is None:
            return DASH
        if t.pss_processes < t.processes:  # read for some of them only
            return _right("≥" + fmt.size_kb(t.pss_kb, human, width - 1), "yellow")
        return _right(fmt.size_kb(t.pss_kb, human, width))
    return render


def _outstanding(width: int) -> Render:
    def render(row: Any, human: bool) -> Text:
        value = _totals(row).outstanding_bytes
        return DASH if value is None else _right(fmt.size_bytes(value, human, width))
    return render


def _count(name: str) -> Render:
    def render(row: Any, human: bool) -> Text:
        value = getattr(_totals(row), name)
        return DASH if value is None else _right(fmt.count(int(value)))
    return render


def _growth(row: Any, human: bool) -> Text:
    value = _totals(row).growth_kb_s
    return _right(fmt.growth(value), "yellow" if value is not None and value > 0 else "")


def _processes(row: Any, human: bool) -> Text:
    return _right(str(_totals(row).processes))


def _sums(width: int = 9) -> tuple[ColumnSpec, ...]:
    """The sums every group view shows, RSS first."""
    return (
        _column("processes", "PROCS", Unit.COUNT, "processes (kernel threads left out)", _processes, width=5,
                drop=4),
        _column("rss", "RSS", Unit.KB, "their resident memory", _kb(lambda t: t.rss_kb, width), width=width,
                drop=0),
        _column("swap", "SWAP", Unit.KB, "their swapped-out memory", _kb(lambda t: t.swap_kb, width),
                width=width, drop=3),
        _column("pss", "PSS", Unit.KB, "their PSS, where read (≥: not all read)", _pss(width), width=width,
                drop=6),
        _column("outstanding", "OUTST", Unit.BYTES, "mapped by traced calls, still mapped", _outstanding(width),
                width=width, drop=2),
        _column("growth", "GROWTH", Unit.KB_S, "their RSS growth, KB/s", _growth, width=7, drop=2),
        _column("mmap", "MMAP#", Unit.COUNT, "their traced mmap calls", _count("mmap_count"), width=7, drop=7),
        _column("munmap", "MUNMAP#", Unit.COUNT, "their traced munmap calls", _count("munmap_count"), width=7,
                drop=7),
        _column("brk", "BRK#", Unit.COUNT, "their traced brk calls", _count("brk_count"), width=6, drop=8),
        _column("mremap", "MREMAP#", Unit.COUNT, "their traced mremap calls", _count("mremap_count"), width=7,
                drop=8),
    )


# ----- the tree ------------------------------------------------------------------------------------------

TREE_NAME_WIDTH = 36


def _tree_pid(row: TreeRow, human: bool) -> Text:
    return _right(str(row.view.pid))


def _tree_name(row: TreeRow, human: bool) -> Text:
    text = Text(row.prefix, style="dim")
    node = row.node
    if node.children:
        text.append("▸ " if row.collapsed else "▾ ", style="bold")
    elif row.prefix:
        text.append("─ ", style="dim")
    s = node.view.sample
    style = "dim" if s.kernel_thread else ("red" if node.view.leak_suspect else "")
    text.append(fmt.printable(s.name), style=style)
    if row.collapsed:
        text.append(f" (+{_hidden(row)})", style="dim")
    text.truncate(TREE_NAME_WIDTH)
    return text


def _hidden(row: TreeRow) -> int:
    """Processes hidden below a collapsed one (kernel threads too: they are rows)."""
    return row.node.subtree.processes - (0 if row.view.sample.kernel_thread else 1)


def _own_rss(row: TreeRow, human: bool) -> Text:
    return _right(fmt.size_kb(row.view.sample.rss_kb, human, 9))


TREE_COLUMNS: tuple[ColumnSpec, ...] = (
    _column("pid", "PID", Unit.COUNT, "process id", _tree_pid, width=7, drop=0),
    _column("name", "NAME", Unit.TEXT, "process name, under its parent", _tree_name, width=TREE_NAME_WIDTH,
            drop=0),
    _column("own_rss", "OWN", Unit.KB, "the process's own RSS", _own_rss, width=9, drop=3, sort=""),
    *_sums(),
)
"""The tree: each process, then its subtree's sums (itself included)."""


# ----- memory cgroups ------------------------------------------------------------------------------------

CGROUP_NAME_WIDTH = 30


def _memory(row: CgroupRow) -> CgroupMemory | None:
    return row.view.memory


def _cgroup_name(row: CgroupRow, human: bool) -> Text:
    text = Text(row.prefix, style="dim")
    text.append(fmt.printable(row.view.name), style="bold" if row.view.own.processes else "")
    text.truncate(CGROUP_NAME_WIDTH)
    return text


def _usage(row: CgroupRow, human: bool) -> Text:
    m = _memory(row)
    return DASH if m is None or m.current_kb is None else _right(fmt.size_kb(m.current_kb, human, 9))


def _limit(row: CgroupRow, human: bool) -> Text:
    m = _memory(row)
    if m is None or m.current_kb is None:
        return DASH
    return _right("none", "dim") if m.max_kb is None else _right(fmt.size_kb(m.max_kb, human, 9))


def usage_bar(memory: CgroupMemory | None, width: int = BAR_WIDTH) -> Text:
    """Usage against the limit as a bar and a percentage; no limit is said, never a bar against
    infinity; unknown is a dash."""
    if memory is None or memory.current_kb is None:
        return Text("-", style="dim")
    if memory.max_kb is None:
        return Text("no limit", style="dim")
    share = memory.current_kb / memory.max_kb if memory.max_kb > 0 else 1.0
    filled = max(0, min(width, round(share * width)))
    style = "red" if share >= 0.9 else "yellow" if share >= 0.75 else "green"
    text = Text("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    text.append(f" {min(share, 9.99) * 100:3.0f}%")
    return text


def _bar(row: CgroupRow, human: bool) -> Text:
    return usage_bar(_memory(row))


def _mem(name: str) -> Render:
    def render(row: CgroupRow, human: bool) -> Text:
        m = _memory(row)
        value = None if m is None else getattr(m, name)
        return DASH if value is None else _right(fmt.size_kb(int(value), human, 9))
    return render


def _oom(row: CgroupRow, human: bool) -> Text:
    """The kernel's count of OOM kills (from before memwatch started too) / those memwatch saw."""
    m = _memory(row)
    kernel = "-" if m is None or m.oom_kill is None else str(m.oom_kill)
    seen = row.view.oom_events
    if kernel == "-" and not seen:
        return DASH
    return _right(f"{kernel}/{seen}", "bold red" if seen or (m is not None and m.oom_kill) else "")


def _pressure(row: CgroupRow, human: bool) -> Text:
    m = _memory(row)
    if m is None or m.pressure_some_avg10 is None:  # v1 has no pressure files
        return DASH
    value = m.pressure_some_avg10
    return _right(f"{value:.1f}", "yellow" if value >= 10 else "")


def _path(row: CgroupRow, human: bool) -> Text:
    return Text(fmt.printable(row.view.path), style="dim")


CGROUP_COLUMNS: tuple[ColumnSpec, ...] = (
    _column("name", "CGROUP", Unit.TEXT, "readable name, under its parent", _cgroup_name,
            width=CGROUP_NAME_WIDTH, drop=0),
    _column("memory", "USAGE", Unit.KB, "the kernel's usage (page cache and kernel memory too)", _usage,
            width=9, drop=0),
    _column("limit", "LIMIT", Unit.KB, "the limit (memory.max; none: no limit)", _limit, width=9, drop=1,
            sort=""),
    _column("bar", "USE/LIMIT", Unit.TEXT, "usage against the limit", _bar, width=BAR_WIDTH + 5, drop=1, sort=""),
    _column("cg_swap", "CGSWAP", Unit.KB, "the kernel's swap figure", _mem("swap_current_kb"), width=9, drop=5,
            sort=""),
    _column("oom", "OOM", Unit.COUNT, "OOM kills: the kernel's count / those memwatch saw", _oom, width=7,
            drop=2, sort=""),
    _column("psi", "PSI10", Unit.PERCENT, "memory pressure, some, avg10 (v2; - on v1)", _pressure, width=6,
            drop=3, sort=""),
    _column("anon", "ANON", Unit.KB, "anonymous memory (memory.stat)", _mem("anon_kb"), width=9, drop=6,
            sort=""),
    _column("file", "FILE", Unit.KB, "page cache (memory.stat)", _mem("file_kb"), width=9, drop=6, sort=""),
    _column("kernel", "KERNEL", Unit.KB, "kernel memory (memory.stat)", _mem("kernel_kb"), width=9, drop=7,
            sort=""),
    *(c for c in _sums() if c.key in ("processes", "rss", "growth")),
    _column("path", "PATH", Unit.TEXT, "path in the memory hierarchy", _path, width=40, drop=4, sort=""),
)
"""Cgroups: the kernel's accounting first, then their processes' sums, then the path."""


# ----- users ---------------------------------------------------------------------------------------------


def _uid(row: Any, human: bool) -> Text:
    return DASH if row.uid < 0 else _right(str(row.uid))


def _user(row: Any, human: bool) -> Text:
    return Text(fmt.printable(row.name)[:16])


USER_COLUMNS: tuple[ColumnSpec, ...] = (
    _column("uid", "UID", Unit.COUNT, "user id", _uid, width=7, drop=0),
    _column("name", "USER", Unit.TEXT, "user name", _user, width=16, drop=0),
    *_sums(),
)

COLUMNS_OF: dict[Mode, tuple[ColumnSpec, ...]] = {"tree": TREE_COLUMNS, "cgroups": CGROUP_COLUMNS,
                                                   "users": USER_COLUMNS}
