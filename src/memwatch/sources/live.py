"""The live source: the eBPF tracer plus /proc, or /proc alone when eBPF cannot be had.

The ring buffers are drained continuously (every ``drain_every_s`` and whenever the kernel forces a
wakeup), not once per tick. Exits and OOM kills have a ring of their own and are always drained.
Call events are held to a global budget per second (``events_budget``): once it is spent the
kernel is told to withhold them (a flag it reads at no cost) until the next second, so no storm
can take the consumer's time, whatever the per-process budget; the counts stay exact. The budget's
records are copied out of the ring (cheap) and the flag set *before* any is parsed (the costly
part, about 6 us a record), which is then done ``parse_chunk`` records at a time, the event loop
free in between. What the kernel could not deliver, or withheld, is counted and shown in every
snapshot.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import resource
import select
import threading
import time
from collections.abc import Callable, Sequence

from memwatch.cgroups import CgroupReader, CgroupReading
from memwatch.ebpf import (
    BpfUnavailable,
    RawCall,
    RawEvent,
    RawExit,
    RawOom,
    RawStats,
    Tracer,
    TracerConfig,
    parse_records,
    parse_stack_record,
)
from memwatch.ebpf.layouts import EV_BRK, EV_MMAP, EV_MREMAP, EV_MUNMAP
from memwatch.ebpf.loader import RunCost
from memwatch.maps import MemoryMap, annotate, read_memory_map_async
from memwatch.model import (
    Event,
    EventKind,
    KernelCounts,
    ProcessKey,
    ProcessSample,
    SmapsRollup,
    Snapshot,
    SystemMemory,
    TracerHealth,
    decode_wait_status,
)
from memwatch.procfs import ProcReader, read_smaps_rollup_async, read_system_memory, signal_process
from memwatch.sources.base import StackReport, StacksUnavailable
from memwatch.stacks.table import AllocationStack, StackCollector
from memwatch.store import Store
from memwatch.task_table import TaskTable

log = logging.getLogger("memwatch.live")

_CALL_KIND = {EV_MMAP: EventKind.MMAP, EV_MUNMAP: EventKind.MUNMAP, EV_BRK: EventKind.BRK,
              EV_MREMAP: EventKind.MREMAP}
MIN_INTERVAL_S = 0.2
COST_EVERY = 10
"""The tracer's kernel cost is measured over one interval in this many (see _measure_cost)."""
DEFAULT_EVENTS_BUDGET = 5000
"""Call events parsed per second at most, over all processes (--events-budget)."""


