"""Headless output, the contract scripts rely on: a readable table, JSON or CSV, then exit.

JSON keys and CSV columns come from :mod:`memwatch.serialize` (``headless_document``,
``HEADLESS_COLUMNS``), so the two formats can never disagree about what a process row is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from memwatch.model import KernelCounts, ProcessView, Snapshot
from memwatch.serialize import HEADLESS_COLUMNS, headless_document, headless_process_dict
from memwatch.sources.base import SeekableSource, SnapshotSource

_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 9: "\\t", 13: "\\r", 127: "\\x7f"}


def printable(text: str) -> str:
    """A name as one terminal line: control characters escaped, nothing interpreted."""
    return text.translate(_CONTROL)


def parse_time(text: str) -> float:
    """A replay position: seconds since the epoch, or an ISO 8601 time (UTC unless it says)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: give seconds since the epoch or an ISO "
                         "8601 time such as 2026-11-26T10:15:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _num(k: KernelCounts | None, field: str, scale: int = 1) -> str:
    return "-" if k is None else str(getattr(k, field) // scale)


def render_table(snapshot: Snapshot, views: Sequence[ProcessView]) -> str:
    """The original monitor's columns plus memwatch's, sizes in KB, '-' where eBPF is off."""
    t, sysm = snapshot.tracer, snapshot.system
    when = datetime.fromtimestamp(snapshot.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    tracer = (f"eBPF {t.mode} mode: {t.events} events, {t.events_dropped} dropped, {t.map_full} map-full"
              if t.enabled else (t.reason or "eBPF is off"))
    lines = [
        f"memwatch on {printable(snapshot.hostname)} at {when}, traced {snapshot.duration_s:.1f} s; {tracer}",
        f"memory: {sysm.used_kb} KB used, {sysm.available_kb} KB available of {sysm.total_kb} KB; "
        f"swap {sysm.swap_used_kb} of {sysm.swap_total_kb} KB",
        "",
        f"{'PID':>7}  {'NAME':<20} {'RSS(KB)':>10} {'VIRT(KB)':>12} {'PEAK(KB)':>10} {'SWAP(KB)':>9} "
        f"{'MMAP#':>7} {'MUNMAP#':>7} {'BRK#':>6} {'MREMAP#':>7} {'OUTST(KB)':>10} {'GROWTH(KB/s)':>12}  LEAK",
    ]
    for v in views:
        s, k = v.sample, v.kernel
        growth = "-" if v.growth_kb_s is None else f"{v.growth_kb_s:.1f}"
        lines.append(
            f"{s.pid:>7}  {printable(s.name)[:20]:<20} {s.rss_kb:>10} {s.virt_kb:>12} {s.peak_kb:>10} "
            f"{s.swap_kb:>9} {_num(k, 'mmap_count'):>7} {_num(k, 'munmap_count'):>7} "
            f"{_num(k, 'brk_count'):>6} {_num(k, 'mremap_count'):>7} "
            f"{_num(k, 'outstanding_bytes', 1024):>10} {growth:>12}  {'yes' if v.leak_suspect else ''}"
        )
    return "\n".join(lines) + "\n"


def render_csv(views: Sequence[ProcessView]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADLESS_COLUMNS)
    for v in views:
        row = headless_process_dict(v)
        w.writerow(["" if row[c] is None else row[c] for c in HEADLESS_COLUMNS])
    return out.getvalue()


def render_json(snapshot: Snapshot, views: Sequence[ProcessView]) -> str:
    return json.dumps(headless_document(snapshot, list(views), snapshot.duration_s), ensure_ascii=False) + "\n"


async def collect_once(source: SnapshotSource, duration_s: float | None, at: float | None = None) -> Snapshot:
    """One snapshot: live sources trace for ``duration_s`` (default: one interval); replays seek."""
    snap = await source.open()
    try:
        if isinstance(source, SeekableSource):
            return source.seek_time(at) if at is not None else source.seek(source.frame_count - 1)
        wait = source.interval_s if duration_s is None else duration_s
        if wait > 0:
            source.set_interval(wait)
            snap = await source.next()
        return snap
    finally:
        await source.close()


def render(snapshot: Snapshot, fmt: str, *, top: int, sort: str, pids: Sequence[int]) -> str:
    """The chosen processes in the chosen format (``table``, ``json`` or ``csv``).

    ``top`` ranks by ``sort`` (0: all); the ``pids`` are added regardless of rank; a negative
    ``top`` shows the ``pids`` alone.
    """
    if top < 0:  # only the --pid processes
        wanted = set(pids)
        views = [v for v in snapshot.top(0, sort, descending=sort != "name") if v.pid in wanted]
    else:
        views = snapshot.top(top, sort, descending=sort != "name", pids=tuple(pids))
    if fmt == "json":
        return render_json(snapshot, views)
    if fmt == "csv":
        return render_csv(views)
    return render_table(snapshot, views)
