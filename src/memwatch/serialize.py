"""Model objects to plain JSON-able dicts and back, plus the headless JSON contract.

Recordings call this for every frame, so each class is converted field by field from names read
once: ``dataclasses.asdict`` recurses generically and deep-copies, which costs several times as
much. Every field is written (no omission of defaults), so a round trip gives back an equal object
whatever the defaults become.
Strings go through untouched: odd process names (markup, newlines, backslash-escaped bytes) are data.

Reading checks every value against its field's annotation (an ``int`` field takes a JSON integer,
a ``float`` one a number, ``X | None`` also null, histories lists of numbers), because a recording
is a file anyone can hand over: a string where a number belongs would otherwise pass through here
and blow up later in whatever view formats it, far from the frame that caused it. The checks are
type identity tests against tables built once from the annotations, so they add little to a decode
(bench/bench_recording.py measures it). A missing field that has a default takes it (data written
before the field existed); an unknown key is ignored (data written by a newer memwatch).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from memwatch.fields import JSON_FIELDS
from memwatch.model import (
    CgroupMemory,
    CgroupView,
    Event,
    EventKind,
    GroupTotals,
    KernelCounts,
    ProcessSample,
    ProcessView,
    SmapsRollup,
    Snapshot,
    SystemMemory,
    TracerHealth,
    UserView,
    decode_wait_status,
)


class SerializationError(ValueError):
    """A dict does not describe the model object it should (damaged or foreign data)."""


class _Bad(Exception):
    """One wrong value, with the path to it built up on the way out (``processes[3].sample.pid``)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where = where
        self.problem = problem

    def inside(self, outer: str) -> _Bad:
        self.where = f"{outer}.{self.where}" if self.where else outer
        return self

    def __str__(self) -> str:
        return f"{self.where} {self.problem}" if self.where else self.problem


_NONE = type(None)
_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    int: ((int,), "an integer"),
    float: ((float, int), "a number"),
    str: ((str,), "a string"),
    bool: ((bool,), "true or false"),
}
"""What JSON gives back for each scalar annotation. ``type(v) in allowed`` rather than isinstance:
it is faster and keeps ``true`` out of integer fields (bool is a subclass of int)."""


def _show(value: object) -> str:
    """A wrong value for a message: its JSON kind, and a short excerpt of it."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", _NONE: "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    text = repr(value)
    return f"{kind} ({text[:40]}{'...' if len(text) > 40 else ''})" if value is not None else kind


FieldSpec = tuple[str, tuple[type, ...], str, bool]
"""(name, allowed JSON types, what they are in words, required)."""


def _spec(cls: type, skip: tuple[str, ...] = ()) -> tuple[FieldSpec, ...]:
    """The checks for a dataclass's scalar fields, from its annotations (``int | None`` and so on)."""
    hints = get_type_hints(cls)
    out: list[FieldSpec] = []
    for f in fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        optional = False
        if get_origin(hint) in (Union, types.UnionType):
            args = [a for a in get_args(hint) if a is not _NONE]
            optional = len(args) < len(get_args(hint))
            if len(args) != 1:
                raise TypeError(f"{cls.__name__}.{f.name}: no check for {hint}")
            hint = args[0]
        allowed, words = _SCALARS[hint]
        if optional:
            allowed, words = (*allowed, _NONE), f"{words} or null"
        required = f.default is MISSING and f.default_factory is MISSING
        out.append((f.name, allowed, words, required))
    return tuple(out)


def _check_fields(spec: tuple[FieldSpec, ...], d: Any) -> dict[str, Any]:
    """The checked keyword arguments for a record; raises :class:`_Bad` naming the field."""
    if type(d) is not dict:
        raise _Bad("", f"should be an object, not {_show(d)}")
    kwargs: dict[str, Any] = {}
    for name, allowed, words, required in spec:
        try:
            value = d[name]
        except KeyError:
            if required:
                raise _Bad(name, "is missing") from None
            continue
        if type(value) not in allowed:
            raise _Bad(name, f"should be {words}, not {_show(value)}")
        kwargs[name] = value
    return kwargs


