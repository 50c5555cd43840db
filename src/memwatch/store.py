"""The state store: merges /proc ticks, kernel counters and ring-buffer events into snapshots.

Processes are keyed by (pid, start ticks), so a reused pid starts with empty counters and history.
Histories live in rings of immutable chunks (packed, 8 bytes a point, or one number for a chunk of
equal values) because a busy machine has thousands of processes, most of them idle; a snapshot
shares the full chunks and copies only the last partial one, so readers never see a history
change and snapshots stay cheap.

Most processes sit still, so a tick looks only at those that moved: the source says which
samples are new or changed (or the store compares them), and a process that sat still for a tick,
whose RSS was flat over its window and whose history holds SHARED_MIN_POINTS points, is settled:
it is not visited again until it changes, its view goes to every snapshot as it is, and the ticks
it sat out are added to its histories by Snapshot.history_of (for readers) and by its rings when
it is next visited. Cgroup and user sums follow the views that change (groups.GroupTally).
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Any

from memwatch.cgroups import CgroupReading
from memwatch.groups import GroupTally, ancestors
from memwatch.leak import DEFAULT_WARMUP_S, LeakPolicy, LeakVerdict, assess
from memwatch.model import (
    CHUNK,
    SHARED_MIN_POINTS,
    Chunk,
    Event,
    EventKind,
    History,
    KernelCounts,
    ProcessKey,
    ProcessSample,
    ProcessView,
    SmapsRollup,
    Snapshot,
    SystemMemory,
    TracerHealth,
)

CALL_KINDS = frozenset({EventKind.MMAP, EventKind.MUNMAP, EventKind.BRK, EventKind.MREMAP})
_NO_VERDICT = LeakVerdict(None, False, None)
_FLAT = LeakVerdict(0.0, False, None)
_NO_CALLS = KernelCounts()


_ZERO_RUNS: dict[int, tuple[Chunk, ...]] = {}
_ZERO_HISTORIES: dict[tuple[str, int], History[Any]] = {}


def _zero_run(n: int) -> tuple[Chunk, ...]:
    """n chunks of zeros: most processes' outstanding bytes and call rates, shared by all of them."""
    run = _ZERO_RUNS.get(n)
    if run is None:
        run = _ZERO_RUNS[n] = (0,) * n
    return run


def _constant(code: str, cap: int, value: Any) -> History[Any]:
    """A full window of one value; the zero ones are shared by every ring of their kind."""
    if value != 0:
        return History((), code, 0, cap, value)
    key = (code, cap)
    history = _ZERO_HISTORIES.get(key)
    if history is None:
        history = _ZERO_HISTORIES[key] = History((), code, 0, cap, value)
    return history


