"""Readers of /proc: the cheap per-tick path for every process, and the expensive path on demand.

The cheap path (:class:`ProcReader`) must keep up with thousands of processes per tick, so it
reads as few files as it can and parses bytes by hand:

* ``/proc/PID/stat`` every tick, for every process: identity (start ticks), state, ppid, threads,
  name and VIRT. It is also the change detector for the rest: the file is kept open and
  re-read with ``pread``, and when its bytes are the same as last tick (an idle process) the
  previous sample is handed out again without parsing anything. Its RSS field is only a last
  resort (statm and status unreadable): on recent kernels it sums the per-CPU RSS counters
  without their per-CPU deltas, so it is off by up to a few hundred KB either way.
* The exact RSS (what ``status``'s VmRSS and ``statm`` show, both summing the per-CPU deltas)
  comes from ``/proc/PID/status`` whenever that is read, and otherwise from ``/proc/PID/statm``
  (resident pages), read only when the bytes of ``stat`` changed: ``statm`` costs less than half
  of ``status`` to read (bench/bench_procfs.py). A process whose ``stat`` did not change keeps
  its last exact figure. Its RSS may still have moved: another task can change it without
  touching its stat (reclaim, DAMON, khugepaged, process_madvise), and so can a short run of its
  own that takes no fault and no clock tick (a munmap). Only by less than the per-CPU counters'
  slack, though (a few hundred KB on small machines, more with many CPUs): a larger move shows
  in the approximate RSS, which is part of the bytes compared. The periodic ``status`` read
  below bounds how long such a figure can stay stale: ``status_every`` ticks.
* ``/proc/PID/status`` for peak (VmHWM), swap, the anon/file/shmem split and the uid, only when
  the exact RSS or VIRT moved since the last read, for new processes, and otherwise once every
  ``status_every`` ticks (staggered by pid so the refreshes do not all land on the same tick).
  ``status_every=1`` reads it every tick. The peak is kept at least as large as the RSS: the
  kernel derives VmHWM from the approximate counters, so it can lag the exact RSS.
* ``cmdline`` and ``cgroup`` once per process identity (pid, start ticks), then again when the
  name changes (an exec) or every ``slow_every`` ticks: reading ``cmdline`` takes the target's
  mmap lock and can block, so it stays off the per-tick path. ``cgroup`` is also read again when
  the collector says the process's memory cgroup vanished (:meth:`ProcReader.recheck_cgroups`):
  a process moved between cgroups is otherwise seen in the old one for up to ``slow_every`` ticks.

Processes vanish between listing and reading: that is normal and such pids are skipped silently.
Other files we may not read degrade to zeros and empty strings; a process whose ``stat`` we may
not read (hidepid) is left out, since without it it has no identity.

``smaps_rollup`` (PSS, USS, SwapPss) costs milliseconds for large processes and takes the
target's mmap lock: it is read for one process at a time, on demand, ideally through
:func:`read_smaps_rollup_async`, which caps the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import resource
import signal
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from memwatch.model import ProcessSample, SmapsRollup, SystemMemory

__all__ = [
    "ProcReader",
    "ProcfsUnavailable",
    "boot_time",
    "clock_ticks",
    "page_size",
    "parse_pressure_avg10",
    "read_process_sample",
    "read_processes",
    "read_smaps_rollup",
    "read_smaps_rollup_async",
    "read_system_memory",
]

PF_KTHREAD = 0x00200000
"""task->flags bit of kernel threads (stat field 9)."""

_READ_SIZE = 8192
"""Large enough for stat and status in one read (status is about 1.5 KB on 6.x kernels)."""

_GONE = (FileNotFoundError, ProcessLookupError)
"""What reading a file of a process that just exited raises (ENOENT, ESRCH)."""


class ProcfsUnavailable(RuntimeError):
    """procfs cannot be read at all (not mounted, wrong path): a condition the user must fix."""


def _read(path: str) -> bytes:
    """Whole content of a small /proc file with as few syscalls as possible."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) < _READ_SIZE:
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_SHARED_MAX = 2048
"""Texts :func:`_shared` keeps to hand out again; when full it starts over."""
_SHARED_LEN = 256
"""Longer texts are not kept (a worst case of a few hundred KiB for the cache)."""
_shared_texts: dict[bytes, tuple[bytes, str]] = {}


