"""memwatch inside a container: pid (and time) namespaces made for real with unshare.

The kernel side sees host pids and the host's boot clock; a /proc mounted in the namespace shows
the namespace's. Every figure must be keyed as that /proc keys it, or every count is a silent 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import bpf_unavailable

pytestmark = pytest.mark.bpf
K = 1024

INSIDE = textwrap.dedent("""
    import asyncio, json, os, subprocess, sys
    from memwatch.ebpf import TracerConfig
    from memwatch.model import EventKind
    from memwatch.sources.live import LiveSource

    workload = subprocess.Popen([sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(line):
        workload.stdin.write(line.encode() + b"\\n")
        workload.stdin.flush()
        return int(workload.stdout.readline())

    async def main():
        pid = ask("pid")
        source = LiveSource(0.5, tracer_config=TracerConfig(events_per_sec=0, event_threshold=0))
        snap = await source.open()
        out = {"enabled": snap.tracer.enabled, "reason": snap.tracer.reason, "self": os.getpid(),
               "workload": pid}
        if snap.tracer.enabled:
            maps = [ask(f"mmap {64 * 1024}") for _ in range(3)]
            ask(f"munmap {maps[0]} {64 * 1024}")
            child = ask(f"fork 2 {16 * 1024} 5")
            events, views = [], {}
            for _ in range(6):
                snap = await source.next()
                events += snap.new_events
                views = {v.pid: v for v in snap.processes}
                if any(e.pid == child for e in events) and pid in views:
                    break
            view = views.get(pid)
            k = view.kernel if view else None
            out.update(
                child=child,
                pids=sorted(views),
                counts=None if k is None else [k.mmap_count, k.munmap_count, k.outstanding_bytes],
                call_pids=sorted({e.pid for e in view.recent_events}) if view else [],
                exits=[[e.pid, e.exit_code, e.signal, e.counts.mmap_count if e.counts else None]
                       for e in events if e.kind is EventKind.EXIT],
            )
        await source.close()
        workload.stdin.close()
        workload.wait()
        print(json.dumps(out))

    asyncio.run(main())
""")


def _run_inside(unshare: list[str], workload_bin: Path) -> dict[str, object]:
    if os.geteuid() != 0:
        bpf_unavailable("making namespaces and tracing need root")
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed: the README's test command installs it")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run(["unshare", *unshare, sys.executable, "-c", INSIDE, str(workload_bin)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


@pytest.mark.parametrize("extra", [[], ["--time", "--boottime", "86400"]], ids=["pid", "pid+time"])
def test_counts_and_exits_carry_the_pids_the_container_sees(workload_bin: Path, extra: list[str]) -> None:
    out = _run_inside(["--pid", "--fork", "--mount-proc", *extra], workload_bin)
    if not out["enabled"]:
        bpf_unavailable(str(out["reason"]))
    assert out["self"] == 1, "memwatch runs as pid 1 of the new namespace"
    assert out["workload"] == 2
    assert out["counts"] == [3, 1, 2 * 64 * K], "exact counts, keyed by the namespace's pid"
    assert out["call_pids"] == [out["workload"]], "call events carry the namespace's pid"
    assert [out["child"], 5, None, 2] in out["exits"], "the exit of a child, with its own pid and code"
    pids = out["pids"]
    assert isinstance(pids, list) and set(pids) <= {1, 2, out["child"]}, "nothing outside the namespace"


def test_a_proc_of_another_namespace_switches_ebpf_off(workload_bin: Path) -> None:
    """'unshare --pid --fork' without --mount-proc keeps the host's /proc: its pids are not the
    namespace's, and memwatch says so instead of showing counts matched to the wrong processes."""
    out = _run_inside(["--pid", "--fork"], workload_bin)
    assert out["enabled"] is False
    assert "pid namespace" in str(out["reason"]) and "--mount-proc" in str(out["reason"])