class EventConverter:
    """Kernel records (boot clock, pages) to model events (wall clock, KB).

    ``cgroup_path`` maps an OOM victim's cgroup id to its path; it is called as each event is
    converted, while the cgroup most likely still exists (a runtime removes it soon after)."""

    def __init__(self, tracer: Tracer, cgroup_path: Callable[[int], str | None] | None = None) -> None:
        self.tracer = tracer
        self.page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
        self.cgroup_path = cgroup_path
        self._counts: dict[int, tuple[RawStats, KernelCounts, ProcessKey]] = {}
        self.changed: list[ProcessKey] = []
        """Processes whose counts at the last all_counts() are not the object they were before
        (new or changed counts, or counts no longer listed)."""

    def all_counts(self, stats: dict[int, RawStats]) -> dict[ProcessKey, KernelCounts]:
        """Counts by process for a read of the tracer's stats; a process whose RawStats is the same
        object as last time (its record did not change) gets the same KernelCounts."""
        old: dict[int, tuple[RawStats, KernelCounts, ProcessKey]] = self._counts
        new: dict[int, tuple[RawStats, KernelCounts, ProcessKey]] = {}
        out: dict[ProcessKey, KernelCounts] = {}
        changed: list[ProcessKey] = []
        start_ticks = self.tracer.start_ticks
        for tgid, s in stats.items():
            known = old.get(tgid)
            if known is not None and known[0] is s:
                new[tgid] = known
                out[known[2]] = known[1]
                continue
            key = (tgid, start_ticks(s.start_boottime_ns))
            counts = self.counts(s)
            new[tgid] = (s, counts, key)
            out[key] = counts
            changed.append(key)
        changed.extend(old[tgid][2] for tgid in old.keys() - new.keys())
        self._counts = new
        self.changed = changed
        return out

    def counts(self, s: RawStats) -> KernelCounts:
        wall = self.tracer.boot_ns_to_wall
        return KernelCounts(
            mmap_count=s.mmap_count, mmap_bytes=s.mmap_bytes,
            munmap_count=s.munmap_count, munmap_bytes=s.munmap_bytes,
            brk_count=s.brk_count, brk_grow_bytes=s.brk_grow_bytes, brk_shrink_bytes=s.brk_shrink_bytes,
            mremap_count=s.mremap_count, mremap_grow_bytes=s.mremap_grow_bytes,
            mremap_shrink_bytes=s.mremap_shrink_bytes,
            outstanding_bytes=s.outstanding_bytes, outstanding_peak_bytes=s.outstanding_peak,
            untracked_unmap_bytes=s.untracked_unmap_bytes, lost_mappings=s.lost_mappings,
            lost_bytes=s.lost_bytes, failed_calls=s.failed_calls,
            events_throttled=s.events_throttled,
            first_seen=wall(s.first_seen_ns) if s.first_seen_ns else 0.0,
            last_seen=wall(s.last_seen_ns) if s.last_seen_ns else 0.0,
        )

    def event(self, raw: RawEvent) -> Event:
        t = self.tracer
        if isinstance(raw, RawCall):
            return Event(t.boot_ns_to_wall(raw.ts_ns), _CALL_KIND[raw.kind], raw.tgid, raw.tid, raw.comm,
                         addr=raw.addr, length=raw.len, new_addr=raw.new_addr, new_length=raw.new_len,
                         flags=raw.flags, prot=raw.prot)
        if isinstance(raw, RawExit):
            code, sig = decode_wait_status(raw.exit_status)
            return Event(t.boot_ns_to_wall(raw.ts_ns), EventKind.EXIT, raw.tgid, raw.tid, raw.comm,
                         exit_code=code, signal=sig, peak_rss_kb=raw.maxrss_pages * self.page_kb,
                         counts=self.counts(raw.stats) if raw.stats else None,
                         start_ticks=t.start_ticks(raw.start_boottime_ns),
                         start_time=t.boot_ns_to_wall(raw.start_boottime_ns))
        assert isinstance(raw, RawOom)
        cgroup = self.cgroup_path(raw.cgroup_id) if self.cgroup_path is not None and raw.cgroup_id else None
        return Event(t.boot_ns_to_wall(raw.ts_ns), EventKind.OOM, raw.tgid, raw.tid, raw.comm,
                     rss_kb=(raw.anon_rss_pages + raw.file_rss_pages + raw.shmem_rss_pages) * self.page_kb,
                     total_vm_kb=raw.total_vm_pages * self.page_kb,
                     start_ticks=t.start_ticks(raw.start_boottime_ns) if raw.start_boottime_ns else None,
                     start_time=t.boot_ns_to_wall(raw.start_boottime_ns) if raw.start_boottime_ns else None,
                     cgroup=cgroup, cgroup_id=raw.cgroup_id)


class StackPump:
    """Drains ``stack_events`` in a thread of its own and unwinds each record there: unwinding is
    Python work (tens of microseconds a record) that must not hold up the event loop, and the
    records are large (16.6 KB), so they are turned into table entries as they arrive instead of
    waiting for a tick."""

    def __init__(self, tracer: Tracer, collector: StackCollector, every_s: float = 0.1) -> None:
        self.tracer = tracer
        self.collector = collector
        self.every_s = every_s
        self.records = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memwatch-stacks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self.tracer.stacks.fileno
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                select.select([fd], [], [], self.every_s)
            if not self._stop.is_set():
                self.flush()

    def flush(self) -> int:
        """Apply every record waiting in the ring now; returns how many."""
        n = 0
        with self._lock:
            while not self._stop.is_set():
                raws = self.tracer.stacks.drain_raw(256)
                n += self.collector.add(r for r in map(parse_stack_record, raws) if r is not None)
                if len(raws) < 256:
                    break
        self.records += n
        return n

    def stop(self) -> None:
        """Stop the thread (before the tracer closes: it reads the tracer's ring)."""
        self._stop.set()
        self._thread.join(timeout=5)


