"""Load, configure, attach and read the memwatch eBPF program.

``Tracer`` is the one object the rest of memwatch talks to. It opens the packaged CO-RE object,
sets its configuration and map sizes before load, picks how to attach (per-syscall tracepoints when
tracefs is mounted, raw syscall tracepoints otherwise), and detaches everything on close.
"""

from __future__ import annotations

import ctypes
import errno
import logging
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
from memwatch.ebpf.btf import verify_layouts
from memwatch.ebpf.errors import (
    BpfUnavailable,
    check_btf,
    check_kernel,
    check_object,
    check_privileges,
    explain_load_error,
    tracefs_dir,
)
from memwatch.ebpf.layouts import MwAllocKey, MwConfig, MwCounters, RawStats, parse_stats_records
from memwatch.ebpf.libbpf import BpfMapBatchOpts, Libbpf, check_int, check_ptr, load_libbpf
from memwatch.ebpf.ringbuf import RingReader
from memwatch.ebpf.tracefs import mount_tracefs, unmount_tracefs

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
    wakeup_bytes: int = 64 << 10
    max_mappings: int = 131072
    """Live mappings kept beyond each process's 8 newest (which live beside its counters)."""
    mode: AttachMode = "auto"
    """auto: per-syscall tracepoints where tracefs is (or can be) mounted, raw ones otherwise."""
    mount_tracefs: bool = True
    """Outside raw mode, mount tracefs for the session if it is missing (memwatch.ebpf.tracefs)."""
    object_path: Path = field(default=PACKAGED_OBJECT)


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

    @property
    def map_full(self) -> int:
        return self.stats_full + self.allocs_full


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
        self._links: list[int] = []
        self._maps: dict[str, int] = {}
        self._fds: dict[str, int] = {}
        self._ring: RingReader | None = None
        self._ncpus = 1
        self._stats_iter = -1
        self._mounted_tracefs = False
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.boot_offset = 0.0

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> Tracer:
        """Check the environment, load and attach; raise :class:`BpfUnavailable` with a sentence."""
        cfg = self.config
        check_privileges()
        lib = load_libbpf()
        check_btf()
        check_kernel()
        check_object(cfg.object_path)
        verify_layouts(lib, cfg.object_path)
        self._lib = lib
        mode = cfg.mode
        if mode != "raw" and not tracefs_dir() and cfg.mount_tracefs:
            self._mounted_tracefs = mount_tracefs()
        if mode == "auto":
            mode = "tracepoint" if tracefs_dir() else "raw"
            if mode == "raw":
                log.info("tracefs is not mounted: attaching through the raw sys_exit tracepoint, which runs "
                         "for every syscall; 'mount -t tracefs nodev /sys/kernel/tracing' makes it cheaper")
        elif mode == "tracepoint" and not tracefs_dir():
            self.close()
            raise BpfUnavailable(
                "eBPF is off: tracepoint mode needs tracefs; mount it with "
                "'mount -t tracefs nodev /sys/kernel/tracing' or use the raw mode (--bpf-mode raw).",
                code="no-tracefs",
            )
        try:
            self._obj = check_ptr(lib.bpf_object__open_file(str(cfg.object_path).encode(), None),
                                  f"opening {cfg.object_path}")
            self._configure(mode)
            check_int(lib.bpf_object__load(self._obj), "loading the tracer")
            for name in self._maps:
                self._fds[name] = check_int(lib.bpf_map__fd(self._maps[name]), f"map {name}")
            self._attach()
            self._ncpus = check_int(lib.libbpf_num_possible_cpus(), "counting CPUs")
            self._ring = RingReader(lib, self._fds["mem_events"])
        except OSError as exc:
            self.close()
            raise explain_load_error(exc) from exc
        except BaseException:
            self.close()
            raise
        self.mode = mode
        self.boot_offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        log.info("tracer attached (%s mode, %d programs)", mode, len(self._links))
        return self

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
        for needed in ("proc_stats", "active_allocs", "counters", "mem_events"):
            if needed not in self._maps:
                raise OSError(errno.ENOENT, f"map {needed} missing from {cfg.object_path}")
        sizes = {
            "active_allocs": cfg.max_mappings,
            "mem_events": _ring_size(cfg.ring_bytes),
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

    def _attach(self) -> None:
        lib, obj = self._lib, self._obj
        assert lib is not None and obj is not None
        p = None
        seed = -1
        while True:
            p = lib.bpf_object__next_program(obj, p)
            if not p:
                break
            if not lib.bpf_program__autoload(p):
                continue
            name = (lib.bpf_program__name(p) or b"").decode()
            link = check_ptr(lib.bpf_program__attach(p), f"attaching {name}")
            self._links.append(link)
            if name == "dump_stats":
                self._stats_iter = check_int(lib.bpf_link__fd(link), "the stats iterator")
            elif name == "seed_stats":
                seed = check_int(lib.bpf_link__fd(link), "the seeding iterator")
        # once the syscall programs are attached: record every running process's break, so its
        # next brk is counted with its size (processes born later are seeded at fork and exec)
        if seed >= 0:
            self._run_iterator(seed)

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
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        self._stats_iter = -1
        while self._links:
            lib.bpf_link__destroy(self._links.pop())
        if self._obj:
            lib.bpf_object__close(self._obj)
            self._obj = None
        self._maps.clear()
        self._fds.clear()
        self.mode = None
        if self._mounted_tracefs:
            self._mounted_tracefs = False
            unmount_tracefs()

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
        if self._ring is None:
            raise RuntimeError("the tracer is not open")
        return self._ring

    def _fd(self, name: str) -> int:
        try:
            return self._fds[name]
        except KeyError:
            raise RuntimeError("the tracer is not open") from None

    # -- readers ---------------------------------------------------------------------------------

    def read_stats(self) -> dict[int, RawStats]:
        """Every process's counters, by tgid: one pass of the dump_stats iterator over all tasks."""
        if self._lib is None or self._stats_iter < 0:
            raise RuntimeError("the tracer is not open")
        return parse_stats_records(self._run_iterator(self._stats_iter))

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
        )

    def map_tgids(self, name: str) -> list[int]:
        """The tgid of every entry of proc_stats or active_allocs (for GC and tests)."""
        if name == "proc_stats":
            return list(self.read_stats())
        key_size = ctypes.sizeof(MwAllocKey)
        out: list[int] = []
        for key_bytes, _, n in self._dump(self._fd(name), key_size, 16, 4096):
            out.extend(k[0] for k in struct.iter_unpack("<IIQ", key_bytes[: n * key_size]))
        return out

    def forget_processes(self, alive: set[int] | None = None) -> int:
        """Delete live-mapping entries of processes that are gone; returns how many were deleted.

        The kernel deletes a process's counters when it exits, but not its live-mapping entries
        (walking them there would cost every exit a map scan); memwatch sweeps them here. A tgid
        counts as gone when it is not in ``alive`` and has no /proc entry at sweep time, so a
        process born after ``alive`` was listed keeps its entries. Entries that outlive a pid's
        reuse are caught in the kernel, which checks the mm each entry belongs to.
        """
        lib = self._lib
        assert lib is not None
        alive = alive or set()
        gone: dict[int, bool] = {}

        def is_gone(tgid: int) -> bool:
            if tgid in alive:
                return False
            if tgid not in gone:
                gone[tgid] = not os.path.exists(f"/proc/{tgid}")
            return gone[tgid]

        key_size = ctypes.sizeof(MwAllocKey)
        fd = self._fd("active_allocs")
        dead: list[bytes] = []
        for key_bytes, _, n in self._dump(fd, key_size, 16, 4096):
            for tgid, pad, addr in struct.iter_unpack("<IIQ", key_bytes[: n * key_size]):
                if is_gone(tgid):
                    dead.append(struct.pack("<IIQ", tgid, pad, addr))
        return self._delete_keys(fd, dead, key_size)

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
        """The kernel's process start as /proc/PID/stat field 22 (clock ticks since boot)."""
        return start_boottime_ns // (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
