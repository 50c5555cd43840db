"""Load, configure, attach and read the memwatch eBPF program.

``Tracer`` is the one object the rest of memwatch talks to. It reads the packaged CO-RE object
once (from a file only root can change), sets its configuration and map sizes before load, picks
how to attach (per-syscall tracepoints where tracefs is or can privately be mounted, raw syscall
tracepoints otherwise), and detaches everything on close.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import struct
import time
from collections.abc import Iterable
from ctypes import byref, c_size_t, c_uint32
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from memwatch.ebpf import layouts
from memwatch.ebpf.btf import verify_btf
from memwatch.ebpf.errors import (
    BpfUnavailable,
    check_btf,
    check_kernel,
    check_privileges,
    explain_load_error,
    read_object,
    tracefs_dir,
)
from memwatch.ebpf.layouts import MwAllocKey, MwConfig, MwCounters, RawStats, parse_counts
from memwatch.ebpf.libbpf import (
    BPF_STATS_RUN_TIME,
    BpfMapBatchOpts,
    BpfProgInfo,
    Libbpf,
    check_int,
    check_ptr,
    load_libbpf,
)
from memwatch.ebpf.namespaces import boottime_offset_ns, check_pid_namespaces, pid_namespaces
from memwatch.ebpf.ringbuf import RingReader
from memwatch.ebpf.tracefs import private_tracefs_possible, run_with_private_tracefs

log = logging.getLogger("memwatch.ebpf")

PACKAGED_OBJECT = Path(__file__).with_name("prog.bpf.o")
AttachMode = Literal["auto", "tracepoint", "raw"]


@dataclass(frozen=True, slots=True)
class TracerConfig:
    """Everything settable before load. Defaults suit a busy desktop or server."""

    event_threshold: int = 1024
    """Calls below this many bytes are counted but not streamed (the original monitor's 1 KiB)."""
    events_per_sec: int = 1000
    """Per-process budget of call events per second; beyond it calls are counted, not streamed."""
    ring_bytes: int = 1 << 20
    """Ring buffer for call events."""
    life_ring_bytes: int = 1 << 20
    """Ring buffer for exits and OOM kills, apart so that call events never crowd them out."""
    wakeup_bytes: int = 64 << 10
    max_mappings: int = 131072
    """Live mappings kept beyond each process's 8 newest (which live beside its counters)."""
    map_quota: int | None = None
    """Entries of max_mappings one process may hold (default a quarter), so none starves the rest."""
    mode: AttachMode = "auto"
    """auto: per-syscall tracepoints where tracefs is (or can privately be) mounted, raw ones otherwise."""
    mount_tracefs: bool = True
    """Outside raw mode, where tracefs is missing, mount it for memwatch's attach alone."""
    object_path: Path = field(default=PACKAGED_OBJECT)
    proc_root: str = "/proc"
    """The /proc whose pids the tracer reports (its pid namespace is translated into)."""
    run_stats: bool = True
    """Let the kernel time memwatch's programs (BPF_ENABLE_STATS), now and then, to show its cost."""
    stacks: bool = False
    """Whether stacks may be asked for (:meth:`Tracer.set_stack_targets`): sizes their ring to
    ``stack_ring_bytes``; otherwise it is one page, the kernel memory that costs nobody anything."""
    stack_ring_bytes: int = 8 << 20
    """Ring buffer for stack records (16.6 KB each): about 500 in flight."""
    stacks_per_sec: int = 1000
    """Per-process budget of captured stacks per second; calls beyond it arrive without their
    stack (their address ranges are still followed). 0: unlimited."""


@dataclass(frozen=True, slots=True)
class RunCost:
    """What the kernel spent running this tracer's programs since load (BPF run-time statistics)."""

    run_time_ns: int
    runs: int
    call_time_ns: int
    """Of that, in the syscall programs: the cost of accounting calls."""
    call_runs: int


@dataclass(frozen=True, slots=True)
class StackTargetCounts:
    """What the kernel did for one stack target since it became one."""

    start_boottime_ns: int
    """The process it is (0 until :meth:`Tracer.set_stack_targets` found it)."""
    captured: int
    """Calls sent with their stack."""
    throttled: int
    """Calls sent without their stack: the process was over its budget (stacks_per_sec)."""
    dropped: int
    """Calls whose stack (or whole record) the full ring could not take."""


@dataclass(frozen=True, slots=True)
class TracerCounters:
    """Global counters summed over CPUs: what was sent, and every loss."""

    events: int
    dropped: int
    throttled: int
    stats_full: int
    allocs_full: int
    brk_unseen: int
    """brk calls not counted: the process's break was not known yet (a race with attaching)."""
    stale_allocs: int
    wakeups: int
    exits: int
    oom: int
    allocs_quota: int
    """Mappings not followed because their process held its quota of the map."""
    paused: int
    """Call events withheld while the consumer was over its budget."""
    life_dropped: int
    """Exit and OOM events lost to a full life_events ring."""
    life_wakeups: int
    """Forced wakeups for life_events (``wakeups`` counts those of the call events' ring)."""

    @property
    def map_full(self) -> int:
        return self.stats_full + self.allocs_full + self.allocs_quota


def _ring_size(n: int) -> int:
    """Ring buffers must be a power of two and a multiple of the page size."""
    page = os.sysconf("SC_PAGE_SIZE")
    size = max(n, page)
    return 1 << (size - 1).bit_length()


class Tracer:
    """The loaded and attached program. Use as a context manager; ``close`` detaches everything."""

    def __init__(self, config: TracerConfig | None = None) -> None:
        self.config = config or TracerConfig()
        self.mode: str | None = None
        self._lib: Libbpf | None = None
        self._obj: int | None = None
        self._image: ctypes.Array[ctypes.c_char] | None = None
        self._links: list[int] = []
        self._maps: dict[str, int] = {}
        self._fds: dict[str, int] = {}
        self._ring: RingReader | None = None
        self._life: RingReader | None = None
        self._stacks: RingReader | None = None
        self._mark_iter = -1
        self._paused_flag: ctypes.c_uint32 | None = None
        self._bss: mmap.mmap | None = None
        self._ncpus = 1
        self._cpus_iter = -1
        self._seed_iter = -1
        self._tasks_iter = -1
        self._stats_cache: layouts.StatsCache = {}
        """The last pass's counters: an unchanged process's RawStats is handed out again."""
        self._sweep: list[tuple[int, bytes]] | None = None
        """Live-mapping entries listed for the sweep, checked against the next pass (see forget_processes)."""
        self._stats_fd = -1
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.boot_offset = 0.0
        self.boot_shift_ns = 0
        """How far /proc's boot clock (a time namespace's) is ahead of the kernel's."""
        self.pidns_ino = 0
        self.program_ids: tuple[int, ...] = ()
        """Kernel ids of the programs this tracer loaded (kept after close, to check they are gone)."""
        self.stats: dict[int, RawStats] = {}
        """The counters the last pass (read_tasks) listed, by tgid as /proc shows it."""
        self.host_tgids: frozenset[int] = frozenset()
        """The processes of ``stats``, by their tgid in the initial pid namespace."""
        self.swept = 0
        """Live-mapping entries the last pass deleted (see forget_processes)."""

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> Tracer:
        """Check the environment, load and attach; raise :class:`BpfUnavailable` with a sentence."""
        cfg = self.config
        check_privileges()
        lib = load_libbpf()
        check_btf()
        check_kernel()
        namespaces = pid_namespaces(cfg.proc_root)
        check_pid_namespaces(namespaces)
        self.pidns_ino = namespaces.translate_to
        image = read_object(cfg.object_path)
        mode, private_tracefs = self._pick_mode(cfg)
        self._lib = lib
        try:
            self._image = ctypes.create_string_buffer(image, len(image))   # libbpf reads it until load
            self._obj = check_ptr(lib.bpf_object__open_mem(self._image, len(image), None),
                                  f"opening {cfg.object_path}")
            verify_btf(lib, check_ptr(lib.bpf_object__btf(self._obj), "reading the object's BTF"),
                       str(cfg.object_path))
            self._configure(mode)
            check_int(lib.bpf_object__load(self._obj), "loading the tracer")
            for name in self._maps:
                self._fds[name] = check_int(lib.bpf_map__fd(self._maps[name]), f"map {name}")
            self._paused_flag = self._bss_flag()
            if private_tracefs:
                run_with_private_tracefs(self._attach)
            else:
                try:
                    self._attach()
                except OSError as exc:
                    if mode != "tracepoint" or exc.errno != errno.ENOENT or not cfg.mount_tracefs:
                        raise
                    # tracefs went away between the look and the attach (unmounted by someone):
                    # start again with a mount of memwatch's own
                    log.info("tracefs vanished while attaching (%s): mounting it for memwatch alone", exc)
                    self._destroy_links()
                    run_with_private_tracefs(self._attach)
            self._seed()
            self.program_ids = self._program_ids()
            self._ncpus = check_int(lib.libbpf_num_possible_cpus(), "counting CPUs")
            self._ring = RingReader(lib, self._fds["mem_events"])
            self._life = RingReader(lib, self._fds["life_events"])
        except OSError as exc:
            self.close()
            raise explain_load_error(exc) from exc
        except BaseException:
            self.close()
            raise
        self.mode = mode
        self.boot_shift_ns = boottime_offset_ns(cfg.proc_root)
        self.boot_offset = time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - self.boot_shift_ns / 1e9)
        log.info("tracer attached (%s mode%s, %d programs%s)", mode,
                 ", tracefs mounted for memwatch alone" if private_tracefs else "", len(self._links),
                 f", pids of pid namespace {self.pidns_ino}" if self.pidns_ino else "")
        return self

    @staticmethod
    def _pick_mode(cfg: TracerConfig) -> tuple[str, bool]:
        """The attach mode, and whether tracefs must be mounted privately for it."""
        if cfg.mode == "raw":
            return "raw", False
        if tracefs_dir():
            return "tracepoint", False
        if cfg.mount_tracefs and private_tracefs_possible():
            return "tracepoint", True
        if cfg.mode == "tracepoint":
            raise BpfUnavailable(
                "eBPF is off: tracepoint mode needs tracefs, which is not mounted and cannot be mounted "
                "here; mount it with 'mount -t tracefs nodev /sys/kernel/tracing' or use the raw mode "
                "(--bpf-mode raw). Showing /proc figures only.",
                code="no-tracefs",
            )
        log.info("tracefs is not mounted and cannot be: attaching through the raw sys_exit tracepoint, "
                 "which runs for every syscall; 'mount -t tracefs nodev /sys/kernel/tracing' makes it cheaper")
        return "raw", False

    def _configure(self, mode: str) -> None:
        lib, obj, cfg = self._lib, self._obj, self.config
        assert lib is not None and obj is not None
        m = None
        while True:
            m = lib.bpf_object__next_map(obj, m)
            if not m:
                break
            name = (lib.bpf_map__name(m) or b"").decode()
            self._maps[name] = m
        for needed in ("proc_stats", "active_allocs", "counters", "mem_events", "life_events", "stack_events",
                       "stack_targets"):
            if needed not in self._maps:
                raise OSError(errno.ENOENT, f"map {needed} missing from {cfg.object_path}")
        sizes = {
            "active_allocs": cfg.max_mappings,
            "mem_events": _ring_size(cfg.ring_bytes),
            "life_events": _ring_size(cfg.life_ring_bytes),
            "stack_events": _ring_size(cfg.stack_ring_bytes if cfg.stacks else 0),
        }
        for name, size in sizes.items():
            check_int(lib.bpf_map__set_max_entries(self._maps[name], size), f"sizing map {name}")
        rodata = next((m for n, m in self._maps.items() if n.endswith(".rodata")), None)
        if rodata is None:
            raise OSError(errno.ENOENT, "the object has no .rodata configuration")
        rodata_size = c_size_t(0)
        ptr = check_ptr(lib.bpf_map__initial_value(rodata, byref(rodata_size)), "reading configuration")
        if rodata_size.value < ctypes.sizeof(MwConfig):
            raise OSError(errno.EINVAL, f".rodata is {rodata_size.value} bytes, smaller than struct mw_config")
        conf = MwConfig.from_address(ptr)
        conf.event_threshold = max(0, cfg.event_threshold)
        conf.page_size = self.page_size
        conf.wakeup_bytes = max(1, min(cfg.wakeup_bytes, _ring_size(cfg.ring_bytes) // 2))
        conf.events_per_sec = max(0, cfg.events_per_sec)
        conf.pidns_ino = self.pidns_ino
        quota = cfg.map_quota if cfg.map_quota is not None else cfg.max_mappings // 4
        conf.map_quota = max(0, min(quota, cfg.max_mappings))
        conf.stacks_per_sec = max(0, min(cfg.stacks_per_sec, 2**32 - 1))
        # one attach mode only: the other set of programs is not even loaded
        p = None
        while True:
            p = lib.bpf_object__next_program(obj, p)
            if not p:
                break
            name = (lib.bpf_program__name(p) or b"").decode()
            is_tp = name.startswith("tp_")
            is_raw = name.startswith("raw_")
            if (mode == "raw" and is_tp) or (mode == "tracepoint" and is_raw):
                check_int(lib.bpf_program__set_autoload(p, False), f"disabling {name}")

    def _bss_flag(self) -> ctypes.c_uint32:
        """``calls_paused`` in the loaded program's .bss, mapped here from the map itself: a store
        to it reaches the kernel side with no system call.

        Not through ``bpf_map__initial_value``: outside a skeleton, libbpf 1.1 (Debian 12's) leaves
        that pointing at its own private copy of the initial value after load, so a store there
        never reaches the kernel and the budget withheld nothing. The kernel's array is mapped
        shared instead (libbpf creates .bss with BPF_F_MMAPABLE)."""
        lib = self._lib
        assert lib is not None
        bss = next((n for n in self._maps if n.endswith(".bss")), None)
        if bss is None:
            raise OSError(errno.ENOENT, "the object has no .bss (calls_paused)")
        size = c_size_t(0)
        check_ptr(lib.bpf_map__initial_value(self._maps[bss], byref(size)), "sizing .bss")
        if size.value < ctypes.sizeof(ctypes.c_uint32):
            raise OSError(errno.EINVAL, f".bss is {size.value} bytes, too small for calls_paused")
        self._bss = mmap.mmap(self._fds[bss], size.value, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        return ctypes.c_uint32.from_buffer(self._bss)

    def _attach(self) -> None:
        """Attach every loaded program (in the private tracefs thread when there is one)."""
        lib, obj = self._lib, self._obj
        assert lib is not None and obj is not None
        p = None
        while True:
            p = lib.bpf_object__next_program(obj, p)
            if not p:
                break
            if not lib.bpf_program__autoload(p):
                continue
            name = (lib.bpf_program__name(p) or b"").decode()
            link = check_ptr(lib.bpf_program__attach(p), f"attaching {name}")
            self._links.append(link)
            if name == "find_cpus":
                self._cpus_iter = check_int(lib.bpf_link__fd(link), "the CPU-finding iterator")
            elif name == "mark_stacks":
                self._mark_iter = check_int(lib.bpf_link__fd(link), "the stack-marking iterator")
            elif name == "seed_stats":
                self._seed_iter = check_int(lib.bpf_link__fd(link), "the seeding iterator")
            elif name == "dump_tasks":
                self._tasks_iter = check_int(lib.bpf_link__fd(link), "the process-table iterator")

    def _destroy_links(self) -> None:
        lib = self._lib
        assert lib is not None
        self._cpus_iter = self._seed_iter = self._mark_iter = self._tasks_iter = -1
        while self._links:
            lib.bpf_link__destroy(self._links.pop())

    def _seed(self) -> None:
        """Once the syscall programs are attached: note where each CPU's per-CPU data lies (for
        dump_tasks' exact RSS), and record every running process's break, so its next brk is
        counted with its size (processes born later are seeded at fork and exec)."""
        if self._cpus_iter >= 0:
            self._run_iterator(self._cpus_iter)
        if self._seed_iter >= 0:
            self._run_iterator(self._seed_iter)

    def _loaded_programs(self) -> list[tuple[str, int]]:
        """(name, fd) of every loaded program (the other attach mode's are not loaded)."""
        lib, obj = self._lib, self._obj
        assert lib is not None and obj is not None
        out = []
        p = None
        while True:
            p = lib.bpf_object__next_program(obj, p)
            if not p:
                break
            fd = lib.bpf_program__fd(p)
            if fd >= 0:
                out.append(((lib.bpf_program__name(p) or b"").decode(), fd))
        return out

    def _info(self, fd: int) -> BpfProgInfo:
        lib = self._lib
        assert lib is not None
        info = BpfProgInfo()
        size = c_uint32(ctypes.sizeof(info))
        check_int(lib.bpf_obj_get_info_by_fd(fd, byref(info), byref(size)), "reading a program's info")
        return info

    def _program_ids(self) -> tuple[int, ...]:
        return tuple(self._info(fd).id for _, fd in self._loaded_programs())

    def start_run_stats(self) -> bool:
        """Have the kernel time every run of every BPF program until :meth:`stop_run_stats`.

        The timing is not free: two clock reads per program run, about 0.1 of a traced
        mmap+munmap pair in a VM (bench/bench_tracer.py), so the live source measures for one
        interval in ten rather than all the time. The statistics stay on while any process holds
        such an fd and stop when the last one is closed, with memwatch's exit at the latest: no
        sysctl is left behind. Refused on some kernels or without CAP_SYS_ADMIN: False, and the
        cost is simply not shown.
        """
        lib = self._lib
        if lib is None or not self.config.run_stats:
            return False
        if self._stats_fd >= 0:
            return True
        fd = lib.bpf_enable_stats(BPF_STATS_RUN_TIME)
        if fd < 0:
            log.info("BPF run-time statistics are not available (%s): memwatch's own kernel cost is not "
                     "shown", os.strerror(-fd))
            return False
        self._stats_fd = fd
        return True

    def stop_run_stats(self) -> None:
        if self._stats_fd >= 0:
            os.close(self._stats_fd)
            self._stats_fd = -1

    def run_cost(self) -> RunCost | None:
        """Time the kernel spent in this tracer's programs while the statistics were on, and how many
        runs; None when they are off."""
        if self._stats_fd < 0 or self._obj is None:
            return None
        total_ns = runs = calls_ns = calls = 0
        for name, fd in self._loaded_programs():
            info = self._info(fd)
            total_ns += info.run_time_ns
            runs += info.run_cnt
            if name.startswith(("tp_exit_", "raw_exit")):
                calls_ns += info.run_time_ns
                calls += info.run_cnt
        return RunCost(total_ns, runs, calls_ns, calls)

    def _run_iterator(self, link_fd: int) -> bytes:
        """One pass of an iterator program over all tasks; what it wrote."""
        lib = self._lib
        assert lib is not None
        fd = check_int(lib.bpf_iter_create(link_fd), "running an iterator")
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 18):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def close(self) -> None:
        """Detach and unload everything; safe to call twice."""
        lib = self._lib
        if lib is None:
            return
        for reader in (self._ring, self._life, self._stacks):
            if reader is not None:
                reader.close()
        self._ring = self._life = self._stacks = None
        self._paused_flag = None   # first: it holds a view of the mapping
        if self._bss is not None:
            self._bss.close()
            self._bss = None
        self._destroy_links()
        self.stop_run_stats()
        if self._obj:
            lib.bpf_object__close(self._obj)
            self._obj = None
        self._image = None
        self._maps.clear()
        self._fds.clear()
        self.mode = None

    def __enter__(self) -> Tracer:
        return self.open() if self._obj is None else self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def attached(self) -> bool:
        return bool(self._links)

    @property
    def ring(self) -> RingReader:
        """Call events (mmap, munmap, brk, mremap)."""
        if self._ring is None:
            raise RuntimeError("the tracer is not open")
        return self._ring

    @property
    def life(self) -> RingReader:
        """Exits and OOM kills."""
        if self._life is None:
            raise RuntimeError("the tracer is not open")
        return self._life

    @property
    def stacks(self) -> RingReader:
        """Calls of the stack targets, with their stacks (:func:`layouts.parse_stack_record`).

        Mapped at the first use, not at open: the kernel maps a ring buffer's pages when it is
        mmapped, twice over (for records that wrap), so the dashboard's 8 MiB stack ring would
        add 16 MiB to memwatch's RSS from the start, in every session, used or not."""
        if self._stacks is None:
            if self._lib is None or self._ring is None:   # not open (the other rings are made at open)
                raise RuntimeError("the tracer is not open")
            self._stacks = RingReader(self._lib, self._fds["stack_events"])
        return self._stacks

    def set_stack_targets(self, tgids: Iterable[int]) -> dict[int, int]:
        """Make these processes (by the pid /proc shows) the only stack targets: from now on each of
        their calls carries its user stack. Returns the kernel start time (CLOCK_BOOTTIME ns) of
        each process found, which identifies it: a process that later reuses one of these pids is
        not a target. Pids with no process are left out.

        The handlers of every process read a flag in its counters; one pass of the mark_stacks
        iterator sets it for the targets (creating their counters if need be) and clears it for
        the rest. A target removed here stops at its next call."""
        if self._lib is None or self._mark_iter < 0:
            raise RuntimeError("the tracer is not open")
        if not self.config.stacks:
            raise RuntimeError("stacks were not enabled when the tracer was opened (TracerConfig.stacks)")
        lib, fd = self._lib, self._fd("stack_targets")
        wanted = set(tgids)
        key = c_uint32()
        for old in set(self._stack_target_keys()) - wanted:
            key.value = old
            lib.bpf_map_delete_elem(fd, byref(key))
        for tgid in wanted:
            key.value = tgid
            if lib.bpf_map_lookup_elem(fd, byref(key), byref(layouts.MwStackTarget())) == 0:
                continue   # already a target: keep its identity and counters
            check_int(lib.bpf_map_update_elem(fd, byref(key), byref(layouts.MwStackTarget()), 0),
                      f"adding stack target {tgid}")
        self._run_iterator(self._mark_iter)
        found: dict[int, int] = {}
        for tgid in wanted:
            counts = self.stack_target_counts(tgid)
            if counts is not None and counts.start_boottime_ns:
                found[tgid] = counts.start_boottime_ns
            else:   # no such process: do not leave it to catch a later one with that pid
                key.value = tgid
                lib.bpf_map_delete_elem(fd, byref(key))
        return found

    def stack_target_pids(self) -> list[int]:
        """The pids in the kernel's stack-target map now, sorted."""
        return sorted(self._stack_target_keys())

    def _stack_target_keys(self) -> list[int]:
        return [struct.unpack_from("<I", k, i * 4)[0] for k, _, n in self._dump(self._fd("stack_targets"), 4,
                ctypes.sizeof(layouts.MwStackTarget), 256) for i in range(n)]

    def stack_target_counts(self, tgid: int) -> StackTargetCounts | None:
        """The kernel's counts for one stack target; None when it is not one."""
        lib = self._lib
        assert lib is not None
        value = layouts.MwStackTarget()
        if lib.bpf_map_lookup_elem(self._fd("stack_targets"), byref(c_uint32(tgid)), byref(value)) != 0:
            return None
        return StackTargetCounts(value.start_boottime_ns, value.captured, value.throttled, value.dropped)

    def pause_calls(self, paused: bool) -> None:
        """Withhold call events in the kernel (counted as ``paused``) or let them flow again."""
        if self._paused_flag is not None:
            self._paused_flag.value = 1 if paused else 0

    @property
    def calls_paused(self) -> bool:
        return bool(self._paused_flag is not None and self._paused_flag.value)

    def _fd(self, name: str) -> int:
        try:
            return self._fds[name]
        except KeyError:
            raise RuntimeError("the tracer is not open") from None

    # -- readers ---------------------------------------------------------------------------------

    def read_tasks(self) -> bytes:
        """The whole process table of memwatch's pid namespace and every process's counters: one
        pass of the dump_tasks iterator over all tasks, in pid order, :data:`layouts.TASK_UNIT`
        bytes a unit: a record per process (thread group), each followed by its counters if it
        made a traced call. The counters are parsed here into :attr:`stats`."""
        if self._lib is None or self._tasks_iter < 0:
            raise RuntimeError("the tracer is not open")
        sweep, self._sweep = self._sweep, None
        data = self._run_iterator(self._tasks_iter)
        self.stats, hosts = parse_counts(data, self._stats_cache)
        self.host_tgids = frozenset(hosts)
        if sweep is not None:
            self.swept = self._forget(sweep)
            log.debug("swept %d live-mapping entries of exited processes", self.swept)
        return data

    def read_stats(self) -> dict[int, RawStats]:
        """Every process's counters, by tgid as /proc shows it: a pass of its own (read_tasks)."""
        self.read_tasks()
        return self.stats

    def _dump(self, fd: int, key_size: int, value_size: int,
              chunk: int) -> Iterable[tuple[bytes, bytes, int]]:
        """(keys, values, count) chunks of a hash map: batch ops, or key iteration where absent."""
        lib = self._lib
        assert lib is not None
        keys = ctypes.create_string_buffer(key_size * chunk)
        values = ctypes.create_string_buffer(value_size * chunk)
        token_in, token_out = c_uint32(0), c_uint32(0)
        opts = BpfMapBatchOpts(sz=ctypes.sizeof(BpfMapBatchOpts))
        first = True
        while True:
            count = c_uint32(chunk)
            ret = lib.bpf_map_lookup_batch(fd, None if first else byref(token_in), byref(token_out),
                                           keys, values, byref(count), byref(opts))
            if ret < 0 and -ret not in (errno.ENOENT,):
                if first and -ret in (errno.EINVAL, errno.ENOTSUP, 524):
                    yield from self._dump_slow(fd, key_size, value_size)
                    return
                raise OSError(-ret, f"reading map: {os.strerror(-ret)}")
            if count.value:
                yield keys.raw[: key_size * count.value], values.raw[: value_size * count.value], count.value
            if ret < 0:  # ENOENT: that was the last chunk
                return
            token_in.value = token_out.value
            first = False

    def _dump_slow(self, fd: int, key_size: int, value_size: int) -> Iterable[tuple[bytes, bytes, int]]:
        lib = self._lib
        assert lib is not None
        key = ctypes.create_string_buffer(key_size)
        nxt = ctypes.create_string_buffer(key_size)
        val = ctypes.create_string_buffer(value_size)
        prev = None
        while lib.bpf_map_get_next_key(fd, prev, nxt) == 0:
            ctypes.memmove(key, nxt, key_size)
            prev = key
            if lib.bpf_map_lookup_elem(fd, key, val) == 0:
                yield key.raw, val.raw, 1

    def counters(self) -> TracerCounters:
        """The per-CPU loss and work counters, summed."""
        lib = self._lib
        assert lib is not None
        per_cpu = (MwCounters * self._ncpus)()
        zero = c_uint32(0)
        check_int(lib.bpf_map_lookup_elem(self._fd("counters"), byref(zero), per_cpu), "reading counters")
        tot = [sum(per_cpu[c].c[i] for c in range(self._ncpus)) for i in range(layouts.CNT_MAX)]
        return TracerCounters(
            events=tot[layouts.CNT_EVENTS], dropped=tot[layouts.CNT_DROPPED],
            throttled=tot[layouts.CNT_THROTTLED], stats_full=tot[layouts.CNT_STATS_FULL],
            allocs_full=tot[layouts.CNT_ALLOCS_FULL], brk_unseen=tot[layouts.CNT_BRK_UNSEEN],
            stale_allocs=tot[layouts.CNT_STALE_ALLOCS], wakeups=tot[layouts.CNT_WAKEUPS],
            exits=tot[layouts.CNT_EXITS], oom=tot[layouts.CNT_OOM],
            allocs_quota=tot[layouts.CNT_ALLOCS_QUOTA], paused=tot[layouts.CNT_PAUSED],
            life_dropped=tot[layouts.CNT_LIFE_DROPPED], life_wakeups=tot[layouts.CNT_LIFE_WAKEUPS],
        )

    def map_tgids(self, name: str) -> list[int]:
        """The tgid of every entry of proc_stats (as /proc shows it) or active_allocs (in the
        initial pid namespace), for tests."""
        if name == "proc_stats":
            return list(self.read_stats())
        return [tgid for tgid, _ in self._alloc_keys()]

    def _alloc_keys(self) -> list[tuple[int, bytes]]:
        key_size = ctypes.sizeof(MwAllocKey)
        out: list[tuple[int, bytes]] = []
        for key_bytes, _, n in self._dump(self._fd("active_allocs"), key_size, 16, 4096):
            for i in range(n):
                key = key_bytes[i * key_size:(i + 1) * key_size]
                out.append((struct.unpack_from("<I", key)[0], key))
        return out

    def forget_processes(self) -> int:
        """Delete live-mapping entries of processes that are gone; returns how many were deleted.

        The kernel deletes a process's counters when it exits, but not its live-mapping entries
        (walking them there would cost every exit a map scan); memwatch sweeps them here. The
        entries are listed first and the living processes after: a process with entries has made
        a traced call, so a pass lists its counters for as long as it lives, and one born after
        the entries were listed has none among them. Entries that outlive a pid's reuse are caught
        in the kernel, which checks the mm each entry belongs to. This costs a pass of its own:
        :meth:`sweep_at_next_pass` leaves it to the next one.
        """
        self.sweep_at_next_pass()
        self.read_tasks()
        return self.swept

    def sweep_at_next_pass(self) -> None:
        """:meth:`forget_processes` without a pass of its own: the entries are listed now and
        those of processes the next :meth:`read_tasks` does not list are deleted then
        (:attr:`swept` says how many)."""
        self._sweep = self._alloc_keys()

    def _forget(self, entries: list[tuple[int, bytes]]) -> int:
        alive = self.host_tgids
        dead = [key for tgid, key in entries if tgid not in alive]
        return self._delete_keys(self._fd("active_allocs"), dead, ctypes.sizeof(MwAllocKey)) if dead else 0

    def _delete_keys(self, fd: int, keys: list[bytes], key_size: int) -> int:
        """Delete keys with batch deletes (one syscall per chunk), one by one where unsupported."""
        lib = self._lib
        assert lib is not None
        deleted = 0
        opts = BpfMapBatchOpts(sz=ctypes.sizeof(BpfMapBatchOpts))
        for start in range(0, len(keys), 4096):
            chunk = keys[start:start + 4096]
            count = c_uint32(len(chunk))
            ret = lib.bpf_map_delete_batch(fd, b"".join(chunk), byref(count), byref(opts))
            deleted += count.value
            if ret < 0 and count.value < len(chunk):
                # ENOENT (an entry deleted meanwhile) or no batch support: finish one by one
                for k in chunk[count.value:]:
                    if lib.bpf_map_delete_elem(fd, k) == 0:
                        deleted += 1
        return deleted

    def boot_ns_to_wall(self, ns: int) -> float:
        """A CLOCK_BOOTTIME timestamp from the kernel as wall-clock seconds."""
        return self.boot_offset + ns / 1e9

    def start_ticks(self, start_boottime_ns: int) -> int:
        """The kernel's process start as /proc/PID/stat field 22 shows it (clock ticks since boot,
        on the boot clock of memwatch's time namespace)."""
        return (start_boottime_ns + self.boot_shift_ns) // (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