class MappedBy:
    """When and by which thread each traced mapping of some processes was made, from the call
    events (so it knows what the events knew: calls above the threshold, within the budgets)."""

    WATCHED_MAX = 16
    """Processes followed on request (:meth:`watch`) at most; the oldest request goes first."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._by_pid: dict[int, tuple[list[int], dict[int, tuple[float, int]]]] = {p: ([], {}) for p in pids}
        self._fixed = frozenset(pids)
        self._watched: list[int] = []

    def watch(self, pid: int) -> None:
        """Follow ``pid``'s mappings from now on too (someone looks at its memory map)."""
        if pid in self._fixed or pid in self._watched:
            return
        self._watched.append(pid)
        self._by_pid[pid] = ([], {})
        if len(self._watched) > self.WATCHED_MAX:
            self._by_pid.pop(self._watched.pop(0), None)

    def add(self, events: Sequence[Event]) -> None:
        for ev in events:
            known = self._by_pid.get(ev.pid)
            if known is None:
                continue
            starts, info = known
            if ev.kind is EventKind.MMAP:
                if ev.addr not in info:
                    bisect.insort(starts, ev.addr)
                info[ev.addr] = (ev.timestamp, ev.tid)
            elif ev.kind is EventKind.MUNMAP:
                lo = bisect.bisect_left(starts, ev.addr)
                hi = bisect.bisect_left(starts, ev.addr + ev.length)
                for a in starts[lo:hi]:
                    del info[a]
                del starts[lo:hi]

    def lookup(self, pid: int) -> tuple[list[int], dict[int, tuple[float, int]]]:
        return self._by_pid.get(pid, ([], {}))


def _close_if_opened(done: asyncio.Future[Tracer]) -> None:
    if not done.cancelled() and done.exception() is None:
        done.result().close()


