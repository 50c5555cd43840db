"""ctypes mirrors of bpf/memwatch.h, and the raw records parsed out of the ring buffer.

The mirrors are checked against the BTF inside prog.bpf.o (:mod:`memwatch.ebpf.btf`) at every load,
so a layout that drifts fails loudly instead of producing plausible garbage.
"""

from __future__ import annotations

import ctypes
import struct
from ctypes import c_char, c_int32, c_int64, c_uint32, c_uint64
from dataclasses import dataclass
from typing import Any, cast

COMM_LEN = 16
LIVE_SLOTS = 8
STACK_BYTES = 16384
STACK_REGS = 17

EV_MMAP, EV_MUNMAP, EV_BRK, EV_MREMAP, EV_EXIT, EV_OOM = 1, 2, 3, 4, 5, 6
EV_STACK, EV_STACK_CALL, EV_STACK_EXEC = 7, 8, 9

# enum mw_counter
CNT_EVENTS = 0
CNT_DROPPED = 1
CNT_THROTTLED = 2
CNT_STATS_FULL = 3
CNT_ALLOCS_FULL = 4
CNT_BRK_UNSEEN = 5
CNT_STALE_ALLOCS = 6
CNT_WAKEUPS = 7
CNT_EXITS = 8
CNT_OOM = 9
CNT_ALLOCS_QUOTA = 10
CNT_PAUSED = 11
CNT_LIFE_DROPPED = 12
CNT_LIFE_WAKEUPS = 13
CNT_MAX = 16


class MwConfig(ctypes.Structure):
    _fields_ = [
        ("event_threshold", c_uint64),
        ("page_size", c_uint64),
        ("wakeup_bytes", c_uint64),
        ("events_per_sec", c_uint32),
        ("pidns_ino", c_uint32),
        ("map_quota", c_uint32),
        ("stacks_per_sec", c_uint32),
    ]


class MwCounters(ctypes.Structure):
    _fields_ = [("c", c_uint64 * CNT_MAX)]


class MwProcStats(ctypes.Structure):
    _fields_ = [
        ("start_boottime_ns", c_uint64),
        ("first_seen_ns", c_uint64),
        ("last_seen_ns", c_uint64),
        ("last_seen_jiffies", c_uint64),
        ("mmap_count", c_uint64),
        ("mmap_bytes", c_uint64),
        ("munmap_count", c_uint64),
        ("munmap_bytes", c_uint64),
        ("brk_count", c_uint64),
        ("brk_grow_bytes", c_uint64),
        ("brk_shrink_bytes", c_uint64),
        ("mremap_count", c_uint64),
        ("mremap_grow_bytes", c_uint64),
        ("mremap_shrink_bytes", c_uint64),
        ("outstanding_bytes", c_int64),
        ("outstanding_peak", c_uint64),
        ("untracked_unmap_bytes", c_uint64),
        ("lost_mappings", c_uint64),
        ("lost_bytes", c_uint64),
        ("map_entries", c_uint64),
        ("failed_calls", c_uint64),
        ("events_sent", c_uint64),
        ("events_throttled", c_uint64),
        ("rl_window_ns", c_uint64),
        ("rl_count", c_uint64),
        ("live", c_uint64 * LIVE_SLOTS),
        ("live_next", c_uint64),
        ("brk_last", c_uint64),
        ("ns_tgid", c_uint32),
        ("stacks", c_uint32),
        ("called", c_uint32),
        ("_pad", c_uint32),
        ("comm", c_char * COMM_LEN),
    ]


class MwEventHeader(ctypes.Structure):
    _fields_ = [("kind", c_uint32), ("tgid", c_uint32), ("tid", c_uint32), ("_pad", c_uint32),
                ("ts_ns", c_uint64)]


class MwCallEvent(ctypes.Structure):
    _fields_ = [
        ("hdr", MwEventHeader),
        ("addr", c_uint64),
        ("len", c_uint64),
        ("new_addr", c_uint64),
        ("new_len", c_uint64),
        ("flags", c_uint32),
        ("prot", c_uint32),
        ("comm", c_char * COMM_LEN),
    ]


