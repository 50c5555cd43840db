"""The live source on the real kernel: counts merged by (pid, start), events, exits, storms."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Workload, bpf_unavailable, loaded_programs
from memwatch.ebpf import Tracer, TracerConfig
from memwatch.ebpf.layouts import LIVE_SLOTS
from memwatch.model import EventKind, Snapshot
from memwatch.sources.base import SnapshotSource
from memwatch.sources.live import LiveSource
from memwatch.store import Store

K = 1024
NO_BUDGET = 10**9


def attached(snap: Snapshot) -> None:
    if not snap.tracer.enabled:
        bpf_unavailable(snap.tracer.reason or "eBPF is off")


@pytest.mark.bpf
async def test_counts_events_and_exits_reach_the_snapshot(workload: Workload) -> None:
    pid = workload("pid")
    # no global budget: the machine's other processes could spend it (tested on its own below)
    source = LiveSource(0.5, tracer_config=TracerConfig(events_per_sec=0), events_budget=NO_BUDGET)
    assert isinstance(source, SnapshotSource)
    snap = await source.open()
    try:
        attached(snap)
        assert snap.tracer.mode in ("raw", "tracepoint")
        a = workload(f"mmap {256 * K}")
        child = workload(f"fork 2 {64 * K} 7")
        snap = await source.next()
        (view,) = [v for v in snap.processes if v.pid == pid]
        assert view.kernel is not None
        assert (view.kernel.mmap_count, view.kernel.mmap_bytes, view.kernel.outstanding_bytes) == (1, 256 * K, 256 * K)
        mm = [e for e in view.recent_events if e.kind is EventKind.MMAP]
        assert [(e.addr, e.length) for e in mm] == [(a, 256 * K)]
        exits = [e for e in snap.events if e.kind is EventKind.EXIT and e.pid == child]
        assert len(exits) == 1
        assert (exits[0].exit_code, exits[0].signal) == (7, None) and exits[0].counts is not None
        assert exits[0].counts.mmap_count == 2
        assert exits[0].name == "workload"
        assert all(v.pid != child for v in snap.processes)
        # its live-mapping entries were swept after the exit was seen
        assert source.tracer is not None and child not in source.tracer.map_tgids("active_allocs")
        rollup = await source.rollup(view.key)
        assert rollup is not None and rollup.pss_kb > 0
        assert await source.rollup((pid, view.sample.start_ticks + 1)) is None  # not that process
    finally:
        await source.close()
    assert source.tracer is None
    await source.close()


@pytest.mark.bpf
async def test_one_iterator_pass_a_tick(workload: Workload) -> None:
    """The process table, the counters and the sweep of exited processes' live-mapping entries all
    come from one pass of the kernel's task iterator a tick."""
    source = LiveSource(0.5, tracer_config=TracerConfig(events_per_sec=0), events_budget=NO_BUDGET)
    snap = await source.open()
    tracer, create, passes = source.tracer, None, []
    try:
        attached(snap)
        assert tracer is not None and tracer._lib is not None
        create = tracer._lib.bpf_iter_create
        tracer._lib.bpf_iter_create = lambda fd: passes.append(fd) or create(fd)
        workload("pid")
        workload(f"mmap {256 * K}")
        child = workload(f"fork {LIVE_SLOTS + 3} {8 * K} 0")   # 3 mappings pushed out to active_allocs
        snap = await source.next()
        assert len(passes) == 1
        (view,) = [v for v in snap.processes if v.pid == workload.pid]
        assert view.kernel is not None and (view.kernel.mmap_count, view.kernel.mmap_bytes) == (1, 256 * K)
        assert any(e.kind is EventKind.EXIT and e.pid == child for e in snap.events)
        assert tracer.map_tgids("active_allocs").count(child) == 3, "listed for the sweep, not swept yet"
        await source.next()
        assert len(passes) == 2
        assert child not in tracer.map_tgids("active_allocs"), "swept by the next tick's pass"
    finally:
        if tracer is not None and tracer._lib is not None and create is not None:
            tracer._lib.bpf_iter_create = create
        await source.close()


