"""Per call stack: calls, bytes, and the bytes still mapped, for the processes being looked at.

Every mmap, munmap, brk and mremap of a stack target arrives (with its stack, or without it when
the process was over its budget), so the address ranges each stack mapped are followed exactly in
user space, partial unmaps included: an unmap, a brk shrink or an mremap shrink credits the stacks
whose ranges it removed, by exactly the bytes removed. An mremap moves the ranges it covers with
their stacks (the memory is the same); what it adds is the mremap's own.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from memwatch.ebpf.layouts import EV_BRK, EV_MMAP, EV_MREMAP, EV_MUNMAP, EV_STACK, EV_STACK_EXEC, RawStack
from memwatch.stacks.unwind import DEFAULT_CACHE, ElfCache, ProcessModules, unwind

MREMAP_DONTUNMAP = 4
KIND_NAMES = {EV_MMAP: "mmap", EV_MUNMAP: "munmap", EV_BRK: "brk", EV_MREMAP: "mremap"}

StackKey = tuple[str, tuple[tuple[str | None, int], ...], bool]
"""(call kind, frames as (module path, address in module) innermost first, unwound completely)"""
NOT_CAPTURED: tuple[tuple[str | None, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: the function (None when the module has no symbol for it: stripped), the module
    (None: not a file mapping, e.g. JIT code) and the address in the module (what addr2line and
    objdump take); for frames past the first it is the return address."""

    symbol: str | None
    module: str | None
    offset: int


@dataclass(frozen=True, slots=True)
class AllocationStack:
    """What the calls made from one call stack did.

    ``bytes`` is what they mapped (mmap lengths, brk and mremap growth), ``unmapped_bytes`` what
    they unmapped (munmap lengths, brk and mremap shrinks), ``outstanding_bytes`` the part of
    ``bytes`` still mapped. Empty ``frames``: calls whose stack was not captured (over the
    per-process budget, or the ring was full); ``truncated``: the unwinder stopped before the
    outermost frame (the stack window ended, or code without CFI)."""

    kind: str
    frames: tuple[Frame, ...]
    calls: int
    bytes: int
    unmapped_bytes: int
    outstanding_bytes: int
    truncated: bool


@dataclass(slots=True)
class _Totals:
    calls: int = 0
    bytes: int = 0
    unmapped: int = 0
    outstanding: int = 0


