"""Unwind a user stack copied at a system call, with each module's .eh_frame: no frame pointers.

The kernel copies the user registers saved at the call and a window of the user stack from the
stack pointer up (``struct mw_stack_event``); this is what ``perf --call-graph dwarf`` does, done
here in user space when the record arrives. Each step finds the module of the current address in
the process's mappings (``/proc/PID/maps``, files opened through ``/proc/PID/root`` so a process in
a container is read from its own file system), asks its CFI where the caller's frame is, and reads
the return address and saved registers out of the copied window. Where a function has no CFI the
frame-pointer chain is followed instead, when it points into the window.

Modules are cached by file identity and build id for the whole run (:class:`ElfCache`): libc is
opened once however many processes use it.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from memwatch.stacks.cfi import (
    EXPRESSION,
    MASK64,
    OFFSET,
    REGISTER,
    UNDEFINED,
    VAL_EXPRESSION,
    VAL_OFFSET,
    evaluate,
)
from memwatch.stacks.elf import ElfError, ElfFile

log = logging.getLogger("memwatch.stacks")

_U64 = struct.Struct("<Q")
SP, BP, RA = 7, 6, 16
MAX_FRAMES = 128
CALLEE_SAVED = (3, 6, 12, 13, 14, 15)   # x86-64 rbx rbp r12-r15: kept by calls, so known upstream


class ElfCache:
    """Open ELF files by file identity (device, inode, size, mtime) and by build id, least
    recently used first out; the same library in many processes (or containers) is read once."""

    def __init__(self, capacity: int = 128) -> None:
        self.capacity = capacity
        self._by_identity: OrderedDict[tuple[int, int, int, int], ElfFile] = OrderedDict()
        self._by_build_id: dict[str, ElfFile] = {}
        self.opened = 0

    def open(self, path: str) -> ElfFile:
        """The ELF file at ``path``; OSError when it cannot be read, ElfError when not ELF."""
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        elf = self._by_identity.get(key)
        if elf is not None:
            self._by_identity.move_to_end(key)
            return elf
        elf = ElfFile(path)
        self.opened += 1
        if elf.build_id and elf.build_id in self._by_build_id:
            same = self._by_build_id[elf.build_id]
            elf.close()
            elf = same
        elif elf.build_id:
            self._by_build_id[elf.build_id] = elf
        self._by_identity[key] = elf
        while len(self._by_identity) > self.capacity:
            _, old = self._by_identity.popitem(last=False)
            # no close: processes' module tables may still hold it (the mapping goes with it)
            if old.build_id and all(e is not old for e in self._by_identity.values()):
                self._by_build_id.pop(old.build_id, None)
        return elf


DEFAULT_CACHE = ElfCache()


@dataclass(frozen=True, slots=True)
class Mapping:
    """An executable file mapping of a process: its range, and how to get the module's address."""

    start: int
    end: int
    bias: int
    """Process address minus the module's (ELF) address."""
    path: str
    elf: ElfFile | None


