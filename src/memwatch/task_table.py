"""The process table from the kernel's dump_tasks iterator: every process in one read, no /proc walk.

With the tracer on, one ``read()`` loop over the iterator (:meth:`memwatch.ebpf.Tracer.read_tasks`)
returns a fixed-size record per process with every figure a row needs (see ``struct
mw_task_record`` in bpf/memwatch.h). :class:`TaskTable` turns those records into the same
:class:`~memwatch.model.ProcessSample` the /proc reader makes, with three differences that make it
cheap and more exact:

* A record whose bytes did not change since the last tick (an idle process) hands out the same
  sample object again: it is split off the read as one key and one bytes object, compared, and
  nothing else is made for it. Only changed records are unpacked field by field.
* RSS is summed exactly over the per-CPU counters in the kernel (what ``VmRSS`` shows), every
  tick, for every process: no ``statm``/``status`` rotation, no staleness bound to explain.
* CPU time is the kernel's run time of the whole thread group (what ``utime + stime`` adds up
  to in /proc after its scaling), to the nanosecond rather than to the clock tick.

What the records do not carry is read from /proc once per process: the command line (again
after an exec, which the record's exec id tells exactly), the cgroup path (again when the
record's memory cgroup id changes, or when the collector says the cgroup vanished) and the user
name (looked up once per uid). A process that rewrites its own argv in place without an exec
keeps its first command line here, where the /proc reader rereads it every ``slow_every`` ticks.

The kernel's task iterator can miss a process /proc lists: the 6.18 kernel memwatch is developed
on carries a local patch (``task_iter_hides`` in its /proc/kallsyms) that hides pid 1 from task
iterators. Every ``check_every`` reads the table compares its pids with /proc's, and processes
only /proc lists are read from /proc, each tick, until the iterator lists them.

The same read carries the kernel counters of the processes that made a traced call, each in a
unit right after its process's record (:func:`memwatch.ebpf.layouts.parse_counts` reads them);
the table skips those units by their tag, which it looks at only for a unit that is not an
unchanged record, so an idle process costs nothing more for them.

Kernel threads carry their task name (``kworker/0:1``), not the workqueue suffix /proc adds
(``kworker/0:1-events``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Collection

from memwatch.ebpf.layouts import COUNTS_TAG, RSS_ANON, RSS_FILE, RSS_SHMEM, RSS_SWAP, TASK_RECORD, TASK_RECORD_NAMES
from memwatch.model import ProcessSample
from memwatch.procfs import (
    PF_KTHREAD,
    ProcReader,
    _decode,
    _parse_cmdline,
    boot_time,
    memory_cgroup_paths,
    read_cgroup,
    recheck_cgroups,
)

__all__ = ["TaskTable", "cputime_split"]

_KEY = struct.Struct(f"<I{TASK_RECORD.size - 4}s")
"""A record as its tgid and the rest of its bytes: all an unchanged process costs."""
if not TASK_RECORD.format.startswith("<I"):   # pragma: no cover - a layout change must revisit _KEY
    raise ImportError("struct mw_task_record must start with its __u32 tgid")
_REST = struct.Struct("<" + TASK_RECORD.format[2:])
_F = {name: i - 1 for i, name in enumerate(TASK_RECORD_NAMES)}   # index in _REST's items
_PPID, _UID, _THREADS, _START, _EXEC = _F["ppid"], _F["uid"], _F["threads"], _F["start_boottime_ns"], _F["exec_id"]
_MEMCG, _VM, _HWM = _F["memcg_id"], _F["total_vm"], _F["hiwater_rss"]
_FILE, _ANON, _SWAP, _SHMEM = (_F[f"rss[{i}]"] for i in (RSS_FILE, RSS_ANON, RSS_SWAP, RSS_SHMEM))
_RUNTIME, _FLAGS, _STATE, _COMM = _F["runtime_ns"], _F["flags"], _F["state"], _F["comm"]


def cputime_split(utime_ns: int, stime_ns: int, runtime_ns: int) -> tuple[int, int]:
    """User and system time as /proc shows them: the tick-sampled split scaled to the precise run
    time (the kernel's cputime_adjust(), without its memory of earlier readings)."""
    if stime_ns == 0:
        return runtime_ns, 0
    if utime_ns == 0:
        return 0, runtime_ns
    stime = stime_ns * runtime_ns // (stime_ns + utime_ns)
    return runtime_ns - stime, stime


class _Entry:
    """What the table remembers about one process between ticks."""

    __slots__ = ("cgroup", "cgroup_due", "cmdline", "exec_id", "memcg", "memcg_id", "memcg_raw", "raw", "sample",
                 "start_ns", "uid", "user")

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.raw = b""
        self.sample: ProcessSample | None = None
        self.exec_id = -1
        self.cmdline = ""
        self.memcg_id = -1
        self.cgroup = ""
        self.memcg = ""
        self.memcg_raw = b""
        self.cgroup_due = False
        self.uid = -1
        self.user = ""


class TaskTable:
    """Samples from dump_tasks records, remembering what /proc had to say about each process.

    ``start_ticks`` turns the kernel's start time (CLOCK_BOOTTIME ns) into /proc's (clock ticks on
    the boot clock of memwatch's time namespace), so keys match the /proc reader's exactly.
    """

    def __init__(self, reader: ProcReader, *, start_ticks: Callable[[int], int], page_size: int | None = None,
                 boot_time: float | None = None, clock_ticks: int | None = None, check_every: int = 10) -> None:
        self.proc_root = reader.proc_root
        self._reader = reader
        self._start_ticks = start_ticks
        self._user_name = reader.user_name
        self.check_every = max(1, check_every)
        self._reads = 0
        self.unlisted: list[int] = []
        """Pids /proc listed at the last check that the iterator did not: read from /proc."""
        self._page_kb = (page_size if page_size is not None else int(os.sysconf("SC_PAGE_SIZE"))) // 1024
        self._boot_time = boot_time
        self._hz = clock_ticks if clock_ticks is not None else int(os.sysconf("SC_CLK_TCK"))
        self._known: dict[int, _Entry] = {}
        self.changed: list[ProcessSample] = []
        """The samples of the last read that are not the objects the read before handed out: the
        records unpacked field by field (new or changed processes) and those read from /proc."""

    @property
    def boot_time(self) -> float:
        if self._boot_time is None:
            self._boot_time = boot_time(self.proc_root)
        return self._boot_time

    def read(self, data: bytes) -> list[ProcessSample]:
        """One sample per record, in the records' order; a trailing partial record is ignored."""
        known = self._known
        seen: dict[int, _Entry] = {}
        out: list[ProcessSample] = []
        append = out.append
        parse = self._parse
        changed: list[ProcessSample] = []
        usable = len(data) - len(data) % _KEY.size
        for tgid, rest in _KEY.iter_unpack(memoryview(data)[:usable]):
            k = known.get(tgid)
            if k is None or k.raw != rest or k.cgroup_due or k.sample is None:
                if tgid == COUNTS_TAG:   # the counters of the process before it: not a process
                    continue
                k = parse(tgid, rest, k)
                changed.append(k.sample)  # type: ignore[arg-type]  # parse always leaves one
            seen[tgid] = k
            append(k.sample)  # type: ignore[arg-type]
        self._known = seen
        self.changed = changed
        if self._reads % self.check_every == 0:
            self.unlisted = [pid for pid in self._reader.list_pids() if pid not in seen]
        self._reads += 1
        for pid in self.unlisted:
            if pid not in seen and (sample := self._reader.read_process_sample(pid)) is not None:
                append(sample)
                changed.append(sample)
        return out

    def samples_of(self, keys: Collection[tuple[int, int]]) -> list[ProcessSample]:
        """The last read's samples of processes ``keys`` (pid, start ticks) that it listed."""
        known = self._known
        out = []
        for key in keys:
            k = known.get(key[0])
            if k is not None and k.sample is not None and k.sample.key == key:
                out.append(k.sample)
        return out

    def _parse(self, tgid: int, rest: bytes, k: _Entry | None) -> _Entry:
        r = _REST.unpack(rest)
        start_ns = r[_START]
        if k is None or k.start_ns != start_ns:   # new, or a new process with a reused pid
            k = _Entry(start_ns)
        k.raw = rest
        base = f"{self.proc_root}/{tgid}/"
        ppid = r[_PPID]
        kernel_thread = bool(r[_FLAGS] & PF_KTHREAD) or tgid == 2 or ppid == 2
        if r[_MEMCG] != k.memcg_id or k.cgroup_due:
            read_cgroup(base, k)
            k.memcg_id = r[_MEMCG]
        uid = 0 if kernel_thread else r[_UID]
        if uid != k.uid:
            k.uid = uid
            k.user = self._user_name(uid)
        if not kernel_thread and r[_EXEC] != k.exec_id:
            # gone since the read, or not ours to see: it keeps what it had
            k.cmdline = ProcReader._read_text(base + "cmdline", _parse_cmdline, k.cmdline)
            k.exec_id = r[_EXEC]
        ticks = self._start_ticks(start_ns)
        name = _decode(r[_COMM].split(b"\0", 1)[0])
        state = chr(r[_STATE]) if 32 < r[_STATE] < 127 else "?"
        cpu_s = r[_RUNTIME] / 1e9
        start_time = self.boot_time + ticks / self._hz
        if kernel_thread:
            k.sample = ProcessSample(tgid, ppid, name, "", k.user, ticks, start_time, r[_THREADS], 0, 0, 0, 0, 0, 0,
                                     k.cgroup, True, state, cpu_s, uid=0, memory_cgroup=k.memcg)
            return k
        pk = self._page_kb
        file_kb, anon_kb, shmem_kb = r[_FILE] * pk, r[_ANON] * pk, r[_SHMEM] * pk
        rss_kb = file_kb + anon_kb + shmem_kb
        k.sample = ProcessSample(
            tgid, ppid, name, k.cmdline, k.user, ticks, start_time, r[_THREADS],
            rss_kb, r[_VM] * pk, max(r[_HWM] * pk, rss_kb), r[_SWAP] * pk, file_kb + shmem_kb, anon_kb,
            k.cgroup, False, state, cpu_s, uid=uid, memory_cgroup=k.memcg,
        )
        return k

    def memory_cgroup_paths(self) -> dict[str, bytes]:
        """As :meth:`memwatch.procfs.ProcReader.memory_cgroup_paths`."""
        return memory_cgroup_paths(self._known.values())

    def recheck_cgroups(self, paths: Collection[str]) -> int:
        """As :meth:`memwatch.procfs.ProcReader.recheck_cgroups`: /proc/PID/cgroup is read again at
        the next tick for the processes said to be in ``paths``."""
        return recheck_cgroups(self._known.values(), paths)

    def __len__(self) -> int:
        return len(self._known)
