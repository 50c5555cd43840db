"""Immutable records that flow kernel -> source -> store -> snapshot -> view.

Everything here is a frozen dataclass so that a snapshot handed to the UI, the exporter or a
recorder can never be changed under their feet by the collector that keeps running.
"""

from __future__ import annotations

import heapq
import signal as _signal
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import repeat
from typing import NamedTuple, TypeVar, cast, overload

ProcessKey = tuple[int, int]
"""(pid, start time in clock ticks since boot): a pid alone is not an identity, pids are reused."""


_N = TypeVar("_N", int, float)


CHUNK = 16
"""Points per full chunk of a history."""

Chunk = bytes | int | float
"""A history's chunk: CHUNK packed values, or one number standing for CHUNK copies of itself."""

SHARED_MIN_POINTS = 8
"""A store shares a view across snapshots only once its histories hold this many points, and
only while its RSS was one value over the whole window: the last SHARED_MIN_POINTS points of its
RSS history are then right as the view holds them (the dashboard's TREND column draws 8), where a
longer history is read through :meth:`Snapshot.history_of`."""


class History(Sequence[_N]):
    """An immutable history: chunks of packed values shared with the store, decoded when read.

    The store keeps histories as rings of immutable chunks, and every tick hands each process's
    history to readers that mostly never look at it (only the rows on screen draw a trend): a
    History shares the ring's tuple of full chunks and holds its partial last chunk (``tail``)
    apart, so a snapshot of thousands of processes costs little time and memory. Most processes
    are idle: a chunk whose values are all one number is that number, not 16 packed copies, and
    a numeric tail stands for as many copies as the length still needs. It compares equal to a
    tuple.
    """

    __slots__ = ("_chunks", "_code", "_len", "_start", "_tail")

    def __init__(self, chunks: tuple[Chunk, ...], typecode: str, start: int = 0, length: int | None = None,
                 tail: Chunk | None = None) -> None:
        self._chunks = chunks
        self._code = typecode
        self._start = start
        self._tail = tail
        if length is None:
            if tail is not None and not isinstance(tail, bytes):
                raise ValueError("a numeric tail needs the history's length")
            size = array(typecode).itemsize
            length = sum(len(c) // size if isinstance(c, bytes) else CHUNK for c in chunks) - start
            length += len(tail) // size if tail is not None else 0
        self._len = length

    @classmethod
    def of(cls, values: array[_N]) -> History[_N]:
        return cls((values.tobytes(),), values.typecode)

    def _values(self) -> array[_N]:
        out: array[_N] = array(self._code)
        for chunk in self._chunks:
            if isinstance(chunk, bytes):
                out.frombytes(chunk)
            else:
                out.extend(repeat(cast(_N, chunk), CHUNK))
        tail, end = self._tail, self._start + self._len
        if isinstance(tail, bytes):
            out.frombytes(tail)
        elif tail is not None:
            out.extend(repeat(cast(_N, tail), max(0, end - len(out))))
        if self._start or len(out) != self._len:
            out = out[self._start:end]
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

    def extended(self, more: int, cap: int) -> History[_N]:
        """This history with ``more`` copies of its last value after it, the oldest dropped past
        ``cap`` points: what it became over ticks in which its process did not change."""
        if more <= 0 or not self._len:
            return self
        values = self._values()
        last = values[-1]
        if more >= cap:
            return History((), self._code, 0, cap, last)
        values.extend(repeat(last, more))
        return History.of(values[-cap:])


def extend_history(history: Sequence[_N], more: int, cap: int) -> Sequence[_N]:
    """:meth:`History.extended` for any sequence (views made outside a store hold tuples)."""
    if more <= 0 or not history:
        return history
    if isinstance(history, History):
        return history.extended(more, cap)
    values = list(history)
    values.extend(repeat(history[-1], more))
    return tuple(values[-cap:])


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
    cgroup: str | None = None
    """OOM: the victim's memory cgroup, as the memory hierarchy names it; None when unknown."""
    cgroup_id: int = 0
    """OOM: the kernel's id of that cgroup (its directory's inode number); 0 when the kernel did
    not say (before 6.8 the OOM tracepoint gives no task to read it from)."""

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
        where = f" in cgroup {self.cgroup}" if self.cgroup is not None else ""
        return f"OOM kill, RSS {self.rss_kb} KB, VIRT {self.total_vm_kb} KB{where}"


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
    history_tick: int = 0
    """The store tick the three histories end at. A store hands the same view to every snapshot
    while its process does not change, so a later snapshot's histories have more points (copies
    of the last): read them through :meth:`Snapshot.history_of`, which adds those."""

    @property
    def key(self) -> ProcessKey:
        return self.sample.key

    @property
    def pid(self) -> int:
        return self.sample.pid


@dataclass(frozen=True, slots=True)
class GroupTotals:
    """Sums over a group of processes (a subtree, a cgroup, a user): what their /proc figures and
    kernel counters add up to. Kernel threads are left out (they have no user memory).

    Unknown stays unknown: the kernel sums are None when eBPF is off, PSS is the sum over the
    processes whose PSS was read (``pss_processes`` of them; None when none was), growth the sum
    over those that have a rate.
    """

    processes: int = 0
    rss_kb: int = 0
    swap_kb: int = 0
    pss_kb: int | None = None
    pss_processes: int = 0
    mmap_count: int | None = None
    munmap_count: int | None = None
    brk_count: int | None = None
    mremap_count: int | None = None
    outstanding_bytes: int | None = None
    growth_kb_s: float | None = None


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """What the kernel accounts to one memory cgroup, which counts what process RSS misses (page
    cache, kernel memory, tmpfs). In KB; None where this kernel (or cgroup version) has no such
    file. Figures are hierarchical, as the kernel keeps them: a cgroup's include its children's.
    """

    current_kb: int | None = None
    """v2 memory.current; v1 memory.usage_in_bytes."""
    max_kb: int | None = None
    """The limit: v2 memory.max, v1 memory.limit_in_bytes; None when there is none ("max", or a
    v1 limit near 2^63) as well as when there is no such file."""
    high_kb: int | None = None
    """v2 memory.high (None: "max"); v1 has no such limit."""
    peak_kb: int | None = None
    """v2 memory.peak (5.19+); v1 memory.max_usage_in_bytes."""
    swap_current_kb: int | None = None
    """v2 memory.swap.current; v1 memory.memsw.usage_in_bytes minus the memory usage."""
    oom: int | None = None
    """Times the cgroup hit its limit and invoked the OOM killer (v2 memory.events "oom")."""
    oom_kill: int | None = None
    """Processes the OOM killer killed: v2 memory.events "oom_kill" (this cgroup and below), v1
    memory.oom_control "oom_kill" (this cgroup alone). The kernel's count, from before memwatch
    started too."""
    high_events: int | None = None
    """Times usage went over memory.high and was throttled (v2 memory.events "high")."""
    max_events: int | None = None
    """Times usage was about to go over the limit (v2 memory.events "max"; v1 memory.failcnt)."""
    pressure_some_avg10: float | None = None
    """v2 memory.pressure, % of the last 10 s in which some task stalled on memory."""
    pressure_full_avg10: float | None = None
    anon_kb: int | None = None
    """From memory.stat, read every few ticks: v2 anon, file, kernel, shmem; v1 total_rss,
    total_cache, total_shmem, and memory.kmem.usage_in_bytes as the kernel figure."""
    file_kb: int | None = None
    kernel_kb: int | None = None
    shmem_kb: int | None = None


@dataclass(frozen=True, slots=True)
class CgroupView:
    """One memory cgroup: the kernel's accounting and its processes' sums.

    A snapshot holds the cgroups that hold processes, their ancestors (a limit often sits on a
    parent: a pod, a slice), and any that had an OOM kill while memwatch watched, for as long as
    they exist.
    """

    path: str
    """As the memory hierarchy names it (/proc/PID/cgroup): ``/system.slice/nginx.service``."""
    name: str
    """Readable, from the path alone: ``nginx.service``, ``docker 0123456789ab``, ``pod ...``."""
    kind: str
    """root, slice, service, scope, container, pod, qos, or cgroup (anything else)."""
    version: int = 0
    """1 or 2: the cgroup version of the memory hierarchy; 0 when memwatch found none."""
    ino: int = 0
    """Inode number of its directory, which is the kernel's cgroup id (the one OOM events carry)."""
    memory: CgroupMemory | None = None
    """None when its files could not be read (it vanished, or no hierarchy is mounted here)."""
    totals: GroupTotals = field(default_factory=GroupTotals)
    """Its processes and those of every cgroup below it (as ``memory`` counts them)."""
    own: GroupTotals = field(default_factory=GroupTotals)
    """Only the processes directly in it."""
    oom_events: int = 0
    """OOM kills of processes in it (or below) that the tracer reported since memwatch started."""

    @property
    def parent_path(self) -> str | None:
        """The path of its parent; None for the root."""
        if self.path in ("/", ""):
            return None
        head = self.path.rsplit("/", 1)[0]
        return head or "/"

    @property
    def depth(self) -> int:
        """0 for the root, 1 for its children, and so on."""
        return 0 if self.path in ("/", "") else self.path.count("/")


@dataclass(frozen=True, slots=True)
class UserView:
    """The processes of one user (real uid)."""

    uid: int
    """-1 when unknown (data recorded before uids were kept)."""
    name: str
    totals: GroupTotals = field(default_factory=GroupTotals)


class ProcessHistory(NamedTuple):
    """A process's histories as of one snapshot (see :meth:`Snapshot.history_of`)."""

    rss: Sequence[int]
    outstanding: Sequence[int]
    event_rate: Sequence[float]


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
    cgroups: tuple[CgroupView, ...] = ()
    """Memory cgroups in tree order: each right after its parent, siblings by name."""
    users: tuple[UserView, ...] = ()
    """Users with processes, by uid."""
    by_key: dict[ProcessKey, ProcessView] = field(default_factory=dict, compare=False, repr=False)
    tick: int = 0
    """The store's tick count at this snapshot (see ProcessView.history_tick); 0 outside a store."""
    history_len: int = 0
    """Points a history holds at most (the store's history_len)."""

    def __post_init__(self) -> None:
        if not self.by_key and self.processes:
            self.by_key.update((p.key, p) for p in self.processes)

    def history_of(self, view: ProcessView) -> ProcessHistory:
        """``view``'s histories as of this snapshot: a view shared since an earlier tick (its
        process did not change) gets a copy of its last point for every tick since."""
        more = self.tick - view.history_tick
        if more <= 0:
            return ProcessHistory(view.rss_history, view.outstanding_history, view.event_rate_history)
        cap = self.history_len or more + len(view.rss_history)
        return ProcessHistory(extend_history(view.rss_history, more, cap),
                              extend_history(view.outstanding_history, more, cap),
                              extend_history(view.event_rate_history, more, cap))

    def current(self, view: ProcessView) -> ProcessView:
        """``view`` with its histories as of this snapshot (itself when they are)."""
        if view.history_tick >= self.tick:
            return view
        rss, outstanding, rate = self.history_of(view)
        return replace(view, rss_history=rss, outstanding_history=outstanding, event_rate_history=rate,
                       history_tick=self.tick)

    def standalone(self) -> Snapshot:
        """This snapshot with every view's histories whole as of it, and no store tick: what a
        recording keeps, and what a replay of it hands back."""
        views = tuple(replace(self.current(v), history_tick=0) if v.history_tick else v for v in self.processes)
        return replace(self, processes=views, by_key={}, tick=0, history_len=0)

    def top(self, n: int = 100, sort: str = "rss", descending: bool = True,
            pids: tuple[int, ...] = ()) -> list[ProcessView]:
        """The n processes ranked by ``sort`` (n=0: all), plus any ``pids`` regardless of rank."""
        return rank_views(self.processes, n, sort, descending, pids)


def rank_views(views: Sequence[ProcessView], n: int = 100, sort: str = "rss", descending: bool = True,
               pids: tuple[int, ...] = ()) -> list[ProcessView]:
    """:meth:`Snapshot.top` over any views. The first n of 10,000 are picked without sorting the
    other 9,900 (heapq's partial selection, documented equal to ``sorted(...)[:n]``)."""
    from memwatch.fields import sort_key  # the registry reads views: it imports this module

    value = sort_key(sort)
    sign = -1 if descending else 1   # equal values: the lower pid first, either way

    def key(v: ProcessView) -> tuple[float | str, int]:
        return value(v), sign * v.sample.pid

    if 0 < n < len(views):
        chosen = (heapq.nlargest if descending else heapq.nsmallest)(n, views, key=key)
    else:
        chosen = sorted(views, key=key, reverse=descending)
    if pids:
        wanted = set(pids)
        have = {v.pid for v in chosen}
        extra = [v for v in views if v.pid in wanted and v.pid not in have]
        chosen += sorted(extra, key=key, reverse=descending)
    return chosen
