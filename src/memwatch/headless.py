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
from typing import Any

from memwatch.fields import BY_KEY, HEADLESS_TABLE, Field, Unit, field, header, plain_text
from memwatch.maps import Group, MemoryMap
from memwatch.maps import Mapping as MapEntry
from memwatch.model import Event, EventKind, ProcessView, Snapshot
from memwatch.serialize import HEADLESS_COLUMNS, headless_document, headless_process_dict
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


def render_table(snapshot: Snapshot, views: Sequence[ProcessView]) -> str:
    """The original monitor's columns plus memwatch's (fields.HEADLESS_TABLE), sizes in KB, '-'
    where a figure is unknown (kernel figures without eBPF), '>=' before a lower bound."""
    t, sysm = snapshot.tracer, snapshot.system
    when = datetime.fromtimestamp(snapshot.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if t.enabled:
        tracer = (f"eBPF {printable(t.mode or '?')} mode: {t.events} events, {t.events_dropped} dropped, "
                  f"{t.events_throttled + t.events_withheld} withheld, {t.exits_dropped} exits lost, "
                  f"{t.map_full} map-full")
    else:
        tracer = printable(t.reason or "eBPF is off")
    columns = [(f, _plain_width(f)) for f in (BY_KEY[k] for k in HEADLESS_TABLE)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for (f, width), cell in zip(columns, cells, strict=True):
            out.append(cell[:width].ljust(width) if f.unit is Unit.TEXT else cell.rjust(width))
        return " ".join(out).rstrip()

    lines = [
        f"memwatch on {printable(snapshot.hostname)} at {when}, traced {snapshot.duration_s:.1f} s; {tracer}",
        f"memory: {sysm.used_kb} KB used, {sysm.available_kb} KB available of {sysm.total_kb} KB; "
        f"swap {sysm.swap_used_kb} of {sysm.swap_total_kb} KB",
        "",
        line([header(f) for f, _ in columns]),
    ]
    lines.extend(line([plain_text(f, v) for f, _ in columns]) for v in views)
    return "\n".join(lines) + "\n"


def _csv_cell(value: object) -> object:
    """A CSV cell: text with its control characters escaped (a name may hold terminal escapes,
    and CSV is often read in a terminal), numbers as they are, null as empty."""
    if value is None:
        return ""
    return printable(value) if isinstance(value, str) else value


def render_csv(views: Sequence[ProcessView]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADLESS_COLUMNS)
    for v in views:
        row = headless_process_dict(v)
        w.writerow([_csv_cell(row[c]) for c in HEADLESS_COLUMNS])
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


def render(snapshot: Snapshot, fmt: str, *, top: int, sort: str, pids: Sequence[int],
           events: Sequence[Event] = (), looked: Looked | None = None) -> str:
    """The chosen processes in the chosen format (``table``, ``json`` or ``csv``).

    ``top`` ranks by ``sort`` (0: all); the ``pids`` are added regardless of rank; a negative
    ``top`` shows the ``pids`` alone.
    """
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