def _shared(raw: bytes) -> tuple[bytes, str]:
    """``raw`` and its text (:func:`_decode`), the same two objects for the same bytes while they
    are in a bounded cache: at 10,000 processes most share a name, a cgroup and often a command
    line, and then share one copy of each instead of holding 10,000 (about 2.5 MiB)."""
    known = _shared_texts.get(raw)
    if known is None:
        known = (raw, raw.decode("utf-8", "backslashreplace"))
        if len(raw) <= _SHARED_LEN:
            if len(_shared_texts) >= _SHARED_MAX:
                _shared_texts.clear()
            _shared_texts[raw] = known
    return known


def _decode(raw: bytes) -> str:
    """Bytes from the kernel as text; undecodable bytes show as ``\\xNN`` instead of failing.
    Equal texts are one object (see :func:`_shared`)."""
    return _shared(raw)[1]


def clock_ticks() -> int:
    """USER_HZ: the unit of stat's start time (almost always 100)."""
    return int(os.sysconf("SC_CLK_TCK"))


def page_size() -> int:
    """Bytes per page: the unit of RSS in stat and statm."""
    return int(os.sysconf("SC_PAGE_SIZE"))


def boot_time(proc_root: str = "/proc") -> float:
    """Wall-clock seconds of boot (``btime`` in /proc/stat), to turn start ticks into times."""
    path = f"{proc_root}/stat"
    try:
        data = _read(path)
    except OSError as exc:
        raise ProcfsUnavailable(f"cannot read {path} ({exc.strerror}): is procfs mounted there?") from exc
    for line in data.splitlines():
        if line.startswith(b"btime "):
            return float(line.split()[1])
    raise ProcfsUnavailable(f"{path} has no btime line: is this really procfs?")


# ---------------------------------------------------------------------------------------------
# Parsers: pure functions of bytes, shared by the fast path and the one-pid path.


@dataclass(slots=True)
class _Stat:
    """The fields of /proc/PID/stat we use."""

    comm: bytes
    state: str
    ppid: int
    flags: int
    threads: int
    start_ticks: int
    vsize_bytes: int
    rss_pages: int
    cpu_ticks: int
    """utime + stime, in clock ticks."""


def _parse_stat(data: bytes) -> _Stat | None:
    """Parse stat; the name sits between the first '(' and the LAST ')' and may hold anything."""
    close = data.rfind(b")")
    open_ = data.find(b"(")
    if close < 0 or open_ < 0 or open_ > close:
        return None
    f = data[close + 2 :].split()
    if len(f) < 22:
        return None
    try:
        return _Stat(
            comm=data[open_ + 1 : close],
            state=f[0].decode("ascii", "replace"),
            ppid=int(f[1]),
            flags=int(f[6]),
            threads=int(f[17]),
            start_ticks=int(f[19]),
            vsize_bytes=int(f[20]),
            rss_pages=int(f[21]),
            cpu_ticks=int(f[11]) + int(f[12]),
        )
    except ValueError:
        return None


@dataclass(slots=True)
class _Status:
    """The fields of /proc/PID/status we use (kB, uid); VmRSS is the exact RSS."""

    uid: int = -1
    rss_kb: int = 0
    peak_kb: int = 0
    swap_kb: int = 0
    anon_kb: int = 0
    file_kb: int = 0
    shmem_kb: int = 0


def _status_field(data: bytes, key: bytes) -> int:
    """First number after ``\\nKey:``; 0 when the line is absent (kernel threads, zombies)."""
    i = data.find(key)
    if i < 0:
        return 0
    i += len(key)
    end = data.find(b"\n", i)
    parts = data[i : end if end >= 0 else len(data)].split()
    try:
        return int(parts[0])
    except (IndexError, ValueError):
        return 0


def _parse_status(data: bytes) -> _Status:
    uid = _status_field(data, b"\nUid:") if b"\nUid:" in data else -1
    return _Status(
        uid=uid,
        rss_kb=_status_field(data, b"\nVmRSS:"),
        peak_kb=_status_field(data, b"\nVmHWM:"),
        swap_kb=_status_field(data, b"\nVmSwap:"),
        anon_kb=_status_field(data, b"\nRssAnon:"),
        file_kb=_status_field(data, b"\nRssFile:"),
        shmem_kb=_status_field(data, b"\nRssShmem:"),
    )