@pytest.mark.bpf
async def test_event_storm_is_bounded_and_losses_are_visible(workload: Workload) -> None:
    # a tiny ring, no per-process budget, a small drain budget: the consumer cannot keep up
    cfg = TracerConfig(ring_bytes=16 * K, events_per_sec=0, event_threshold=0)
    source = LiveSource(0.5, tracer_config=cfg, drain_budget=64, drain_every_s=0.05, events_budget=NO_BUDGET)
    snap = await source.open()
    try:
        attached(snap)
        await asyncio.to_thread(workload, f"threads 4 2000 {16 * K}")
        snap = await source.next()
        assert snap.tracer.events_dropped > 0, "the storm overflowed the ring and it was counted"
        (view,) = [v for v in snap.processes if v.pid == workload.pid]
        assert view.kernel is not None and view.kernel.mmap_count == 8000  # counts stay exact
        # every event the kernel submitted reaches the store; the rest were counted as dropped
        assert source.tracer is not None
        submitted = source.tracer.counters().events
        while source.drain_once():
            pass
        assert submitted <= source.store.events_seen <= source.tracer.counters().events
    finally:
        await source.close()


def test_the_store_given_is_the_one_used() -> None:
    """An empty Store is falsy (it has a length): LiveSource must not swap it for a default one."""
    store = Store(recent_len=0)
    assert LiveSource(1.0, use_bpf=False, store=store).store is store


@pytest.mark.bpf
async def test_the_events_budget_pauses_the_kernel_before_parsing(workload: Workload) -> None:
    """Once a second's budget of call records is copied out of the ring, the kernel withholds the
    rest at once (not after the costly parse, which goes a chunk at a time); counts stay exact."""
    source = LiveSource(0.5, tracer_config=TracerConfig(events_per_sec=0), events_budget=300,
                        parse_chunk=64, drain_every_s=30)
    snap = await source.open()
    try:
        attached(snap)
        tracer = source.tracer
        assert tracer is not None
        pid = workload("pid")
        # the event loop is blocked meanwhile: the drainer cannot run before drain_once below
        assert workload(f"threads 1 500 {16 * K}") == 0                # 1000 call events
        assert source.drain_once() < 300, "a chunk parsed, not the whole budget"
        assert tracer.calls_paused, "the budget was spent: the kernel was told in the same pass"
        paused = tracer.counters().paused
        assert workload(f"threads 1 100 {16 * K}") == 0                # 200 more, withheld
        assert tracer.counters().paused - paused >= 200
        while source.drain_once():
            pass
        snap = await source.next()
        (view,) = [v for v in snap.processes if v.pid == pid]
        assert view.kernel is not None
        assert (view.kernel.mmap_count, view.kernel.munmap_count) == (600, 600)   # exact
        assert snap.tracer.events_withheld >= 200 + 1000 - 300
        await asyncio.sleep(1.1)
        source.drain_once()
        assert not tracer.calls_paused, "a new second, a new budget"
    finally:
        await source.close()


async def test_no_bpf_source_works_and_says_why() -> None:
    source = LiveSource(0.3, use_bpf=False)
    snap = await source.open()
    try:
        assert not snap.tracer.enabled and "--no-bpf" in (snap.tracer.reason or "")
        me = [v for v in snap.processes if v.pid == os.getpid()]
        assert len(me) == 1 and me[0].kernel is None and me[0].sample.rss_kb > 0
        source.set_interval(0.25)
        t0 = time.monotonic()
        snap2 = await source.next()
        assert snap2.timestamp > snap.timestamp
        assert time.monotonic() - t0 < 2
    finally:
        await source.close()