class LiveSource:
    """Snapshots of this machine, one per interval; implements :class:`SnapshotSource`."""

    def __init__(self, interval_s: float = 3.0, *, use_bpf: bool = True,
                 tracer_config: TracerConfig | None = None, store: Store | None = None,
                 proc_root: str = "/proc", drain_every_s: float = 0.25, drain_budget: int = 4096,
                 parse_chunk: int = 512, events_budget: int = DEFAULT_EVENTS_BUDGET, rollup_timeout_s: float = 0.5,
                 rollup_top: int = 0, groups: bool = True, cgroup_reader: CgroupReader | None = None,
                 stack_pids: Sequence[int] = (), map_pids: Sequence[int] = ()) -> None:
        self._interval = max(MIN_INTERVAL_S, interval_s)
        self.use_bpf = use_bpf
        self.tracer_config = tracer_config or TracerConfig()
        self.store = store if store is not None else Store()  # an empty Store is falsy (len 0)
        self.proc_root = proc_root
        self.drain_every_s = drain_every_s
        self.drain_budget = drain_budget
        self.parse_chunk = max(1, parse_chunk)
        self.events_budget = max(0, events_budget)
        self.rollup_timeout_s = rollup_timeout_s
        self.rollup_top = rollup_top
        self.tracer: Tracer | None = None
        self.bpf_reason: str | None = None if use_bpf else "eBPF is off (--no-bpf): showing /proc figures only."
        self._reader = ProcReader(proc_root)
        self._table: TaskTable | None = None
        """The process table from the tracer's iterator (None: /proc is read, eBPF is off)."""
        self._cgroups: CgroupReader | None = None
        """Memory cgroups of the processes (None: no groups in the snapshots)."""
        if groups:
            self._cgroups = cgroup_reader if cgroup_reader is not None else CgroupReader()
        else:
            self.store.groups = False
        self._converter: EventConverter | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._abandoned_load: asyncio.Future[Tracer] | None = None
        self._wake = asyncio.Event()
        self._started = 0.0
        self._next_due = 0.0
        self._events_delivered = 0
        self._events_at_last_tick = 0
        self._last_tick = 0.0
        self._exits_pending = False
        self._closed = False
        self._work = threading.Lock()
        """Held by a tick's worker thread while it reads /proc or the tracer; close() waits for it."""
        self._budget_window = 0.0
        self._budget_used = 0
        self._withheld_here = 0
        """Call events already in the ring when the budget ran out, discarded unparsed."""
        self._cost_ticks = 0
        self._cost_began: tuple[RunCost, float] | None = None
        self._ns_per_call: float | None = None
        self._kernel_cpu: float | None = None
        self._last_usage: tuple[float, float] | None = None
        self._unmerged = False
        """A process-table read whose changes have not reached the store yet (see _read_proc)."""
        self._copied: list[bytes] = []
        """Call records copied out of the ring within the budget, not parsed yet."""
        self.stack_pids = tuple(dict.fromkeys(stack_pids))
        """Processes whose allocation stacks are captured (the tracer is opened with stacks on)."""
        self.stack_targets: dict[int, int] = {}
        """Of those, the ones the kernel found: pid -> kernel start time."""
        self.stacks = StackCollector(proc_root)
        self._stack_pump: StackPump | None = None
        self._stacks_since: dict[int, float] = {}
        """Stack targets added at run time (:meth:`start_stacks`): pid -> when."""
        self._mapped = MappedBy(map_pids)

    @property
    def interval_s(self) -> float:
        return self._interval

    @property
    def events_parsed(self) -> int:
        """Events moved into the store since open (calls, exits and OOM kills)."""
        return self._events_delivered

    @property
    def events_discarded(self) -> int:
        """Call events that reached the ring but were discarded unparsed: the budget was spent."""
        return self._withheld_here

    def set_interval(self, seconds: float) -> None:
        self._interval = max(MIN_INTERVAL_S, seconds)
        self._next_due = min(self._next_due, time.monotonic() + self._interval)

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> Snapshot:
        if self.use_bpf:
            loading = asyncio.ensure_future(asyncio.to_thread(Tracer(self.tracer_config).open))
            try:
                self.tracer = await asyncio.shield(loading)
            except asyncio.CancelledError:
                # the load goes on in its thread: detach whatever it attaches, never leak probes;
                # close() waits for it
                loading.add_done_callback(_close_if_opened)
                self._abandoned_load = loading
                raise
            except BpfUnavailable as exc:
                self.bpf_reason = str(exc)
                log.info("%s", exc)
            else:
                self._converter = EventConverter(self.tracer, self._oom_cgroup)
                self._table = TaskTable(self._reader, start_ticks=self.tracer.start_ticks,
                                        page_size=self.tracer.page_size)
                if self.stack_pids:
                    self._start_stacks(self.tracer)
                self._drainer = asyncio.create_task(self._drain_forever(), name="memwatch-ring-drain")
        self._started = time.monotonic()
        snap = await self._tick()
        self._next_due = time.monotonic() + self._interval
        return snap

    async def next(self) -> Snapshot:
        delay = self._next_due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next_due = max(self._next_due + self._interval, time.monotonic() + MIN_INTERVAL_S / 2)
        return await self._tick()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._abandoned_load is not None:
            # its done-callback (registered first) closes the tracer before this wait returns
            await asyncio.wait({self._abandoned_load}, timeout=30)
            self._abandoned_load = None
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.wait({self._drainer}, timeout=2.0)
            self._drainer = None
        tracer, self.tracer = self.tracer, None
        if self._stack_pump is not None:
            await asyncio.to_thread(self._stack_pump.stop)
            self._stack_pump = None
        if tracer is not None:
            self._detach_reader(tracer)
        # a tick cancelled midway goes on in its worker thread: wait for it before closing what
        # it reads (closing the reader's files under it, or the tracer, would be use after free)
        await asyncio.to_thread(self._release, tracer)

    def _release(self, tracer: Tracer | None) -> None:
        with self._work:
            if tracer is not None:
                tracer.close()
                log.info("tracer detached")
            self._reader.close()
            if self._cgroups is not None:
                self._cgroups.close()

    # -- allocation stacks and memory maps -------------------------------------------------------

    def _start_stacks(self, tracer: Tracer) -> None:
        """Make the chosen processes stack targets; each one's modules are read now."""
        for pid in self.stack_pids:
            self.stacks.watch(pid)
        self.stack_targets = tracer.set_stack_targets(self.stack_pids)
        self._stack_pump = StackPump(tracer, self.stacks)
        log.info("allocation stacks of %s", ", ".join(map(str, self.stack_targets)) or "no process")

    async def start_stacks(self, key: ProcessKey) -> None:
        """Make one more process a stack target, at run time (the dashboard's allocation tab
        opened): its modules are read and the kernel's target map updated in a worker thread."""
        if self.tracer is None:
            raise StacksUnavailable("eBPF off: allocation stacks need the tracer."
                                    + (f" {self.bpf_reason}" if self.bpf_reason else ""))
        if not self.tracer.config.stacks:
            raise StacksUnavailable("the tracer was started without stack capture (its ring was not made)")
        if self.store.key_of(key[0]) != key:
            raise ProcessLookupError(f"process {key[0]} has exited")
        await asyncio.to_thread(self._add_stack_target, key)

    def _add_stack_target(self, key: ProcessKey) -> None:
        pid = key[0]
        with self._work:   # close() waits: the tracer is not closed under the map update
            tracer = self.tracer
            if tracer is None:
                raise StacksUnavailable("the tracer is closed")
            if pid in self._stacks_since:
                return
            self.stacks.watch(pid)
            found = tracer.set_stack_targets({*self.stack_targets, pid})
            if pid not in found or tracer.start_ticks(found[pid]) != key[1]:
                # gone, or the pid is another process's now: that one is nobody's target
                found = tracer.set_stack_targets(set(found) - {pid})
                self.stack_targets = found
                self.stacks.forget(pid)
                raise ProcessLookupError(f"process {pid} has exited")
            self.stack_targets = found
            self._stacks_since[pid] = time.time()
            if self._stack_pump is None:
                tracer.stacks.discard(1 << 20)   # left over from an earlier capture
                self._stack_pump = StackPump(tracer, self.stacks)
        log.info("allocation stacks of %d: on", pid)

    async def stop_stacks(self, pid: int) -> None:
        """Stop a run-time stack target (:meth:`start_stacks`): the kernel map entry goes, the
        records still in the ring and the table are dropped; the pump stops with the last one."""
        if pid in self._stacks_since:
            await asyncio.to_thread(self._remove_stack_target, pid)

    def _remove_stack_target(self, pid: int) -> None:
        with self._work:
            if self._stacks_since.pop(pid, None) is None:
                return
            tracer = self.tracer
            self.stack_targets.pop(pid, None)
            if tracer is not None:
                self.stack_targets = tracer.set_stack_targets(set(self.stack_targets))
            if not self.stack_targets and self._stack_pump is not None:
                self._stack_pump.stop()
                self._stack_pump = None
                if tracer is not None:
                    tracer.stacks.discard(1 << 20)
            self.stacks.forget(pid)
        log.info("allocation stacks of %d: off", pid)

    async def stack_report(self, pid: int) -> StackReport | None:
        """What the capture of ``pid`` found so far, unwound and symbolized in a worker thread."""
        return await asyncio.to_thread(self._stack_report, pid)

    def _stack_report(self, pid: int) -> StackReport | None:
        since = self._stacks_since.get(pid)
        tracer = self.tracer
        # the table as the pump has it (at most every_s behind): flushing here would race the
        # pump for records as long as the process keeps calling, and a report could wait seconds
        stacks = self.stacks.stacks(pid)
        if since is None or tracer is None or stacks is None:
            return None
        with self._work:
            counts = tracer.stack_target_counts(pid) if self.tracer is not None else None
        return StackReport(pid, since, tuple(stacks), captured=counts.captured if counts else 0,
                           throttled=counts.throttled if counts else 0, dropped=counts.dropped if counts else 0,
                           unreadable=self.unreadable_modules(pid))

    def allocation_stacks(self, pid: int) -> list[AllocationStack] | None:
        """The call stacks of a stack target so far (everything the kernel sent is applied first);
        None when it is not one (not asked for, not found, or eBPF is off)."""
        if pid not in self.stack_targets:
            return None
        if self._stack_pump is not None:
            self._stack_pump.flush()
        return self.stacks.stacks(pid)

    def unreadable_modules(self, pid: int) -> dict[str, str]:
        """Modules of a stack target whose files could not be read: path -> why."""
        return self.stacks.unreadable(pid)

    async def memory_map(self, pid: int, timeout_s: float = 2.0) -> MemoryMap:
        """The process's mappings (smaps), off the event loop and time-capped (TimeoutError), each
        traced mapping annotated with when and by which thread it was made, where memwatch kept
        that call event (``map_pids``). ProcessLookupError when it is gone."""
        mm = await read_memory_map_async(pid, timeout_s, self.proc_root)
        self._mapped.watch(pid)   # asked once: the mappings it makes from now on are followed
        starts, info = self._mapped.lookup(pid)

        def mapped(lo: int, hi: int) -> tuple[float, int] | None:
            i = bisect.bisect_left(starts, lo)
            return info[starts[i]] if i < len(starts) and starts[i] < hi else None

        return annotate(mm, mapped)

    async def memory_map_of(self, key: ProcessKey, timeout_s: float = 2.0) -> MemoryMap:
        """:meth:`memory_map` of exactly that process (pid and start time): ProcessLookupError
        when its pid names another process now, or no process."""
        if self.store.key_of(key[0]) != key:
            raise ProcessLookupError(f"process {key[0]} has exited")
        mm = await self.memory_map(key[0], timeout_s)
        if self.store.key_of(key[0]) != key:
            raise ProcessLookupError(f"process {key[0]} has exited")
        return mm

    # -- the ring buffer -------------------------------------------------------------------------

    @staticmethod
    def _detach_reader(tracer: Tracer) -> None:
        for reader in (tracer.ring, tracer.life):
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(reader.fileno)

    async def _drain_forever(self) -> None:
        assert self.tracer is not None
        loop = asyncio.get_running_loop()
        for reader in (self.tracer.ring, self.tracer.life):
            with contextlib.suppress(OSError, NotImplementedError, ValueError):  # the timer alone still drains
                loop.add_reader(reader.fileno, self._wake.set)
        while True:
            self.drain_once()
            if self._copied:   # more than one pass parses: the rest after the loop's other work
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # races with the wakeup, and close() would then wait for this loop forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.drain_every_s):
                    await self._wake.wait()

    def drain_once(self) -> int:
        """One bounded pass: exits and OOM kills (up to ``drain_budget``); call records copied out
        of the ring within what is left of this second's budget (see :meth:`_calls_room`),
        the kernel told to withhold the rest as soon as it is spent; then up to ``parse_chunk``
        copied records parsed. Moves them into the store and returns how many were moved."""
        tracer, conv = self.tracer, self._converter
        if tracer is None or conv is None:
            return 0
        life = tracer.life.drain(self.drain_budget)
        copied = tracer.ring.drain_raw(self._calls_room())
        self._budget_used += len(copied)
        self._copied += copied
        if self._budget_used >= self.events_budget:
            # before parsing: the kernel stops filling the ring now, not one parse later
            tracer.pause_calls(True)
            # admitted before the flag was seen: stale by the time the budget frees up
            self._withheld_here += tracer.ring.discard(self.drain_budget)
        batch, self._copied = self._copied[:self.parse_chunk], self._copied[self.parse_chunk:]
        events = [conv.event(r) for r in life] + [conv.event(r) for r in parse_records(batch)]
        if events:
            self._mapped.add(events)
            self._events_delivered += len(events)
            self._exits_pending = self._exits_pending or bool(life)
            self.store.add_events(events)
        return len(events)

    def _drain_for_tick(self) -> None:
        """Before a snapshot, what waits: up to ``drain_budget`` records parsed, a chunk a pass."""
        for _ in range(max(1, -(-self.drain_budget // self.parse_chunk))):
            self.drain_once()
            if not self._copied:
                break

    def _calls_room(self) -> int:
        """How many call records this pass may copy: what is left of this second's budget (a new
        second resets it) all at once, so the kernel can be told in this pass, with no more than
        four passes' worth (``drain_budget``) waiting to be parsed."""
        now = time.monotonic()
        if now - self._budget_window >= 1.0:
            self._budget_window = now
            self._budget_used = 0
            if self.tracer is not None and self.tracer.calls_paused:
                self.tracer.pause_calls(False)
        return max(0, min(4 * self.drain_budget - len(self._copied), self.events_budget - self._budget_used))

    def _oom_cgroup(self, cgroup_id: int) -> str | None:
        """The path of an OOM-killed process's cgroup, which is read from now on while it exists
        (a cgroup whose last process was killed would otherwise drop out at once, with its count)."""
        if self._cgroups is None:
            return None
        return self._cgroups.resolve(cgroup_id, watch=True)

    # -- ticks -----------------------------------------------------------------------------------

    def _read_kernel(self) -> tuple[dict[ProcessKey, KernelCounts], TracerHealth]:
        """Kernel counters by process, and the tracer's health; runs in the tick's worker thread."""
        tracer, conv = self.tracer, self._converter
        assert tracer is not None and conv is not None
        # the counters came with the process table, in the tick's one pass (_read_samples):
        # read before the events drained for this tick, where they used to be read after them,
        # so a call an event of this tick shows may be counted at the next tick only
        counts = conv.all_counts(tracer.stats if self._table is not None else tracer.read_stats())
        c = tracer.counters()
        now = time.monotonic()
        dt = now - self._last_tick if self._last_tick else 0.0
        rate = (self._events_delivered - self._events_at_last_tick) / dt if dt > 0 else 0.0
        self._events_at_last_tick = self._events_delivered
        self._last_tick = now
        self._measure_cost(tracer)
        health = TracerHealth(enabled=True, mode=tracer.mode, events=c.events, events_dropped=c.dropped,
                              events_throttled=c.throttled, events_withheld=c.paused + self._withheld_here,
                              exits_dropped=c.life_dropped, map_full=c.map_full, event_rate=rate,
                              ns_per_call=self._ns_per_call, kernel_cpu_percent=self._kernel_cpu)
        return counts, health

    def _measure_cost(self, tracer: Tracer) -> None:
        """The tracer's own kernel cost, measured over one interval in COST_EVERY: the kernel's
        timing of every program run costs too much to leave on (Tracer.start_run_stats)."""
        self._cost_ticks += 1
        began = self._cost_began
        if began is not None:
            cost, (start, t0) = tracer.run_cost(), began
            tracer.stop_run_stats()
            self._cost_began = None
            dt = time.monotonic() - t0
            if cost is not None and dt > 0:   # the counters are cumulative: what this window added
                self._kernel_cpu = max(0, cost.run_time_ns - start.run_time_ns) / (dt * 1e9) * 100
                runs = cost.call_runs - start.call_runs
                self._ns_per_call = (cost.call_time_ns - start.call_time_ns) / runs if runs > 0 else None
        elif self._cost_ticks % COST_EVERY == 1 and tracer.start_run_stats():
            first = tracer.run_cost()
            if first is not None:
                self._cost_began = (first, time.monotonic())

    def _own_cpu(self) -> float | None:
        """memwatch's own CPU over the last tick (every thread), % of one core."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        spent, now = usage.ru_utime + usage.ru_stime, time.monotonic()
        last, self._last_usage = self._last_usage, (spent, now)
        if last is None or now <= last[1]:
            return None
        return max(0.0, spent - last[0]) / (now - last[1]) * 100

    def _sweep(self) -> None:
        """Exited processes' live-mapping entries: listed now, deleted at the next tick's pass
        (which lists the living), so that the sweep costs no pass of its own."""
        if self.tracer is not None:
            self.tracer.sweep_at_next_pass()

    async def _tick(self) -> Snapshot:
        """One tick, all of its work in a worker thread: the event loop (and a dashboard running on
        it) stays free to answer keys while /proc is read and the store merges."""
        samples, changed, system, cgroups = await asyncio.to_thread(self._read_proc)
        if self.tracer is not None:
            self._drain_for_tick()
        rollups = await self._top_rollups(samples) if self.rollup_top > 0 else None
        return await asyncio.to_thread(self._merge, samples, system, rollups, cgroups, changed)

    def _read_proc(self) -> tuple[list[ProcessSample], list[ProcessSample] | None, SystemMemory,
                                  dict[str, CgroupReading] | None]:
        with self._work:
            samples, changed = self._read_samples()
            if self._unmerged:   # the last read's changes never reached the store (a cancelled tick)
                changed = None
            self._unmerged = True
            reader: TaskTable | ProcReader = self._table if self._table is not None else self._reader
            system = read_system_memory(self.proc_root)
            cgroups = None
            if self._cgroups is not None:
                cgroups = self._cgroups.read(reader.memory_cgroup_paths())
                if self._cgroups.vanished:
                    # its processes were moved (or it was removed under them): look where they are
                    reader.recheck_cgroups(self._cgroups.vanished)
            return samples, changed, system, cgroups

    def _read_samples(self) -> tuple[list[ProcessSample], list[ProcessSample] | None]:
        """Every process: one read of the tracer's process-table iterator, or /proc without it;
        and, from the iterator, which samples are not the objects of the last read (None: unknown)."""
        if self.tracer is not None and self._table is not None:
            try:
                samples = self._table.read(self.tracer.read_tasks())
                return samples, self._table.changed
            except OSError as exc:   # the iterator failed: /proc from now on, which always works
                log.warning("reading the process table from the kernel failed (%s): reading /proc instead", exc)
                self._table = None
        return self._reader.read_processes(), None

    def _merge(self, samples: list[ProcessSample], system: SystemMemory,
               rollups: dict[ProcessKey, SmapsRollup] | None,
               cgroups: dict[str, CgroupReading] | None = None,
               changed: list[ProcessSample] | None = None) -> Snapshot:
        with self._work:
            return self._merge_locked(samples, system, rollups, cgroups, changed)

    def _merge_locked(self, samples: list[ProcessSample], system: SystemMemory,
                      rollups: dict[ProcessKey, SmapsRollup] | None,
                      cgroups: dict[str, CgroupReading] | None = None,
                      changed: list[ProcessSample] | None = None) -> Snapshot:
        kernel: dict[ProcessKey, KernelCounts] | None = None
        if self.tracer is not None:
            kernel, health = self._read_kernel()
            if self._exits_pending:
                self._exits_pending = False
                self._sweep()
            if changed is not None and self._table is not None and self._converter is not None:
                # the store looks only at these: new or changed samples, and those whose counts moved
                changed = changed + self._table.samples_of(self._converter.changed)
        else:
            health = TracerHealth(enabled=False, reason=self.bpf_reason)
        snap = self.store.update(time.time(), self._interval, samples, kernel, system, health,
                                 duration_s=time.monotonic() - self._started, rollups=rollups,
                                 self_cpu_percent=self._own_cpu(), cgroups=cgroups,
                                 cgroup_version=self._cgroups.version if self._cgroups is not None else 0,
                                 changed=changed if kernel is not None else None)
        self._unmerged = False
        return snap

    async def _top_rollups(self, samples: Sequence[ProcessSample]) -> dict[ProcessKey, SmapsRollup]:
        """PSS/USS of the ``rollup_top`` largest processes, each read with its own time cap.

        Two at a time: smaps_rollup walks every mapping under the target's mmap lock, so it is
        kept off the event loop and never allowed to flood the machine with readers.
        """
        top = sorted((s for s in samples if not s.kernel_thread), key=lambda s: s.rss_kb,
                     reverse=True)[: self.rollup_top]
        gate = asyncio.Semaphore(2)

        async def one(s: ProcessSample) -> tuple[ProcessKey, SmapsRollup | None]:
            async with gate:
                return s.key, await read_smaps_rollup_async(s.pid, self.rollup_timeout_s, self.proc_root)

        return {k: r for k, r in await asyncio.gather(*(one(s) for s in top)) if r is not None}

    async def send_signal(self, key: ProcessKey, signum: int) -> None:
        await asyncio.to_thread(signal_process, key[0], key[1], signum, self.proc_root)

    async def rollup(self, key: ProcessKey) -> SmapsRollup | None:
        """PSS/USS of a process if it is still the same process (pid and start time);
        PermissionError when not allowed to read them."""
        if self.store.key_of(key[0]) != key:
            return None
        r = await read_smaps_rollup_async(key[0], self.rollup_timeout_s, self.proc_root, raise_denied=True)
        if r is not None and self.store.key_of(key[0]) == key:
            self.store.set_rollup(key, r)
        return r