def _parse_statm_resident(data: bytes) -> int | None:
    """Resident pages, statm's second field; None when it is empty or cut short (exiting)."""
    parts = data.split(None, 2)
    if len(parts) < 2:
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


def _parse_cmdline(data: bytes) -> str:
    """NUL-separated argv as one line; processes that rewrite argv often pad with NULs."""
    return _decode(data.rstrip(b"\0").replace(b"\0", b" "))


_CGROUP_LINE = re.compile(rb"\d+:[^:\n]*:")


def _cgroup_lines(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(hierarchy id, controllers, path) of each line of /proc/PID/cgroup.

    The kernel prints paths raw, and a cgroup's name may hold a newline: a line that does not
    start like ``N:controllers:`` continues the path of the line before it.
    """
    out: list[tuple[bytes, bytes, bytes]] = []
    for line in data.removesuffix(b"\n").split(b"\n"):
        if _CGROUP_LINE.match(line) or not out:
            hid, _, rest = line.partition(b":")
            controllers, _, path = rest.partition(b":")
            out.append((hid, controllers, path))
        else:
            hid, controllers, path = out[-1]
            out[-1] = (hid, controllers, path + b"\n" + line)
    return out


def _cgroup_paths(data: bytes) -> tuple[str, bytes]:
    """The cgroup to show, and the raw path of the memory hierarchy's cgroup.

    Shown: the unified (v2) ``0::/path`` line when it is the only hierarchy or says more than
    ``/``; on hybrid hosts where v2 is just ``/``, the v1 memory controller's path (what governs
    memory), else the first v1 line. The memory cgroup: the v1 line whose controllers include
    memory, else the v2 line (raw bytes, to find its directory whatever its name holds).
    """
    v2: bytes | None = None
    memory: bytes | None = None
    first_v1: bytes | None = None
    for hid, controllers, path in _cgroup_lines(data):
        if hid == b"0" and controllers == b"":
            v2 = path
        else:
            if first_v1 is None:
                first_v1 = path
            if memory is None and b"memory" in controllers.split(b","):
                memory = path
    if v2 is not None and (v2 != b"/" or first_v1 is None):
        shown = v2
    else:
        shown = memory if memory is not None else first_v1 if first_v1 is not None else v2 or b""
    memcg = memory if memory is not None else v2 if v2 is not None else b""
    return _decode(shown), memcg


def _parse_cgroup(data: bytes) -> str:
    """The cgroup path of a process, as shown (see :func:`_cgroup_paths`)."""
    return _cgroup_paths(data)[0]


def _parse_rollup(data: bytes) -> SmapsRollup | None:
    if b"\nPss:" not in data and not data.startswith(b"Pss:"):
        return None
    text = b"\n" + data
    return SmapsRollup(
        pss_kb=_status_field(text, b"\nPss:"),
        uss_kb=_status_field(text, b"\nPrivate_Clean:") + _status_field(text, b"\nPrivate_Dirty:"),
        swap_pss_kb=_status_field(text, b"\nSwapPss:"),
    )


# ---------------------------------------------------------------------------------------------
# The per-tick reader.


class CgroupHolder(Protocol):
    """What a reader remembers of a process's cgroups (see :func:`read_cgroup`)."""

    cgroup: str
    memcg: str
    memcg_raw: bytes
    cgroup_due: bool


def read_cgroup(base: str, k: CgroupHolder) -> None:
    """/proc/PID/cgroup (``base`` is /proc/PID/) into ``k``: the cgroup shown and the memory
    cgroup; on any error keep what it had."""
    k.cgroup_due = False
    try:
        data = _read(base + "cgroup")
    except OSError:
        return
    k.cgroup, memcg_raw = _cgroup_paths(data)
    k.memcg_raw, k.memcg = _shared(memcg_raw)


def memory_cgroup_paths(known: Iterable[CgroupHolder]) -> dict[str, bytes]:
    """Memory cgroups as samples show them, to the raw paths /proc named them by."""
    return {k.memcg: k.memcg_raw for k in known if k.memcg_raw}


def recheck_cgroups(known: Iterable[CgroupHolder], paths: Collection[str]) -> int:
    """Mark the processes said to be in ``paths`` for a new read of their cgroup; how many."""
    n = 0
    for k in known:
        if k.memcg in paths:
            k.cgroup_due = True
            n += 1
    return n


