"""Memory cgroups: the kernel's own accounting of a group of processes, and readable names.

Process RSS misses much of what a container or a service costs: page cache, tmpfs, kernel memory
(slab, page tables, sockets). The kernel charges all of it to the process's memory cgroup, and
that is what limits and the OOM killer act on. This module finds the memory hierarchy, reads its
files for the cgroups memwatch shows, and names cgroups from their paths alone (systemd units,
container runtimes, Kubernetes pods), without asking any daemon.

* The hierarchy is found from /proc/self/mountinfo, never assumed: a v1 ``cgroup`` mount with the
  memory controller when /proc/self/cgroup has a v1 memory line (hybrid hosts), else the
  ``cgroup2`` mount. A v2 hierarchy without the memory controller still groups processes; its
  memory files are then simply absent (None).
* :class:`CgroupReader` reads, each tick, the cheap files that move (usage, swap, OOM and limit
  events, pressure) of the cgroups that hold processes, of their ancestors, and of those that had
  an OOM kill while memwatch watched; limits, the peak and ``memory.stat`` (dearer: it sums
  per-CPU statistics) every ``stat_every`` ticks. Files are kept open and re-read with ``pread``
  (a seq_file re-generates at offset 0): 1-3 us a file instead of about 10 us for
  open+read+close.
* Ancestors are read too, because limits sit on them (a Kubernetes pod, a systemd slice), and
  because their figures include their children's, which is what makes a tree of cgroups add up;
  they are few beside the cgroups that hold processes (the tree is shallow).
* Cgroups vanish at any time (a container stops): a vanished cgroup is simply left out, and the
  collector is told (:attr:`CgroupReader.vanished`) so it can re-read where its processes went.

Paths are handled as raw bytes (as /proc/PID/cgroup prints them) and shown decoded like process
names (bytes that are not UTF-8 as ``\\xNN``): a cgroup's name may hold anything but ``/``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from memwatch.model import CgroupMemory
from memwatch.procfs import parse_pressure_avg10

__all__ = [
    "CgroupIdentity",
    "CgroupReader",
    "CgroupReading",
    "Hierarchy",
    "describe",
    "find_memory_hierarchy",
    "parse_v1",
    "parse_v2",
]

V1_UNLIMITED = 1 << 62
"""A v1 limit this large is no limit: the kernel shows "none" as PAGE_COUNTER_MAX pages
(2^63 minus a page), whatever the page size."""

_READ_SIZE = 16384

V1_FAST = ("memory.usage_in_bytes", "memory.memsw.usage_in_bytes", "memory.oom_control")
V1_SLOW = ("memory.limit_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt", "memory.stat",
           "memory.kmem.usage_in_bytes")
V2_FAST = ("memory.current", "memory.swap.current", "memory.events", "memory.pressure")
V2_SLOW = ("memory.max", "memory.high", "memory.peak", "memory.stat")
"""Read every tick: what moves (usage, swap, OOM and limit events, pressure); every ``stat_every``
ticks: limits, which are rarely changed, the peak, and memory.stat, which is dearer to read and
parse. Half the files a tick (bench/bench_groups.py)."""
V2_KERNEL_PARTS = (b"kernel_stack", b"pagetables", b"sec_pagetables", b"percpu", b"sock", b"vmalloc",
                   b"slab")
"""Before 5.18, v2 memory.stat had no "kernel" line: its parts' sum stands in, a little below
it (other accounted kernel allocations, io_uring or pipe buffers, have no line of their own)."""


def _decode(raw: bytes) -> str:
    """A raw path for display, as process names are: undecodable bytes as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------------
