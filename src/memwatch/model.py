"""Immutable records that flow kernel -> source -> store -> snapshot -> view.

Everything here is a frozen dataclass so that a snapshot handed to the UI, the exporter or a
recorder can never be changed under their feet by the collector that keeps running.
"""

from __future__ import annotations

import signal as _signal
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar, overload

ProcessKey = tuple[int, int]
"""(pid, start time in clock ticks since boot): a pid alone is not an identity, pids are reused."""


_N = TypeVar("_N", int, float)


class History(Sequence[_N]):
    """An immutable history: chunks of packed values shared with the store, decoded when read.

    The store keeps histories as rings of immutable chunks, and every tick hands each process's
    history to readers that mostly never look at it (only the rows on screen draw a trend): a
    History shares the ring's full chunks and copies only its partial last chunk, so a snapshot
    of thousands of processes costs little time and memory. It compares equal to a tuple.
    """

    __slots__ = ("_chunks", "_code", "_len", "_start")

    def __init__(self, chunks: tuple[bytes, ...], typecode: str, start: int = 0, length: int | None = None) -> None:
        self._chunks = chunks
        self._code = typecode
        self._start = start
        if length is None:
            length = sum(len(c) for c in chunks) // array(typecode).itemsize - start
        self._len = length

    @classmethod
    def of(cls, values: array[_N]) -> History[_N]:
        return cls((values.tobytes(),), values.typecode)

    def _values(self) -> array[_N]:
        out: array[_N] = array(self._code)
        for chunk in self._chunks:
            out.frombytes(chunk)
        if self._start or len(out) != self._len:
            out = out[self._start:self._start + self._len]
        return out

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> _N: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[_N, ...]: ...
    def __getitem__(self, index: int | slice) -> _N | tuple[_N, ...]:
        values = self._values()
        return tuple(values[index]) if isinstance(index, slice) else values[index]

    def __iter__(self) -> Iterator[_N]:
        return iter(self._values())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"History({tuple(self)!r})"


class EventKind(StrEnum):
    """What a ring-buffer event (or a derived event) reports."""

    MMAP = "mmap"
    MUNMAP = "munmap"
    BRK = "brk"
    MREMAP = "mremap"
    EXIT = "exit"
    OOM = "oom"


@dataclass(frozen=True, slots=True)
class KernelCounts:
    """Per-process counters kept by the eBPF program since the tracer attached.

    Only successful calls count. ``outstanding_bytes`` is what traced mmaps mapped and traced
    munmaps/mremaps have not yet unmapped (see README "Outstanding bytes" for partial unmaps).
    """

    mmap_count: int = 0
    mmap_bytes: int = 0
    munmap_count: int = 0
    munmap_bytes: int = 0
    brk_count: int = 0
    brk_grow_bytes: int = 0
    brk_shrink_bytes: int = 0
    mremap_count: int = 0
    mremap_grow_bytes: int = 0
    mremap_shrink_bytes: int = 0
    outstanding_bytes: int = 0
    outstanding_peak_bytes: int = 0
    untracked_unmap_bytes: int = 0
    lost_mappings: int = 0
    """Traced mappings the kernel could not follow (its map full, or the process's quota spent).
    Their bytes are not in ``outstanding_bytes``, which is then a lower bound."""
    lost_bytes: int = 0
    failed_calls: int = 0
    events_throttled: int = 0
    first_seen: float = 0.0
    """Wall-clock seconds of the first traced call."""
    last_seen: float = 0.0

    @property
    def brk_bytes(self) -> int:
        """Net heap change made by brk while traced (growth minus shrink)."""
        return self.brk_grow_bytes - self.brk_shrink_bytes

    @property
    def calls(self) -> int:
        return self.mmap_count + self.munmap_count + self.brk_count + self.mremap_count

    @property
    def outstanding_complete(self) -> bool:
        """False when some traced mappings could not be followed: the figure is a lower bound."""
        return self.lost_mappings == 0


def signal_name(signum: int) -> str:
    """SIGKILL for 9; real-time signals as SIGRTMIN+n; an unknown number as SIG<n>."""
    try:
        return _signal.Signals(signum).name
    except ValueError:
        pass
    rtmin, rtmax = int(_signal.SIGRTMIN), int(_signal.SIGRTMAX)
    if rtmin < signum <= rtmax:
        return f"SIGRTMIN+{signum - rtmin}"
    return f"SIG{signum}"


