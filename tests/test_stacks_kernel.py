"""Allocation stacks on the real kernel: exact records for the chosen process and none for the
others, and unwinding without frame pointers down to main, for C (stripped too) and Python.

The C workload (tests/stacks_workload.c) is built -O2 -fomit-frame-pointer, as Debian builds
everything: only the modules' .eh_frame can unwind it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Workload
from memwatch.ebpf import RawStack, Tracer, parse_stack_record
from memwatch.ebpf.layouts import EV_BRK, EV_MMAP, EV_MREMAP, EV_MUNMAP, EV_STACK, EV_STACK_CALL, STACK_REGS
from memwatch.stacks.elf import ElfFile
from memwatch.stacks.table import AllocationStack, StackCollector
from memwatch.stacks.unwind import ElfCache

pytestmark = pytest.mark.bpf

K = 1024


def records(tracer: Tracer, pid: int | None = None) -> list[RawStack]:
    out = [r for r in map(parse_stack_record, tracer.stacks.drain_raw(1 << 16)) if r is not None]
    return out if pid is None else [r for r in out if r.tgid == pid]


def names(stack: AllocationStack) -> list[str | None]:
    return [f.symbol for f in stack.frames]


def collect(tracer: Tracer, pid: int, run: Callable[[], object], cache: ElfCache | None = None,
            ) -> list[AllocationStack]:
    collector = StackCollector() if cache is None else StackCollector(cache=cache)
    collector.watch(pid)
    assert pid in tracer.set_stack_targets([pid])
    run()
    collector.add(records(tracer, pid))
    stacks = collector.stacks(pid)
    assert stacks is not None
    return stacks


def test_only_the_targets_send_records_and_every_call_is_exact(open_tracer: Callable[..., Tracer],
                                                               workload_bin: Path) -> None:
    target, other = Workload(workload_bin), Workload(workload_bin)
    try:
        target("pid")
        other("pid")
        tracer = open_tracer(stacks=True, stacks_per_sec=0)
        found = tracer.set_stack_targets([target.pid, 4_000_000])
        assert list(found) == [target.pid], "a pid with no process is not a target"
        records(tracer)
        a = target(f"mmap {64 * K}")
        assert target(f"munmap {a + 16 * K} {16 * K}") == 0
        cur = target("brk 0")
        assert target(f"brk {cur + 32 * K}") == cur + 32 * K
        b = target(f"mremap {a} {16 * K} {32 * K} 1")
        assert b > 0
        assert target("badmmap") == -22                  # failed calls send nothing
        o = other(f"mmap {64 * K}")
        assert other(f"munmap {o} {64 * K}") == 0

        got = records(tracer)
        assert {r.tgid for r in got} == {target.pid}, "no other process sends a record"
        calls = [(r.call, r.addr, r.len, r.new_addr, r.new_len) for r in got]
        assert calls == [(EV_MMAP, a, 64 * K, 0, 0), (EV_MUNMAP, a + 16 * K, 16 * K, 0, 0),
                         (EV_BRK, cur, 0, cur + 32 * K, 0), (EV_MREMAP, a, 16 * K, b, 32 * K)]
        for r in got:
            assert r.kind == EV_STACK and r.tid == target.pid
            assert len(r.regs) == STACK_REGS and r.regs[16] != 0, "the instruction pointer at the call"
            assert 0 < len(r.stack) <= 16384, "the stack window from the stack pointer up"
        counts = tracer.stack_target_counts(target.pid)
        assert counts is not None and (counts.captured, counts.throttled, counts.dropped) == (4, 0, 0)

        tracer.set_stack_targets([])
        target(f"mmap {64 * K}")
        assert records(tracer) == [], "a target removed stops at its next call"
        assert tracer.stack_target_counts(target.pid) is None
    finally:
        target.close()
        other.close()


def bpf_maps_rss_kib() -> int:
    """This process's RSS in mappings of BPF maps (ring buffers, mmapped arrays)."""
    total, bpf = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                bpf = "anon_inode:bpf" in line
            elif bpf and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_the_stack_ring_is_mapped_at_its_first_use_with_what_came_before(open_tracer: Callable[..., Tracer],
                                                                       workload: Workload) -> None:
    """The ring's pages count in memwatch's RSS once mapped (twice its size: the kernel maps them
    twice over), so an 8 MiB ring nobody reads must not be mapped; records the kernel wrote into
    it before are still read."""
    tracer = open_tracer(stacks=True, stacks_per_sec=0, stack_ring_bytes=8 << 20)
    unmapped = bpf_maps_rss_kib()
    workload("pid")
    assert workload.pid in tracer.set_stack_targets([workload.pid])
    a = workload(f"mmap {64 * K}")
    assert bpf_maps_rss_kib() == unmapped, "the stack ring was mapped before anyone read it"
    got = records(tracer, workload.pid)
    assert [(r.call, r.addr) for r in got] == [(EV_MMAP, a)]
    assert bpf_maps_rss_kib() >= unmapped + 2 * (8 << 10)