# Finding the hierarchy.


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Where the memory hierarchy is mounted, and which part of it the mount shows."""

    version: int
    mount: bytes
    """The mount point."""
    root: bytes = b"/"
    """The cgroup at the mount point (mountinfo's root field): ``/`` unless only a subtree is
    mounted (a container without a cgroup namespace), when /proc paths begin with it."""
    memory: bool = True
    """Whether the memory controller is on it (a v2 hierarchy may lack it)."""

    def directory(self, path: bytes) -> bytes | None:
        """The directory of cgroup ``path`` (as /proc/PID/cgroup names it); None when it lies
        outside what this mount shows."""
        if not path.startswith(b"/"):
            return None
        root = self.root.rstrip(b"/")
        if root and path != root and not path.startswith(root + b"/"):
            return None
        rest = path[len(root):].strip(b"/")
        if b"/../" in b"/" + rest + b"/" or rest == b"..":
            return None
        return self.mount.rstrip(b"/") + (b"/" + rest if rest else b"") or b"/"


_OCTAL = re.compile(rb"\\([0-7]{3})")


def _unescape_mountinfo(field: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040)."""
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field)


def _mounts(mountinfo: bytes) -> list[tuple[bytes, bytes, bytes, set[bytes]]]:
    """(fstype, root, mount point, super options) of each cgroup mount."""
    out = []
    for line in mountinfo.splitlines():
        fields = line.split(b" ")
        try:
            sep = fields.index(b"-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        fstype = fields[sep + 1]
        if fstype not in (b"cgroup", b"cgroup2"):
            continue
        options = set(fields[sep + 3].split(b","))
        out.append((fstype, _unescape_mountinfo(fields[3]), _unescape_mountinfo(fields[4]), options))
    return out


def _has_v1_memory_line(self_cgroup: bytes) -> bool:
    for line in self_cgroup.splitlines():
        hid, _, rest = line.partition(b":")
        controllers = rest.partition(b":")[0]
        if hid != b"0" and b"memory" in controllers.split(b","):
            return True
    return False


def find_memory_hierarchy(mountinfo: str = "/proc/self/mountinfo",
                          self_cgroup: str = "/proc/self/cgroup") -> Hierarchy | None:
    """The hierarchy /proc/PID/cgroup's memory paths are paths of (see procfs: the v1 line whose
    controllers include memory, else the v2 line), from the mounts this process sees; None when
    it is not mounted here (paths then still group processes, with no figures)."""
    try:
        with open(mountinfo, "rb") as f:
            mounts = _mounts(f.read())
        with open(self_cgroup, "rb") as f:
            v1 = _has_v1_memory_line(f.read())
    except OSError:
        return None
    # the mount showing the most of the hierarchy: the shortest root
    if v1:
        found = [(len(root), root, point) for fstype, root, point, opts in mounts
                 if fstype == b"cgroup" and b"memory" in opts]
        if not found:
            return None
        _, root, point = min(found)
        return Hierarchy(1, point, root, True)
    found = [(len(root), root, point) for fstype, root, point, _ in mounts if fstype == b"cgroup2"]
    if not found:
        return None
    _, root, point = min(found)
    try:
        with open(point + b"/cgroup.controllers", "rb") as f:
            memory = b"memory" in f.read().split()
    except OSError:
        memory = False
    return Hierarchy(2, point, root, memory)


# ---------------------------------------------------------------------------------------------
# Parsing the files: pure functions of their bytes (None for a file that is absent).


def _number(data: bytes | None) -> int | None:
    if data is None:
        return None
    try:
        return int(data.strip())
    except ValueError:
        return None


def _limit(data: bytes | None) -> int | None:
    """A v2 limit in bytes; None for "max" (no limit), an absent file or garbage."""
    if data is None or data.strip() == b"max":
        return None
    return _number(data)


def _keyed(data: bytes | None, keys: tuple[bytes, ...]) -> dict[bytes, int]:
    """The values of ``keys`` among ``key value`` lines (memory.stat, memory.events,
    memory.oom_control): each found with one search, not by splitting every line (memory.stat has
    dozens, and this runs for every cgroup)."""
    out: dict[bytes, int] = {}
    if not data:
        return out
    text = b"\n" + data
    for key in keys:
        i = text.find(b"\n" + key + b" ")
        if i < 0:
            continue
        i += len(key) + 2
        end = text.find(b"\n", i)
        try:
            out[key] = int(text[i:end if end >= 0 else len(text)])
        except ValueError:
            continue
    return out


def _kb(value: int | None) -> int | None:
    return None if value is None else max(0, value) // 1024


Figures = dict[str, int | float | None]
"""Some of CgroupMemory's fields, by name."""


def _v2_fast(files: Mapping[str, bytes | None]) -> Figures:
    events = _keyed(files.get("memory.events"), (b"oom", b"oom_kill", b"high", b"max"))
    pressure = files.get("memory.pressure")
    some, full = parse_pressure_avg10(pressure) if pressure is not None else (None, None)
    return {
        "current_kb": _kb(_number(files.get("memory.current"))),
        "swap_current_kb": _kb(_number(files.get("memory.swap.current"))),
        "oom": events.get(b"oom"), "oom_kill": events.get(b"oom_kill"),
        "high_events": events.get(b"high"), "max_events": events.get(b"max"),
        "pressure_some_avg10": some, "pressure_full_avg10": full,
    }


_V2_STAT = (b"anon", b"file", b"kernel", b"shmem", *V2_KERNEL_PARTS)


def _v2_slow(files: Mapping[str, bytes | None]) -> Figures:
    stat_ = _keyed(files.get("memory.stat"), _V2_STAT)
    kernel = stat_.get(b"kernel")
    if kernel is None and stat_:
        parts = [stat_[k] for k in V2_KERNEL_PARTS if k in stat_]
        kernel = sum(parts) if parts else None
    return {
        "max_kb": _kb(_limit(files.get("memory.max"))),
        "high_kb": _kb(_limit(files.get("memory.high"))),
        "peak_kb": _kb(_number(files.get("memory.peak"))),
        "anon_kb": _kb(stat_.get(b"anon")), "file_kb": _kb(stat_.get(b"file")),
        "kernel_kb": _kb(kernel), "shmem_kb": _kb(stat_.get(b"shmem")),
    }


def _v1_fast(files: Mapping[str, bytes | None]) -> Figures:
    usage = _number(files.get("memory.usage_in_bytes"))
    memsw = _number(files.get("memory.memsw.usage_in_bytes"))
    return {
        "current_kb": _kb(usage),
        "swap_current_kb": _kb(memsw - usage) if memsw is not None and usage is not None else None,
        "oom_kill": _keyed(files.get("memory.oom_control"), (b"oom_kill",)).get(b"oom_kill"),
    }


_V1_STAT = (b"total_rss", b"total_cache", b"total_shmem", b"rss", b"cache", b"shmem")


def _v1_slow(files: Mapping[str, bytes | None]) -> Figures:
    """memory.stat's ``total_*`` lines are hierarchical, as usage_in_bytes is."""
    limit = _number(files.get("memory.limit_in_bytes"))
    stat_ = _keyed(files.get("memory.stat"), _V1_STAT)

    def total(key: bytes) -> int | None:
        return stat_.get(b"total_" + key, stat_.get(key))

    return {
        "max_kb": None if limit is None or limit >= V1_UNLIMITED else _kb(limit),
        "peak_kb": _kb(_number(files.get("memory.max_usage_in_bytes"))),
        "max_events": _number(files.get("memory.failcnt")),
        "anon_kb": _kb(total(b"rss")), "file_kb": _kb(total(b"cache")),
        "kernel_kb": _kb(_number(files.get("memory.kmem.usage_in_bytes"))), "shmem_kb": _kb(total(b"shmem")),
    }


def parse_v2(files: Mapping[str, bytes | None]) -> CgroupMemory:
    """A v2 cgroup's figures from its files' bytes (a missing file: absent or None)."""
    return CgroupMemory(**_v2_fast(files), **_v2_slow(files))  # type: ignore[arg-type]


def parse_v1(files: Mapping[str, bytes | None]) -> CgroupMemory:
    """A v1 cgroup's figures from its files' bytes (a missing file: absent or None)."""
    return CgroupMemory(**_v1_fast(files), **_v1_slow(files))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Names from paths alone.


@dataclass(frozen=True, slots=True)
class CgroupIdentity:
    """What a cgroup's path says it is."""

    name: str
    kind: str
    """root, slice, service, scope, socket, mount, swap, container, pod, qos, or cgroup."""
    runtime: str | None = None
    """docker, podman, containerd, cri-o, or "container" when the path does not say."""
    container_id: str | None = None
    """The full id; names show its first 12 characters, as the runtimes' tools do."""
    pod_uid: str | None = None
    qos: str | None = None
    """Kubernetes QoS class of the pod: guaranteed, burstable or besteffort."""


_HEX64 = r"([0-9a-f]{64})"
_SCOPES = (
    (re.compile(rf"^docker-{_HEX64}\.scope$"), "docker", ""),
    (re.compile(rf"^libpod-conmon-{_HEX64}\.scope$"), "podman", "conmon "),
    (re.compile(rf"^libpod-{_HEX64}\.scope$"), "podman", ""),
    (re.compile(rf"^cri-containerd-{_HEX64}\.scope$"), "containerd", ""),
    (re.compile(rf"^crio-conmon-{_HEX64}\.scope$"), "cri-o", "conmon "),
    (re.compile(rf"^crio-{_HEX64}\.scope$"), "cri-o", ""),
    (re.compile(rf"^libpod-{_HEX64}$"), "podman", ""),
)
"""Container scopes as the runtimes name them under systemd (and podman's cgroupfs name)."""
_BARE_ID = re.compile(rf"^{_HEX64}$")
_POD_SLICE = re.compile(r"^kubepods(?:-(besteffort|burstable))?-pod([0-9a-f_]{36})\.slice$")
_POD_DIR = re.compile(r"^pod([0-9a-f-]{36})$")
_QOS_SLICE = re.compile(r"^kubepods(?:-(besteffort|burstable))?\.slice$")
_UNIT_SUFFIXES = ("service", "scope", "slice", "socket", "mount", "swap")
_SYSTEMD_ESCAPE = re.compile(r"\\x(2[0-9a-f]|[3-6][0-9a-f]|7[0-9a-e])")
"""systemd writes some characters of unit names as \\xNN (``\\x2d`` for "-"); only printable
ASCII is unescaped, so bytes that were never UTF-8 keep their escape."""

_PARENT_RUNTIME = {"docker": "docker", "libpod_parent": "podman"}


def _unit_name(component: str) -> str:
    return _SYSTEMD_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), component)