def decode_wait_status(status: int) -> tuple[int | None, str | None]:
    """(exit code, terminating signal) from a wait(2) status: exactly one of them is set.

    ``exit(3)`` is status 768, code 3; a process killed by SIGKILL has status 9, signal SIGKILL.
    """
    sig = status & 0x7F
    if sig == 0:
        return (status >> 8) & 0xFF, None
    return None, signal_name(sig)


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process as /proc and psutil saw it at one tick (the cheap path)."""

    pid: int
    ppid: int
    name: str
    cmdline: str
    user: str
    start_ticks: int
    """Field 22 of /proc/PID/stat: with the pid, the process's identity."""
    start_time: float
    """Wall-clock seconds when the process started."""
    threads: int
    rss_kb: int
    virt_kb: int
    peak_kb: int
    swap_kb: int
    shared_kb: int
    anon_kb: int
    cgroup: str
    kernel_thread: bool
    state: str = "?"
    cpu_time_s: float = 0.0
    """User plus system CPU time so far (stat's utime + stime)."""
    uid: int = -1
    """Real uid (status's first Uid); -1 when unknown (data recorded before it was kept)."""
    memory_cgroup: str = ""
    """The memory hierarchy's path (the v1 line whose controllers include memory, else the v2
    ``0::`` line): the cgroup whose accounting and limits govern the process's memory. ``cgroup``
    is the one to show; this is the one to group by. Empty when unknown."""

    @property
    def key(self) -> ProcessKey:
        return (self.pid, self.start_ticks)


@dataclass(frozen=True, slots=True)
class SmapsRollup:
    """The expensive figures from /proc/PID/smaps_rollup, read on demand only."""

    pss_kb: int
    uss_kb: int
    swap_pss_kb: int


@dataclass(frozen=True, slots=True)
class Event:
    """A ring-buffer event, in wall-clock time, with the process name resolved."""

    timestamp: float
    kind: EventKind
    pid: int
    tid: int
    name: str
    addr: int = 0
    length: int = 0
    new_addr: int = 0
    new_length: int = 0
    flags: int = 0
    prot: int = 0
    # EXIT: final counters and how it ended; OOM: the victim's memory when chosen.
    exit_code: int | None = None
    """The code the process passed to exit(); None when a signal ended it."""
    signal: str | None = None
    """The signal that ended the process (SIGKILL ...); None when it exited."""
    peak_rss_kb: int | None = None
    counts: KernelCounts | None = None
    rss_kb: int | None = None
    total_vm_kb: int | None = None
    start_ticks: int | None = None
    start_time: float | None = None
    """Wall-clock seconds when the process started (EXIT and OOM)."""

    def describe(self) -> str:
        """One line for humans; never interpreted as markup by callers that use Text."""
        k = self.kind
        if k is EventKind.MMAP:
            return f"mmap {self.length} B at {self.addr:#x}"
        if k is EventKind.MUNMAP:
            return f"munmap {self.length} B at {self.addr:#x}"
        if k is EventKind.BRK:
            delta = self.new_addr - self.addr
            return f"brk {delta:+d} B (break {self.addr:#x} -> {self.new_addr:#x})"
        if k is EventKind.MREMAP:
            return f"mremap {self.length} -> {self.new_length} B ({self.addr:#x} -> {self.new_addr:#x})"
        if k is EventKind.EXIT:
            peak = f", peak RSS {self.peak_rss_kb} KB" if self.peak_rss_kb is not None else ""
            return f"{self.ending}{peak}"
        return f"OOM kill, RSS {self.rss_kb} KB, VIRT {self.total_vm_kb} KB"


    @property
    def ending(self) -> str:
        """How an exited process ended, for humans: 'exit code 3' or 'killed by SIGKILL'."""
        if self.signal is not None:
            return f"killed by {self.signal}"
        return f"exit code {self.exit_code}" if self.exit_code is not None else "exited"


