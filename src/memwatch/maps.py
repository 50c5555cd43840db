"""The memory map of one process (``/proc/PID/smaps``): its mappings, what each holds, by kind.

smaps walks every mapping and its page tables under the target's mmap lock, so it is read only on
demand, in a worker thread, with a time cap (:func:`read_memory_map_async`), never on a tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

KINDS = ("heap", "stack", "anonymous", "file", "shared memory", "vdso")

_FIELDS = {b"Rss": "rss_kb", b"Pss": "pss_kb", b"Swap": "swap_kb", b"Anonymous": "anon_kb"}


@dataclass(frozen=True, slots=True)
class Mapping:
    """One mapping. ``mapped_at``/``mapped_by`` (wall-clock time and thread id of the mmap) are
    filled in for mappings memwatch traced and still remembers, else None."""

    start: int
    end: int
    perms: str
    offset: int
    path: str
    """The file, or the kernel's name ([heap], [stack], [vdso] ...), or "" for anonymous memory."""
    kind: str
    rss_kb: int = 0
    pss_kb: int = 0
    swap_kb: int = 0
    anon_kb: int = 0
    mapped_at: float | None = None
    mapped_by: int | None = None

    @property
    def size_kb(self) -> int:
        return (self.end - self.start) // 1024


@dataclass(frozen=True, slots=True)
class Group:
    """Mappings of one kind, or of one path, with their sums."""

    name: str
    kind: str
    count: int
    size_kb: int
    rss_kb: int
    pss_kb: int
    swap_kb: int
    anon_kb: int


@dataclass(frozen=True, slots=True)
class MemoryMap:
    pid: int
    mappings: tuple[Mapping, ...]

    def by_kind(self) -> list[Group]:
        """Sums per kind, in the order of :data:`KINDS` (kinds with no mapping left out)."""
        groups = _group(self.mappings, lambda m: m.kind)
        return [groups[k] for k in KINDS if k in groups]

    def by_path(self) -> list[Group]:
        """Sums per path (anonymous memory as its kind), largest RSS first."""
        groups = _group(self.mappings, lambda m: m.path or f"[{m.kind}]")
        return sorted(groups.values(), key=lambda g: (-g.rss_kb, -g.size_kb, g.name))

    def largest(self, n: int = 20) -> list[Mapping]:
        """The n mappings with the most resident memory (then the largest)."""
        return sorted(self.mappings, key=lambda m: (-m.rss_kb, -(m.end - m.start), m.start))[:n]


def _group(mappings: tuple[Mapping, ...], key: Callable[[Mapping], str]) -> dict[str, Group]:
    sums: dict[str, list[int]] = {}
    kinds: dict[str, str] = {}
    for m in mappings:
        k = key(m)
        s = sums.setdefault(k, [0, 0, 0, 0, 0, 0])
        kinds.setdefault(k, m.kind)
        s[0] += 1
        s[1] += m.size_kb
        s[2] += m.rss_kb
        s[3] += m.pss_kb
        s[4] += m.swap_kb
        s[5] += m.anon_kb
    return {k: Group(k, kinds[k], *v) for k, v in sums.items()}


def kind_of(path: str, perms: str) -> str:
    """What a mapping is, from its name and permissions."""
    if path == "[heap]":
        return "heap"
    if path.startswith("[stack"):
        return "stack"
    if path in ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"):
        return "vdso"
    if path.startswith(("/dev/shm/", "/SYSV", "/memfd:", "/dev/zero")) or (perms[3:4] == "s" and not path):
        return "shared memory"
    if not path or path.startswith("["):
        return "anonymous"
    return "file"


def parse_smaps(pid: int, data: bytes) -> MemoryMap:
    """The text of /proc/PID/smaps as a :class:`MemoryMap`."""
    out: list[Mapping] = []
    cur: dict[str, int] = {}
    head: tuple[int, int, str, int, str] | None = None

    def flush() -> None:
        if head is not None:
            start, end, perms, offset, path = head
            out.append(Mapping(start, end, perms, offset, path, kind_of(path, perms), **cur))

    for line in data.splitlines():
        first, _, rest = line.partition(b" ")
        if b"-" in first and not first.endswith(b":"):
            flush()
            parts = line.split(None, 5)
            lo, _, hi = parts[0].partition(b"-")
            path = parts[5].decode("utf-8", "surrogateescape").strip() if len(parts) > 5 else ""
            if path.startswith("memfd:"):
                path = "/" + path
            head = (int(lo, 16), int(hi, 16), parts[1].decode(), int(parts[2], 16), path)
            cur = {}
            continue
        name = _FIELDS.get(first.rstrip(b":"))
        if name is not None:
            with contextlib.suppress(ValueError, IndexError):
                cur[name] = int(rest.split()[0])
    flush()
    return MemoryMap(pid, tuple(out))


def read_memory_map(pid: int, proc_root: str = "/proc") -> MemoryMap:
    """/proc/PID/smaps, parsed. OSError (ProcessLookupError when it is gone) when it cannot be read."""
    try:
        with open(f"{proc_root}/{pid}/smaps", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    return parse_smaps(pid, data)


async def read_memory_map_async(pid: int, timeout_s: float = 2.0, proc_root: str = "/proc") -> MemoryMap:
    """:func:`read_memory_map` in a worker thread, at most ``timeout_s`` (TimeoutError beyond:
    the read then finishes in the background, as with smaps_rollup)."""
    async with asyncio.timeout(timeout_s):
        return await asyncio.to_thread(read_memory_map, pid, proc_root)


def annotate(memory_map: MemoryMap, mapped: Callable[[int, int], tuple[float, int] | None]) -> MemoryMap:
    """The map with each mapping's (time, thread) from ``mapped(start, end)`` where it knows it."""
    out = []
    for m in memory_map.mappings:
        known = mapped(m.start, m.end)
        out.append(m if known is None else replace(m, mapped_at=known[0], mapped_by=known[1]))
    return MemoryMap(memory_map.pid, tuple(out))