class MwExitEvent(ctypes.Structure):
    _fields_ = [
        ("hdr", MwEventHeader),
        ("start_boottime_ns", c_uint64),
        ("exit_status", c_int32),
        ("has_stats", c_uint32),
        ("maxrss_pages", c_uint64),
        ("comm", c_char * COMM_LEN),
        ("stats", MwProcStats),
    ]


class MwOomEvent(ctypes.Structure):
    _fields_ = [
        ("hdr", MwEventHeader),
        ("start_boottime_ns", c_uint64),
        ("total_vm_pages", c_uint64),
        ("anon_rss_pages", c_uint64),
        ("file_rss_pages", c_uint64),
        ("shmem_rss_pages", c_uint64),
        ("uid", c_uint32),
        ("oom_score_adj", c_int32),
        ("comm", c_char * COMM_LEN),
        ("cgroup_id", c_uint64),
    ]


class MwAllocKey(ctypes.Structure):
    _fields_ = [("tgid", c_uint32), ("_pad", c_uint32), ("addr", c_uint64)]


class MwAlloc(ctypes.Structure):
    _fields_ = [("len", c_uint64), ("mm", c_uint64)]


class MwStackCall(ctypes.Structure):
    _fields_ = [
        ("hdr", MwEventHeader),
        ("call", c_uint32),
        ("flags", c_uint32),
        ("addr", c_uint64),
        ("len", c_uint64),
        ("new_addr", c_uint64),
        ("new_len", c_uint64),
    ]


class MwStackEvent(ctypes.Structure):
    _fields_ = [
        ("c", MwStackCall),
        ("regs", c_uint64 * STACK_REGS),
        ("stack_len", c_uint32),
        ("stack_skip", c_uint32),
        ("stack", ctypes.c_uint8 * STACK_BYTES),
    ]


class MwStackTarget(ctypes.Structure):
    _fields_ = [
        ("start_boottime_ns", c_uint64),
        ("rl_window_ns", c_uint64),
        ("rl_count", c_uint64),
        ("captured", c_uint64),
        ("throttled", c_uint64),
        ("dropped", c_uint64),
    ]


RSS_COUNTERS = 4
RSS_FILE, RSS_ANON, RSS_SWAP, RSS_SHMEM = 0, 1, 2, 3


class MwTaskRecord(ctypes.Structure):
    _fields_ = [
        ("tgid", c_uint32),
        ("ppid", c_uint32),
        ("uid", c_uint32),
        ("threads", c_uint32),
        ("start_boottime_ns", c_uint64),
        ("exec_id", c_uint64),
        ("memcg_id", c_uint64),
        ("total_vm", c_uint64),
        ("hiwater_vm", c_uint64),
        ("hiwater_rss", c_uint64),
        ("rss", c_uint64 * RSS_COUNTERS),
        ("runtime_ns", c_uint64),
        ("utime_ns", c_uint64),
        ("stime_ns", c_uint64),
        ("flags", c_uint32),
        ("state", c_uint32),
        ("comm", c_char * COMM_LEN),
        ("_unit", c_uint64 * 3),
    ]


TASK_UNIT = 168
"""Bytes of each unit of a dump_tasks read: a task record, or the counters of the one before it."""
COUNTS_TAG = 0xFFFFFFFF
"""Where a task record has its tgid, a counts unit has this (never a pid)."""



# name in memwatch.h -> mirror; the BTF check walks this table.
MIRRORS: dict[str, type[ctypes.Structure]] = {
    "mw_config": MwConfig,
    "mw_counters": MwCounters,
    "mw_proc_stats": MwProcStats,
    "mw_event_header": MwEventHeader,
    "mw_call_event": MwCallEvent,
    "mw_exit_event": MwExitEvent,
    "mw_oom_event": MwOomEvent,
    "mw_alloc_key": MwAllocKey,
    "mw_alloc": MwAlloc,
    "mw_stack_call": MwStackCall,
    "mw_stack_event": MwStackEvent,
    "mw_stack_target": MwStackTarget,
    "mw_task_record": MwTaskRecord,
}