def _pod(components: list[str]) -> tuple[str | None, str | None, int]:
    """(pod uid, qos, index of the pod's component) when the path is in a Kubernetes pod."""
    for i, c in enumerate(components):
        m = _POD_SLICE.match(c)
        if m:
            return m.group(2).replace("_", "-"), m.group(1) or "guaranteed", i
        m = _POD_DIR.match(c)
        if m and i > 0 and components[0] == "kubepods":
            qos = components[i - 1] if components[i - 1] in ("besteffort", "burstable") else "guaranteed"
            return m.group(1), qos, i
    return None, None, -1


def describe(path: str) -> CgroupIdentity:
    """What ``path`` (as /proc/PID/cgroup names it) is, with a short readable name.

    ``/system.slice/nginx.service`` is "nginx.service"; ``.../docker-<64 hex>.scope`` and
    ``/docker/<64 hex>`` are "docker 0123456789ab"; a Kubernetes pod is "pod <uid> (burstable)"
    and a container in it "containerd 0123456789ab in pod <uid>"; anything else is its last
    component. The name is from the path alone: no daemon is asked.
    """
    components = [c for c in path.split("/") if c]
    if not components:
        return CgroupIdentity("root", "root")
    last = components[-1]
    pod_uid, qos, pod_at = _pod(components)
    in_pod = f" in pod {pod_uid}" if pod_uid is not None else ""
    for pattern, runtime, role in _SCOPES:
        m = pattern.match(last)
        if m:
            cid = m.group(1)
            return CgroupIdentity(f"{runtime} {role}{cid[:12]}{in_pod}", "container", runtime, cid, pod_uid, qos)
    m = _BARE_ID.match(last)
    if m:
        parent = components[-2] if len(components) > 1 else ""
        runtime = _PARENT_RUNTIME.get(parent) or "container"   # cgroupfs driver: the parent says which
        cid = m.group(1)
        return CgroupIdentity(f"{runtime} {cid[:12]}{in_pod}", "container", runtime, cid, pod_uid, qos)
    if pod_uid is not None and pod_at == len(components) - 1:
        return CgroupIdentity(f"pod {pod_uid} ({qos})", "pod", pod_uid=pod_uid, qos=qos)
    m = _QOS_SLICE.match(last)
    if m or (components[0] == "kubepods" and (len(components) == 1 or (
            len(components) == 2 and last in ("besteffort", "burstable")))):
        cls = (m.group(1) if m else (last if last != "kubepods" else None))
        return CgroupIdentity(f"k8s {cls} pods" if cls else "k8s pods", "qos", qos=cls)
    suffix = last.rpartition(".")[2]
    if "." in last and suffix in _UNIT_SUFFIXES:
        return CgroupIdentity(_unit_name(last), suffix)
    return CgroupIdentity(last, "cgroup")