class _Known:
    """What the reader remembers about one process identity between ticks."""

    __slots__ = (
        "cgroup", "cgroup_due", "cmdline", "cmdline_comm", "comm", "fd", "kernel_thread", "memcg", "memcg_raw",
        "name", "rss_kb", "sample", "slow_tick", "start_ticks", "stat_raw", "status", "status_rss", "status_tick",
        "status_vsize", "uid", "user",
    )

    def __init__(self, start_ticks: int) -> None:
        self.start_ticks = start_ticks
        self.fd = -1
        self.stat_raw = b""
        self.rss_kb = 0
        self.sample: ProcessSample | None = None
        self.comm = b""
        self.name = ""
        self.kernel_thread = False
        self.status: _Status | None = None
        self.status_tick = 0
        self.status_rss = -1
        self.status_vsize = -1
        self.user = ""
        self.cmdline = ""
        self.cmdline_comm = b""
        self.cgroup = ""
        self.memcg = ""
        self.memcg_raw = b""
        self.cgroup_due = False
        self.slow_tick = 0
        self.uid = -1


def _default_keep_open() -> int:
    """Half of the soft open-files limit, so the rest of the program keeps plenty."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(0, soft // 2 - 32)


class ProcReader:
    """Reads every process each tick, remembering what is dear to read between ticks.

    Hold one per collector and call :meth:`read_processes` once per tick; :meth:`close` (or a
    ``with`` block) releases its file descriptors. Not thread-safe: one thread at a time.

    It keeps ``/proc/PID/stat`` open for up to ``keep_open`` processes (default: half the soft
    RLIMIT_NOFILE) and re-reads it with ``pread``: about half the cost of open+read+close, and
    the open file stays bound to that process, so a reused pid reads as ESRCH instead of passing
    for the old process. Each kept file holds a page of kernel memory (the seq_file buffer).
    Processes beyond the budget are read by path.
    """

    def __init__(
        self,
        proc_root: str = "/proc",
        *,
        boot_time: float | None = None,
        clock_ticks: int | None = None,
        page_size: int | None = None,
        uid_names: dict[int, str] | None = None,
        status_every: int = 10,
        slow_every: int = 60,
        keep_open: int | None = None,
    ) -> None:
        if status_every < 1 or slow_every < 1:
            raise ValueError("status_every and slow_every must be at least 1 (1 = every tick)")
        self.proc_root = proc_root.rstrip("/") or "/"
        self._boot_time = boot_time
        self._hz = clock_ticks if clock_ticks is not None else int(os.sysconf("SC_CLK_TCK"))
        self._page_kb = (page_size if page_size is not None else int(os.sysconf("SC_PAGE_SIZE"))) // 1024
        self._uid_names: dict[int, str] = dict(uid_names or {})
        self.status_every = status_every
        self.slow_every = slow_every
        self.keep_open = _default_keep_open() if keep_open is None else max(0, keep_open)
        self._known: dict[int, _Known] = {}
        self._open_fds = 0
        self._tick = 0

    def __enter__(self) -> ProcReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_known"):
            self.close()

    def close(self) -> None:
        """Close every kept file; the reader stays usable (the next tick reopens them)."""
        for k in self._known.values():
            self._forget_fd(k)
        self._known = {}

    @property
    def boot_time(self) -> float:
        if self._boot_time is None:
            self._boot_time = boot_time(self.proc_root)
        return self._boot_time

    @property
    def cached_pids(self) -> int:
        """How many processes the reader remembers."""
        return len(self._known)

    @property
    def open_files(self) -> int:
        """How many stat files the reader holds open."""
        return self._open_fds

    def user_name(self, uid: int) -> str:
        """Login name of a uid, looked up once per uid; the number when it has no name.

        Bytes of the name that are not UTF-8 show as ``\\xNN`` (as in process names): a name
        from the password database is data like any other, and a lone surrogate would make
        every output that encodes it fail.
        """
        name = self._uid_names.get(uid)
        if name is None:
            if uid < 0:
                return ""
            try:
                name = _decode(os.fsencode(pwd.getpwuid(uid).pw_name))
            except (KeyError, UnicodeError):
                name = str(uid)
            self._uid_names[uid] = name
        return name

    def memory_cgroup_paths(self) -> dict[str, bytes]:
        """The memory cgroup of every process read last tick, as samples show it, to the raw
        path /proc named it by (which finds its directory, whatever bytes its name holds)."""
        return memory_cgroup_paths(self._known.values())

    def recheck_cgroups(self, paths: Collection[str]) -> int:
        """Read /proc/PID/cgroup again next tick for the processes said to be in ``paths`` (their
        cgroup vanished: they were moved, or it was removed under them); returns how many."""
        return recheck_cgroups(self._known.values(), paths)

    def list_pids(self) -> list[int]:
        """The pids /proc lists now (processes of its pid namespace)."""
        try:
            names = os.listdir(self.proc_root)
        except OSError as exc:
            raise ProcfsUnavailable(
                f"cannot list {self.proc_root} ({exc.strerror}): is procfs mounted there?"
            ) from exc
        return [int(n) for n in names if n.isdigit()]

    def read_processes(self) -> list[ProcessSample]:
        """One sample per live process, in no particular order; vanished pids are skipped."""
        boot = self.boot_time
        self._tick += 1
        known = self._known
        seen: dict[int, _Known] = {}
        out: list[ProcessSample] = []
        append = out.append
        sample_of = self._sample
        for pid in self.list_pids():
            sample = sample_of(pid, known.pop(pid, None), seen, boot)
            if sample is not None:
                append(sample)
        for gone in known.values():
            self._forget_fd(gone)
        self._known = seen
        return out

    def read_process_sample(self, pid: int) -> ProcessSample | None:
        """A full, fresh read of one process (no cached figure is reused); None if it is gone."""
        return self._sample(pid, None, {}, self.boot_time, keep=False)

    def _forget_fd(self, k: _Known) -> None:
        if k.fd >= 0:
            os.close(k.fd)
            k.fd = -1
            self._open_fds -= 1

    def _read_stat(self, path: str, keep: bool) -> tuple[bytes, int]:
        """Read stat by path; keep the file open (returned fd) while the budget allows."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, _READ_SIZE)
        except BaseException:
            os.close(fd)
            raise
        if keep and data and self._open_fds < self.keep_open:
            self._open_fds += 1
            return data, fd
        os.close(fd)
        return data, -1

    def _sample(
        self, pid: int, k: _Known | None, seen: dict[int, _Known], boot: float, keep: bool = True
    ) -> ProcessSample | None:
        base = f"{self.proc_root}/{pid}/"
        tick = self._tick
        data = b""
        if k is not None and k.fd >= 0:
            try:
                data = os.pread(k.fd, _READ_SIZE, 0)
            except OSError:  # ESRCH: that process is gone, the pid may belong to a new one
                data = b""
            if not data:
                self._forget_fd(k)
                k = None
            elif (
                data == k.stat_raw
                and k.sample is not None
                and tick - k.status_tick < self.status_every
                and tick - k.slow_tick < self.slow_every
                and not k.cgroup_due
            ):
                seen[pid] = k  # nothing in stat moved and nothing is due: the same sample
                return k.sample
        fd = -1
        if not data:
            try:
                data, fd = self._read_stat(base + "stat", keep)
            except OSError:
                return None  # gone, or not ours to see (hidepid): no identity, nothing to show
        st = _parse_stat(data)
        if st is None:  # empty or truncated stat: the process is exiting
            if fd >= 0:
                os.close(fd)
                self._open_fds -= 1
            return None
        fresh = k is None or k.start_ticks != st.start_ticks
        if k is None or fresh:
            if k is not None:
                self._forget_fd(k)
            k = _Known(st.start_ticks)
            k.kernel_thread = bool(st.flags & PF_KTHREAD) or pid == 2 or st.ppid == 2
            # Spread later refreshes over the period instead of all on the first tick.
            k.status_tick = tick - pid % self.status_every
            k.slow_tick = tick - pid % self.slow_every
        if fd >= 0:
            k.fd = fd
        seen[pid] = k
        stat_moved = data != k.stat_raw  # always for a new identity, whose stat_raw is empty
        k.stat_raw = data
        if st.comm != k.comm:
            k.comm = st.comm
            k.name = _decode(st.comm)
        virt_kb = st.vsize_bytes // 1024
        start_time = boot + st.start_ticks / self._hz

        if k.kernel_thread:
            if not k.user:
                k.user = self.user_name(0)
                k.uid = 0
            if fresh or k.cgroup_due or tick - k.slow_tick >= self.slow_every:
                read_cgroup(base, k)
                k.slow_tick = tick
            k.status_tick = tick
            k.sample = ProcessSample(
                pid, st.ppid, k.name, "", k.user, st.start_ticks, start_time,
                st.threads, 0, 0, 0, 0, 0, 0, k.cgroup, True, st.state, st.cpu_ticks / self._hz,
                uid=0, memory_cgroup=k.memcg,
            )
            return k.sample

        # The exact RSS: from status when that is due anyway; else, when stat moved, from statm,
        # which then decides whether status is due; else the last exact figure stands.
        approx_kb = st.rss_pages * self._page_kb
        rss_kb = k.rss_kb
        status_due = fresh or tick - k.status_tick >= self.status_every
        try:
            if stat_moved and not status_due:
                statm_kb = self._read_statm_kb(base)
                rss_kb = approx_kb if statm_kb is None else statm_kb
                status_due = rss_kb != k.status_rss or virt_kb != k.status_vsize
            if status_due:
                try:
                    status = _parse_status(_read(base + "status"))
                    rss_kb = status.rss_kb
                except _GONE:
                    raise
                except OSError:  # not ours to read: keep the old split, the RSS comes from statm
                    status = k.status or _Status()
                    statm_kb = self._read_statm_kb(base)
                    rss_kb = approx_kb if statm_kb is None else statm_kb
                k.status = status
                k.status_tick = tick
                k.status_rss = rss_kb
                k.status_vsize = virt_kb
                if status.uid >= 0 or not k.user:
                    k.user = self.user_name(status.uid)
                    k.uid = status.uid
        except _GONE:
            seen.pop(pid)
            self._forget_fd(k)
            return None
        k.rss_kb = rss_kb
        status = k.status or _Status()

        slow_due = tick - k.slow_tick >= self.slow_every
        # an exec (a new name) is when runtimes have just moved a process into its container's
        # cgroup: its cgroup is read again then, with its command line
        execed = k.cmdline_comm != st.comm
        if fresh or slow_due or execed:
            k.cmdline = self._read_text(base + "cmdline", _parse_cmdline, k.cmdline)
            k.cmdline_comm = st.comm
        if fresh or slow_due or execed or k.cgroup_due:
            read_cgroup(base, k)
            if fresh or slow_due:
                k.slow_tick = tick
        k.sample = ProcessSample(
            pid, st.ppid, k.name, k.cmdline, k.user, st.start_ticks, start_time, st.threads,
            rss_kb, virt_kb, max(status.peak_kb, rss_kb) if status.peak_kb else 0, status.swap_kb,
            status.file_kb + status.shmem_kb, status.anon_kb, k.cgroup, False, st.state,
            st.cpu_ticks / self._hz, uid=k.uid, memory_cgroup=k.memcg,
        )
        return k.sample

    def _read_statm_kb(self, base: str) -> int | None:
        """Exact RSS from statm; None when unreadable or empty. Raises what a vanished pid raises."""
        try:
            data = _read(base + "statm")
        except _GONE:
            raise
        except OSError:
            return None
        pages = _parse_statm_resident(data)
        return None if pages is None else pages * self._page_kb

    @staticmethod
    def _read_text(path: str, parse: Callable[[bytes], str], fallback: str) -> str:
        """A slow-changing text file; on any error keep what we had (or empty)."""
        try:
            return parse(_read(path))
        except OSError:
            return fallback


