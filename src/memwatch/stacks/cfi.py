"""Call-frame information (``.eh_frame``): how to find a caller's frame from any instruction.

Compilers emit it for every function (C++ exceptions and glibc's backtrace need it), also where
frame pointers are omitted, as Debian builds everything. For an address, :class:`CfiReader` finds
the FDE (through ``.eh_frame_hdr``'s sorted table when the file has one), runs its CIE's and its
own instructions up to that address, and returns the :class:`Rule` that says where the canonical
frame address (CFA) is and where each saved register, the return address among them, was saved.
Rules are cached per address: a process makes its calls from few places.

Only what unwinding needs is read; the DWARF expressions that compilers put in .eh_frame (the PLT's
CFA, stack realignment) are evaluated by :func:`evaluate`.
"""

from __future__ import annotations

import bisect
import mmap
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_S16, _S32, _S64 = struct.Struct("<h"), struct.Struct("<i"), struct.Struct("<q")
MASK64 = (1 << 64) - 1

# register rules
SAME, UNDEFINED, OFFSET, VAL_OFFSET, REGISTER, EXPRESSION, VAL_EXPRESSION = range(7)


class CfiError(ValueError):
    """Call-frame information this reader cannot use (malformed, or an unknown instruction)."""


def uleb(data: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def sleb(data: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos


def read_encoded(data: bytes | mmap.mmap, pos: int, enc: int, pos_vaddr: int, datarel: int = 0) -> tuple[int, int]:
    """A DW_EH_PE-encoded pointer at ``pos`` (whose virtual address is ``pos_vaddr``)."""
    fmt = enc & 0x0F
    if fmt == 0x00 or fmt == 0x04:
        v, pos2 = _U64.unpack_from(data, pos)[0], pos + 8
    elif fmt == 0x01:
        v, pos2 = uleb(data, pos)
    elif fmt == 0x02:
        v, pos2 = _U16.unpack_from(data, pos)[0], pos + 2
    elif fmt == 0x03:
        v, pos2 = _U32.unpack_from(data, pos)[0], pos + 4
    elif fmt == 0x09:
        v, pos2 = sleb(data, pos)
    elif fmt == 0x0A:
        v, pos2 = _S16.unpack_from(data, pos)[0], pos + 2
    elif fmt == 0x0B:
        v, pos2 = _S32.unpack_from(data, pos)[0], pos + 4
    elif fmt == 0x0C:
        v, pos2 = _S64.unpack_from(data, pos)[0], pos + 8
    else:
        raise CfiError(f"pointer encoding {enc:#x}")
    app = enc & 0x70
    if app == 0x10:
        v += pos_vaddr
    elif app == 0x30:
        v += datarel
    return v & MASK64, pos2


@dataclass(slots=True)
class Rule:
    """Where a frame's CFA is and where its caller's registers are, at one address."""

    cfa_reg: int = 7
    cfa_offset: int = 8
    cfa_expr: bytes | None = None
    regs: dict[int, tuple[int, int | bytes]] = field(default_factory=dict)
    ra_reg: int = 16

    def copy(self) -> Rule:
        return Rule(self.cfa_reg, self.cfa_offset, self.cfa_expr, dict(self.regs), self.ra_reg)


@dataclass(frozen=True, slots=True)
class _Cie:
    code_align: int
    data_align: int
    ra_reg: int
    fde_enc: int
    has_aug_data: bool
    initial: bytes


class CfiReader:
    """The .eh_frame of one file (memory-mapped), searched by virtual address."""

    def __init__(self, data: mmap.mmap, off: int, vaddr: int, size: int,
                 table: tuple[array[int], array[int]] | None) -> None:
        self._data = data
        self._off = off
        self._vaddr = vaddr
        self._size = size
        self._table = table
        self._cies: dict[int, _Cie] = {}
        self._rules: dict[int, Rule | None] = {}

    def rule_at(self, vaddr: int) -> Rule | None:
        """The unwinding rule at ``vaddr``; None when no FDE covers it (or it cannot be read)."""
        try:
            return self._rules[vaddr]
        except KeyError:
            pass
        try:
            rule = self._find(vaddr)
        except (CfiError, IndexError, struct.error):
            rule = None
        if len(self._rules) > 65536:
            self._rules.clear()
        self._rules[vaddr] = rule
        return rule

    def _find(self, vaddr: int) -> Rule | None:
        if self._table is None:
            self._table = self._scan()
        locs, fdes = self._table
        i = bisect.bisect_right(locs, vaddr) - 1
        if i < 0:
            return None
        fde_off = fdes[i] - self._vaddr + self._off
        return self._run_fde(fde_off, vaddr)

    def _scan(self) -> tuple[array[int], array[int]]:
        """Every FDE's start, for files without .eh_frame_hdr (rare: the linker makes one)."""
        data, pos, end = self._data, self._off, self._off + self._size
        found: list[tuple[int, int]] = []
        while pos + 4 <= end:
            length = _U32.unpack_from(data, pos)[0]
            if length == 0:
                break
            hdr = 4
            if length == 0xFFFFFFFF:
                length, hdr = _U64.unpack_from(data, pos + 4)[0], 12
            id_pos = pos + hdr
            cie_ptr = _U32.unpack_from(data, id_pos)[0]
            if cie_ptr:
                cie = self._cie(id_pos - cie_ptr)
                start, _ = read_encoded(data, id_pos + 4, cie.fde_enc, id_pos + 4 - self._off + self._vaddr)
                found.append((start, pos - self._off + self._vaddr))
            pos = id_pos + length
        found.sort()
        return array("q", (s for s, _ in found)), array("q", (f for _, f in found))

    def _cie(self, off: int) -> _Cie:
        cie = self._cies.get(off)
        if cie is not None:
            return cie
        data = self._data
        length = _U32.unpack_from(data, off)[0]
        pos = off + 4
        if length == 0xFFFFFFFF:
            length = _U64.unpack_from(data, pos)[0]
            pos += 8
        end = pos + length
        pos += 4   # CIE id (0)
        version = data[pos]
        pos += 1
        aug_end = data.find(b"\0", pos)
        aug = bytes(data[pos:aug_end])
        pos = aug_end + 1
        if b"eh" in aug:
            pos += 8
        code_align, pos = uleb(data, pos)
        data_align, pos = sleb(data, pos)
        if version == 1:
            ra_reg, pos = data[pos], pos + 1
        else:
            ra_reg, pos = uleb(data, pos)
        fde_enc = 0
        has_aug = aug.startswith(b"z")
        if has_aug:
            aug_len, pos = uleb(data, pos)
            aug_data_end = pos + aug_len
            for ch in aug[1:]:
                if ch == ord("R"):
                    fde_enc = data[pos]
                    pos += 1
                elif ch == ord("L"):
                    pos += 1
                elif ch == ord("P"):
                    enc = data[pos]
                    _, pos = read_encoded(data, pos + 1, enc & 0x7F, 0)
                elif ch in (ord("S"), ord("B"), ord("G")):
                    continue
                else:
                    break
            pos = aug_data_end
        cie = _Cie(code_align, data_align, ra_reg, fde_enc, has_aug, bytes(data[pos:end]))
        self._cies[off] = cie
        return cie

    def _run_fde(self, off: int, target: int) -> Rule | None:
        data = self._data
        length = _U32.unpack_from(data, off)[0]
        pos = off + 4
        if length == 0xFFFFFFFF:
            length = _U64.unpack_from(data, pos)[0]
            pos += 8
        end = pos + length
        cie_ptr = _U32.unpack_from(data, pos)[0]
        if cie_ptr == 0:
            return None   # a CIE, not an FDE
        cie = self._cie(pos - cie_ptr)
        pos += 4
        start, pos = read_encoded(data, pos, cie.fde_enc, pos - self._off + self._vaddr)
        span, pos = read_encoded(data, pos, cie.fde_enc & 0x0F, 0)
        if not start <= target < start + span:
            return None
        if cie.has_aug_data:
            aug_len, pos = uleb(data, pos)
            pos += aug_len
        rule = Rule(ra_reg=cie.ra_reg)
        initial = _execute(cie.initial, cie, rule, None, start, 1 << 64)
        _execute(bytes(data[pos:end]), cie, rule, initial, start, target)
        return rule


def _execute(code: bytes, cie: _Cie, rule: Rule, initial: Rule | None, loc: int, target: int) -> Rule:
    """Run CFA instructions from ``loc`` until they pass ``target``; returns the state after them
    (what a CIE's instructions give DW_CFA_restore)."""
    stack: list[Rule] = []
    pos, end, ca, da = 0, len(code), cie.code_align, cie.data_align
    while pos < end:
        op = code[pos]
        pos += 1
        high, low = op & 0xC0, op & 0x3F
        if high == 0x40:
            loc += low * ca
            if loc > target:
                break
            continue
        if high == 0x80:
            off, pos = uleb(code, pos)
            rule.regs[low] = (OFFSET, off * da)
            continue
        if high == 0xC0:
            _restore(rule, initial, low)
            continue
        if op == 0x00:
            continue
        if op in (0x02, 0x03, 0x04):
            size = {0x02: 1, 0x03: 2, 0x04: 4}[op]
            delta = int.from_bytes(code[pos:pos + size], "little")
            pos += size
            loc += delta * ca
            if loc > target:
                break
        elif op == 0x01:
            loc, pos = read_encoded(code, pos, cie.fde_enc, 0)
            if loc > target:
                break
        elif op in (0x05, 0x11, 0x14, 0x15, 0x2F):
            reg, pos = uleb(code, pos)
            if op in (0x11, 0x15):
                off, pos = sleb(code, pos)
            else:
                off, pos = uleb(code, pos)
            off = -off * da if op == 0x2F else off * da
            rule.regs[reg] = (VAL_OFFSET if op in (0x14, 0x15) else OFFSET, off)
        elif op == 0x06:
            reg, pos = uleb(code, pos)
            _restore(rule, initial, reg)
        elif op == 0x07:
            reg, pos = uleb(code, pos)
            rule.regs[reg] = (UNDEFINED, 0)
        elif op == 0x08:
            reg, pos = uleb(code, pos)
            rule.regs[reg] = (SAME, 0)
        elif op == 0x09:
            reg, pos = uleb(code, pos)
            reg2, pos = uleb(code, pos)
            rule.regs[reg] = (REGISTER, reg2)
        elif op == 0x0A:
            stack.append(rule.copy())
        elif op == 0x0B:
            if stack:
                saved = stack.pop()
                rule.cfa_reg, rule.cfa_offset, rule.cfa_expr = saved.cfa_reg, saved.cfa_offset, saved.cfa_expr
                rule.regs = saved.regs
        elif op == 0x0C:
            rule.cfa_reg, pos = uleb(code, pos)
            rule.cfa_offset, pos = uleb(code, pos)
            rule.cfa_expr = None
        elif op == 0x12:
            rule.cfa_reg, pos = uleb(code, pos)
            off, pos = sleb(code, pos)
            rule.cfa_offset, rule.cfa_expr = off * da, None
        elif op == 0x0D:
            rule.cfa_reg, pos = uleb(code, pos)
            rule.cfa_expr = None
        elif op == 0x0E:
            rule.cfa_offset, pos = uleb(code, pos)
        elif op == 0x13:
            off, pos = sleb(code, pos)
            rule.cfa_offset = off * da
        elif op == 0x0F:
            n, pos = uleb(code, pos)
            rule.cfa_expr = code[pos:pos + n]
            pos += n
        elif op in (0x10, 0x16):
            reg, pos = uleb(code, pos)
            n, pos = uleb(code, pos)
            rule.regs[reg] = (EXPRESSION if op == 0x10 else VAL_EXPRESSION, code[pos:pos + n])
            pos += n
        elif op == 0x2E:
            _, pos = uleb(code, pos)   # DW_CFA_GNU_args_size: nothing to do for unwinding
        else:
            raise CfiError(f"CFA instruction {op:#x}")
    return rule.copy()


def _restore(rule: Rule, initial: Rule | None, reg: int) -> None:
    if initial is not None and reg in initial.regs:
        rule.regs[reg] = initial.regs[reg]
    else:
        rule.regs.pop(reg, None)


def evaluate(expr: bytes, reg: Callable[[int], int | None], read: Callable[[int], int | None],
             push: int | None = None) -> int | None:
    """A DWARF expression as .eh_frame uses them; None when it needs a register or memory that is
    not known (or an operation this evaluator does not do)."""
    st: list[int] = [] if push is None else [push]
    pos, end = 0, len(expr)
    try:
        while pos < end:
            op = expr[pos]
            pos += 1
            if 0x30 <= op <= 0x4F:
                st.append(op - 0x30)
            elif 0x70 <= op <= 0x8F or op == 0x92:
                if op == 0x92:
                    r, pos = uleb(expr, pos)
                else:
                    r = op - 0x70
                off, pos = sleb(expr, pos)
                v = reg(r)
                if v is None:
                    return None
                st.append((v + off) & MASK64)
            elif 0x50 <= op <= 0x6F:
                v = reg(op - 0x50)
                if v is None:
                    return None
                st.append(v)
            elif op == 0x06:
                v = read(st.pop())
                if v is None:
                    return None
                st.append(v)
            elif op in (0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F):
                size = {0x08: 1, 0x09: 1, 0x0A: 2, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8, 0x0F: 8}[op]
                st.append(int.from_bytes(expr[pos:pos + size], "little", signed=bool(op & 1)) & MASK64)
                pos += size
            elif op == 0x10:
                v, pos = uleb(expr, pos)
                st.append(v)
            elif op == 0x11:
                v, pos = sleb(expr, pos)
                st.append(v & MASK64)
            elif op == 0x12:
                st.append(st[-1])
            elif op == 0x13:
                st.pop()
            elif op == 0x14:
                st.append(st[-2])
            elif op == 0x16:
                st[-1], st[-2] = st[-2], st[-1]
            elif op == 0x23:
                v, pos = uleb(expr, pos)
                st.append((st.pop() + v) & MASK64)
            elif op in _BINARY:
                b, a = st.pop(), st.pop()
                st.append(_BINARY[op](a, b) & MASK64)
            elif op == 0x96:
                continue
            else:
                return None
    except IndexError:
        return None
    return st[-1] if st else None


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


_BINARY: dict[int, Callable[[int, int], int]] = {
    0x1A: lambda a, b: a & b,
    0x1C: lambda a, b: a - b,
    0x1E: lambda a, b: a * b,
    0x21: lambda a, b: a | b,
    0x22: lambda a, b: a + b,
    0x24: lambda a, b: a << b if b < 64 else 0,
    0x25: lambda a, b: a >> b,
    0x27: lambda a, b: a ^ b,
    0x29: lambda a, b: int(a == b),
    0x2A: lambda a, b: int(_signed(a) >= _signed(b)),
    0x2B: lambda a, b: int(_signed(a) > _signed(b)),
    0x2C: lambda a, b: int(_signed(a) <= _signed(b)),
    0x2D: lambda a, b: int(_signed(a) < _signed(b)),
    0x2E: lambda a, b: int(a != b),
}
