"""Per-cgroup and per-user series of the exporter: on fixed frames, then `memwatch serve` on real
cgroups, one of them OOM-killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from cgroupfs import CgroupFactory, cgroups  # noqa: F401  (the fixture)
from conftest import REQUIRE_BPF
from frames import CONTAINER_CGROUP, SESSION_CGROUP, make_frames
from memwatch.cgroups import CgroupReading
from memwatch.exporter import ExporterApp, SnapshotCollector
from memwatch.exporter_http import HttpRequest
from memwatch.groups import build_cgroups, build_users
from memwatch.model import CgroupMemory
from test_exporter import (
    OPENMETRICS_ACCEPT,
    http_get,
    parse_openmetrics,
    parse_text,
    render_text,
    sample_of,
    samples,
    snapshot_of,
)

MEMWATCH = [sys.executable, "-m", "memwatch"]
MiB = 1 << 20


def cgroup_series(text: str, name: str) -> dict[str, float]:
    """path -> value of one per-cgroup sample name."""
    return {s.labels["path"]: s.value for s in samples(text) if s.name == name}


def test_top_cgroups_by_usage_plus_those_asked_for() -> None:
    frame = make_frames(5)[-1]
    text = render_text(frame, top_cgroups=2, cgroups=("/system.slice/ssh.service", "/no/such"))
    usage = cgroup_series(text, "memwatch_cgroup_memory_usage_bytes")
    assert usage == {"/": 5800 * MiB + 440 * MiB, SESSION_CGROUP: 1500 * MiB}   # the two largest
    assert set(cgroup_series(text, "memwatch_cgroup_processes")) == {"/", SESSION_CGROUP, "/system.slice/ssh.service"}
    assert cgroup_series(text, "memwatch_cgroup_kernel_oom_kills_total")[SESSION_CGROUP] == 1
    assert {s.value for s in samples(text) if s.name == "memwatch_exported_cgroups"} == {3}
    names = {s.labels["path"]: s.labels["name"] for s in samples(text) if s.name == "memwatch_cgroup_processes"}
    assert names[SESSION_CGROUP] == "session-2.scope"
    # a limit only where there is one; the container, asked for, has one
    limited = render_text(frame, top_cgroups=0, cgroups=(CONTAINER_CGROUP,))
    assert cgroup_series(limited, "memwatch_cgroup_memory_limit_bytes") == {CONTAINER_CGROUP: 512 * MiB}
    assert cgroup_series(render_text(frame, top_cgroups=0), "memwatch_cgroup_processes") == {}
    with pytest.raises(ValueError, match="--top-cgroups must be 0"):
        SnapshotCollector(top_cgroups=-1)


def test_oom_kills_by_cgroup_outlive_the_cgroup() -> None:
    collector = SnapshotCollector(top_cgroups=0)
    app = ExporterApp(collector)
    frames = make_frames(5)
    for frame in frames:
        collector.update(frame)
    gone = snapshot_of([sample_of(1)], timestamp=1_800_000_000.0)   # the session's cgroup is no more
    collector.update(gone)
    body = app.handle(HttpRequest("GET", "/metrics", "", {})).body.decode()
    assert cgroup_series(body, "memwatch_cgroup_oom_kills_total") == {SESSION_CGROUP: 1}
    assert {s.value for s in samples(body) if s.name == "memwatch_oom_kills_total"} == {1}


def test_odd_cgroup_paths_and_user_names_are_escaped_in_labels() -> None:
    odd = "/esc\x1b]0;owned\x07/caf\\xe9\nx"
    view = sample_of(7, "p")
    view = replace(view, sample=replace(view.sample, memory_cgroup=odd, user="bad\x1b[2J", uid=4242))
    snap = snapshot_of([view])
    snap = replace(snap, cgroups=build_cgroups(snap.processes, {odd: CgroupReading(9, CgroupMemory(current_kb=1))}),
                   users=build_users(snap.processes))
    collector = SnapshotCollector(top_cgroups=10)
    collector.update(snap)
    app = ExporterApp(collector)
    for accept, parse in (("", parse_text), (OPENMETRICS_ACCEPT, parse_openmetrics)):
        body = app.handle(HttpRequest("GET", "/metrics", "", {"accept": accept})).body.decode("utf-8")
        assert "\x1b" not in body and "\x07" not in body
        paths = {s.labels["path"] for f in parse(body) for s in f.samples if s.name == "memwatch_cgroup_processes"}
        assert "/esc\\x1b]0;owned\\x07/caf\\xe9\\nx" in paths
        users = {s.labels["user"] for f in parse(body) for s in f.samples if s.name == "memwatch_user_rss_bytes"}
        assert users == {"bad\\x1b[2J"}


def test_per_user_sums() -> None:
    text = render_text(make_frames(5)[-1])
    rss = {s.labels["user"]: s.value for s in samples(text) if s.name == "memwatch_user_rss_bytes"}
    count = {s.labels["uid"]: s.value for s in samples(text) if s.name == "memwatch_user_processes"}
    assert count["1000"] == 2 and rss["alice"] > 0 and "root" in rss


# ---------------------------------------------------------------------------------------------
# `memwatch serve` on real cgroups.


@contextlib.asynccontextmanager
async def serving(*args: str) -> AsyncIterator[int]:
    """`memwatch serve` on a free port, until the block ends (then SIGTERM, which must exit 0)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = await asyncio.create_subprocess_exec(*MEMWATCH, "serve", "--listen", "127.0.0.1:0", *args,
                                                env=env, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "serve ended before it listened"
            match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
            if match:
                break
        port = int(match.group(1))
        for _ in range(200):
            status, _, _ = await http_get(port, "/healthz")
            if status == 200:
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0


async def _metrics(port: int) -> str:
    status, _, body = await http_get(port, "/metrics")
    assert status == 200
    return body.decode()


async def test_serve_exports_an_asked_for_real_cgroup(cgroups: CgroupFactory) -> None:  # noqa: F811
    group = cgroups.make(b"served \x1b[1m")
    group.limit(128 * MiB)
    holder = group.hold(24 * MiB)
    try:
        async with serving("--no-bpf", "--interval", "0.5", "--top-cgroups", "0", "--cgroup", group.path) as port:
            text = await _metrics(port)
            assert "\x1b" not in text
            path = group.path.replace("\x1b", "\\x1b")
            assert cgroup_series(text, "memwatch_cgroup_memory_limit_bytes") == {path: 128 * MiB}
            assert cgroup_series(text, "memwatch_cgroup_processes") == {path: 1}
            usage = cgroup_series(text, "memwatch_cgroup_memory_usage_bytes")[path]
            assert usage >= 24 * MiB
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.bpf
async def test_serve_counts_a_real_oom_kill_by_its_cgroup(cgroups: CgroupFactory) -> None:  # noqa: F811
    if os.geteuid() != 0:
        pytest.fail("needs root") if REQUIRE_BPF else pytest.skip("needs root to trace")
    group = cgroups.make(b"served-oom")
    group.limit(64 * MiB)
    keeper = group.spawn(["sleep", "120"])
    try:
        async with serving("--interval", "0.5", "--top-cgroups", "0", "--cgroup", group.path) as port:
            text = await _metrics(port)
            assert 'memwatch_tracer_attached{mode="none"}' not in text, "eBPF is required here"
            hog = group.spawn([sys.executable, "-c", "b = bytearray(512 << 20)"])
            assert await asyncio.to_thread(hog.wait, 60) == -9
            for _ in range(40):
                text = await _metrics(port)
                if cgroup_series(text, "memwatch_cgroup_oom_kills_total"):
                    break
                await asyncio.sleep(0.25)
            for _ in range(20):   # the kernel's counter comes with the next tick's read
                if cgroup_series(text, "memwatch_cgroup_kernel_oom_kills_total").get(group.path):
                    break
                await asyncio.sleep(0.25)
                text = await _metrics(port)
            assert cgroup_series(text, "memwatch_cgroup_oom_kills_total") == {group.path: 1}
            assert cgroup_series(text, "memwatch_cgroup_kernel_oom_kills_total") == {group.path: 1}
            events = [s for s in samples(text) if s.name == "memwatch_oom_kills_total"]
            assert [s.value for s in events] == [1]
    finally:
        keeper.kill()
        keeper.wait()