def read_processes(
    proc_root: str = "/proc",
    *,
    boot_time: float | None = None,
    clock_ticks: int | None = None,
    page_size: int | None = None,
    uid_names: dict[int, str] | None = None,
) -> list[ProcessSample]:
    """Every process, read fully once (no cache survives the call).

    Convenient for one-shot use; a collector that ticks should hold a :class:`ProcReader`,
    whose caches make each later tick cheaper.
    """
    with ProcReader(
        proc_root, boot_time=boot_time, clock_ticks=clock_ticks, page_size=page_size, uid_names=uid_names,
        keep_open=0,
    ) as reader:
        return reader.read_processes()


def read_process_sample(pid: int, proc_root: str = "/proc") -> ProcessSample | None:
    """One process, read fully; None if it is gone (or its stat is hidden from us)."""
    with ProcReader(proc_root, keep_open=0) as reader:
        return reader.read_process_sample(pid)


# ---------------------------------------------------------------------------------------------
# System-wide memory.


def _meminfo(data: bytes) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for line in data.splitlines():
        key, _, rest = line.partition(b":")
        parts = rest.split()
        if parts:
            try:
                out[key] = int(parts[0])
            except ValueError:
                continue
    return out


def parse_pressure_avg10(data: bytes) -> tuple[float | None, float | None]:
    """avg10 of the ``some`` and ``full`` lines of a PSI file (/proc/pressure/memory, or a v2
    cgroup's memory.pressure, which has the same form)."""
    found: dict[bytes, float] = {}
    for line in data.splitlines():
        kind, _, rest = line.partition(b" ")
        for item in rest.split():
            if item.startswith(b"avg10="):
                with contextlib.suppress(ValueError):
                    found[kind] = float(item[6:])
    return found.get(b"some"), found.get(b"full")