# ---------------------------------------------------------------------------------------------
# The per-tick reader.


@dataclass(frozen=True, slots=True)
class CgroupReading:
    """One cgroup as the reader found it this tick."""

    ino: int
    memory: CgroupMemory | None
    """None when its directory could not be read (it vanished, or lies outside the mount)."""


class _Gone(Exception):
    """The cgroup's directory is gone (removed while memwatch read it)."""


class _Group:
    """What the reader keeps about one cgroup between ticks."""

    __slots__ = ("directory", "fds", "ino", "missing", "slow", "slow_tick")

    def __init__(self, directory: bytes, ino: int) -> None:
        self.directory = directory
        self.ino = ino
        self.fds: dict[str, int] = {}
        self.missing: set[str] = set()
        """Files this kernel does not have here: looked for again with the slow files."""
        self.slow: Figures = {}
        """The figures of the slow files, as last read."""
        self.slow_tick = -(1 << 30)


def _default_keep_open() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(0, min(8192, soft // 8))


class CgroupReader:
    """Reads memory cgroups each tick; one thread at a time (the tick's), except :meth:`resolve`,
    which the event loop calls for OOM events and which is safe beside a tick.

    ``hierarchy`` defaults to the one this process sees (:func:`find_memory_hierarchy`).
    ``keep_open`` caps the files held open (default an eighth of the soft open-files limit, at
    most 8192): each is a page of kernel memory; beyond it files are read by path.
    """

    def __init__(self, hierarchy: Hierarchy | Literal["auto"] | None = "auto", *, stat_every: int = 5,
                 keep_open: int | None = None, oom_memory: int = 256) -> None:
        if stat_every < 1:
            raise ValueError("stat_every must be at least 1 (1 = every tick)")
        self.hierarchy = find_memory_hierarchy() if hierarchy == "auto" else hierarchy
        self.stat_every = stat_every
        self.keep_open = _default_keep_open() if keep_open is None else max(0, keep_open)
        self.oom_memory = oom_memory
        self._groups: dict[bytes, _Group] = {}
        self._open = 0
        self._tick = 0
        self._lock = threading.Lock()
        self._by_ino: dict[int, tuple[str, bytes]] = {}
        """Every cgroup seen, by its directory's inode (the kernel's cgroup id)."""
        self._walked_at: dict[int, float] = {}
        self._watched: dict[str, bytes] = {}
        """Cgroups read while they exist although no process is in them: OOM kills happened there."""
        self.vanished: set[str] = set()
        """Cgroups asked for last tick whose directory was gone: processes said to be in them have
        moved (or are exiting)."""

    @property
    def version(self) -> int:
        return self.hierarchy.version if self.hierarchy is not None else 0

    @property
    def open_files(self) -> int:
        return self._open

    def __enter__(self) -> CgroupReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every kept file; the reader stays usable."""
        for g in self._groups.values():
            self._close_group(g)
        self._groups = {}

    def _close_group(self, g: _Group) -> None:
        for fd in g.fds.values():
            os.close(fd)
        self._open -= len(g.fds)
        g.fds = {}

    # -- inputs ----------------------------------------------------------------------------------

    def watch(self, path: str, raw: bytes | None = None) -> None:
        """Keep reading ``path`` while it exists, process or no process (an OOM kill happened
        there: its figures and the kernel's count say what became of it). Bounded: the oldest
        watched cgroup is forgotten first."""
        with self._lock:
            self._watched.pop(path, None)
            self._watched[path] = raw if raw is not None else os.fsencode(path)
            while len(self._watched) > self.oom_memory:
                del self._watched[next(iter(self._watched))]

    # -- the tick --------------------------------------------------------------------------------

    def read(self, paths: Mapping[str, bytes]) -> dict[str, CgroupReading]:
        """Every cgroup of ``paths`` (shown path -> raw path, as procfs gives them), their
        ancestors and the watched cgroups: a reading for each (memory None when unreadable)."""
        self._tick += 1
        with self._lock:
            watched = dict(self._watched)
        wanted: dict[bytes, str] = {}
        for raw in (*paths.values(), *watched.values()):
            while raw not in wanted:
                wanted[raw] = _decode(raw)
                if raw in (b"/", b""):
                    break
                raw = raw.rsplit(b"/", 1)[0] or b"/"
        out: dict[str, CgroupReading] = {}
        vanished: set[str] = set()
        keep: dict[bytes, _Group] = {}
        for raw, shown in wanted.items():
            reading, group = self._read_one(raw)
            if group is not None:
                keep[raw] = group
            if reading is None:
                vanished.add(shown)
                if shown in watched:
                    with self._lock:
                        self._watched.pop(shown, None)
                    continue
                reading = CgroupReading(0, None)
            out[shown] = reading
        for raw, g in self._groups.items():
            if raw not in keep:
                self._close_group(g)
        self._groups = keep
        self.vanished = vanished & set(paths)
        return out

    def _read_one(self, raw: bytes) -> tuple[CgroupReading | None, _Group | None]:
        """(reading, state to keep); (None, None) when the cgroup's directory is gone."""
        h = self.hierarchy
        if h is None:
            return CgroupReading(0, None), None
        g = self._groups.get(raw)
        for attempt in (0, 1):
            if g is None:
                directory = h.directory(raw)
                if directory is None:
                    return CgroupReading(0, None), None
                try:
                    st = os.stat(directory)
                except OSError:
                    return None, None
                if not stat.S_ISDIR(st.st_mode):
                    return CgroupReading(0, None), None
                g = _Group(directory, st.st_ino)
                self._remember(st.st_ino, (_decode(raw), raw))
            try:
                return CgroupReading(g.ino, self._figures(g)), g
            except _Gone:
                self._close_group(g)
                g = None  # removed, and maybe made again at once under the same name: look again
                if attempt:
                    break
        return None, None

    def _figures(self, g: _Group) -> CgroupMemory:
        v2 = self.version == 2
        if self._tick - g.slow_tick >= self.stat_every:
            g.missing.clear()
            slow: tuple[str, ...] = V2_SLOW if v2 else V1_SLOW
            g.slow = (_v2_slow if v2 else _v1_slow)({name: self._file(g, name) for name in slow})
            g.slow_tick = self._tick
        fast: tuple[str, ...] = V2_FAST if v2 else V1_FAST
        figures = (_v2_fast if v2 else _v1_fast)({name: self._file(g, name) for name in fast})
        return CgroupMemory(**figures, **g.slow)  # type: ignore[arg-type]

    def _file(self, g: _Group, name: str) -> bytes | None:
        """A file of the cgroup; None when this kernel has no such file; raises _Gone when the
        cgroup itself is gone."""
        fd = g.fds.get(name)
        if fd is not None:
            try:
                return os.pread(fd, _READ_SIZE, 0)
            except OSError as exc:
                if exc.errno in (errno.ENODEV, errno.ENOENT):
                    raise _Gone from None
                return None
        if name in g.missing:
            return None
        try:
            fd = os.open(g.directory + b"/" + name.encode(), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not os.path.isdir(g.directory):
                raise _Gone from None
            g.missing.add(name)
            return None
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise _Gone from None
            return None  # not ours to read (EACCES): as if absent
        try:
            data = os.pread(fd, _READ_SIZE, 0)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                raise _Gone from None
            return None
        if self._open < self.keep_open:
            g.fds[name] = fd
            self._open += 1
        else:
            os.close(fd)
        return data

    # -- OOM events ------------------------------------------------------------------------------

    MAX_KNOWN = 65536
    """Cgroups remembered by inode; beyond it the oldest half is forgotten (a busy Kubernetes
    node makes thousands a day; kernfs ids are never reused, so a stale entry is only memory)."""

    def _remember(self, ino: int, path: tuple[str, bytes]) -> None:
        with self._lock:
            self._by_ino.pop(ino, None)
            self._by_ino[ino] = path
            if len(self._by_ino) > self.MAX_KNOWN:
                for old in list(self._by_ino)[: self.MAX_KNOWN // 2]:
                    del self._by_ino[old]

    def resolve(self, ino: int, *, watch: bool = False) -> str | None:
        """The path of the cgroup whose id (directory inode) is ``ino``: from the cgroups read so
        far, else by walking the hierarchy once (the OOM-killed cgroup may be new, and may be
        removed soon after: call this when the event arrives). None when it is gone already.
        ``watch``: read it from now on while it exists (:meth:`watch`)."""
        if not ino:
            return None
        with self._lock:
            found = self._by_ino.get(ino)
            if found is None and self.hierarchy is not None:
                now = time.monotonic()
                if now - self._walked_at.get(ino, -10.0) < 1.0:
                    return None   # looked for it a moment ago: a burst of kills in one cgroup
                self._walked_at = {i: t for i, t in self._walked_at.items() if now - t < 1.0}
                self._walked_at[ino] = now
        if found is None and self.hierarchy is not None:
            found = self._walk(self.hierarchy).get(ino)
            if found is not None:
                self._remember(ino, found)
        if found is None:
            return None
        if watch:
            self.watch(found[0], found[1])
        return found[0]

    @staticmethod
    def _walk(h: Hierarchy, limit: int = 100_000) -> dict[int, tuple[str, bytes]]:
        """Every cgroup directory of the hierarchy by inode, with its path shown and raw (at most
        ``limit`` of them)."""
        out: dict[int, tuple[str, bytes]] = {}
        base = h.mount.rstrip(b"/")
        root = h.root.rstrip(b"/")
        stack = [b""]
        while stack and len(out) < limit:
            rel = stack.pop()
            try:
                entries = os.scandir(base + rel if rel else base or b"/")
            except OSError:
                continue
            with entries:
                if not rel:
                    with contextlib.suppress(OSError):
                        out[os.stat(base or b"/").st_ino] = (_decode(root or b"/"), root or b"/")
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            sub = rel + b"/" + e.name
                            out[e.inode()] = (_decode(root + sub), root + sub)
                            stack.append(sub)
                    except OSError:
                        continue
        return out

    def known(self) -> list[tuple[int, str]]:
        """(inode, path) of every cgroup seen so far, for tests."""
        with self._lock:
            return [(ino, shown) for ino, (shown, _) in self._by_ino.items()]