# The hot path (call events) parses with struct, which is several times faster than ctypes.
_CALL = struct.Struct("<IIIxxxxQQQQQII16s")
assert _CALL.size == ctypes.sizeof(MwCallEvent), "struct format out of step with MwCallEvent"
_KIND = struct.Struct("<I")


def decode_comm(raw: bytes) -> str:
    """A kernel comm: NUL-terminated bytes, not necessarily UTF-8; never raises."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class RawCall:
    """A traced call as the kernel reported it (boot-clock timestamps, raw fields)."""

    kind: int
    tgid: int
    tid: int
    ts_ns: int
    addr: int
    len: int
    new_addr: int
    new_len: int
    flags: int
    prot: int
    comm: str


@dataclass(frozen=True, slots=True)
class RawStats:
    """A process's kernel counters as read from proc_stats or carried by an exit event."""

    tgid: int
    start_boottime_ns: int
    first_seen_ns: int
    last_seen_ns: int
    mmap_count: int
    mmap_bytes: int
    munmap_count: int
    munmap_bytes: int
    brk_count: int
    brk_grow_bytes: int
    brk_shrink_bytes: int
    mremap_count: int
    mremap_grow_bytes: int
    mremap_shrink_bytes: int
    outstanding_bytes: int
    outstanding_peak: int
    untracked_unmap_bytes: int
    lost_mappings: int
    lost_bytes: int
    failed_calls: int
    events_sent: int
    events_throttled: int
    comm: str


def _member_type(cls: type[ctypes.Structure], name: str) -> Any:
    return next(spec[1] for spec in cls._fields_ if spec[0] == name)


class MwTaskCounts(ctypes.Structure):
    """A counts unit of dump_tasks: after its tag, the members of MwProcStats that RawStats shows
    (all but the start, which the record before it has), in RawStats' order."""

    _fields_ = [("tag", c_uint32), ("host_tgid", c_uint32),
                *[(f, _member_type(MwProcStats, f)) for f in RawStats.__dataclass_fields__
                  if f not in ("tgid", "start_boottime_ns", "comm")]]


MIRRORS["mw_task_counts"] = MwTaskCounts   # here: its members are RawStats'


@dataclass(frozen=True, slots=True)
class RawExit:
    tgid: int
    tid: int
    ts_ns: int
    start_boottime_ns: int
    exit_status: int
    maxrss_pages: int
    comm: str
    stats: RawStats | None


@dataclass(frozen=True, slots=True)
class RawOom:
    tgid: int
    tid: int
    ts_ns: int
    start_boottime_ns: int
    total_vm_pages: int
    anon_rss_pages: int
    file_rss_pages: int
    shmem_rss_pages: int
    uid: int
    oom_score_adj: int
    comm: str
    cgroup_id: int = 0
    """The victim's memory cgroup (its directory's inode number); 0: the kernel did not say."""


@dataclass(frozen=True, slots=True)
class RawStack:
    """A call of a stack target from ``stack_events``: ``kind`` is EV_STACK (with ``regs`` and
    ``stack``), EV_STACK_CALL (the call without its stack) or EV_STACK_EXEC (the process exec'd;
    no call). ``regs`` are the user registers at the call in DWARF numbering (x86-64: 0-15, then
    the instruction pointer); ``stack`` is the user stack from ``regs[7]`` (the stack pointer) up."""

    kind: int
    call: int
    tgid: int
    tid: int
    ts_ns: int
    addr: int
    len: int
    new_addr: int
    new_len: int
    flags: int
    regs: tuple[int, ...] = ()
    stack: bytes = b""


RawEvent = RawCall | RawExit | RawOom


_INT_CODES: dict[type, str] = {c_uint64: "Q", c_int64: "q", c_uint32: "I", c_int32: "i"}


