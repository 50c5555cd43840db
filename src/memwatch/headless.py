"""Headless output, the contract scripts rely on: a readable table, JSON or CSV, then exit.

JSON keys and CSV columns come from :mod:`memwatch.serialize` (``headless_document``,
``HEADLESS_COLUMNS``), so the two formats can never disagree about what a process row is.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from collections.abc import Mapping as MappingOf
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any, TypeVar

from memwatch.fields import (
    BY_KEY,
    CSV_DECIMALS,
    HEADLESS_TABLE,
    JSON_FIELDS,
    Field,
    Unit,
    csv_cell,
    csv_text,
    field,
    header,
    plain_text,
)
from memwatch.groups import (
    GROUP_SORT_KEYS,
    GROUP_SORTS,
    TreeNode,
    cgroup_children,
    process_tree,
    rank,
    with_ancestors,
)
from memwatch.maps import Group, MemoryMap
from memwatch.maps import Mapping as MapEntry
from memwatch.model import CgroupView, Event, EventKind, GroupTotals, ProcessView, Snapshot, UserView
from memwatch.serialize import (
    CGROUP_COLUMNS,
    HEADLESS_COLUMNS,
    TOTALS_COLUMNS,
    USER_COLUMNS,
    headless_cgroup_dict,
    headless_document,
    headless_totals,
    headless_user_dict,
)
from memwatch.sources.base import SeekableSource, SnapshotSource
from memwatch.stacks.table import AllocationStack
from memwatch.text import printable

STACKS_TOP = 100
"""Allocation stacks per process in the output, the first by outstanding bytes."""
MAPS_TOP = 20
"""Largest mappings, and paths, per process in the output."""


def parse_time(text: str) -> float:
    """A replay position: seconds since the epoch, or an ISO 8601 time (UTC unless it says)."""
    hint = "give seconds since the epoch or an ISO 8601 time such as 2026-11-26T10:15:00"
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):  # nan would match no frame, yet seek one silently
            raise ValueError(f"cannot read {text!r} as a time: {hint}")
        return seconds
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: {hint}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def iso_utc(timestamp: float) -> str:
    """A time as ``--at`` reads it back (UTC, to the millisecond, no fraction when whole)."""
    text = datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    return text.removesuffix(".000")


AT_SLACK_S = 0.001
"""Times are shown to the millisecond: a span's ends typed back as shown must still be inside."""


def outside_recording(text: str, at: float, first: float, last: float) -> str | None:
    """Why ``--at`` (as typed, ``text``) names no frame of a recording spanning first..last; None
    when it does. A replay would otherwise clamp to the first or last frame without a word."""
    if first - AT_SLACK_S <= at <= last + AT_SLACK_S:
        return None
    where = "before" if at < first else "after"
    return (f"--at {text} is {where} the recording, which spans {iso_utc(first)} to {iso_utc(last)} "
            "(UTC)")