class _Ring:
    """A bounded history whose full chunks are immutable, shared with every snapshot.

    Memory is the point (10,000 processes, three histories each): full chunks sit in one tuple
    that snapshots share as it is; a chunk whose 16 values are equal is kept as that one number
    (a run of such chunks shares the number object), and so is the partial tail until a second
    value arrives. An idle process's history is then a few references (runs of zeros, the most
    common, are shared by every ring), and once its whole window holds one value every snapshot
    gets the same History object.
    """

    __slots__ = ("cap", "chunks", "code", "constant", "last", "ntail", "run", "size", "start", "tail")

    def __init__(self, code: str, cap: int) -> None:
        self.code = code
        self.cap = cap
        self.chunks: tuple[Chunk, ...] = ()
        self.tail: array[Any] | None = None
        """The partial chunk, packed; None while its ntail values all equal ``last``."""
        self.ntail = 0
        self.last: Any = None
        self.run = 0
        """How many of the newest values equal ``last`` (at most cap)."""
        self.constant: History[Any] | None = None
        """The History of a full window of ``last`` alone, handed to every snapshot while it lasts."""
        self.start = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, value: float) -> None:
        last = self.last
        if self.run and value == last:
            value = last  # one shared object for a run of equal values
            if self.run < self.cap:
                self.run += 1
        else:
            self.run = 1
            self.constant = None
        tail = self.tail
        if tail is not None:
            tail.append(value)
        elif self.ntail and value is not last:
            tail = self.tail = array(self.code, repeat(last, self.ntail))
            tail.append(value)
        self.last = value
        self.ntail += 1
        if self.ntail == CHUNK:
            chunks = self.chunks
            if tail is None and value == 0 and chunks is _zero_run(len(chunks)):
                self.chunks = _zero_run(len(chunks) + 1)
            else:
                self.chunks = (*chunks, tail.tobytes() if tail is not None else value)
            self.tail = None
            self.ntail = 0
        if self.size < self.cap:
            self.size += 1
        else:
            self.start += 1
            if self.start == CHUNK:
                chunks = self.chunks
                self.chunks = _zero_run(len(chunks) - 1) if chunks is _zero_run(len(chunks)) else chunks[1:]
                self.start = 0

    def repeat_last(self, times: int) -> None:
        """Append the last value ``times`` more times: the ticks a settled process was not visited."""
        if times <= 0 or not self.size:
            return
        if times < self.cap:
            last = self.last
            for _ in range(times):
                self.append(last)
            return
        # the whole window is the last value now
        value, full = self.last, self.cap // CHUNK
        self.chunks = _zero_run(full) if value == 0 else (value,) * full
        self.tail, self.ntail = None, self.cap % CHUNK
        self.run = self.size = self.cap
        self.start = 0
        self.constant = None

    def history(self) -> History[Any]:
        if self.run == self.size == self.cap:
            if self.constant is None:
                self.constant = _constant(self.code, self.cap, self.last)
            return self.constant
        tail: Chunk | None = None
        if self.tail is not None:
            tail = self.tail.tobytes()
        elif self.ntail:
            tail = self.last
        return History(self.chunks, self.code, self.start, self.size, tail)

    def values(self) -> array[Any]:
        return self.history()._values()


@dataclass(slots=True)
class _Proc:
    """Mutable per-process state; only the store touches it."""

    sample: ProcessSample
    rss: _Ring
    outstanding: _Ring
    rates: _Ring
    kernel: KernelCounts | None = None
    rollup: SmapsRollup | None = None
    recent: deque[Event] | None = None
    """Made at the first call event: an empty deque costs 760 bytes, and most processes get none."""
    last_rss: int = -1
    last_change: float = 0.0
    verdict: LeakVerdict = _NO_VERDICT
    cpu_percent: float | None = None
    view: ProcessView | None = None
    """The view last handed out; None when something it shows changed since (events, PSS)."""
    tick: int = 0
    """The store tick of the histories' last point: a settled process is not visited, and the
    ticks it missed are filled in (copies of the last point) when it is visited again."""

    def push(self, t: float, tick: int, rss: int, outstanding: int, rate: float) -> None:
        missed = tick - 1 - self.tick
        if missed > 0 and self.tick:
            self.rss.repeat_last(missed)
            self.outstanding.repeat_last(missed)
            self.rates.repeat_last(missed)
        if rss != self.last_rss and self.last_rss >= 0:
            self.last_change = t
        self.last_rss = rss
        self.tick = tick
        self.rss.append(rss)
        self.outstanding.append(outstanding)
        self.rates.append(rate)


_PID = attrgetter("pid")


class _Merge:
    """One tick's visits: what a changed (or still moving) process's state and view become."""

    __slots__ = ("kernel", "now", "rollups", "since", "store", "tick", "tick_times", "warmup_s")

    def __init__(self, store: Store, now: float, interval_s: float,
                 kernel: Mapping[ProcessKey, KernelCounts] | None,
                 rollups: Mapping[ProcessKey, SmapsRollup] | None) -> None:
        self.store = store
        self.now = now
        self.tick = store._tick
        self.since = now - store._last_tick
        self.kernel = kernel
        self.rollups = rollups
        self.tick_times = store._times.values()
        self.warmup_s = store.warmup_s(interval_s)

    def visit(self, key: ProcessKey, proc: _Proc, s: ProcessSample) -> None:
        if proc.tick == self.tick:
            return   # listed twice (its sample and its counts both changed): one point a tick
        kernel = self.kernel
        counts = kernel.get(key, _NO_CALLS) if kernel is not None else None
        rate = 0.0
        known = len(proc.rss) > 0
        still = known and s is proc.sample and counts is proc.kernel
        if still:
            proc.cpu_percent = 0.0   # nothing moved: no CPU and no calls since the last tick
        else:
            old_kernel, old_cpu = proc.kernel, proc.sample.cpu_time_s
            proc.sample = s
            proc.kernel = counts
            dt = self.since if known else 0.0
            if dt > 0:
                proc.cpu_percent = max(0.0, s.cpu_time_s - old_cpu) / dt * 100
                if counts is not None and old_kernel is not None:
                    rate = max(0, counts.calls - old_kernel.calls) / dt
        if self.rollups and key in self.rollups:
            proc.rollup = self.rollups[key]
        proc.push(self.now, self.tick, s.rss_kb, counts.outstanding_bytes if counts is not None else 0, rate)
        store = self.store
        proc.verdict = store._assess(proc, self.tick_times, self.warmup_s)
        view = store._view(proc)
        old = store._views.get(key)
        store._views[key] = view
        if store._tally is not None:
            store._tally.replace(old, view)
        if not (still and proc.verdict is _FLAT and len(proc.rss) >= store.settle_points):
            store._unsettled.add(key)