def flat_format(cls: type[ctypes.Structure], prefix: str = "") -> tuple[str, list[str]]:
    """A little-endian struct format for a mirror, and the member each unpacked item is.

    Derived from the mirror itself, so a member moved in memwatch.h (and in the mirror, which the
    BTF check enforces) needs no second edit here. Arrays of integers unpack item by item.
    """
    fmt, names, pos = "", list[str](), 0
    for spec in cls._fields_:
        name, ctype = spec[0], cast(Any, spec[1])
        off = getattr(cls, name).offset
        fmt += "x" * (off - pos)
        if issubclass(ctype, ctypes.Structure):
            sub, subnames = flat_format(ctype, f"{prefix}{name}.")
            fmt, names = fmt + sub, names + subnames
        elif issubclass(ctype, ctypes.Array) and ctype._type_ is c_char:
            fmt += f"{ctype._length_}s"
            names.append(prefix + name)
        elif issubclass(ctype, ctypes.Array):
            fmt += _INT_CODES[ctype._type_] * ctype._length_
            names += [f"{prefix}{name}[{i}]" for i in range(ctype._length_)]
        else:
            fmt += _INT_CODES[ctype]
            names.append(prefix + name)
        pos = off + ctypes.sizeof(ctype)
    return fmt + "x" * (ctypes.sizeof(cls) - pos), names


_RAW_STATS_NUMBERS = [f for f in RawStats.__dataclass_fields__ if f not in ("tgid", "comm")]

TASK_RECORD_FORMAT, TASK_RECORD_NAMES = flat_format(MwTaskRecord)
"""The dump_tasks records for :mod:`struct` ("<" first), and the member each unpacked item is."""
TASK_RECORD = struct.Struct("<" + TASK_RECORD_FORMAT)
assert TASK_RECORD.size == ctypes.sizeof(MwTaskRecord) == ctypes.sizeof(MwTaskCounts) == TASK_UNIT

_COUNTS_FORMAT, _COUNTS_NAMES = flat_format(MwTaskCounts)
_COUNTS = struct.Struct("<" + _COUNTS_FORMAT)
_COUNTS_PICK = [_COUNTS_NAMES.index(f) for f in _RAW_STATS_NUMBERS[1:]]   # all but the start
assert _RAW_STATS_NUMBERS[0] == "start_boottime_ns" and _COUNTS_NAMES[:2] == ["tag", "host_tgid"]
_START_AT, _COMM_AT = MwTaskRecord.start_boottime_ns.offset, MwTaskRecord.comm.offset
_OWNER = struct.Struct(f"<I{_START_AT - 4}xQ")
"""The tgid and start of the process a counts unit belongs to, from the record before it."""
_TAG = struct.pack("<I", COUNTS_TAG)

StatsCache = dict[int, tuple[bytes, RawStats]]
"""The last counts by tgid, for :func:`parse_counts` to skip the unchanged ones."""


def parse_counts(data: bytes, cache: StatsCache | None = None) -> tuple[dict[int, RawStats], set[int]]:
    """The counters in a dump_tasks read, by tgid as memwatch's /proc shows it, and the tgid of
    each of their processes in the initial pid namespace (which keys active_allocs).

    The counts units are found with ``bytes.find`` (a tag where a unit starts; one that does not
    start a unit is a value inside one), so the records around them cost nothing here. With a
    ``cache`` (kept by the caller between reads, updated here), a process whose counts, start and
    name did not change gets the same RawStats object as last time, and nothing is unpacked."""
    out: dict[int, RawStats] = {}
    hosts: set[int] = set()
    usable = len(data) - len(data) % TASK_UNIT
    seen: StatsCache = {}
    old = cache if cache is not None else {}
    find, unit = data.find, TASK_UNIT
    pos = find(_TAG, unit, usable)   # a counts unit follows its process's record: never first
    while pos >= 0:
        if pos % unit:
            pos = find(_TAG, pos - pos % unit + unit, usable)
            continue
        record = pos - unit
        tgid, start = _OWNER.unpack_from(data, record)
        comm = data[record + _COMM_AT:record + _COMM_AT + COMM_LEN]
        key = data[pos:pos + unit] + data[record + _START_AT:record + _START_AT + 8] + comm
        known = old.get(tgid)
        if known is not None and known[0] == key:
            stats = known[1]
        else:
            rec = _COUNTS.unpack_from(data, pos)
            stats = RawStats(tgid, start, *[rec[i] for i in _COUNTS_PICK], decode_comm(comm))  # type: ignore[call-arg]  # the numbers in order, checked by a test
        hosts.add(int.from_bytes(data[pos + 4:pos + 8], "little"))
        out[tgid] = stats
        seen[tgid] = (key, stats)
        pos = find(_TAG, pos + unit, usable)
    if cache is not None:
        cache.clear()
        cache.update(seen)
    return out, hosts