def absent_pids(snapshot: Snapshot, pids: Sequence[int], events: Sequence[Event] = ()) -> list[str]:
    """Why requested ``--pid`` processes are not in the output: one sentence per process seen to
    exit or be OOM-killed, one for all the rest; empty when every one is there. ``events`` adds
    exits the snapshot's bounded log may no longer hold.

    An empty table with a zero exit status would read as "that process uses no memory"."""
    present = {v.pid for v in snapshot.processes}
    wanted = [pid for pid in dict.fromkeys(pids) if pid not in present]
    ends: dict[int, Event] = {}  # the OOM kill wins over the exit it causes: it says more
    for event in (*snapshot.events, *snapshot.new_events, *events):
        if event.timestamp > snapshot.timestamp or event.kind not in (EventKind.EXIT, EventKind.OOM):
            continue
        if event.kind is EventKind.OOM or ends.get(event.pid, event).kind is not EventKind.OOM:
            ends[event.pid] = event
    lines: list[str] = []
    for pid in wanted:
        end = ends.get(pid)
        if end is None:
            continue
        what = "was killed by the OOM killer" if end.kind is EventKind.OOM else "exited"
        when = datetime.fromtimestamp(end.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        where = ("before this frame of the recording" if snapshot.replay_position is not None
                 else f"during the {snapshot.duration_s:.1f} s traced window")
        lines.append(f"process {pid} ({printable(end.name)}) {what} {where}, at {when}")
    unseen = [str(pid) for pid in wanted if pid not in ends]
    if len(unseen) == 1:
        lines.append(f"no process {unseen[0]}")
    elif unseen:
        lines.append(f"no processes {', '.join(unseen[:-1])} and {unseen[-1]}")
    return lines


_PLAIN_WIDTH = {Unit.KB: 10, Unit.BYTES: 10, Unit.COUNT: 7, Unit.KB_S: 7, Unit.PERCENT: 6, Unit.TIME: 10,
                Unit.FLAG: 4}


def _plain_width(f: Field) -> int:
    return max(len(header(f)), _PLAIN_WIDTH.get(f.unit, f.width))


def _headline(snapshot: Snapshot) -> list[str]:
    """The lines above every table: host, time, the tracer's state, system memory."""
    t, sysm = snapshot.tracer, snapshot.system
    when = datetime.fromtimestamp(snapshot.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if t.enabled:
        tracer = (f"eBPF {printable(t.mode or '?')} mode: {t.events} events, {t.events_dropped} dropped, "
                  f"{t.events_throttled + t.events_withheld} withheld, {t.exits_dropped} exits lost, "
                  f"{t.map_full} map-full")
    else:
        tracer = printable(t.reason or "eBPF is off")
    return [
        f"memwatch on {printable(snapshot.hostname)} at {when}, traced {snapshot.duration_s:.1f} s; {tracer}",
        f"memory: {sysm.used_kb} KB used, {sysm.available_kb} KB available of {sysm.total_kb} KB; "
        f"swap {sysm.swap_used_kb} of {sysm.swap_total_kb} KB",
        "",
    ]


def render_table(snapshot: Snapshot, views: Sequence[ProcessView]) -> str:
    """The original monitor's columns plus memwatch's (fields.HEADLESS_TABLE), sizes in KB, '-'
    where a figure is unknown (kernel figures without eBPF), '>=' before a lower bound."""
    columns = [(f, _plain_width(f)) for f in (BY_KEY[k] for k in HEADLESS_TABLE)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for (f, width), cell in zip(columns, cells, strict=True):
            out.append(cell[:width].ljust(width) if f.unit is Unit.TEXT else cell.rjust(width))
        return " ".join(out).rstrip()

    lines = [*_headline(snapshot), line([header(f) for f, _ in columns])]
    lines.extend(line([plain_text(f, v) for f, _ in columns]) for v in views)
    return "\n".join(lines) + "\n"


def render_csv(views: Sequence[ProcessView]) -> str:
    """The processes as CSV: the JSON's columns, each cell formatted by its field's unit
    (``fields.csv_cell``: true/false, rates to a tenth, text escaped, unknown empty)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADLESS_COLUMNS)
    for v in views:
        w.writerow([csv_cell(f, v) for f in JSON_FIELDS])
    return out.getvalue()


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Characters json.dumps leaves raw that a terminal may act on (DEL, the C1 controls such as CSI
0x9b, bidirectional overrides, line separators); C0 controls it escapes itself."""


def stack_dict(s: AllocationStack) -> dict[str, Any]:
    """One allocation stack in headless JSON, innermost frame first."""
    return {
        "kind": s.kind,
        "frames": [{"symbol": f.symbol, "module": f.module, "offset": f.offset} for f in s.frames],
        "calls": s.calls,
        "bytes": s.bytes,
        "unmapped_bytes": s.unmapped_bytes,
        "outstanding_bytes": s.outstanding_bytes,
        "truncated": s.truncated,
    }


def _group_dict(g: Group, name_key: str) -> dict[str, Any]:
    return {name_key: g.name if name_key == "path" else g.kind, "kind": g.kind, "count": g.count,
            "size_kb": g.size_kb, "rss_kb": g.rss_kb, "pss_kb": g.pss_kb, "swap_kb": g.swap_kb,
            "anon_kb": g.anon_kb}


def _mapping_dict(m: MapEntry) -> dict[str, Any]:
    return {"start": m.start, "end": m.end, "perms": m.perms, "offset": m.offset, "path": m.path,
            "kind": m.kind, "size_kb": m.size_kb, "rss_kb": m.rss_kb, "pss_kb": m.pss_kb,
            "swap_kb": m.swap_kb, "anon_kb": m.anon_kb, "mapped_at": m.mapped_at, "mapped_by": m.mapped_by}


def mappings_dict(mm: MemoryMap) -> dict[str, Any]:
    """A process's memory map in headless JSON: totals, sums by kind and by path, the largest."""
    kinds = mm.by_kind()
    total = {k: sum(getattr(g, k) for g in kinds) for k in ("count", "size_kb", "rss_kb", "pss_kb", "swap_kb",
                                                           "anon_kb")}
    return {**total,
            "by_kind": [_group_dict(g, "kind") for g in kinds],
            "by_path": [_group_dict(g, "path") for g in mm.by_path()[:MAPS_TOP]],
            "largest": [_mapping_dict(m) for m in mm.largest(MAPS_TOP)]}


@dataclass(frozen=True, slots=True)
class Looked:
    """What --stacks and --maps found for the processes looked at."""

    stacks: MappingOf[int, Sequence[AllocationStack]] = dataclass_field(default_factory=dict)
    maps: MappingOf[int, MemoryMap] = dataclass_field(default_factory=dict)
    problems: tuple[str, ...] = ()
    """Sentences for stderr: what could not be looked at, and why."""
    missing: tuple[int, ...] = ()
    """Processes asked for that are there but could not be looked at (exit status 1)."""


def render_json(snapshot: Snapshot, views: Sequence[ProcessView], events: Sequence[Event] = (),
                looked: Looked | None = None) -> str:
    """The document with every text kept as data, but nothing in it a terminal could act on."""
    doc = headless_document(snapshot, list(views), snapshot.duration_s, list(events))
    if looked is not None:
        for row in doc["processes"]:
            pid = row["pid"]
            if pid in looked.stacks:
                row["allocation_stacks"] = [stack_dict(s) for s in looked.stacks[pid][:STACKS_TOP]]
            if pid in looked.maps:
                row["mappings"] = mappings_dict(looked.maps[pid])
    text = json.dumps(doc, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def _kb(n: int) -> str:
    return f"{n / 1024:,.0f} KB" if n >= 1024 or n == 0 else f"{n} B"


def render_looked(snapshot: Snapshot, views: Sequence[ProcessView], looked: Looked, stacks_top: int = 10) -> str:
    """--stacks and --maps for the table format: each process's stacks (the first ``stacks_top``
    by outstanding bytes) and its memory map by kind with the largest mappings."""
    lines: list[str] = []
    for v in views:
        name = printable(v.sample.name)
        if v.pid in looked.stacks:
            stacks = looked.stacks[v.pid]
            lines += ["", f"allocation stacks of {v.pid} ({name}), by outstanding bytes ({len(stacks)} stacks):"]
            for st in stacks[:stacks_top]:
                lines.append(f"  {st.kind} x{st.calls}: {_kb(st.bytes)} mapped, {_kb(st.unmapped_bytes)} unmapped, "
                             f"{_kb(st.outstanding_bytes)} outstanding" + ("  (truncated)" if st.truncated else ""))
                if not st.frames:
                    lines.append("      (stacks not captured: over the budget, or the ring was full)")
                for f in st.frames:
                    where = f"{os.path.basename(f.module)}+{f.offset:#x}" if f.module else f"{f.offset:#x}"
                    lines.append(f"      {printable(f.symbol) if f.symbol else '??'} ({printable(where)})")
        if v.pid in looked.maps:
            mm = looked.maps[v.pid]
            lines += ["", f"memory map of {v.pid} ({name}): {len(mm.mappings)} mappings",
                      f"  {'kind':14s} {'count':>6s} {'size KB':>10s} {'RSS KB':>10s} {'PSS KB':>10s} "
                      f"{'swap KB':>9s} {'anon KB':>9s}"]
            for g in mm.by_kind():
                lines.append(f"  {g.kind:14s} {g.count:6d} {g.size_kb:10d} {g.rss_kb:10d} {g.pss_kb:10d} "
                             f"{g.swap_kb:9d} {g.anon_kb:9d}")
            lines.append("  largest:")
            for m in mm.largest(10):
                traced = (f"  mapped {datetime.fromtimestamp(m.mapped_at, UTC).strftime('%H:%M:%S')} by {m.mapped_by}"
                          if m.mapped_at is not None else "")
                lines.append(f"  {m.start:x}-{m.end:x} {m.perms} {m.rss_kb:>8d} KB RSS {m.size_kb:>9d} KB "
                             f"{printable(m.path or '[' + m.kind + ']')}{traced}")
    return "\n".join(lines) + "\n" if lines else ""


@dataclass(frozen=True, slots=True)
class Collected:
    """What ``--once`` reports: the last snapshot, every exit and OOM kill of the window, and
    what --stacks and --maps found."""

    snapshot: Snapshot
    events: tuple[Event, ...]
    looked: Looked = dataclass_field(default_factory=Looked)


async def look_at(source: SnapshotSource, stacks_for: Sequence[int], maps_for: Sequence[int],
                  maps_timeout_s: float = 5.0) -> Looked:
    """Allocation stacks and memory maps of the chosen processes, at the end of the window."""
    from memwatch.sources.live import LiveSource

    if not isinstance(source, LiveSource) or not (stacks_for or maps_for):
        return Looked()
    stacks: dict[int, Sequence[AllocationStack]] = {}
    maps: dict[int, MemoryMap] = {}
    problems: list[str] = []
    missing: list[int] = []
    for pid in stacks_for:
        found = source.allocation_stacks(pid)
        if found is not None:
            stacks[pid] = found
        elif source.tracer is not None and os.path.exists(f"{source.proc_root}/{pid}"):
            # gone ones are said by absent_pids; this one is there, but the tracer did not find it
            missing.append(pid)
            problems.append(f"process {pid}: no allocation stacks: the tracer could not make it a stack target "
                            "(it started after memwatch, or is not in memwatch's pid namespace)")
        for module, why in sorted(source.unreadable_modules(pid).items()):
            problems.append(f"process {pid}: cannot read {printable(module)} ({printable(why)}): its frames show "
                            "as module+offset and the stacks stop there")
    if stacks_for and source.tracer is None:
        problems.append(f"--stacks needs the eBPF tracer, which is off: {source.bpf_reason or 'unknown reason'}")
    for pid in maps_for:
        try:
            maps[pid] = await source.memory_map(pid, maps_timeout_s)
        except TimeoutError:
            problems.append(f"process {pid}: its memory map took longer than {maps_timeout_s:g} s to read "
                            "(smaps waits for the process's mmap lock)")
        except ProcessLookupError:
            pass   # absent_pids says it
        except OSError as exc:
            missing.append(pid)
            problems.append(f"process {pid}: cannot read its memory map ({exc.strerror or exc})")
    return Looked(stacks, maps, tuple(problems), tuple(dict.fromkeys(missing)))


async def collect_once(source: SnapshotSource, duration_s: float | None, at: float | None = None,
                       since: float | None = None, *, stacks_for: Sequence[int] = (),
                       maps_for: Sequence[int] = ()) -> Collected:
    """Live sources trace for ``duration_s`` (default: one interval), sampling every interval on
    the way, so that growth and the leak signal have a history to judge; the last snapshot is
    taken at the end of the window. Replays seek to ``at`` (default: the last frame), with every
    exit and OOM kill recorded from ``since`` (default: the start) to that frame."""
    snap = await source.open()
    try:
        if isinstance(source, SeekableSource):
            snap = source.seek_time(at) if at is not None else source.seek(source.frame_count - 1)
            return Collected(snap, tuple(source.events_between(since, snap.timestamp)))
        events = list(snap.new_events)
        interval = source.interval_s
        window = interval if duration_s is None else duration_s
        # judged by the snapshots' own clock, so a tick that runs late cannot end the window early;
        # the wall clock only guards against a source whose clock does not move
        give_up = time.monotonic() + 2 * window + 30
        while (remaining := window - snap.duration_s) > 0 and time.monotonic() < give_up:
            source.set_interval(min(interval, remaining))
            snap = await source.next()
            events.extend(snap.new_events)
        return Collected(snap, tuple(events), await look_at(source, stacks_for, maps_for))
    finally:
        await source.close()


def render(snapshot: Snapshot, fmt: str, *, top: int, sort: str | None, pids: Sequence[int],
           events: Sequence[Event] = (), group: str | None = None, looked: Looked | None = None) -> str:
    """The chosen processes in the chosen format (``table``, ``json`` or ``csv``), or with
    ``group`` the chosen groups (:func:`render_groups`).

    ``top`` ranks by ``sort`` (0: all; default rss); the ``pids`` are added regardless of rank; a
    negative ``top`` shows the ``pids`` alone.
    """
    if group is not None:
        return render_groups(snapshot, group, fmt, top=max(top, 0), sort=sort, pids=pids)
    sort = sort or "rss"
    if top < 0:  # only the --pid processes
        wanted = set(pids)
        views = [v for v in snapshot.top(0, sort, descending=field(sort).descending) if v.pid in wanted]
    else:
        views = snapshot.top(top, sort, descending=field(sort).descending, pids=tuple(pids))
    if fmt == "json":
        return render_json(snapshot, views, events, looked)
    if fmt == "csv":
        return render_csv(views)
    return render_table(snapshot, views) + (render_looked(snapshot, views, looked) if looked else "")


# ---------------------------------------------------------------------------------------------
# Groups: --group tree|cgroup|user, as a table or CSV (JSON always has cgroups and users).

GROUP_KINDS: tuple[str, ...] = ("tree", "cgroup", "user")
GROUP_DEFAULT_SORT = {"tree": "rss", "cgroup": "memory", "user": "rss"}
"""How groups rank when --sort is not given: cgroups by the kernel's usage (what a limit acts on)."""


def group_sort_keys(group: str) -> tuple[str, ...]:
    """The figures ``--group`` output can rank by."""
    if group == "cgroup":
        return GROUP_SORT_KEYS
    return (*GROUP_SORTS, "name", "pid") if group == "tree" else (*GROUP_SORTS, "name")


def _cell(value: object, *, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if unit == "bytes" and isinstance(value, int):
        return str(value // 1024)
    return printable(str(value))


def _pss_cell(t: GroupTotals) -> str:
    """PSS summed over the processes whose PSS was read: a lower bound when not all were."""
    if t.pss_kb is None:
        return "-"
    return (">=" if t.pss_processes < t.processes else "") + str(t.pss_kb)


Column = tuple[str, int, bool]
"""(header, width, text: left-aligned and never cut but the last)."""


def _plain_rows(headers: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        out = []
        for (_, width, text), cell in zip(headers, cells, strict=True):
            out.append(cell.ljust(width) if text else cell.rjust(width))
        return " ".join(out).rstrip()

    return [line([h for h, _, _ in headers]), *(line(r) for r in rows)]


GROUP_CSV_DECIMALS: dict[str, int] = {
    "growth_kb_s": CSV_DECIMALS[BY_KEY["growth"].unit], "subtree_growth_kb_s": CSV_DECIMALS[BY_KEY["growth"].unit],
    "pressure_some_avg10": 2,  # the kernel's own precision in memory.pressure
}
"""Decimals of the groups' float columns: growth as a process's, pressure as the kernel writes it."""


def _csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([csv_text(row[c], GROUP_CSV_DECIMALS.get(c)) for c in columns])
    return out.getvalue()


TREE_CSV_COLUMNS: tuple[str, ...] = (
    "pid", "ppid", "depth", "name", "rss_kb", *(f"subtree_{k}" for k, _ in TOTALS_COLUMNS),
)
"""The CSV header of ``--group tree``: the process, then its subtree's sums (itself included)."""


def _tree_rows(snapshot: Snapshot, sort: str, pids: Sequence[int]) -> list[TreeNode]:
    tree = process_tree(snapshot.processes)
    rows = tree.rows(sort)
    if pids:
        wanted = set(pids)
        rows = [n for n in rows if any(a.view.pid in wanted for a in tree.path_to(n.key))]
    return rows


def _cgroup_rows(snapshot: Snapshot, sort: str, pids: Sequence[int]) -> list[CgroupView]:
    """Tree order: each cgroup right after its parent, siblings ranked by ``sort``."""
    groups = list(snapshot.cgroups)
    if pids:
        wanted = set(pids)
        groups = with_ancestors(groups, {v.sample.memory_cgroup for v in snapshot.processes
                                         if v.pid in wanted and v.sample.memory_cgroup})
    children = cgroup_children(groups)
    out: list[CgroupView] = []
    stack = list(reversed(rank(children.get(None, []), sort)))
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(reversed(rank(children.get(c.path, []), sort)))
    return out


def _user_rows(snapshot: Snapshot, sort: str, pids: Sequence[int]) -> list[UserView]:
    users = list(snapshot.users)
    if pids:
        wanted = set(pids)
        uids = {v.sample.uid for v in snapshot.processes if v.pid in wanted}
        users = [u for u in users if u.uid in uids]
    return rank(users, sort)


_R = TypeVar("_R")


def _first(rows: list[_R], top: int) -> list[_R]:
    return rows[:top] if top > 0 else rows


def render_groups(snapshot: Snapshot, group: str, fmt: str, *, top: int, sort: str | None,
                  pids: Sequence[int] = ()) -> str:
    """``--group``: the process tree, the memory cgroups or the users, as a table or CSV.

    ``top`` keeps the first N rows (0: all); the tree and cgroups come parents first with
    siblings ranked by ``sort`` (the largest subtrees and cgroups first), users ranked by it.
    ``pids`` keeps the subtrees of those processes, their cgroups (with their ancestors) or their
    users. Sizes in KB, '-' where unknown, '>=' before a lower bound.
    """
    key = sort or GROUP_DEFAULT_SORT[group]
    if key not in group_sort_keys(group):
        raise ValueError(f"--group {group} cannot be sorted by {key!r}; choose one of "
                         f"{', '.join(group_sort_keys(group))}")
    if group == "tree":
        nodes = _first(_tree_rows(snapshot, key, pids), top)
        if fmt == "csv":
            return _csv(TREE_CSV_COLUMNS, [
                {"pid": n.view.pid, "ppid": n.view.sample.ppid, "depth": n.depth, "name": n.view.sample.name,
                 "rss_kb": n.view.sample.rss_kb, **headless_totals(n.subtree, "subtree_")} for n in nodes])
        headers: list[Column] = [("PID", 7, False), ("PROCS", 6, False), ("RSS(KB)", 10, False),
                                 ("TREE_RSS(KB)", 12, False), ("TREE_SWAP(KB)", 13, False),
                                 ("TREE_PSS(KB)", 12, False), ("TREE_OUTST(KB)", 14, False),
                                 ("TREE_GROWTH(KB/s)", 17, False), ("NAME", 0, True)]
        rows = [[str(n.view.pid), str(n.subtree.processes), str(n.view.sample.rss_kb), str(n.subtree.rss_kb),
                 str(n.subtree.swap_kb), _pss_cell(n.subtree), _cell(n.subtree.outstanding_bytes, unit="bytes"),
                 _cell(n.subtree.growth_kb_s), "  " * n.depth + printable(n.view.sample.name)] for n in nodes]
    elif group == "cgroup":
        cgroups = _first(_cgroup_rows(snapshot, key, pids), top)
        if fmt == "csv":
            return _csv(CGROUP_COLUMNS, [headless_cgroup_dict(c) for c in cgroups])
        headers = [("USAGE(KB)", 10, False), ("LIMIT(KB)", 10, False), ("ANON(KB)", 10, False),
                   ("FILE(KB)", 10, False), ("KERNEL(KB)", 10, False), ("SWAP(KB)", 9, False), ("OOM", 4, False),
                   ("OOM_SEEN", 8, False), ("PSI10", 6, False), ("PROCS", 6, False), ("RSS(KB)", 10, False),
                   ("NAME", 30, True), ("PATH", 0, True)]
        rows = []
        for c in cgroups:
            m = c.memory
            limit = "-" if m is None or m.current_kb is None else ("max" if m.max_kb is None else str(m.max_kb))
            rows.append([_cell(m.current_kb if m else None), limit, _cell(m.anon_kb if m else None),
                         _cell(m.file_kb if m else None), _cell(m.kernel_kb if m else None),
                         _cell(m.swap_current_kb if m else None), _cell(m.oom_kill if m else None),
                         str(c.oom_events), _cell(m.pressure_some_avg10 if m else None), str(c.totals.processes),
                         str(c.totals.rss_kb), ("  " * c.depth + printable(c.name))[:30], printable(c.path)])
    else:
        users = _first(_user_rows(snapshot, key, pids), top)
        if fmt == "csv":
            return _csv(USER_COLUMNS, [headless_user_dict(u) for u in users])
        headers = [("UID", 7, False), ("PROCS", 6, False), ("RSS(KB)", 10, False), ("SWAP(KB)", 10, False),
                   ("PSS(KB)", 10, False), ("OUTST(KB)", 10, False), ("GROWTH(KB/s)", 12, False),
                   ("USER", 0, True)]
        rows = [[str(u.uid), str(u.totals.processes), str(u.totals.rss_kb), str(u.totals.swap_kb),
                 _pss_cell(u.totals), _cell(u.totals.outstanding_bytes, unit="bytes"),
                 _cell(u.totals.growth_kb_s), printable(u.name)] for u in users]
    return "\n".join([*_headline(snapshot), *_plain_rows(headers, rows)]) + "\n"
