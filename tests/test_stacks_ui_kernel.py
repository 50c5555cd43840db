"""The process screen's tabs on a real live source and the real kernel: the allocation sites tab
makes exactly its process a stack target while it is open and removes it when left (the kernel's
map empty, no more records), and the memory map tab shows what the process mapped since it was
opened, with the thread that mapped it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import Workload, bpf_unavailable
from memwatch.ebpf import TracerConfig, parse_stack_record
from memwatch.sources.base import StacksUnavailable
from memwatch.sources.live import LiveSource
from memwatch.ui.app import MemwatchApp
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.widgets import memory_map
from memwatch.ui.widgets.alloc_sites import AllocationSites
from memwatch.ui.widgets.memory_map import MemoryMapView
from test_ui_support import until

pytestmark = pytest.mark.bpf
K = 1024


async def test_the_sites_tab_captures_its_process_only_while_open(stacks_workload: Workload) -> None:
    w = stacks_workload
    w("pid")
    source = LiveSource(0.5, tracer_config=TracerConfig(stacks=True, stacks_per_sec=0), groups=False)
    app = MemwatchApp(source)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        tracer = source.tracer
        if tracer is None:
            bpf_unavailable(source.bpf_reason or "no tracer")
        assert tracer is not None
        key = source.store.key_of(w.pid)
        assert key is not None
        await app.push_screen(DetailScreen(key))
        await pilot.pause()
        assert tracer.stack_target_pids() == [], "a target before the tab was opened"
        await pilot.press("a")
        await until(pilot, lambda: tracer.stack_target_pids() == [w.pid], "the kernel targets the process")
        assert list(source.stack_targets) == [w.pid]
        assert w(f"keep 3 {64 * K}") == 3
        sites = app.screen.query_one(AllocationSites)

        def kept() -> bool:
            r = sites.report
            return r is not None and any(s.outstanding_bytes == 3 * 64 * K and "keep_outer" in
                                         [f.symbol for f in s.frames] for s in r.stacks)

        await until(pilot, kept, "the three kept mappings under keep_outer in the tab")
        await pilot.press("f")
        await until(pilot, lambda: not source.stack_targets, "the capture stopped on leaving the tab")
        assert tracer.stack_target_pids() == [], "the kernel map still has a target"
        assert tracer.stack_target_counts(w.pid) is None
        assert w(f"keep 3 {64 * K}") == 3
        late = [r for r in map(parse_stack_record, tracer.stacks.drain_raw(1 << 16)) if r is not None]
        assert [r for r in late if r.tgid == w.pid] == [], "stack records after the tab was left"
        assert await source.stack_report(w.pid) is None
        # back to the tab: a fresh capture, which the screen's closing ends too
        await pilot.press("a")
        await until(pilot, lambda: tracer.stack_target_pids() == [w.pid], "targeted again")
        await pilot.press("escape")
        await until(pilot, lambda: tracer.stack_target_pids() == [], "the capture stopped with the screen")


async def test_the_map_tab_shows_what_was_mapped_since_and_by_whom(workload: Workload,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_map, "MAP_REFRESH_S", 0.2)
    workload("pid")
    source = LiveSource(0.5, groups=False)
    app = MemwatchApp(source)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        if source.tracer is None:
            bpf_unavailable(source.bpf_reason or "no tracer")
        key = source.store.key_of(workload.pid)
        assert key is not None
        await app.push_screen(DetailScreen(key, tab="map"))
        view = app.screen.query_one(MemoryMapView)
        await until(pilot, lambda: view.memory_map is not None, "the first read")
        addr = workload(f"mmap {1024 * K}")

        def traced() -> bool:
            mm = view.memory_map
            return mm is not None and any(m.start == addr and m.mapped_by == workload.pid
                                          and m.mapped_at is not None for m in mm.mappings)

        await until(pilot, traced, "the new mapping, with its thread")
        assert "process has exited" not in view.state
        workload.close()
        await until(pilot, lambda: "process has exited" in view.state, "the exit said")


async def test_start_stacks_refuses_what_it_cannot_capture(stacks_workload: Workload) -> None:
    """No tracer: the sentence the tab shows. A pid that now names another process (the start
    time differs) or none: ProcessLookupError, and nothing left in the kernel's map."""
    w = stacks_workload
    w("pid")
    off = LiveSource(0.5, use_bpf=False, groups=False)
    await off.open()
    try:
        key = off.store.key_of(w.pid)
        assert key is not None
        with pytest.raises(StacksUnavailable, match="eBPF off: allocation stacks need the tracer"):
            await off.start_stacks(key)
    finally:
        await off.close()
    source = LiveSource(0.5, tracer_config=TracerConfig(stacks=True), groups=False)
    await source.open()
    try:
        if source.tracer is None:
            bpf_unavailable(source.bpf_reason or "no tracer")
        assert source.tracer is not None
        key = source.store.key_of(w.pid)
        assert key is not None
        with pytest.raises(ProcessLookupError):
            await source.start_stacks((w.pid, key[1] + 1))   # the store knows it by another start time
        source.store.key_of = lambda pid: (w.pid, key[1] + 1)  # type: ignore[method-assign]
        with pytest.raises(ProcessLookupError):               # the kernel's start time settles it
            await source.start_stacks((w.pid, key[1] + 1))
        assert source.tracer.stack_target_pids() == [] and not source.stack_targets
        assert await source.stack_report(w.pid) is None
        await source.stop_stacks(w.pid)   # not captured: nothing to do, no error
    finally:
        await source.close()
