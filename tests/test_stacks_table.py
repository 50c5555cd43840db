"""The per-stack table without a kernel: exact address ranges through partial unmaps, brk and
mremap, and modules that cannot be read."""

from __future__ import annotations

from pathlib import Path

from memwatch.ebpf import RawStack
from memwatch.ebpf.layouts import EV_BRK, EV_MMAP, EV_MREMAP, EV_MUNMAP, EV_STACK_CALL, EV_STACK_EXEC
from memwatch.stacks.table import ProcessStacks, RangeMap
from memwatch.stacks.unwind import ElfCache, ProcessModules

K = 1024


def call(kind: int, addr: int, length: int = 0, new_addr: int = 0, new_len: int = 0, flags: int = 0,
         rec: int = EV_STACK_CALL) -> RawStack:
    return RawStack(rec, kind, 1, 1, 0, addr, length, new_addr, new_len, flags)


def table(tmp_path: Path) -> ProcessStacks:
    (tmp_path / "1").mkdir(exist_ok=True)
    (tmp_path / "1" / "maps").write_text("")
    return ProcessStacks(1, ProcessModules(1, str(tmp_path), ElfCache()))


def outstanding(t: ProcessStacks) -> dict[str, int]:
    return {s.kind: s.outstanding_bytes for s in t.stacks()}


def test_range_map_cuts_exactly() -> None:
    r = RangeMap()
    a, b = ("mmap", (), False), ("brk", (), False)
    r.add(0, 100, a)
    r.add(100, 150, b)
    assert r.cut(40, 60) == [(40, 60, a)]             # a hole
    assert r.cut(90, 120) == [(90, 100, a), (100, 120, b)]   # across two
    assert r.cut(0, 200) == [(0, 40, a), (60, 90, a), (120, 150, b)]
    assert len(r) == 0


def test_partial_unmaps_credit_the_stack_that_mapped(tmp_path: Path) -> None:
    t = table(tmp_path)
    t.apply(call(EV_MMAP, 0x10000, 64 * K))
    t.apply(call(EV_MUNMAP, 0x10000 + 16 * K, 8 * K))      # a hole: the kernel cannot resolve it, this can
    t.apply(call(EV_MUNMAP, 0x10000 + 56 * K, 8 * K))      # the tail
    assert outstanding(t)["mmap"] == 48 * K
    t.apply(call(EV_MUNMAP, 0x10000, 64 * K))              # the rest, over the holes
    assert outstanding(t)["mmap"] == 0
    (unmap,) = [s for s in t.stacks() if s.kind == "munmap"]
    assert (unmap.calls, unmap.unmapped_bytes, unmap.bytes) == (3, 80 * K, 0)
    assert all(s.frames == () for s in t.stacks()), "no stack captured: one entry per kind"


def test_brk_and_mremap(tmp_path: Path) -> None:
    t = table(tmp_path)
    t.apply(call(EV_BRK, 0x1000, new_addr=0x1000 + 64 * K))
    t.apply(call(EV_BRK, 0x1000 + 64 * K, new_addr=0x1000 + 16 * K))
    assert outstanding(t)["brk"] == 16 * K
    t.apply(call(EV_MMAP, 0x100000, 32 * K))
    # grow and move: the 32 KiB stay the mmap's, the 32 KiB added are the mremap's
    t.apply(call(EV_MREMAP, 0x100000, 32 * K, 0x200000, 64 * K))
    assert outstanding(t) == {"brk": 16 * K, "mmap": 32 * K, "mremap": 32 * K}
    # shrink in place to 16 KiB: the tail goes, and it was the mmap's and the mremap's
    t.apply(call(EV_MREMAP, 0x200000, 64 * K, 0x200000, 16 * K))
    assert outstanding(t) == {"brk": 16 * K, "mmap": 16 * K, "mremap": 0}
    t.apply(call(0, 0, rec=EV_STACK_EXEC))
    assert set(outstanding(t).values()) == {0}, "an exec ends the old address space"


def test_a_module_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "maps").write_text(
        "7f0000000000-7f0000010000 r-xp 00000000 fe:00 1234 /opt/secret/libhidden.so\n")
    mods = ProcessModules(7, str(tmp_path), ElfCache())
    m = mods.find(0x7F0000000100)
    assert m is not None and m.elf is None and m.path == "/opt/secret/libhidden.so"
    assert "/opt/secret/libhidden.so" in mods.unreadable
