"""Model objects to plain JSON-able dicts and back, plus the headless JSON contract.

Recordings call this for every frame, so each class is converted by hand: ``dataclasses.asdict``
recurses generically and deep-copies, which costs several times as much. Every field is written
(no omission of defaults), so a round trip gives back an equal object whatever the defaults become.
Strings go through untouched: odd process names (markup, newlines, backslash-escaped bytes) are data.
"""

from __future__ import annotations

from typing import Any

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
)


class SerializationError(ValueError):
    """A dict does not describe the model object it should (damaged or foreign data)."""


# --- KernelCounts ---------------------------------------------------------------------------------

def kernel_counts_to_dict(k: KernelCounts) -> dict[str, Any]:
    return {
        "mmap_count": k.mmap_count,
        "mmap_bytes": k.mmap_bytes,
        "munmap_count": k.munmap_count,
        "munmap_bytes": k.munmap_bytes,
        "brk_count": k.brk_count,
        "brk_grow_bytes": k.brk_grow_bytes,
        "brk_shrink_bytes": k.brk_shrink_bytes,
        "mremap_count": k.mremap_count,
        "mremap_grow_bytes": k.mremap_grow_bytes,
        "mremap_shrink_bytes": k.mremap_shrink_bytes,
        "outstanding_bytes": k.outstanding_bytes,
        "outstanding_peak_bytes": k.outstanding_peak_bytes,
        "untracked_unmap_bytes": k.untracked_unmap_bytes,
        "failed_calls": k.failed_calls,
        "events_throttled": k.events_throttled,
        "first_seen": k.first_seen,
        "last_seen": k.last_seen,
    }


