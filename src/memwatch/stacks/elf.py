"""A focused ELF reader: what symbolizing and unwinding a call stack need, and nothing else.

Program headers (to turn an address in a process into an address in its module), the build id
(the cache key), the function symbols of ``.symtab`` or, in stripped files, ``.dynsym``, and the
``.eh_frame_hdr`` lookup table that finds the call-frame information for an address with a binary
search. The file is memory-mapped and read with :mod:`struct` on demand: opening libc costs
a fraction of a millisecond, where a general ELF/DWARF library parses every CFI entry up front
(bench/bench_stacks.py measures both).
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from array import array
from dataclasses import dataclass

from memwatch.stacks.cfi import CfiReader, read_encoded

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
PT_LOAD, PT_NOTE, PT_GNU_EH_FRAME = 1, 4, 0x6474E550
SHT_SYMTAB, SHT_DYNSYM, SHT_NOBITS = 2, 11, 8
STT_FUNC, STT_GNU_IFUNC = 2, 10
NT_GNU_BUILD_ID = 3


class ElfError(ValueError):
    """Not an ELF file this reader understands (only 64-bit little-endian: x86-64 and arm64)."""


@dataclass(frozen=True, slots=True)
class Segment:
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class ElfFile:
    """One ELF file, memory-mapped; symbols and CFI are read the first time they are asked for."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size < _EHDR.size:
                raise ElfError(f"{path} is too small for an ELF file")
            self._map = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        self.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        data = self._map
        (ident, self.type, self.machine, _, self.entry, phoff, shoff, _, _, phentsize, phnum, shentsize,
         shnum, shstrndx) = _EHDR.unpack_from(data, 0)
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise ElfError(f"{path} is not a 64-bit little-endian ELF file")
        self.segments = [Segment(v, o, fs, ms, fl) for t, fl, o, v, _, fs, ms, _ in
                         (_PHDR.unpack_from(data, phoff + i * phentsize) for i in range(phnum)) if t == PT_LOAD]
        self._eh_hdr_vaddr: int | None = None
        for i in range(phnum):
            t, _, _, vaddr, _, _, _, _ = _PHDR.unpack_from(data, phoff + i * phentsize)
            if t == PT_GNU_EH_FRAME:
                self._eh_hdr_vaddr = vaddr
        self.sections: dict[str, Section] = {}
        if shoff and shnum and shoff + shnum * shentsize <= len(data):
            raw = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
            names = raw[shstrndx][4] if shstrndx < shnum else 0
            for name_off, typ, _, addr, off, size, link, _, _, entsize in raw:
                name = self._cstr(names + name_off) if names else ""
                self.sections.setdefault(name, Section(name, typ, addr, off, size, link, entsize))
            self._section_list = raw
        else:
            self._section_list = []
        self.build_id = self._build_id()
        self._symbols: tuple[array[int], array[int], list[str]] | None = None
        self._cfi: CfiReader | bool | None = False

    def close(self) -> None:
        self._map.close()

    def _cstr(self, off: int) -> str:
        end = self._map.find(b"\0", off)
        return self._map[off:end].decode("utf-8", "replace")

    def _build_id(self) -> str | None:
        note = self.sections.get(".note.gnu.build-id")
        if note is None:
            return None
        namesz, descsz, typ = struct.unpack_from("<III", self._map, note.offset)
        if typ != NT_GNU_BUILD_ID:
            return None
        start = note.offset + 12 + ((namesz + 3) & ~3)
        return self._map[start:start + descsz].hex()

    def vaddr_to_offset(self, vaddr: int) -> int | None:
        """The file offset holding a virtual address; None outside the file's loaded bytes."""
        for s in self.segments:
            if s.vaddr <= vaddr < s.vaddr + s.filesz:
                return vaddr - s.vaddr + s.offset
        return None

    def offset_to_vaddr(self, offset: int) -> int | None:
        """The virtual address that a file offset is loaded at; None when no segment loads it."""
        for s in self.segments:
            if s.offset <= offset < s.offset + max(s.filesz, 1):
                return offset - s.offset + s.vaddr
        return None

    # -- symbols ---------------------------------------------------------------------------------

    @property
    def stripped(self) -> bool:
        """No .symtab: only exported functions have names (.dynsym)."""
        return ".symtab" not in self.sections

    def _load_symbols(self) -> tuple[array[int], array[int], list[str]]:
        """Function symbols sorted by address: .symtab when there is one (all functions), else
        .dynsym (the exported ones). Parsed in one pass with struct.iter_unpack."""
        table = self.sections.get(".symtab") or self.sections.get(".dynsym")
        entries: list[tuple[int, int, int]] = []
        if table is not None and table.type in (SHT_SYMTAB, SHT_DYNSYM) and table.link < len(self._section_list):
            strtab_off = self._section_list[table.link][4]
            end = table.offset + table.size - table.size % _SYM.size
            for name_off, info, _, shndx, value, size in _SYM.iter_unpack(self._map[table.offset:end]):
                if value and shndx and (info & 0xF) in (STT_FUNC, STT_GNU_IFUNC):
                    entries.append((value, size, name_off))
        entries.sort()
        starts, ends, names = array("Q"), array("Q"), []
        mem = self._map
        for value, size, name_off in entries:
            if starts and starts[-1] == value:
                continue   # aliases: keep the first name at an address
            off = strtab_off + name_off
            names.append(mem[off:mem.find(b"\0", off)].decode("utf-8", "replace"))
            starts.append(value)
            ends.append(value + size)
        return starts, ends, names

    def symbol_at(self, vaddr: int) -> str | None:
        """The function containing ``vaddr``; None outside every known function."""
        if self._symbols is None:
            self._symbols = self._load_symbols()
        starts, ends, names = self._symbols
        i = bisect.bisect_right(starts, vaddr) - 1
        if i < 0 or (vaddr >= ends[i] and ends[i] != starts[i]):
            return None
        if ends[i] == starts[i] and i + 1 < len(starts) and vaddr >= starts[i + 1]:
            return None
        return names[i]

    # -- call-frame information ------------------------------------------------------------------

    @property
    def cfi(self) -> CfiReader | None:
        """The .eh_frame reader, or None when the file has no usable .eh_frame."""
        if self._cfi is False:
            self._cfi = self._open_cfi()
        return self._cfi if isinstance(self._cfi, CfiReader) else None

    def _open_cfi(self) -> CfiReader | None:
        eh = self.sections.get(".eh_frame")
        hdr = self.sections.get(".eh_frame_hdr")
        hdr_vaddr = hdr.addr if hdr is not None else self._eh_hdr_vaddr
        if eh is not None and eh.type != SHT_NOBITS:
            eh_off, eh_vaddr, eh_size = eh.offset, eh.addr, eh.size
        elif hdr_vaddr is not None:
            # sections stripped: the header says where .eh_frame is (its size is then unknown)
            hoff = self.vaddr_to_offset(hdr_vaddr)
            if hoff is None:
                return None
            eh_vaddr, _ = read_encoded(self._map, hoff + 4, self._map[hoff + 1], hdr_vaddr + 4, hdr_vaddr)
            off = self.vaddr_to_offset(eh_vaddr)
            if off is None:
                return None
            eh_off, eh_size = off, len(self._map) - off
        else:
            return None
        table = None
        if hdr_vaddr is not None:
            hoff = self.vaddr_to_offset(hdr_vaddr)
            if hoff is not None:
                table = _hdr_table(self._map, hoff, hdr_vaddr)
        return CfiReader(self._map, eh_off, eh_vaddr, eh_size, table)


def _hdr_table(data: mmap.mmap, off: int, vaddr: int) -> tuple[array[int], array[int]] | None:
    """.eh_frame_hdr's sorted (initial location, FDE address) table, as two arrays of absolute
    virtual addresses; None when its encoding is not the usual datarel sdata4."""
    version, _, count_enc, table_enc = data[off:off + 4]
    if version != 1 or table_enc != 0x3B:
        return None
    pos = off + 4
    _, pos = _skip_encoded(data, pos, data[off + 1])
    count, pos = read_encoded(data, pos, count_enc, vaddr + (pos - off), vaddr)
    raw = array("i")
    raw.frombytes(data[pos:pos + count * 8])
    locs = array("q", (v + vaddr for v in raw[0::2]))
    fdes = array("q", (v + vaddr for v in raw[1::2]))
    return locs, fdes


def _skip_encoded(data: mmap.mmap, pos: int, enc: int) -> tuple[int, int]:
    size = {0x00: 8, 0x02: 2, 0x03: 4, 0x04: 8, 0x0A: 2, 0x0B: 4, 0x0C: 8}.get(enc & 0x0F, 4)
    return 0, pos + size