class ProcessModules:
    """The executable file mappings of one process, from /proc/PID/maps, re-read when an address
    falls outside all of them (a library loaded since) at most once a second."""

    def __init__(self, pid: int, proc_root: str = "/proc", cache: ElfCache = DEFAULT_CACHE) -> None:
        self.pid = pid
        self.proc_root = proc_root
        self.cache = cache
        self._starts: list[int] = []
        self._maps: list[Mapping] = []
        self._read_at = 0.0
        self._elves: dict[str, ElfFile] = {}
        """Every module seen, by path, kept after it is unmapped: its frames are symbolized later."""
        self.unreadable: dict[str, str] = {}
        """Module path -> why it could not be read (its frames show as module+offset)."""
        self.reload()

    def reload(self) -> None:
        self._read_at = time.monotonic()
        try:
            with open(f"{self.proc_root}/{self.pid}/maps", "rb") as f:
                lines = f.read().splitlines()
        except OSError:
            return
        maps: list[Mapping] = []
        for line in lines:
            parts = line.split(None, 5)
            if len(parts) < 6 or b"x" not in parts[1] or not parts[5].startswith(b"/"):
                continue
            lo, _, hi = parts[0].partition(b"-")
            start, end, pgoff = int(lo, 16), int(hi, 16), int(parts[2], 16)
            path = parts[5].decode("utf-8", "surrogateescape")
            elf = self._open(path, start, end)
            bias = start - pgoff
            if elf is not None:
                vaddr = elf.offset_to_vaddr(pgoff)
                if vaddr is not None:
                    bias = start - vaddr
            name = path.removesuffix(" (deleted)")
            maps.append(Mapping(start, end, bias, name, elf))
            if elf is not None:
                self._elves[name] = elf
        maps.sort(key=lambda m: m.start)
        self._maps = maps
        self._starts = [m.start for m in maps]

    def _open(self, path: str, start: int, end: int) -> ElfFile | None:
        """The module's file as the process sees it: through its root (containers), else through
        map_files (a file deleted or replaced since it was mapped)."""
        name = path.removesuffix(" (deleted)")
        base = f"{self.proc_root}/{self.pid}"
        candidates = [f"{base}/root{name}", f"{base}/map_files/{start:x}-{end:x}"]
        if path.endswith(" (deleted)"):
            candidates.reverse()
        why = ""
        for candidate in candidates:
            try:
                return self.cache.open(candidate)
            except ElfError as exc:
                why = str(exc)
                break
            except OSError as exc:
                why = exc.strerror or str(exc)
        self.unreadable.setdefault(name, why)
        return None

    def elf_of(self, path: str) -> ElfFile | None:
        """The module file mapped at ``path`` (now or earlier); None if it could not be read."""
        return self._elves.get(path)

    def find(self, addr: int) -> Mapping | None:
        m = self._lookup(addr)
        if m is None and time.monotonic() - self._read_at >= 1.0:
            self.reload()
            m = self._lookup(addr)
        return m

    def _lookup(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._maps[i].end:
            return self._maps[i]
        return None


@dataclass(frozen=True, slots=True)
class Unwound:
    """Return addresses, innermost first (the first is the address after the system call), each
    with its module (None: no file mapping there) and its address in that module."""

    frames: tuple[tuple[str | None, int], ...]
    complete: bool
    """True when the unwinder reached the outermost frame (CFI says the return address is
    undefined, as in _start); False when it stopped early: the window ended, no rule, a loop."""


def unwind(regs: tuple[int, ...], stack: bytes, modules: ProcessModules, max_frames: int = MAX_FRAMES) -> Unwound:
    """The call stack of a system call, from its registers and a copy of the stack from the
    stack pointer up."""
    if len(regs) <= RA:
        return Unwound((), False)
    values: dict[int, int] = {i: v for i, v in enumerate(regs[:RA])}
    base = regs[SP]
    top = base + len(stack)

    def read(addr: int) -> int | None:
        if base <= addr <= top - 8:
            return int(_U64.unpack_from(stack, addr - base)[0])
        return None

    frames: list[tuple[str | None, int]] = []
    pc = regs[RA]
    complete = False
    for depth in range(max_frames):
        mapping = modules.find(pc if depth == 0 else pc - 1)
        frames.append((mapping.path, pc - mapping.bias) if mapping else (None, pc))
        if mapping is None:
            break
        cfi = mapping.elf.cfi if mapping.elf is not None else None
        rule = cfi.rule_at(pc - mapping.bias - (0 if depth == 0 else 1)) if cfi is not None else None
        sp = values.get(SP)
        if sp is None:
            break
        if rule is None:
            # no CFI for this code: follow the frame pointer if it points into the window
            fp = values.get(BP)
            if fp is None or not sp <= fp:
                break
            ret, saved_fp = read(fp + 8), read(fp)
            if ret is None or saved_fp is None:
                break
            values = {k: v for k, v in values.items() if k in CALLEE_SAVED}
            values[BP], values[SP] = saved_fp, fp + 16
            pc = ret
        else:
            if rule.regs.get(rule.ra_reg, (OFFSET, 0))[0] == UNDEFINED:
                complete = True   # the outermost frame (_start, a thread's start)
                break
            if rule.cfa_expr is not None:
                cfa = evaluate(rule.cfa_expr, values.get, read)
            else:
                reg = values.get(rule.cfa_reg)
                cfa = None if reg is None else (reg + rule.cfa_offset) & MASK64
            if cfa is None or cfa <= sp:
                break
            new = {k: v for k, v in values.items() if k in CALLEE_SAVED}
            ret = None
            for reg_no, (kind, arg) in rule.regs.items():
                value: int | None
                if kind == OFFSET:
                    value = read(cfa + int(arg))
                elif kind == VAL_OFFSET:
                    value = (cfa + int(arg)) & MASK64
                elif kind == REGISTER:
                    value = values.get(int(arg))
                elif kind == EXPRESSION:
                    addr = evaluate(arg, values.get, read, cfa)  # type: ignore[arg-type]
                    value = None if addr is None else read(addr)
                elif kind == VAL_EXPRESSION:
                    value = evaluate(arg, values.get, read, cfa)  # type: ignore[arg-type]
                elif kind == UNDEFINED:
                    value = None
                else:   # SAME
                    value = values.get(reg_no)
                if reg_no == rule.ra_reg:
                    ret = value
                elif value is None:
                    new.pop(reg_no, None)
                else:
                    new[reg_no] = value
            if ret is None:
                break
            new[SP] = cfa
            values = new
            pc = ret
        if pc == 0:
            complete = True
            break
    return Unwound(tuple(frames), complete)
