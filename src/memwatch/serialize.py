"""Model objects to plain JSON-able dicts and back, plus the headless JSON contract.

Recordings call this for every frame, so each class is converted field by field from names read
once: ``dataclasses.asdict`` recurses generically and deep-copies, which costs several times as
much. Every field is written (no omission of defaults), so a round trip gives back an equal object
whatever the defaults become.
Strings go through untouched: odd process names (markup, newlines, backslash-escaped bytes) are data.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

from memwatch.model import (
    Event,
    EventKind,
    KernelCounts,
    ProcessSample,
    ProcessView,
    SmapsRollup,
    Snapshot,
    SystemMemory,
    TracerHealth,
    decode_wait_status,
)


class SerializationError(ValueError):
    """A dict does not describe the model object it should (damaged or foreign data)."""


# --- Flat records: KernelCounts, ProcessSample, SmapsRollup, SystemMemory, TracerHealth ---------

_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls))
    for cls in (KernelCounts, ProcessSample, SmapsRollup, SystemMemory, TracerHealth)
}
"""Field names of the records made only of scalars: read once, so a frame costs a getattr a field."""
_REQUIRED: dict[type, frozenset[str]] = {
    cls: frozenset(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)
    for cls in _FIELDS
}
"""Fields without a default: a record written before a defaulted field existed still reads."""

_Flat = TypeVar("_Flat", KernelCounts, ProcessSample, SmapsRollup, SystemMemory, TracerHealth)


def flat_to_dict(record: KernelCounts | ProcessSample | SmapsRollup | SystemMemory | TracerHealth,
                 ) -> dict[str, Any]:
    """Every field of a record of scalars, by name."""
    return {name: getattr(record, name) for name in _FIELDS[type(record)]}


def flat_from_dict(cls: type[_Flat], d: dict[str, Any]) -> _Flat:
    """Inverse of :func:`flat_to_dict`; a missing required field raises KeyError (caller turns it
    into :class:`SerializationError`), a missing defaulted one (newer than the data) takes its default."""
    missing = _REQUIRED[cls].difference(d)
    if missing:
        raise KeyError(", ".join(sorted(missing)))
    return cls(**{name: d[name] for name in _FIELDS[cls] if name in d})


# --- Event ----------------------------------------------------------------------------------------

def event_to_dict(e: Event) -> dict[str, Any]:
    return {
        "timestamp": e.timestamp,
        "kind": e.kind.value,
        "pid": e.pid,
        "tid": e.tid,
        "name": e.name,
        "addr": e.addr,
        "length": e.length,
        "new_addr": e.new_addr,
        "new_length": e.new_length,
        "flags": e.flags,
        "prot": e.prot,
        "exit_code": e.exit_code,
        "signal": e.signal,
        "peak_rss_kb": e.peak_rss_kb,
        "counts": flat_to_dict(e.counts) if e.counts is not None else None,
        "rss_kb": e.rss_kb,
        "total_vm_kb": e.total_vm_kb,
        "start_ticks": e.start_ticks,
        "start_time": e.start_time,
    }


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of :func:`event_to_dict`; raises :class:`SerializationError` on a foreign dict."""
    try:
        return _event_from_dict(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise SerializationError(f"not a memwatch event: {type(exc).__name__}: {exc}") from exc


def _event_from_dict(d: dict[str, Any]) -> Event:
    counts = d["counts"]
    if "signal" in d:
        code, sig = d["exit_code"], d["signal"]
    elif d["exit_code"] is not None:  # written before exit codes were decoded: a wait(2) status
        code, sig = decode_wait_status(d["exit_code"])
    else:
        code, sig = None, None
    return Event(
        timestamp=d["timestamp"],
        kind=EventKind(d["kind"]),
        pid=d["pid"],
        tid=d["tid"],
        name=d["name"],
        addr=d["addr"],
        length=d["length"],
        new_addr=d["new_addr"],
        new_length=d["new_length"],
        flags=d["flags"],
        prot=d["prot"],
        exit_code=code,
        signal=sig,
        peak_rss_kb=d["peak_rss_kb"],
        counts=flat_from_dict(KernelCounts, counts) if counts is not None else None,
        rss_kb=d["rss_kb"],
        total_vm_kb=d["total_vm_kb"],
        start_ticks=d["start_ticks"],
        start_time=d.get("start_time"),
    )


# --- ProcessView ----------------------------------------------------------------------------------

def process_view_to_dict(v: ProcessView) -> dict[str, Any]:
    return {
        "sample": flat_to_dict(v.sample),
        "kernel": flat_to_dict(v.kernel) if v.kernel is not None else None,
        "rollup": flat_to_dict(v.rollup) if v.rollup is not None else None,
        "growth_kb_s": v.growth_kb_s,
        "leak_suspect": v.leak_suspect,
        "leak_reason": v.leak_reason,
        "rss_history": list(v.rss_history),
        "outstanding_history": list(v.outstanding_history),
        "event_rate_history": list(v.event_rate_history),
        "recent_events": [event_to_dict(e) for e in v.recent_events],
    }


def process_view_from_dict(d: dict[str, Any]) -> ProcessView:
    kernel = d["kernel"]
    rollup = d["rollup"]
    return ProcessView(
        sample=flat_from_dict(ProcessSample, d["sample"]),
        kernel=flat_from_dict(KernelCounts, kernel) if kernel is not None else None,
        rollup=flat_from_dict(SmapsRollup, rollup) if rollup is not None else None,
        growth_kb_s=d["growth_kb_s"],
        leak_suspect=d["leak_suspect"],
        leak_reason=d["leak_reason"],
        rss_history=tuple(d["rss_history"]),
        outstanding_history=tuple(d["outstanding_history"]),
        event_rate_history=tuple(d["event_rate_history"]),
        recent_events=tuple(_event_from_dict(e) for e in d["recent_events"]),
    )


# --- Snapshot -------------------------------------------------------------------------------------

def snapshot_to_dict(s: Snapshot) -> dict[str, Any]:
    """Everything but ``by_key``, which is an index rebuilt from ``processes``."""
    return {
        "timestamp": s.timestamp,
        "interval_s": s.interval_s,
        "hostname": s.hostname,
        "system": flat_to_dict(s.system),
        "tracer": flat_to_dict(s.tracer),
        "processes": [process_view_to_dict(v) for v in s.processes],
        "events": [event_to_dict(e) for e in s.events],
        "new_events": [event_to_dict(e) for e in s.new_events],
        "system_history": [flat_to_dict(m) for m in s.system_history],
        "duration_s": s.duration_s,
        "paused": s.paused,
        "replay_position": list(s.replay_position) if s.replay_position is not None else None,
    }


def snapshot_from_dict(d: dict[str, Any]) -> Snapshot:
    """Inverse of :func:`snapshot_to_dict`; raises :class:`SerializationError` on a foreign dict."""
    try:
        position = d["replay_position"]
        return Snapshot(
            timestamp=d["timestamp"],
            interval_s=d["interval_s"],
            hostname=d["hostname"],
            system=flat_from_dict(SystemMemory, d["system"]),
            tracer=flat_from_dict(TracerHealth, d["tracer"]),
            processes=tuple(process_view_from_dict(v) for v in d["processes"]),
            events=tuple(_event_from_dict(e) for e in d["events"]),
            new_events=tuple(_event_from_dict(e) for e in d.get("new_events", ())),
            system_history=tuple(flat_from_dict(SystemMemory, m) for m in d["system_history"]),
            duration_s=d["duration_s"],
            paused=d["paused"],
            replay_position=(position[0], position[1]) if position is not None else None,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SerializationError(f"not a memwatch snapshot: {type(exc).__name__}: {exc}") from exc


# --- Headless JSON contract (`memwatch --once --json`) --------------------------------------------

HEADLESS_COLUMNS: tuple[str, ...] = (
    "pid", "ppid", "name", "cmdline", "user", "start_time",
    "rss_kb", "virt_kb", "peak_kb", "swap_kb", "shared_kb", "pss_kb", "uss_kb",
    "mmap_count", "munmap_count", "brk_count", "mremap_count",
    "mmap_bytes", "munmap_bytes", "brk_bytes", "outstanding_bytes", "outstanding_complete",
    "growth_kb_s", "leak_suspect",
)
"""Per-process keys of the headless JSON, in order; the CSV header uses the same names."""


def headless_process_dict(view: ProcessView) -> dict[str, Any]:
    """One process for headless output: kernel figures are null (not 0) when eBPF did not see it."""
    s, k, r = view.sample, view.kernel, view.rollup
    return {
        "pid": s.pid,
        "ppid": s.ppid,
        "name": s.name,
        "cmdline": s.cmdline,
        "user": s.user,
        "start_time": s.start_time,
        "rss_kb": s.rss_kb,
        "virt_kb": s.virt_kb,
        "peak_kb": s.peak_kb,
        "swap_kb": s.swap_kb,
        "shared_kb": s.shared_kb,
        "pss_kb": r.pss_kb if r is not None else None,
        "uss_kb": r.uss_kb if r is not None else None,
        "mmap_count": k.mmap_count if k is not None else None,
        "munmap_count": k.munmap_count if k is not None else None,
        "brk_count": k.brk_count if k is not None else None,
        "mremap_count": k.mremap_count if k is not None else None,
        "mmap_bytes": k.mmap_bytes if k is not None else None,
        "munmap_bytes": k.munmap_bytes if k is not None else None,
        "brk_bytes": k.brk_bytes if k is not None else None,
        "outstanding_bytes": k.outstanding_bytes if k is not None else None,
        "outstanding_complete": k.outstanding_complete if k is not None else None,
        "growth_kb_s": view.growth_kb_s,
        "leak_suspect": view.leak_suspect,
    }


EVENT_COUNTERS: tuple[str, ...] = (
    "mmap_count", "munmap_count", "brk_count", "mremap_count", "mmap_bytes", "munmap_bytes", "brk_bytes",
    "outstanding_bytes",
)
"""The final counters an exit event carries in headless JSON (the process rows' names)."""


def headless_event_dict(e: Event) -> dict[str, Any]:
    """An exit or OOM kill for headless output; counters are null when the process made no traced
    call (or eBPF was off)."""
    c = e.counts
    out: dict[str, Any] = {
        "time": e.timestamp,
        "kind": e.kind.value,
        "pid": e.pid,
        "start_time": e.start_time,
        "name": e.name,
        "exit_code": e.exit_code,
        "signal": e.signal,
        "peak_rss_kb": e.peak_rss_kb,
        "rss_kb": e.rss_kb,
    }
    for name in EVENT_COUNTERS:
        out[name] = None if c is None else (c.brk_bytes if name == "brk_bytes" else getattr(c, name))
    return out


def headless_document(snapshot: Snapshot, views: list[ProcessView], duration_s: float,
                      events: list[Event] | None = None) -> dict[str, Any]:
    """The whole `--once --json` document; ``views`` are the chosen rows, already ranked, and
    ``events`` every exit and OOM kill of the window, oldest first."""
    t, m = snapshot.tracer, snapshot.system
    return {
        "timestamp": snapshot.timestamp,
        "duration_s": duration_s,
        "hostname": snapshot.hostname,
        "bpf": {
            "enabled": t.enabled,
            "reason": t.reason,
            "events": t.events,
            "events_dropped": t.events_dropped,
            "events_throttled": t.events_throttled,
            "events_withheld": t.events_withheld,
            "exits_dropped": t.exits_dropped,
            "map_full": t.map_full,
        },
        "system": {
            "total_kb": m.total_kb,
            "available_kb": m.available_kb,
            "used_kb": m.used_kb,
            "swap_total_kb": m.swap_total_kb,
            "swap_used_kb": m.swap_used_kb,
        },
        "processes": [headless_process_dict(v) for v in views],
        "events": [headless_event_dict(e) for e in events or ()],
    }