class Store:
    """Keeps the latest state of every process and builds immutable snapshots of it.

    ``recent_len`` call events are kept per process for the views' ``recent_events``; 0 keeps
    none, for consumers that never show them (the exporter): with eBPF on they are the largest
    per-process cost (a new process makes a dozen mmaps just loading its libraries), and what a
    spike of short-lived processes allocates stays with the allocator after they are gone.
    """

    MAX_OOM_CGROUPS = 4096
    """Cgroups whose OOM kills are remembered; the oldest is forgotten first."""

    def __init__(self, *, history_len: int = 120, events_len: int = 1000, recent_len: int = 32,
                 max_new_events: int = 100_000, leak_policy: LeakPolicy | None = None,
                 hostname: str | None = None, groups: bool = True) -> None:
        self.history_len = history_len
        self.groups = groups
        """Whether snapshots carry cgroups and users (their sums cost a pass over the processes)."""
        self._cgroup_ooms: dict[str, int] = {}
        """OOM kills the tracer reported, by cgroup (and each of its ancestors)."""
        self._cgroup_names: dict[str, tuple[str, str]] = {}
        self.recent_len = recent_len
        self.leak_policy = leak_policy or LeakPolicy()
        self.hostname = hostname or socket.gethostname()
        self._lock = threading.Lock()
        """The collector merges ticks in a worker thread while events arrive on the event loop."""
        self._procs: dict[ProcessKey, _Proc] = {}
        self._by_pid: dict[int, ProcessKey] = {}
        self._orphans: dict[int, list[Event]] = {}
        self._log: deque[Event] = deque(maxlen=events_len)
        self._new: list[Event] = []
        """Exits and OOM kills since the last snapshot: each reaches exactly one snapshot."""
        self.max_new_events = max_new_events
        self.new_events_dropped = 0
        """Exits and OOM kills beyond max_new_events in one interval (none reached a snapshot)."""
        self._system: deque[SystemMemory] = deque(maxlen=history_len)
        self._times = _Ring("d", history_len)
        """When each of the last ticks happened (shared by every process's history)."""
        self._tick = 0
        self._last_tick = 0.0
        """When the last tick happened: CPU and call rates of a changed process are over the
        time since (it was in that tick, or it is new)."""
        self._views: dict[ProcessKey, ProcessView] = {}
        """The latest view of every process, in the order they were first seen."""
        self.settle_points = min(SHARED_MIN_POINTS, history_len)
        self._tally = GroupTally() if groups else None
        """Cgroup and user sums, told of every view that replaces another."""
        self._unsettled: set[ProcessKey] = set()
        """Processes to visit at the next tick even if unchanged: their view still moves (CPU and
        call rate fall to 0 a tick after a change, a leak fit slides with its window, events or
        PSS arrived). Every other unchanged process is settled: its view is the last one."""
        self.events_seen = 0

    # -- inputs ----------------------------------------------------------------------------------

    def add_events(self, events: Iterable[Event]) -> None:
        """Ring-buffer events: calls go to their process, exits and OOM kills to the log."""
        with self._lock:
            self._add_events(events)

    def _add_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.events_seen += 1
            if ev.kind in CALL_KINDS:
                if self.recent_len <= 0:
                    continue
                key = self._by_pid.get(ev.pid)
                proc = self._procs.get(key) if key else None
                if proc is None:
                    # a process born since the last tick: attach at the next one
                    pending = self._orphans.setdefault(ev.pid, [])
                    if len(pending) < self.recent_len:
                        pending.append(ev)
                else:
                    self._remember(proc, ev)
            else:
                if ev.kind is EventKind.OOM:
                    ev = self._oom_cgroup(ev)
                self._log.append(ev)
                if len(self._new) < self.max_new_events:
                    self._new.append(ev)
                else:
                    self.new_events_dropped += 1

    def _oom_cgroup(self, ev: Event) -> Event:
        """Count an OOM kill for its cgroup and the cgroup's ancestors. When the kernel did not say
        which cgroup (an older kernel), or its id no longer names one, the victim's memory cgroup
        as memwatch last read it stands in (it lived at least until the last tick)."""
        if ev.cgroup is None:
            key = self._by_pid.get(ev.pid)
            proc = self._procs.get(key) if key is not None else None
            if proc is None or not proc.sample.memory_cgroup or (
                    ev.start_ticks is not None and proc.sample.start_ticks != ev.start_ticks):
                return ev
            ev = dataclasses.replace(ev, cgroup=proc.sample.memory_cgroup)
        assert ev.cgroup is not None
        tally = self._cgroup_ooms
        for path in (ev.cgroup, *ancestors(ev.cgroup)):
            count = tally.pop(path, 0) + 1
            tally[path] = count
        while len(tally) > self.MAX_OOM_CGROUPS:
            del tally[next(iter(tally))]
        return ev

    def oom_kills(self, cgroup: str) -> int:
        """OOM kills the tracer reported in ``cgroup`` or below it since the store began."""
        with self._lock:
            return self._cgroup_ooms.get(cgroup, 0)

    def _remember(self, proc: _Proc, ev: Event) -> None:
        if proc.recent is None:
            proc.recent = deque(maxlen=self.recent_len)
        proc.recent.append(ev)
        self._unsettle(proc)

    def _unsettle(self, proc: _Proc) -> None:
        if proc.view is not None:
            proc.view = None
            self._unsettled.add(proc.sample.key)

    def set_rollup(self, key: ProcessKey, rollup: SmapsRollup | None) -> None:
        with self._lock:
            proc = self._procs.get(key)
            if proc is not None:
                proc.rollup = rollup
                self._unsettle(proc)

    def update(self, now: float, interval_s: float, samples: Sequence[ProcessSample],
               kernel: Mapping[ProcessKey, KernelCounts] | None, system: SystemMemory,
               tracer: TracerHealth, duration_s: float = 0.0,
               rollups: Mapping[ProcessKey, SmapsRollup] | None = None,
               self_cpu_percent: float | None = None,
               cgroups: Mapping[str, CgroupReading] | None = None, cgroup_version: int = 0,
               changed: Iterable[ProcessSample] | None = None) -> Snapshot:
        """Merge one tick (and any PSS/USS read for it, and what the cgroup reader found) and
        return the snapshot for it.

        ``changed``, when the source knows it, is every sample that is new, or not the object the
        last update got, or whose kernel counts are not the object they were: the others are not
        looked at (with 10,000 processes, most of them idle, that is most of a tick's work).
        Without it every sample is compared.
        """
        with self._lock:
            return self._update(now, interval_s, samples, kernel, system, tracer, duration_s, rollups,
                                self_cpu_percent, cgroups, cgroup_version, changed)

    def _update(self, now: float, interval_s: float, samples: Sequence[ProcessSample],
                kernel: Mapping[ProcessKey, KernelCounts] | None, system: SystemMemory,
                tracer: TracerHealth, duration_s: float,
                rollups: Mapping[ProcessKey, SmapsRollup] | None,
                self_cpu_percent: float | None, cgroups: Mapping[str, CgroupReading] | None,
                cgroup_version: int, changed: Iterable[ProcessSample] | None) -> Snapshot:
        self._tick += 1
        self._times.append(now)
        procs, views, by_pid = self._procs, self._views, self._by_pid
        for pid in by_pid.keys() - set(map(_PID, samples)):
            self._forget(by_pid[pid])
        if changed is None:
            changed = self._changes(samples, kernel)
        visit, self._unsettled = self._unsettled, set()
        if rollups:
            visit.update(rollups.keys() & procs.keys())
        merge = _Merge(self, now, interval_s, kernel, rollups)
        for s in changed:
            key = s.key
            proc = procs.get(key)
            if proc is None:
                old = by_pid.get(s.pid)
                if old is not None:   # the pid was reused
                    self._forget(old)
                proc = procs[key] = _Proc(s, _Ring("q", self.history_len), _Ring("q", self.history_len),
                                          _Ring("d", self.history_len), last_change=now)
                by_pid[s.pid] = key
                for ev in self._orphans.pop(s.pid, ()):
                    self._remember(proc, ev)
            visit.discard(key)
            merge.visit(key, proc, s)
        for key in visit:
            proc = procs.get(key)
            if proc is not None:
                merge.visit(key, proc, proc.sample)
        self._last_tick = now
        self._orphans.clear()
        self._system.append(system)
        new, self._new = tuple(self._new), []
        if self.new_events_dropped:
            tracer = dataclasses.replace(tracer, exits_dropped=tracer.exits_dropped + self.new_events_dropped)
        processes = tuple(views.values())
        return Snapshot(
            timestamp=now,
            interval_s=interval_s,
            hostname=self.hostname,
            system=system,
            tracer=tracer,
            processes=processes,
            events=tuple(self._log),
            new_events=new,
            system_history=tuple(self._system),
            duration_s=duration_s,
            self_cpu_percent=self_cpu_percent,
            cgroups=self._tally.cgroups(cgroups, version=cgroup_version, oom_events=self._cgroup_ooms,
                                        names=self._cgroup_names) if self._tally is not None else (),
            users=self._tally.users() if self._tally is not None else (),
            by_key=dict(views),
            tick=self._tick,
            history_len=self.history_len,
        )

    def _changes(self, samples: Sequence[ProcessSample],
                 kernel: Mapping[ProcessKey, KernelCounts] | None) -> list[ProcessSample]:
        """The samples that are new, changed or whose counts changed, found by comparing each."""
        procs, out = self._procs, []
        for s in samples:
            key = s.key
            proc = procs.get(key)
            if proc is None or proc.sample is not s or (
                    kernel is not None and kernel.get(key, _NO_CALLS) is not proc.kernel):
                out.append(s)
        return out

    def _forget(self, key: ProcessKey) -> None:
        """A process that is gone (or whose pid now names another one)."""
        self._procs.pop(key, None)
        view = self._views.pop(key, None)
        if view is not None and self._tally is not None:
            self._tally.replace(view, None)
        self._unsettled.discard(key)
        if self._by_pid.get(key[0]) == key:
            del self._by_pid[key[0]]

    def warmup_s(self, interval_s: float) -> float:
        """A process's warm-up, whose samples the leak flag leaves out (see memwatch.leak)."""
        policy = self.leak_policy
        if policy.warmup_s is not None:
            return policy.warmup_s
        return max(DEFAULT_WARMUP_S, self.history_len * interval_s)

    def _assess(self, proc: _Proc, tick_times: array[float], warmup_s: float) -> LeakVerdict:
        n = len(proc.rss)
        if n < 2:
            return _NO_VERDICT
        # a process is in every tick from its first to now, so its times are the last n ticks
        if proc.last_change <= tick_times[-n]:
            return _FLAT  # flat over the whole window: no need to fit
        return assess(tick_times[-n:], proc.rss.values(), self.leak_policy, proc.sample.start_time + warmup_s)

    def _view(self, p: _Proc) -> ProcessView:
        v = p.verdict
        p.view = ProcessView(
            history_tick=p.tick,
            sample=p.sample,
            kernel=p.kernel,
            rollup=p.rollup,
            growth_kb_s=v.growth_kb_s,
            cpu_percent=p.cpu_percent,
            leak_suspect=v.suspect,
            leak_reason=v.reason,
            rss_history=p.rss.history(),
            outstanding_history=p.outstanding.history(),
            event_rate_history=p.rates.history(),
            recent_events=tuple(p.recent) if p.recent else (),
        )
        return p.view

    # -- outputs ---------------------------------------------------------------------------------

    def key_of(self, pid: int) -> ProcessKey | None:
        return self._by_pid.get(pid)

    def __len__(self) -> int:
        return len(self._procs)

