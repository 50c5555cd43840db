"""Real OOM kills in real memory cgroups with small limits: the kernel program names the victim's
cgroup (its id is the directory's inode), memwatch maps it to the path when the event arrives,
and the cgroup's view shows its kills beside the kernel's own counter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable

import pytest

from cgroupfs import CgroupFactory, RealCgroup, cgroups  # noqa: F401  (the fixture)
from conftest import bpf_unavailable
from memwatch.ebpf import RawOom, Tracer
from memwatch.model import EventKind, Snapshot
from memwatch.sources.live import LiveSource

pytestmark = pytest.mark.bpf

MiB = 1 << 20
HOG = [sys.executable, "-c", "b = bytearray(512 << 20)"]


def attached(snap: Snapshot) -> None:
    if not snap.tracer.enabled:
        bpf_unavailable(snap.tracer.reason or "eBPF is off")


def small(group: RealCgroup) -> RealCgroup:
    """A limit the hog cannot live within (and no swap to escape to)."""
    group.limit(64 * MiB)
    with contextlib.suppress(OSError):   # absent without swap accounting
        if group.hierarchy.version == 1:
            group.write("memory.memsw.limit_in_bytes", str(64 * MiB))
        else:
            group.write("memory.swap.max", "0")
    return group


def kernel_oom_kills(group: RealCgroup) -> int:
    """The kernel's count, read straight from its file."""
    name = "memory.oom_control" if group.hierarchy.version == 1 else "memory.events"
    return int(dict(line.split() for line in group.file(name).decode().splitlines())["oom_kill"])


def test_the_oom_event_carries_the_victims_cgroup_id(open_tracer: Callable[..., Tracer],
                                                     cgroups: CgroupFactory) -> None:  # noqa: F811
    tracer = open_tracer()
    group = small(cgroups.make(b"oom-raw"))
    hog = group.spawn(HOG)
    assert hog.wait(timeout=60) == -9, "the OOM killer should have killed the hog"
    ooms: list[RawOom] = []
    deadline = time.monotonic() + 5
    while not ooms and time.monotonic() < deadline:
        ooms = [e for e in tracer.life.drain() if isinstance(e, RawOom) and e.tgid == hog.pid]
        time.sleep(0.02)
    assert len(ooms) == 1
    assert ooms[0].cgroup_id == group.ino, "the memory cgroup's kernfs id is its directory's inode"


async def test_an_oom_kill_shows_in_its_cgroups_kills(cgroups: CgroupFactory) -> None:  # noqa: F811
    if os.geteuid() != 0:
        bpf_unavailable("needs root")
    group = small(cgroups.make(b"oom-kept"))
    keeper = group.spawn(["sleep", "120"])         # the container lives on after the kill
    source = LiveSource(0.5)
    snap = await source.open()
    try:
        attached(snap)
        hog = group.spawn(HOG)
        # the event loop stays free meanwhile: the drainer resolves the cgroup as the event arrives
        assert await asyncio.to_thread(hog.wait, 60) == -9
        for _ in range(10):
            snap = await source.next()
            ooms = [e for e in snap.events if e.kind is EventKind.OOM and e.pid == hog.pid]
            if ooms:
                break
        assert len(ooms) == 1
        assert (ooms[0].cgroup, ooms[0].cgroup_id) == (group.path, group.ino)
        assert group.path in ooms[0].describe()
        view = next(c for c in snap.cgroups if c.path == group.path)
        assert view.oom_events == 1, "the kill the tracer reported"
        assert view.memory is not None and view.memory.oom_kill == kernel_oom_kills(group) == 1, \
            "and the kernel's own counter"
        assert view.memory.max_kb == 64 * 1024
        root = next(c for c in snap.cgroups if c.path == "/")
        assert root.oom_events >= 1, "counted for its ancestors too"
        assert keeper.poll() is None
    finally:
        await source.close()
        keeper.kill()
        keeper.wait()


async def test_a_cgroup_removed_right_after_its_oom_kill_is_still_named(cgroups: CgroupFactory) -> None:  # noqa: F811
    """Made, OOM-killed and removed between two ticks: never read by memwatch, named all the same
    (the hierarchy is walked for its id when the event arrives), and not kept once gone."""
    if os.geteuid() != 0:
        bpf_unavailable("needs root")
    source = LiveSource(30.0)        # no tick while the cgroup lives
    snap = await source.open()
    try:
        attached(snap)
        group = small(cgroups.make(b"oom-gone"))
        ino = group.ino
        hog = group.spawn(HOG)
        assert await asyncio.to_thread(hog.wait, 60) == -9
        await asyncio.sleep(0.2)     # a runtime removes a dead container's cgroup a moment later
        group.remove()
        source.set_interval(0.3)
        snap = await source.next()
        ooms = [e for e in snap.new_events if e.kind is EventKind.OOM and e.pid == hog.pid]
        assert len(ooms) == 1 and (ooms[0].cgroup, ooms[0].cgroup_id) == (group.path, ino)
        assert group.path not in {c.path for c in snap.cgroups}, "gone: nothing to read"
        assert source.store.oom_kills(group.path) == 1
    finally:
        await source.close()