def _list(d: Any, name: str) -> list[Any]:
    """A list field, which a foreign frame may have replaced by anything else."""
    value = d[name]
    if type(value) is not list:
        raise _Bad(name, f"should be a list, not {_show(value)}")
    return value


_INT_TYPES = frozenset({int})


def _numbers(d: dict[str, Any], name: str, *, integers: bool) -> tuple[Any, ...]:
    """A history: a list of integers (or of numbers), checked by summing it.

    ``sum`` runs in C and raises TypeError on anything that is not a number, and its result is an
    int only when every element is one (true/false count as 1/0): about three times cheaper than
    looking at each element's type, and a frame holds three histories per process.
    """
    values = _list(d, name)
    try:
        total = sum(values)
    except TypeError:
        total = None
    if type(total) is not int and (integers or type(total) is not float):
        allowed = (int, bool) if integers else (int, bool, float)
        wrong = next(v for v in values if type(v) not in allowed)
        raise _Bad(name, f"should hold {'integers' if integers else 'numbers'} only, not {_show(wrong)}")
    return tuple(values)


# --- Flat records: KernelCounts, ProcessSample, SmapsRollup, SystemMemory, TracerHealth ---------

_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls))
    for cls in (KernelCounts, ProcessSample, SmapsRollup, SystemMemory, TracerHealth, GroupTotals, CgroupMemory)
}
"""Field names of the records made only of scalars: read once, so a frame costs a getattr a field."""
_SPECS: dict[type, tuple[FieldSpec, ...]] = {cls: _spec(cls) for cls in _FIELDS}
"""Their checks; a field without a default is required, so a record written before a defaulted
field existed still reads."""

_Flat = TypeVar("_Flat", KernelCounts, ProcessSample, SmapsRollup, SystemMemory, TracerHealth, GroupTotals,
                CgroupMemory)


def flat_to_dict(record: KernelCounts | ProcessSample | SmapsRollup | SystemMemory | TracerHealth | GroupTotals
                 | CgroupMemory) -> dict[str, Any]:
    """Every field of a record of scalars, by name."""
    return {name: getattr(record, name) for name in _FIELDS[type(record)]}


def flat_from_dict(cls: type[_Flat], d: dict[str, Any]) -> _Flat:
    """Inverse of :func:`flat_to_dict`; raises :class:`SerializationError` naming a missing required
    field or a value of the wrong type; a missing defaulted one (newer than the data) takes its default."""
    try:
        return cls(**_check_fields(_SPECS[cls], d))
    except _Bad as exc:
        raise SerializationError(f"not a memwatch {cls.__name__}: {exc}") from None


def _flat(cls: type[_Flat], d: Any, name: str) -> _Flat:
    try:
        return cls(**_check_fields(_SPECS[cls], d))
    except _Bad as exc:
        raise exc.inside(name) from None


def _optional_flat(cls: type[_Flat], d: dict[str, Any], name: str) -> _Flat | None:
    value = d[name]
    return None if value is None else _flat(cls, value, name)


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
        "cgroup": e.cgroup,
        "cgroup_id": e.cgroup_id,
    }