def read_system_memory(proc_root: str = "/proc") -> SystemMemory:
    """Totals from /proc/meminfo and memory pressure from /proc/pressure/memory (None if absent)."""
    path = f"{proc_root}/meminfo"
    try:
        info = _meminfo(_read(path))
    except OSError as exc:
        raise ProcfsUnavailable(f"cannot read {path} ({exc.strerror}): is procfs mounted there?") from exc
    if b"MemTotal" not in info:
        raise ProcfsUnavailable(f"{path} has no MemTotal line: is this really procfs?")
    total = info[b"MemTotal"]
    free = info.get(b"MemFree", 0)
    available = info.get(b"MemAvailable")
    if available is None:  # kernels before 3.14: a rough stand-in
        available = free + info.get(b"Buffers", 0) + info.get(b"Cached", 0)
    swap_total = info.get(b"SwapTotal", 0)
    try:
        some, full = parse_pressure_avg10(_read(f"{proc_root}/pressure/memory"))
    except OSError:  # no PSI (CONFIG_PSI off, psi=0) or not readable
        some = full = None
    return SystemMemory(
        total_kb=total,
        available_kb=available,
        used_kb=total - available,
        free_kb=free,
        swap_total_kb=swap_total,
        swap_used_kb=swap_total - info.get(b"SwapFree", swap_total),
        pressure_some_avg10=some,
        pressure_full_avg10=full,
    )