def test_over_the_budget_calls_come_without_their_stack(open_tracer: Callable[..., Tracer],
                                                        workload: Workload) -> None:
    tracer = open_tracer(stacks=True, stacks_per_sec=5)
    workload("pid")
    tracer.set_stack_targets([workload.pid])
    assert workload(f"threads 1 100 {16 * K}") == 0
    got = records(tracer, workload.pid)
    assert len(got) == 200, "every call arrives, so address ranges stay exact"
    with_stack = sum(1 for r in got if r.kind == EV_STACK)
    assert 5 <= with_stack <= 10, "at most two one-second windows of 5"
    assert all(r.kind == EV_STACK_CALL and r.stack == b"" for r in got if r.kind != EV_STACK)
    counts = tracer.stack_target_counts(workload.pid)
    assert counts is not None and (counts.captured, counts.throttled) == (with_stack, 200 - with_stack)


def test_stacks_unwind_without_frame_pointers_down_to_main(open_tracer: Callable[..., Tracer],
                                                           stacks_workload: Workload) -> None:
    tracer = open_tracer(stacks=True, stacks_per_sec=0)
    w = stacks_workload
    w("pid")
    stacks = collect(tracer, w.pid, lambda: (w(f"keep 3 {64 * K}"), w(f"churn 5 {32 * K}")))
    by_top = {(s.kind, tuple(names(s)[:4])): s for s in stacks}
    keep = by_top[("mmap", ("__mmap", "keep_inner", "keep_outer", "cmd_keep"))]
    churn = by_top[("mmap", ("__mmap", "churn_once", "cmd_churn", "main"))]
    unmap = by_top[("munmap", ("__munmap", "churn_once", "cmd_churn", "main"))]
    assert names(keep)[4] == "main"
    assert (keep.calls, keep.bytes, keep.outstanding_bytes) == (3, 3 * 64 * K, 3 * 64 * K)
    assert (churn.calls, churn.bytes, churn.outstanding_bytes) == (5, 5 * 32 * K, 0)
    assert (unmap.calls, unmap.unmapped_bytes, unmap.outstanding_bytes) == (5, 5 * 32 * K, 0)
    assert stacks[0] is keep, "ranked by outstanding bytes"
    for s in (keep, churn, unmap):
        assert not s.truncated, "unwound to the outermost frame (_start)"
        assert names(s)[-1] == "_start"
        assert s.frames[0].module is not None and "libc.so" in s.frames[0].module


def test_stripped_code_shows_as_module_and_offset(open_tracer: Callable[..., Tracer], stacks_bin: Path,
                                                  stripped_bin: Path) -> None:
    tracer = open_tracer(stacks=True, stacks_per_sec=0)
    w = Workload(stripped_bin)
    try:
        w("pid")
        # a cache of its own: one that read the unstripped build (same build id) would name them
        stacks = collect(tracer, w.pid, lambda: w(f"keep 2 {64 * K}"), ElfCache())
    finally:
        w.close()
    keep = next(s for s in stacks if s.outstanding_bytes == 2 * 64 * K)
    assert keep.calls == 2 and not keep.truncated, "unwound with .eh_frame, which strip keeps"
    ours = [f for f in keep.frames if f.module == str(stripped_bin)]
    assert [f.symbol for f in ours] == [None] * 5, "keep_inner .. main and _start have no name left"
    # the offsets are the module's own addresses: the unstripped build names them
    unstripped = ElfFile(str(stacks_bin))
    assert [unstripped.symbol_at(f.offset - 1) for f in ours] == [
        "keep_inner", "keep_outer", "cmd_keep", "main", "_start"]


PYTHON_PROG = ("import mmap, sys\nkeep = []\nfor line in sys.stdin:\n"
               "    keep.append(mmap.mmap(-1, int(line)))\n    print(len(keep), flush=True)\n")


def test_a_python_program_shows_its_native_stack(open_tracer: Callable[..., Tracer]) -> None:
    """mmap.mmap from Python, in Debian's stripped interpreter (or this one): libc, the mmap
    module, the interpreter's frame evaluation, down to the interpreter's start."""
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    proc = subprocess.Popen([python, "-c", PYTHON_PROG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    try:
        time.sleep(0.3)   # started: its imports are done before the target is set

        def run() -> None:
            stdin.write(f"{1 << 20}\n")
            stdin.flush()
            assert stdout.readline().strip() == "1"

        tracer = open_tracer(stacks=True, stacks_per_sec=0)
        stacks = collect(tracer, proc.pid, run)
    finally:
        stdin.close()
        proc.wait(timeout=10)
    big = next(s for s in stacks if s.kind == "mmap" and s.bytes == 1 << 20)
    assert big.outstanding_bytes == 1 << 20
    symbols = names(big)
    assert symbols[0] in ("__mmap", "mmap64", "mmap")
    assert "_PyEval_EvalFrameDefault" in symbols
    assert "Py_BytesMain" in symbols or "main" in symbols
    assert not big.truncated and symbols[-1] == "_start"