_EVENT_SPEC = _spec(Event, skip=("kind", "counts"))
_EVENT_KINDS = {k.value: k for k in EventKind}


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of :func:`event_to_dict`; raises :class:`SerializationError` on a foreign dict."""
    try:
        return _event_from_dict(d)
    except _Bad as exc:
        raise SerializationError(f"not a memwatch event: {exc}") from None


def _event_from_dict(d: Any) -> Event:
    kw = _check_fields(_EVENT_SPEC, d)
    if "kind" not in d:
        raise _Bad("kind", "is missing")
    kind = d["kind"]
    if type(kind) is not str or kind not in _EVENT_KINDS:
        raise _Bad("kind", f"should be one of {', '.join(_EVENT_KINDS)}, not {_show(kind)}")
    kw["kind"] = _EVENT_KINDS[kind]
    counts = d.get("counts")
    if counts is not None:
        kw["counts"] = _flat(KernelCounts, counts, "counts")
    if "signal" not in d and kw.get("exit_code") is not None:
        # written before exit codes were decoded: a wait(2) status
        kw["exit_code"], kw["signal"] = decode_wait_status(kw["exit_code"])
    return Event(**kw)


def _events(d: dict[str, Any], name: str) -> tuple[Event, ...]:
    return _items(d, name, _event_from_dict)


# --- ProcessView ----------------------------------------------------------------------------------

def process_view_to_dict(v: ProcessView) -> dict[str, Any]:
    return {
        "sample": flat_to_dict(v.sample),
        "kernel": flat_to_dict(v.kernel) if v.kernel is not None else None,
        "rollup": flat_to_dict(v.rollup) if v.rollup is not None else None,
        "growth_kb_s": v.growth_kb_s,
        "cpu_percent": v.cpu_percent,
        "leak_suspect": v.leak_suspect,
        "leak_reason": v.leak_reason,
        "rss_history": list(v.rss_history),
        "outstanding_history": list(v.outstanding_history),
        "event_rate_history": list(v.event_rate_history),
        "recent_events": [event_to_dict(e) for e in v.recent_events],
    }


_VIEW_SPEC = _spec(ProcessView, skip=("sample", "kernel", "rollup", "rss_history", "outstanding_history",
                                      "event_rate_history", "recent_events"))


def process_view_from_dict(d: dict[str, Any]) -> ProcessView:
    """Inverse of :func:`process_view_to_dict`; raises :class:`SerializationError` on a foreign dict."""
    try:
        return _process_view_from_dict(d)
    except _Bad as exc:
        raise SerializationError(f"not a memwatch process: {exc}") from None


def _process_view_from_dict(d: Any) -> ProcessView:
    kw = _check_fields(_VIEW_SPEC, d)
    if "sample" not in d:
        raise _Bad("sample", "is missing")
    kw["sample"] = _flat(ProcessSample, d["sample"], "sample")
    if "kernel" not in d:  # no default: "not traced" must be said (null), never assumed
        raise _Bad("kernel", "is missing")
    kw["kernel"] = _optional_flat(KernelCounts, d, "kernel")
    if "rollup" in d:
        kw["rollup"] = _optional_flat(SmapsRollup, d, "rollup")
    if "rss_history" in d:
        kw["rss_history"] = _numbers(d, "rss_history", integers=True)
    if "outstanding_history" in d:
        kw["outstanding_history"] = _numbers(d, "outstanding_history", integers=True)
    if "event_rate_history" in d:
        kw["event_rate_history"] = _numbers(d, "event_rate_history", integers=False)
    kw["recent_events"] = _events(d, "recent_events")
    return ProcessView(**kw)


# --- Groups: cgroups and users --------------------------------------------------------------------

def cgroup_view_to_dict(c: CgroupView) -> dict[str, Any]:
    return {
        "path": c.path,
        "name": c.name,
        "kind": c.kind,
        "version": c.version,
        "ino": c.ino,
        "memory": flat_to_dict(c.memory) if c.memory is not None else None,
        "totals": flat_to_dict(c.totals),
        "own": flat_to_dict(c.own),
        "oom_events": c.oom_events,
    }


_CGROUP_SPEC = _spec(CgroupView, skip=("memory", "totals", "own"))


def _cgroup_view_from_dict(d: Any) -> CgroupView:
    kw = _check_fields(_CGROUP_SPEC, d)
    if "memory" in d:
        kw["memory"] = _optional_flat(CgroupMemory, d, "memory")
    for name in ("totals", "own"):
        if name in d:
            kw[name] = _flat(GroupTotals, d[name], name)
    return CgroupView(**kw)


def user_view_to_dict(u: UserView) -> dict[str, Any]:
    return {"uid": u.uid, "name": u.name, "totals": flat_to_dict(u.totals)}


_USER_SPEC = _spec(UserView, skip=("totals",))


def _user_view_from_dict(d: Any) -> UserView:
    kw = _check_fields(_USER_SPEC, d)
    if "totals" in d:
        kw["totals"] = _flat(GroupTotals, d["totals"], "totals")
    return UserView(**kw)


_T = TypeVar("_T")


def _items(d: dict[str, Any], name: str, read: Callable[[Any], _T]) -> tuple[_T, ...]:
    """A list of events, cgroups or users, each read by ``read``; a bad one is named by its place;
    absent (a frame written before they existed): none."""
    if name not in d:
        return ()
    out = []
    for i, item in enumerate(_list(d, name)):
        try:
            out.append(read(item))
        except _Bad as exc:
            raise exc.inside(f"{name}[{i}]") from None
    return tuple(out)


# --- Snapshot -------------------------------------------------------------------------------------

def snapshot_to_dict(s: Snapshot, *, with_events: bool = True) -> dict[str, Any]:
    """Everything but ``by_key``, which is an index rebuilt from ``processes``.

    ``with_events=False`` leaves out the event log and ``new_events``: a recording keeps those in
    a table of their own, once each, instead of up to a thousand of them in every frame.
    """
    d = {
        "timestamp": s.timestamp,
        "interval_s": s.interval_s,
        "hostname": s.hostname,
        "system": flat_to_dict(s.system),
        "tracer": flat_to_dict(s.tracer),
        "processes": [process_view_to_dict(s.current(v)) for v in s.processes],   # histories whole
        "events": [event_to_dict(e) for e in s.events] if with_events else None,
        "new_events": [event_to_dict(e) for e in s.new_events] if with_events else None,
        "system_history": [flat_to_dict(m) for m in s.system_history],
        "duration_s": s.duration_s,
        "paused": s.paused,
        "replay_position": list(s.replay_position) if s.replay_position is not None else None,
        "cgroups": [cgroup_view_to_dict(c) for c in s.cgroups],
        "users": [user_view_to_dict(u) for u in s.users],
    }
    if not with_events:
        del d["events"], d["new_events"]
    return d


_SNAPSHOT_SPEC = _spec(Snapshot, skip=("system", "tracer", "processes", "events", "new_events",
                                       "system_history", "replay_position", "cgroups", "users", "by_key"))


def snapshot_from_dict(d: dict[str, Any]) -> Snapshot:
    """Inverse of :func:`snapshot_to_dict`; raises :class:`SerializationError` saying which value
    is wrong (``processes[3].sample.rss_kb should be an integer, not a string ("12")``)."""
    try:
        return _snapshot_from_dict(d)
    except _Bad as exc:
        raise SerializationError(f"not a memwatch snapshot: {exc}") from None


def _snapshot_from_dict(d: Any) -> Snapshot:
    kw = _check_fields(_SNAPSHOT_SPEC, d)
    for name in ("system", "tracer", "processes"):
        if name not in d:
            raise _Bad(name, "is missing")
    kw["system"] = _flat(SystemMemory, d["system"], "system")
    kw["tracer"] = _flat(TracerHealth, d["tracer"], "tracer")
    processes = []
    for i, v in enumerate(_list(d, "processes")):
        try:
            processes.append(_process_view_from_dict(v))
        except _Bad as exc:
            raise exc.inside(f"processes[{i}]") from None
    kw["processes"] = tuple(processes)
    kw["events"] = _events(d, "events")
    kw["new_events"] = _events(d, "new_events")
    if "system_history" in d:
        history = []
        for i, m in enumerate(_list(d, "system_history")):
            history.append(_flat(SystemMemory, m, f"system_history[{i}]"))
        kw["system_history"] = tuple(history)
    position = d.get("replay_position")
    if position is not None:
        if type(position) is not list or len(position) != 2 or {*map(type, position)} != _INT_TYPES:
            raise _Bad("replay_position", f"should be two integers or null, not {_show(position)}")
        kw["replay_position"] = (position[0], position[1])
    kw["cgroups"] = _items(d, "cgroups", _cgroup_view_from_dict)
    kw["users"] = _items(d, "users", _user_view_from_dict)
    return Snapshot(**kw)


# --- Headless JSON contract (`memwatch --once --json`) --------------------------------------------

HEADLESS_COLUMNS: tuple[str, ...] = tuple(f.json for f in JSON_FIELDS if f.json)
"""Per-process keys of the headless JSON, in order (the field registry's); the CSV header uses the
same names."""


def headless_process_dict(view: ProcessView) -> dict[str, Any]:
    """One process for headless output: kernel figures are null (not 0) when eBPF did not see it."""
    return {f.json: f.read(view) for f in JSON_FIELDS if f.json}


EVENT_COUNTERS: tuple[str, ...] = (
    "mmap_count", "munmap_count", "brk_count", "mremap_count", "mmap_bytes", "munmap_bytes", "brk_bytes",
    "outstanding_bytes",
)
"""The final counters an exit event carries in headless JSON (the process rows' names)."""


def headless_event_dict(e: Event) -> dict[str, Any]:
    """An exit or OOM kill for headless output; counters are null when the process made no traced
    call (or eBPF was off); ``cgroup`` is an OOM victim's memory cgroup (null when unknown)."""
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
    out["cgroup"] = e.cgroup
    return out


TOTALS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("pids", "processes"), ("rss_kb", "rss_kb"), ("swap_kb", "swap_kb"), ("pss_kb", "pss_kb"),
    ("mmap_count", "mmap_count"), ("munmap_count", "munmap_count"), ("brk_count", "brk_count"),
    ("mremap_count", "mremap_count"), ("outstanding_bytes", "outstanding_bytes"), ("growth_kb_s", "growth_kb_s"),
)
"""(headless key, GroupTotals field) of a group's process sums: processes in it, their RSS, ...;
PSS over those whose PSS was read, kernel sums null without eBPF."""


def headless_totals(t: GroupTotals, prefix: str = "") -> dict[str, Any]:
    return {prefix + key: getattr(t, name) for key, name in TOTALS_COLUMNS}


_CGROUP_MEMORY: tuple[tuple[str, str], ...] = (
    ("memory_current_kb", "current_kb"), ("memory_max_kb", "max_kb"), ("memory_high_kb", "high_kb"),
    ("memory_peak_kb", "peak_kb"), ("swap_current_kb", "swap_current_kb"), ("oom_kills", "oom_kill"),
    ("pressure_some_avg10", "pressure_some_avg10"), ("anon_kb", "anon_kb"), ("file_kb", "file_kb"),
    ("kernel_kb", "kernel_kb"), ("shmem_kb", "shmem_kb"),
)
"""(headless key, CgroupMemory field): the kernel's figures; null where it has no such file."""

CGROUP_COLUMNS: tuple[str, ...] = (
    "path", "name", "kind", *(k for k, _ in _CGROUP_MEMORY), "oom_events", *(k for k, _ in TOTALS_COLUMNS),
)
"""Keys of a cgroup in headless JSON, and the CSV header of ``--group cgroup``."""
USER_COLUMNS: tuple[str, ...] = ("uid", "name", *(k for k, _ in TOTALS_COLUMNS))
"""Keys of a user in headless JSON, and the CSV header of ``--group user``."""


def headless_cgroup_dict(c: CgroupView) -> dict[str, Any]:
    """A cgroup for headless output: ``path`` as the memory hierarchy names it, the kernel's figures
    (null where it has no such file; ``memory_max_kb`` null also when there is no limit),
    ``oom_kills`` the kernel's count, ``oom_events`` the kills the tracer reported, and its
    processes' sums (those of the cgroups below it included, as the kernel's figures are)."""
    m = c.memory
    out: dict[str, Any] = {"path": c.path, "name": c.name, "kind": c.kind}
    for key, name in _CGROUP_MEMORY:
        out[key] = None if m is None else getattr(m, name)
    out["oom_events"] = c.oom_events
    out.update(headless_totals(c.totals))
    return out


def headless_user_dict(u: UserView) -> dict[str, Any]:
    out: dict[str, Any] = {"uid": u.uid, "name": u.name}
    out.update(headless_totals(u.totals))
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
            "ns_per_call": t.ns_per_call,
            "kernel_cpu_percent": t.kernel_cpu_percent,
        },
        "memwatch_cpu_percent": snapshot.self_cpu_percent,
        "system": {
            "total_kb": m.total_kb,
            "available_kb": m.available_kb,
            "used_kb": m.used_kb,
            "swap_total_kb": m.swap_total_kb,
            "swap_used_kb": m.swap_used_kb,
        },
        "processes": [headless_process_dict(v) for v in views],
        "events": [headless_event_dict(e) for e in events or ()],
        "cgroups": [headless_cgroup_dict(c) for c in snapshot.cgroups],
        "users": [headless_user_dict(u) for u in snapshot.users],
    }