# ---------------------------------------------------------------------------------------------
# The expensive path: smaps_rollup, on demand.


def read_smaps_rollup(pid: int, proc_root: str = "/proc", *, raise_denied: bool = False) -> SmapsRollup | None:
    """PSS, USS (private clean + dirty) and SwapPss of one process.

    None when the process is gone, has no memory (kernel thread, zombie) or we may not look
    (another user's process without CAP_SYS_PTRACE); with ``raise_denied`` the last raises
    PermissionError instead, for a reader that must tell "not allowed" from "gone". Blocks while
    the target holds its mmap lock.
    """
    try:
        data = _read(f"{proc_root}/{pid}/smaps_rollup")
    except PermissionError:
        if raise_denied:
            raise
        return None
    except OSError:
        return None
    return _parse_rollup(data)


async def read_smaps_rollup_async(
    pid: int, timeout_s: float = 0.5, proc_root: str = "/proc", *, raise_denied: bool = False
) -> SmapsRollup | None:
    """:func:`read_smaps_rollup` in a worker thread, giving up after ``timeout_s`` (None).

    The read cannot be interrupted: on a timeout the thread keeps waiting for the target's mmap
    lock and finishes in the background, holding one thread of the default executor until then.
    """
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: it can swallow a cancellation in 3.11
            return await asyncio.to_thread(read_smaps_rollup, pid, proc_root, raise_denied=raise_denied)
    except TimeoutError:
        return None


# ---------------------------------------------------------------------------------------------
# Signals, to exactly the process a user picked.


def signal_process(pid: int, start_ticks: int, signum: int, proc_root: str = "/proc") -> None:
    """Send ``signum`` to the process (pid, start_ticks), never to a process that reused the pid.

    A pidfd pins the process it was opened on; if /proc still shows the same start time after it
    was opened, the pidfd refers to the process the user saw, and the signal goes through it.
    Raises ProcessLookupError when that process is gone, PermissionError when not allowed.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise ProcessLookupError(f"process {pid} has exited") from None
    try:
        sample = read_process_sample(pid, proc_root)
        if sample is None or sample.start_ticks != start_ticks:
            raise ProcessLookupError(f"process {pid} has exited (the pid now belongs to another process)")
        signal.pidfd_send_signal(fd, signum)
    finally:
        os.close(fd)