def stats_from_struct(tgid: int, s: MwProcStats) -> RawStats:
    """The counters an exit event carries, read by name like the iterator's records."""
    return RawStats(tgid, *[getattr(s, f) for f in _RAW_STATS_NUMBERS], decode_comm(bytes(s.comm)))  # type: ignore[call-arg]  # the numbers in order, checked by a test


_STACK_CALL = struct.Struct("<IIIxxxxQIIQQQQ")
assert _STACK_CALL.size == ctypes.sizeof(MwStackCall), "struct format out of step with MwStackCall"
_STACK_REGS = struct.Struct(f"<{STACK_REGS}QII")
_STACK_DATA = ctypes.sizeof(MwStackCall) + _STACK_REGS.size
assert MwStackEvent.stack.offset == _STACK_DATA, "struct format out of step with MwStackEvent"


def parse_stack_record(data: bytes) -> RawStack | None:
    """One ``stack_events`` record; None for a kind or size this version does not know."""
    if len(data) < _STACK_CALL.size:
        return None
    kind, tgid, tid, ts, call, flags, addr, ln, naddr, nlen = _STACK_CALL.unpack_from(data)
    if kind in (EV_STACK_CALL, EV_STACK_EXEC):
        return RawStack(kind, call, tgid, tid, ts, addr, ln, naddr, nlen, flags)
    if kind != EV_STACK or len(data) < _STACK_DATA:
        return None
    *regs, stack_len, skip = _STACK_REGS.unpack_from(data, _STACK_CALL.size)
    stack_len = min(stack_len, STACK_BYTES, len(data) - _STACK_DATA)
    # from the stack pointer up: the kernel copied from the start of its page
    return RawStack(kind, call, tgid, tid, ts, addr, ln, naddr, nlen, flags, tuple(regs),
                    bytes(data[_STACK_DATA + skip:_STACK_DATA + stack_len]) if skip < stack_len else b"")


def parse_record(data: bytes) -> RawEvent | None:
    """One ring-buffer record; None for a kind this version does not know (newer kernel side)."""
    if len(data) < 4:
        return None
    (kind,) = _KIND.unpack_from(data)
    if EV_MMAP <= kind <= EV_MREMAP and len(data) >= _CALL.size:
        k, tgid, tid, ts, addr, ln, naddr, nlen, flags, prot, comm = _CALL.unpack_from(data)
        return RawCall(k, tgid, tid, ts, addr, ln, naddr, nlen, flags, prot, decode_comm(comm))
    if kind == EV_EXIT and len(data) >= ctypes.sizeof(MwExitEvent):
        e = MwExitEvent.from_buffer_copy(data)
        stats = stats_from_struct(e.hdr.tgid, e.stats) if e.has_stats else None
        return RawExit(e.hdr.tgid, e.hdr.tid, e.hdr.ts_ns, e.start_boottime_ns, e.exit_status,
                       e.maxrss_pages, decode_comm(bytes(e.comm)), stats)
    if kind == EV_OOM and len(data) >= ctypes.sizeof(MwOomEvent):
        o = MwOomEvent.from_buffer_copy(data)
        return RawOom(o.hdr.tgid, o.hdr.tid, o.hdr.ts_ns, o.start_boottime_ns, o.total_vm_pages,
                      o.anon_rss_pages, o.file_rss_pages, o.shmem_rss_pages, o.uid, o.oom_score_adj,
                      decode_comm(bytes(o.comm)), o.cgroup_id)
    return None