def kernel_counts_from_dict(d: dict[str, Any]) -> KernelCounts:
    return KernelCounts(
        mmap_count=d["mmap_count"],
        mmap_bytes=d["mmap_bytes"],
        munmap_count=d["munmap_count"],
        munmap_bytes=d["munmap_bytes"],
        brk_count=d["brk_count"],
        brk_grow_bytes=d["brk_grow_bytes"],
        brk_shrink_bytes=d["brk_shrink_bytes"],
        mremap_count=d["mremap_count"],
        mremap_grow_bytes=d["mremap_grow_bytes"],
        mremap_shrink_bytes=d["mremap_shrink_bytes"],
        outstanding_bytes=d["outstanding_bytes"],
        outstanding_peak_bytes=d["outstanding_peak_bytes"],
        untracked_unmap_bytes=d["untracked_unmap_bytes"],
        failed_calls=d["failed_calls"],
        events_throttled=d["events_throttled"],
        first_seen=d["first_seen"],
        last_seen=d["last_seen"],
    )


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
        "peak_rss_kb": e.peak_rss_kb,
        "counts": kernel_counts_to_dict(e.counts) if e.counts is not None else None,
        "rss_kb": e.rss_kb,
        "total_vm_kb": e.total_vm_kb,
        "start_ticks": e.start_ticks,
    }


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of :func:`event_to_dict`; raises :class:`SerializationError` on a foreign dict."""
    try:
        return _event_from_dict(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise SerializationError(f"not a memwatch event: {type(exc).__name__}: {exc}") from exc


def _event_from_dict(d: dict[str, Any]) -> Event:
    counts = d["counts"]
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
        exit_code=d["exit_code"],
        peak_rss_kb=d["peak_rss_kb"],
        counts=kernel_counts_from_dict(counts) if counts is not None else None,
        rss_kb=d["rss_kb"],
        total_vm_kb=d["total_vm_kb"],
        start_ticks=d["start_ticks"],
    )


# --- ProcessSample, SmapsRollup, ProcessView ------------------------------------------------------

def process_sample_to_dict(s: ProcessSample) -> dict[str, Any]:
    return {
        "pid": s.pid,
        "ppid": s.ppid,
        "name": s.name,
        "cmdline": s.cmdline,
        "user": s.user,
        "start_ticks": s.start_ticks,
        "start_time": s.start_time,
        "threads": s.threads,
        "rss_kb": s.rss_kb,
        "virt_kb": s.virt_kb,
        "peak_kb": s.peak_kb,
        "swap_kb": s.swap_kb,
        "shared_kb": s.shared_kb,
        "anon_kb": s.anon_kb,
        "cgroup": s.cgroup,
        "kernel_thread": s.kernel_thread,
        "state": s.state,
    }


def process_sample_from_dict(d: dict[str, Any]) -> ProcessSample:
    return ProcessSample(
        pid=d["pid"],
        ppid=d["ppid"],
        name=d["name"],
        cmdline=d["cmdline"],
        user=d["user"],
        start_ticks=d["start_ticks"],
        start_time=d["start_time"],
        threads=d["threads"],
        rss_kb=d["rss_kb"],
        virt_kb=d["virt_kb"],
        peak_kb=d["peak_kb"],
        swap_kb=d["swap_kb"],
        shared_kb=d["shared_kb"],
        anon_kb=d["anon_kb"],
        cgroup=d["cgroup"],
        kernel_thread=d["kernel_thread"],
        state=d["state"],
    )


def rollup_to_dict(r: SmapsRollup) -> dict[str, Any]:
    return {"pss_kb": r.pss_kb, "uss_kb": r.uss_kb, "swap_pss_kb": r.swap_pss_kb}


def rollup_from_dict(d: dict[str, Any]) -> SmapsRollup:
    return SmapsRollup(pss_kb=d["pss_kb"], uss_kb=d["uss_kb"], swap_pss_kb=d["swap_pss_kb"])


def process_view_to_dict(v: ProcessView) -> dict[str, Any]:
    return {
        "sample": process_sample_to_dict(v.sample),
        "kernel": kernel_counts_to_dict(v.kernel) if v.kernel is not None else None,
        "rollup": rollup_to_dict(v.rollup) if v.rollup is not None else None,
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
        sample=process_sample_from_dict(d["sample"]),
        kernel=kernel_counts_from_dict(kernel) if kernel is not None else None,
        rollup=rollup_from_dict(rollup) if rollup is not None else None,
        growth_kb_s=d["growth_kb_s"],
        leak_suspect=d["leak_suspect"],
        leak_reason=d["leak_reason"],
        rss_history=tuple(d["rss_history"]),
        outstanding_history=tuple(d["outstanding_history"]),
        event_rate_history=tuple(d["event_rate_history"]),
        recent_events=tuple(_event_from_dict(e) for e in d["recent_events"]),
    )


# --- SystemMemory, TracerHealth -------------------------------------------------------------------

def system_memory_to_dict(m: SystemMemory) -> dict[str, Any]:
    return {
        "total_kb": m.total_kb,
        "available_kb": m.available_kb,
        "used_kb": m.used_kb,
        "free_kb": m.free_kb,
        "swap_total_kb": m.swap_total_kb,
        "swap_used_kb": m.swap_used_kb,
        "pressure_some_avg10": m.pressure_some_avg10,
        "pressure_full_avg10": m.pressure_full_avg10,
    }


def system_memory_from_dict(d: dict[str, Any]) -> SystemMemory:
    return SystemMemory(
        total_kb=d["total_kb"],
        available_kb=d["available_kb"],
        used_kb=d["used_kb"],
        free_kb=d["free_kb"],
        swap_total_kb=d["swap_total_kb"],
        swap_used_kb=d["swap_used_kb"],
        pressure_some_avg10=d["pressure_some_avg10"],
        pressure_full_avg10=d["pressure_full_avg10"],
    )


def tracer_health_to_dict(t: TracerHealth) -> dict[str, Any]:
    return {
        "enabled": t.enabled,
        "reason": t.reason,
        "mode": t.mode,
        "events": t.events,
        "events_dropped": t.events_dropped,
        "events_throttled": t.events_throttled,
        "map_full": t.map_full,
        "event_rate": t.event_rate,
    }


def tracer_health_from_dict(d: dict[str, Any]) -> TracerHealth:
    return TracerHealth(
        enabled=d["enabled"],
        reason=d["reason"],
        mode=d["mode"],
        events=d["events"],
        events_dropped=d["events_dropped"],
        events_throttled=d["events_throttled"],
        map_full=d["map_full"],
        event_rate=d["event_rate"],
    )


# --- Snapshot -------------------------------------------------------------------------------------

def snapshot_to_dict(s: Snapshot) -> dict[str, Any]:
    """Everything but ``by_key``, which is an index rebuilt from ``processes``."""
    return {
        "timestamp": s.timestamp,
        "interval_s": s.interval_s,
        "hostname": s.hostname,
        "system": system_memory_to_dict(s.system),
        "tracer": tracer_health_to_dict(s.tracer),
        "processes": [process_view_to_dict(v) for v in s.processes],
        "events": [event_to_dict(e) for e in s.events],
        "system_history": [system_memory_to_dict(m) for m in s.system_history],
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
            system=system_memory_from_dict(d["system"]),
            tracer=tracer_health_from_dict(d["tracer"]),
            processes=tuple(process_view_from_dict(v) for v in d["processes"]),
            events=tuple(_event_from_dict(e) for e in d["events"]),
            system_history=tuple(system_memory_from_dict(m) for m in d["system_history"]),
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
    "mmap_bytes", "munmap_bytes", "brk_bytes", "outstanding_bytes",
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
        "growth_kb_s": view.growth_kb_s,
        "leak_suspect": view.leak_suspect,
    }


def headless_document(snapshot: Snapshot, views: list[ProcessView], duration_s: float) -> dict[str, Any]:
    """The whole `--once --json` document; ``views`` are the chosen rows, already ranked."""
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
    }