def test_unprivileged_live_source_degrades() -> None:
    if os.geteuid() != 0:
        pytest.skip("run as root to test dropping privileges")
    code = ("import asyncio\nfrom memwatch.sources.live import LiveSource\n"
            "async def m():\n s=LiveSource(0.3); snap=await s.open(); await s.close()\n"
            " print(snap.tracer.enabled, snap.tracer.reason)\nasyncio.run(m())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                          sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("False eBPF is off: memwatch needs root")


@pytest.mark.bpf
async def test_cancelled_open_leaves_no_probes_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    import memwatch.sources.live as live

    if os.geteuid() != 0:
        bpf_unavailable("needs root")
    made: list[Tracer] = []

    class Recorded(Tracer):
        def open(self) -> Tracer:
            made.append(self)
            return super().open()

    monkeypatch.setattr(live, "Tracer", Recorded)
    mounts_before = Path("/proc/self/mounts").read_text()
    source = LiveSource(1.0)
    task = asyncio.ensure_future(source.open())
    await asyncio.sleep(0.02)  # the tracer is loading in its thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await source.close()  # waits for the load that goes on in its thread, then detaches it
    assert len(made) == 1
    assert made[0].program_ids, "the load went on in its thread and attached"
    assert loaded_programs(made[0].program_ids) == set(), "and was detached by close()"
    assert Path("/proc/self/mounts").read_text() == mounts_before, "no mount was left behind"


def _confined_hog(tmp_name: str) -> tuple[subprocess.Popen[bytes], str]:
    """A process in a memory cgroup too small for what it allocates: the OOM killer will pick it."""
    v2 = "/sys/fs/cgroup/cgroup.controllers"
    if os.path.exists(v2) and "memory" in Path(v2).read_text():
        group, limit = f"/sys/fs/cgroup/{tmp_name}", "memory.max"
    elif os.path.isdir("/sys/fs/cgroup/memory"):
        group, limit = f"/sys/fs/cgroup/memory/{tmp_name}", "memory.limit_in_bytes"
    else:
        pytest.skip("no memory cgroup (v1 or v2) to confine an OOM test in")
    os.makedirs(group, exist_ok=True)
    with open(f"{group}/{limit}", "w") as f:
        f.write(str(96 << 20))
    script = f"echo $$ > {group}/cgroup.procs && exec {sys.executable} -c 'b = bytearray(512 << 20)'"
    return subprocess.Popen(["sh", "-c", script]), group


@pytest.mark.bpf
async def test_oom_kill_arrives_as_an_event() -> None:
    if os.geteuid() != 0:
        bpf_unavailable("needs root")
    source = LiveSource(0.5)
    snap = await source.open()
    try:
        attached(snap)
        hog, group = _confined_hog(f"memwatch-oom-test-{os.getpid()}")
        try:
            assert hog.wait(timeout=60) == -9, "the OOM killer should have killed the hog"
        finally:
            os.rmdir(group)
        for _ in range(10):
            snap = await source.next()
            ooms = [e for e in snap.events if e.kind is EventKind.OOM and e.pid == hog.pid]
            if ooms:
                break
        assert len(ooms) == 1
        assert ooms[0].name.startswith("python")
        assert ooms[0].rss_kb is not None and ooms[0].rss_kb > 32 << 10
        assert ooms[0].total_vm_kb is not None and ooms[0].total_vm_kb >= ooms[0].rss_kb
        exits = [e for e in snap.events if e.kind is EventKind.EXIT and e.pid == hog.pid]
        assert len(exits) == 1 and (exits[0].exit_code, exits[0].signal) == (None, "SIGKILL")
    finally:
        await source.close()


async def test_signals_reach_only_the_process_that_was_seen() -> None:
    import signal as sig

    from memwatch.procfs import read_process_sample

    child = subprocess.Popen(["sleep", "60"])
    try:
        sample = read_process_sample(child.pid)
        assert sample is not None
        source = LiveSource(1.0, use_bpf=False)
        await source.open()
        try:
            with pytest.raises(ProcessLookupError, match="another process"):
                await source.send_signal((child.pid, sample.start_ticks + 1), sig.SIGTERM)  # a reused pid
            assert child.poll() is None
            await source.send_signal(sample.key, sig.SIGTERM)
            assert child.wait(timeout=10) == -sig.SIGTERM
            with pytest.raises(ProcessLookupError):
                await source.send_signal(sample.key, sig.SIGTERM)
        finally:
            await source.close()
    finally:
        child.kill()
        child.wait()


async def test_pss_for_the_top_processes_when_asked() -> None:
    source = LiveSource(1.0, use_bpf=False, rollup_top=3)
    snap = await source.open()
    await source.close()
    with_rollup = [v for v in snap.processes if v.rollup is not None]
    biggest = snap.top(3, "rss")
    assert 1 <= len(with_rollup) <= 3
    assert {v.key for v in with_rollup} <= {v.key for v in biggest}
    assert all(v.rollup is not None and 0 < v.rollup.uss_kb <= v.rollup.pss_kb for v in with_rollup)


async def test_close_waits_for_a_tick_still_reading_in_its_thread() -> None:
    """A tick cancelled while its worker thread reads /proc goes on in that thread: close() must
    wait for it before closing the files it reads (it did not, and a scrape-time shutdown raised
    'dictionary changed size during iteration' from the reader, or read a closed descriptor)."""
    import threading

    source = LiveSource(0.3, use_bpf=False)
    await source.open()
    reader = source._reader
    order: list[str] = []
    reading, release = threading.Event(), threading.Event()
    real_read, real_close = reader.read_processes, reader.close

    def slow_read() -> list:  # type: ignore[type-arg]
        reading.set()
        release.wait(10)
        out = real_read()
        order.append("read")
        return out

    def close() -> None:
        order.append("close")
        real_close()

    reader.read_processes = slow_read  # type: ignore[method-assign]
    reader.close = close  # type: ignore[method-assign]
    tick = asyncio.ensure_future(source.next())
    await asyncio.to_thread(reading.wait, 10)
    tick.cancel()
    closing = asyncio.ensure_future(source.close())
    await asyncio.sleep(0.2)
    assert not closing.done(), "close() waits for the reading thread"
    release.set()
    await asyncio.wait_for(closing, 10)
    assert order == ["read", "close"]


def _held_stats_fds() -> int:
    """bpf-stats file descriptors this process holds (BPF_ENABLE_STATS)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-stats":
                count += 1
        except OSError:
            continue
    return count


@pytest.mark.bpf
async def test_own_cost_is_measured_now_and_then_and_the_timing_ends(workload: Workload) -> None:
    """The kernel times memwatch's programs (BPF_ENABLE_STATS) over one interval in ten, not all
    the time (the timing itself costs): the cost per traced call and its share of a CPU, and
    memwatch's own user-space CPU, are in the snapshots; no timing is left on at the end."""
    from memwatch.sources.live import COST_EVERY

    held = _held_stats_fds()
    source = LiveSource(0.3, events_budget=NO_BUDGET)
    snap = await source.open()           # tick 1: the timing starts
    try:
        attached(snap)
        assert _held_stats_fds() == held + 1
        workload("pid")
        workload(f"threads 1 200 {16 * K}")
        snap = await source.next()       # tick 2: measured, and off again
        assert _held_stats_fds() == held
        t = snap.tracer
        assert t.ns_per_call is not None and 0 < t.ns_per_call < 1_000_000
        assert t.kernel_cpu_percent is not None and 0 < t.kernel_cpu_percent < 100
        assert snap.self_cpu_percent is not None and snap.self_cpu_percent >= 0
        for _ in range(COST_EVERY - 2):
            snap = await source.next()
            assert _held_stats_fds() == held, "off between measurements"
        assert snap.tracer.ns_per_call == t.ns_per_call, "the last measurement stands meanwhile"
        await source.next()              # tick COST_EVERY + 1: on again
        assert _held_stats_fds() == held + 1
    finally:
        await source.close()
    assert _held_stats_fds() == held, "the statistics end with memwatch (no sysctl left behind)"