@dataclass(frozen=True, slots=True)
class SystemMemory:
    """System-wide memory from /proc/meminfo and /proc/pressure/memory, in KB."""

    total_kb: int
    available_kb: int
    used_kb: int
    free_kb: int
    swap_total_kb: int
    swap_used_kb: int
    pressure_some_avg10: float | None = None
    pressure_full_avg10: float | None = None


@dataclass(frozen=True, slots=True)
class TracerHealth:
    """What the eBPF side is doing, and how much it could not say."""

    enabled: bool
    reason: str | None = None
    """Why eBPF is off, as a sentence a user can act on."""
    mode: str | None = None
    """How the syscalls are attached: 'tracepoint' or 'raw' (no tracefs needed)."""
    events: int = 0
    events_dropped: int = 0
    """Call events lost to a full ring buffer."""
    events_throttled: int = 0
    """Call events withheld by the per-process budget (--events-per-sec)."""
    events_withheld: int = 0
    """Call events withheld by memwatch's own global budget (--events-budget), so that no storm
    can take its time; the counts stay exact."""
    exits_dropped: int = 0
    """Exit and OOM events lost (a full life_events ring, or more in one interval than memwatch
    keeps); each is a process whose final figures were not seen."""
    map_full: int = 0
    event_rate: float = 0.0
    """Events per second delivered over the last tick."""
    ns_per_call: float | None = None
    """What accounting one traced call cost in the kernel, as last measured (BPF run-time
    statistics, over one interval in ten; None until measured, or where the kernel refuses)."""
    kernel_cpu_percent: float | None = None
    """memwatch's programs' share of one CPU, as last measured."""


@dataclass(frozen=True, slots=True)
class ProcessView:
    """A process as the store knows it: the latest sample merged with counters and history."""

    sample: ProcessSample
    kernel: KernelCounts | None
    """None when eBPF is off: a dash, never a 0."""
    rollup: SmapsRollup | None = None
    growth_kb_s: float | None = None
    cpu_percent: float | None = None
    """CPU use since the previous sample, % of one core; None for a first sample."""
    leak_suspect: bool = False
    leak_reason: str | None = None
    rss_history: Sequence[int] = ()
    outstanding_history: Sequence[int] = ()
    event_rate_history: Sequence[float] = ()
    recent_events: tuple[Event, ...] = ()

    @property
    def key(self) -> ProcessKey:
        return self.sample.key

    @property
    def pid(self) -> int:
        return self.sample.pid


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a reader needs for one frame; immutable, cheap to hand across threads."""

    timestamp: float
    interval_s: float
    hostname: str
    system: SystemMemory
    tracer: TracerHealth
    processes: tuple[ProcessView, ...]
    events: tuple[Event, ...] = ()
    """Bounded log of exits and OOM kills, oldest first (what a view shows)."""
    new_events: tuple[Event, ...] = ()
    """Every exit and OOM kill that arrived since the previous snapshot, oldest first: what a
    recorder or a counter must see once each, however many there were."""
    system_history: tuple[SystemMemory, ...] = ()
    duration_s: float = 0.0
    paused: bool = False
    self_cpu_percent: float | None = None
    """memwatch's own CPU (all its threads) over the last tick, % of one core."""
    replay_position: tuple[int, int] | None = None
    """(frame index, frame count) when the snapshot comes from a recording."""
    by_key: dict[ProcessKey, ProcessView] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.by_key and self.processes:
            self.by_key.update((p.key, p) for p in self.processes)

    def top(self, n: int = 100, sort: str = "rss", descending: bool = True,
            pids: tuple[int, ...] = ()) -> list[ProcessView]:
        """The n processes ranked by ``sort`` (n=0: all), plus any ``pids`` regardless of rank."""
        from memwatch.fields import sort_value  # the registry reads views: it imports this module

        sign = -1 if descending else 1   # equal values: the lower pid first, either way
        ranked = sorted(self.processes, key=lambda v: (sort_value(v, sort), sign * v.pid), reverse=descending)
        chosen = ranked if n <= 0 else ranked[:n]
        if pids:
            wanted = set(pids)
            have = {v.pid for v in chosen}
            chosen = chosen + [v for v in ranked if v.pid in wanted and v.pid not in have]
        return chosen