class RangeMap:
    """Disjoint address ranges, each owned by a stack; removing a range says whose bytes went."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._owners: list[StackKey] = []

    def __len__(self) -> int:
        return len(self._starts)

    def cut(self, lo: int, hi: int) -> list[tuple[int, int, StackKey]]:
        """Remove [lo, hi) and return the (start, end, owner) pieces that were in it."""
        if hi <= lo:
            return []
        starts, ends, owners = self._starts, self._ends, self._owners
        i = bisect.bisect_right(starts, lo) - 1
        if i < 0 or ends[i] <= lo:
            i += 1
        out: list[tuple[int, int, StackKey]] = []
        keep: list[tuple[int, int, StackKey]] = []
        j = i
        while j < len(starts) and starts[j] < hi:
            s, e, o = starts[j], ends[j], owners[j]
            out.append((max(s, lo), min(e, hi), o))
            if s < lo:
                keep.append((s, lo, o))
            if e > hi:
                keep.append((hi, e, o))
            j += 1
        if j > i:
            del starts[i:j], ends[i:j], owners[i:j]
            for k, (s, e, o) in enumerate(keep):
                starts.insert(i + k, s)
                ends.insert(i + k, e)
                owners.insert(i + k, o)
        return out

    def add(self, lo: int, hi: int, owner: StackKey) -> None:
        """Own [lo, hi) (the caller cut it first)."""
        if hi <= lo:
            return
        i = bisect.bisect_left(self._starts, lo)
        self._starts.insert(i, lo)
        self._ends.insert(i, hi)
        self._owners.insert(i, owner)

    def owner_at(self, addr: int) -> StackKey | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        return self._owners[i] if i >= 0 and addr < self._ends[i] else None

    def clear(self) -> list[tuple[int, int, StackKey]]:
        out = list(zip(self._starts, self._ends, self._owners, strict=True))
        self._starts, self._ends, self._owners = [], [], []
        return out


@dataclass
class ProcessStacks:
    """One stack target's table."""

    pid: int
    modules: ProcessModules
    totals: dict[StackKey, _Totals] = field(default_factory=dict)
    ranges: RangeMap = field(default_factory=RangeMap)
    records: int = 0
    not_unwound: int = 0
    """Records whose stack window was empty (the kernel could not read the stack)."""

    def _key(self, rec: RawStack) -> StackKey:
        kind = KIND_NAMES.get(rec.call, "?")
        if rec.kind != EV_STACK:
            return (kind, NOT_CAPTURED, False)
        if not rec.stack:
            self.not_unwound += 1
        u = unwind(rec.regs, rec.stack, self.modules)
        return (kind, u.frames, not u.complete)

    def _credit(self, pieces: Iterable[tuple[int, int, StackKey]]) -> None:
        for s, e, owner in pieces:
            self.totals[owner].outstanding -= e - s

    def apply(self, rec: RawStack) -> None:
        self.records += 1
        if rec.kind == EV_STACK_EXEC:
            # a new image: the old address space is gone, and so are its modules
            self._credit(self.ranges.clear())
            self.modules.reload()
            return
        key = self._key(rec)
        t = self.totals.get(key)
        if t is None:
            t = self.totals[key] = _Totals()
        t.calls += 1
        if rec.call == EV_MMAP:
            # MAP_FIXED replaced what was there; otherwise the range was free, and anything still
            # listed in it is stale (unmapped in a way no record said, as by an exec)
            self._credit(self.ranges.cut(rec.addr, rec.addr + rec.len))
            self._map(key, t, rec.addr, rec.addr + rec.len)
        elif rec.call == EV_MUNMAP:
            t.unmapped += rec.len
            self._credit(self.ranges.cut(rec.addr, rec.addr + rec.len))
        elif rec.call == EV_BRK:
            old, new = rec.addr, rec.new_addr
            if new > old:
                self._credit(self.ranges.cut(old, new))
                self._map(key, t, old, new)
            else:
                t.unmapped += old - new
                self._credit(self.ranges.cut(new, old))
        elif rec.call == EV_MREMAP:
            self._mremap(key, t, rec)

    def _map(self, key: StackKey, t: _Totals, lo: int, hi: int) -> None:
        t.bytes += hi - lo
        t.outstanding += hi - lo
        self.ranges.add(lo, hi, key)

    def _mremap(self, key: StackKey, t: _Totals, rec: RawStack) -> None:
        old, old_len, new, new_len = rec.addr, rec.len, rec.new_addr, rec.new_len
        if rec.flags & MREMAP_DONTUNMAP:
            # the old range stays mapped (emptied); the pages are now in the new one: the mremap's
            self._credit(self.ranges.cut(new, new + new_len))
            self._map(key, t, new, new + new_len)
            return
        moved = self.ranges.cut(old, old + old_len)
        if new != old:
            self._credit(self.ranges.cut(new, new + new_len))
        keep = min(old_len, new_len)
        for s, e, owner in moved:
            s2, e2 = s - old + new, e - old + new
            if s2 >= new + keep:
                self.totals[owner].outstanding -= e - s
                continue
            if e2 > new + keep:
                self.totals[owner].outstanding -= e2 - (new + keep)
                e2 = new + keep
            self.ranges.add(s2, e2, owner)
        if new_len > old_len:
            self._credit(self.ranges.cut(new + old_len, new + new_len))
            self._map(key, t, new + old_len, new + new_len)
        else:
            t.unmapped += old_len - new_len

    def stacks(self) -> list[AllocationStack]:
        """Every stack, ranked by outstanding bytes, then bytes, then calls; symbolized now."""
        out = []
        for (kind, frames, truncated), t in self.totals.items():
            out.append(AllocationStack(kind, tuple(self._frame(m, a, i) for i, (m, a) in enumerate(frames)),
                                       t.calls, t.bytes, t.unmapped, t.outstanding, truncated))
        out.sort(key=lambda s: (-s.outstanding_bytes, -s.bytes, -s.calls, s.kind))
        return out

    def _frame(self, module: str | None, addr: int, depth: int) -> Frame:
        elf = self.modules.elf_of(module) if module is not None else None
        # a return address points after its call, which may be the next function's first byte
        symbol = elf.symbol_at(addr - 1 if depth else addr) if elf is not None else None
        return Frame(symbol, module, addr)


class StackCollector:
    """The tables of every stack target, fed with ``stack_events`` records (from any thread)."""

    def __init__(self, proc_root: str = "/proc", cache: ElfCache = DEFAULT_CACHE) -> None:
        self.proc_root = proc_root
        self.cache = cache
        self._procs: dict[int, ProcessStacks] = {}
        self._lock = threading.Lock()

    def watch(self, pid: int) -> None:
        """Start a table for ``pid`` (its modules are read now, while it runs)."""
        with self._lock:
            if pid not in self._procs:
                self._procs[pid] = ProcessStacks(pid, ProcessModules(pid, self.proc_root, self.cache))

    def forget(self, pid: int) -> None:
        """Drop ``pid``'s table: records for it are ignored from now on."""
        with self._lock:
            self._procs.pop(pid, None)

    def add(self, records: Iterable[RawStack]) -> int:
        """Apply records to their processes' tables; returns how many were applied."""
        n = 0
        with self._lock:
            for rec in records:
                proc = self._procs.get(rec.tgid)
                if proc is not None:
                    proc.apply(rec)
                    n += 1
        return n

    def stacks(self, pid: int) -> list[AllocationStack] | None:
        with self._lock:
            proc = self._procs.get(pid)
            return None if proc is None else proc.stacks()

    def unreadable(self, pid: int) -> dict[str, str]:
        """Modules of ``pid`` that could not be read, with why."""
        with self._lock:
            proc = self._procs.get(pid)
            return {} if proc is None else dict(proc.modules.unreadable)

    def mapped_by(self, pid: int, addr: int) -> StackKey | None:
        with self._lock:
            proc = self._procs.get(pid)
            return None if proc is None else proc.ranges.owner_at(addr)
