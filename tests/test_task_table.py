"""The process table from the kernel's dump_tasks iterator, against /proc, on the real kernel.

Each figure a row shows must be what /proc shows for the same process: the exact RSS (VmRSS, which
sums the per-CPU counters), its split, peaks, swap, threads, names, parents, users, start times;
CPU time within a clock tick. Pids are those of memwatch's pid namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import bpf_unavailable
from memwatch.ebpf import BpfUnavailable, Tracer
from memwatch.ebpf.layouts import COUNTS_TAG, TASK_RECORD, TASK_RECORD_NAMES
from memwatch.model import ProcessSample
from memwatch.procfs import ProcReader
from memwatch.task_table import TaskTable, cputime_split

pytestmark = pytest.mark.bpf

IDLE = textwrap.dedent("""
    import mmap, sys, threading, time
    heap = bytearray(8 << 20)                      # anon, touched
    for i in range(0, len(heap), 4096):
        heap[i] = 1
    shared = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_SHARED)   # shmem, touched
    for i in range(0, len(shared), 4096):
        shared[i] = 1
    for _ in range(3):
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    t = time.process_time()
    while time.process_time() - t < 0.3:           # some CPU time to compare
        pass
    print("ready", flush=True)
    sys.stdin.read()
""")


@pytest.fixture(scope="module")
def tracer() -> Iterator[Tracer]:
    try:
        t = Tracer().open()
    except BpfUnavailable as exc:
        bpf_unavailable(str(exc))
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def idle() -> Iterator[int]:
    """A process with anon, file and shmem pages and four threads, idle once it says ready."""
    proc = subprocess.Popen([sys.executable, "-c", IDLE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.3)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def records(tracer: Tracer) -> dict[int, dict[str, object]]:
    data = tracer.read_tasks()
    assert len(data) % TASK_RECORD.size == 0
    return {rec[0]: dict(zip(TASK_RECORD_NAMES, rec, strict=True)) for rec in TASK_RECORD.iter_unpack(data)
            if rec[0] != COUNTS_TAG}


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def kb(value: str) -> int:
    return int(value.split()[0])


def stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rfind(b")") + 2:].decode().split()


def test_a_record_is_what_proc_shows(tracer: Tracer, idle: int) -> None:
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    hz = os.sysconf("SC_CLK_TCK")
    r = records(tracer)[idle]
    st, f = status(idle), stat_fields(idle)
    with open(f"/proc/{idle}/comm", "rb") as comm:
        assert r["comm"] == comm.read().rstrip(b"\n").ljust(16, b"\0")
    assert (r["ppid"], r["uid"], r["threads"]) == (int(st["PPid"]), int(st["Uid"].split()[0]), 4)
    assert chr(int(r["state"])) == st["State"][0] == "S"  # type: ignore[arg-type]
    assert tracer.start_ticks(int(r["start_boottime_ns"])) == int(f[19])  # type: ignore[arg-type]
    rss = [int(r[f"rss[{i}]"]) * page_kb for i in range(4)]  # type: ignore[call-overload]
    file_kb, anon_kb, swap_kb, shmem_kb = rss
    assert file_kb + anon_kb + shmem_kb == kb(st["VmRSS"]), "exact RSS: the per-CPU deltas are summed"
    assert (anon_kb, file_kb, shmem_kb, swap_kb) == (kb(st["RssAnon"]), kb(st["RssFile"]), kb(st["RssShmem"]),
                                                     kb(st["VmSwap"]))
    assert shmem_kb >= 1024 and anon_kb >= 8 * 1024
    assert int(r["total_vm"]) * page_kb == kb(st["VmSize"])  # type: ignore[call-overload]
    assert max(int(r["hiwater_vm"]), int(r["total_vm"])) * page_kb == kb(st["VmPeak"])  # type: ignore[call-overload]
    assert max(int(r["hiwater_rss"]) * page_kb, kb(st["VmRSS"])) == kb(st["VmHWM"])  # type: ignore[call-overload]
    utime, stime = cputime_split(int(r["utime_ns"]), int(r["stime_ns"]), int(r["runtime_ns"]))  # type: ignore[call-overload]
    assert abs(utime * hz // 10**9 - int(f[11])) <= 1, "utime within a clock tick"
    assert abs(stime * hz // 10**9 - int(f[12])) <= 1, "stime within a clock tick"
    assert int(r["runtime_ns"]) >= 0.3e9  # type: ignore[call-overload]


def test_samples_equal_the_proc_readers(tracer: Tracer, idle: int) -> None:
    """Every live process the iterator lists reads as the /proc reader reads it (kernel threads
    aside for their names, which /proc decorates with the workqueue they run)."""
    reader = ProcReader(status_every=1)
    table = TaskTable(reader, start_ticks=tracer.start_ticks)
    ours = {s.pid: s for s in table.read(tracer.read_tasks())}
    theirs = {s.pid: s for s in reader.read_processes()}
    assert idle in ours
    both = [pid for pid in ours.keys() & theirs.keys() if ours[pid].start_ticks == theirs[pid].start_ticks]
    assert len(both) >= 0.9 * len(theirs), "the same processes (but those born or gone in between)"

    def row(s: ProcessSample) -> tuple[object, ...]:
        name = (s.name, s.cmdline) if not s.kernel_thread else ()
        return (s.ppid, s.uid, s.user, s.threads, s.start_time, s.kernel_thread, s.cgroup, s.memory_cgroup, name)

    # other processes may change between the two reads (threads, cgroup moves, execs): nearly all
    # must be equal, the idle one exactly
    same = [pid for pid in both if row(ours[pid]) == row(theirs[pid])]
    assert len(same) >= 0.95 * len(both), [(row(ours[p]), row(theirs[p])) for p in both if p not in same][:5]
    a, b = ours[idle], theirs[idle]
    assert row(a) == row(b)
    assert (a.rss_kb, a.virt_kb, a.peak_kb, a.swap_kb, a.shared_kb, a.anon_kb, a.state) == (
        b.rss_kb, b.virt_kb, b.peak_kb, b.swap_kb, b.shared_kb, b.anon_kb, b.state)
    assert abs(a.cpu_time_s - b.cpu_time_s) <= 2 / os.sysconf("SC_CLK_TCK")
    reader.close()


def test_an_unchanged_process_costs_no_parse(tracer: Tracer, idle: int) -> None:
    reader = ProcReader()
    table = TaskTable(reader, start_ticks=tracer.start_ticks)
    first = {s.pid: s for s in table.read(tracer.read_tasks())}
    assert len(table.changed) == len(first), "every process is new at the first read"
    second = {s.pid: s for s in table.read(tracer.read_tasks())}
    assert second[idle] is first[idle], "the same sample object: nothing was made for it"
    assert len(table.changed) < len(second) / 2
    assert {s.pid for s in table.changed} == {pid for pid, s in second.items() if s is not first.get(pid)}
    reader.close()


def test_exited_processes_vanish(tracer: Tracer) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.1)
        assert proc.pid in records(tracer)
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in records(tracer)


def test_thousands_of_processes(tracer: Tracer) -> None:
    children = [subprocess.Popen(["sleep", "60"]) for _ in range(2000)]
    try:
        deadline = time.monotonic() + 60
        for c in children:   # each has exec'd (a loaded machine may take a while) and sleeps
            while time.monotonic() < deadline and (status(c.pid)["Name"], status(c.pid)["State"][0]) != ("sleep", "S"):
                time.sleep(0.05)
        reader = ProcReader()
        table = TaskTable(reader, start_ticks=tracer.start_ticks)
        samples = {s.pid: s for s in table.read(tracer.read_tasks())}
        assert {c.pid for c in children} <= samples.keys()
        for c in children[::100]:
            s = samples[c.pid]
            assert (s.name, s.ppid, s.rss_kb) == ("sleep", os.getpid(), kb(status(c.pid)["VmRSS"]))
        reader.close()
    finally:
        for c in children:
            c.kill()
        for c in children:
            c.wait()


INSIDE = textwrap.dedent("""
    import json, os, subprocess, sys, time
    from memwatch.ebpf import Tracer
    from memwatch.ebpf.layouts import COUNTS_TAG, TASK_RECORD
    child = subprocess.Popen(["sleep", "30"])
    time.sleep(0.2)
    with Tracer() as t:
        recs = [rec for rec in TASK_RECORD.iter_unpack(t.read_tasks()) if rec[0] != COUNTS_TAG]
        pids = sorted(rec[0] for rec in recs)
        ppids = {rec[0]: rec[1] for rec in recs}
    proc = sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
    child.kill()
    print(json.dumps({"self": os.getpid(), "child": child.pid, "pids": pids, "proc": proc,
                      "child_ppid": ppids.get(child.pid)}))
""")


def test_a_child_pid_namespace_sees_its_own_pids() -> None:
    """memwatch in a container: records carry the namespace's pids, and no process outside it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        bpf_unavailable("making a pid namespace needs root and unshare")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", INSIDE],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    assert out["self"] == 1
    assert out["child"] in out["pids"] and out["child_ppid"] == 1
    assert set(out["pids"]) <= set(out["proc"]), "nothing from outside the namespace"
    assert set(out["proc"]) - set(out["pids"]) <= {1}, "all of it (pid 1: see TaskTable.unlisted)"


def test_a_process_in_a_child_namespace_shows_with_our_pid(tracer: Tracer) -> None:
    """From the host, a process inside a container has the host's pid, as our /proc shows it."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed")
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        inner = None
        while inner is None and time.monotonic() < deadline:
            with open(f"/proc/{outer.pid}/task/{outer.pid}/children") as f:
                kids = f.read().split()
            inner = int(kids[0]) if kids else None
            time.sleep(0.05)
        assert inner is not None
        recs = records(tracer)
        assert inner in recs and recs[inner]["ppid"] == outer.pid
        assert status(inner)["NSpid"].split()[0] == str(inner)
    finally:
        outer.kill()
        outer.wait()


def _record(tgid: int, *, start: int = 10**9, exec_id: int = 1, memcg: int = 7, rss: tuple[int, int, int, int] = (
        10, 20, 0, 3), runtime: int = 5 * 10**9, comm: bytes = b"app", flags: int = 0) -> bytes:
    values = dict.fromkeys(TASK_RECORD_NAMES, 0)
    values.update({"tgid": tgid, "ppid": 1, "uid": 0, "threads": 1, "start_boottime_ns": start, "exec_id": exec_id,
                   "memcg_id": memcg, "total_vm": 100, "hiwater_vm": 120, "hiwater_rss": 40, "runtime_ns": runtime,
                   "flags": flags, "state": ord("S"), "comm": comm})
    values.update({f"rss[{i}]": v for i, v in enumerate(rss)})
    return TASK_RECORD.pack(*values.values())


def _fake_proc(root: Path, pid: int, cmdline: bytes, cgroup: bytes = b"0::/app.slice\n") -> None:
    (root / str(pid)).mkdir(exist_ok=True)
    (root / str(pid) / "cmdline").write_bytes(cmdline)
    (root / str(pid) / "cgroup").write_bytes(cgroup)


def test_parse_reuse_exec_and_pid_reuse(tmp_path: Path) -> None:
    """Without the kernel: records as the iterator writes them, a /proc of files."""
    (tmp_path / "stat").write_bytes(b"btime 1000\n")
    _fake_proc(tmp_path, 42, b"app\0--one\0")
    reader = ProcReader(str(tmp_path), uid_names={0: "root"}, page_size=4096, clock_ticks=100)
    table = TaskTable(reader, start_ticks=lambda ns: ns // 10**7, page_size=4096, clock_ticks=100)
    (s,) = table.read(_record(42) + b"\0" * 7)   # a torn tail is ignored
    assert (s.pid, s.name, s.cmdline, s.user, s.cgroup, s.start_ticks, s.start_time) == (
        42, "app", "app --one", "root", "/app.slice", 100, 1001.0)
    assert (s.rss_kb, s.anon_kb, s.shared_kb, s.swap_kb, s.virt_kb, s.peak_kb, s.cpu_time_s) == (
        (10 + 20 + 3) * 4, 80, 52, 0, 400, 160, 5.0)
    (again,) = table.read(_record(42))
    assert again is s and table.changed == []
    _fake_proc(tmp_path, 42, b"app\0--two\0", b"0::/other.slice\n")
    (same_exec,) = table.read(_record(42, runtime=6 * 10**9))
    assert (same_exec.cmdline, same_exec.cgroup, same_exec.cpu_time_s) == ("app --one", "/app.slice", 6.0)
    (execed,) = table.read(_record(42, exec_id=2, memcg=8, runtime=6 * 10**9))
    assert (execed.cmdline, execed.cgroup) == ("app --two", "/other.slice"), "exec and cgroup move reread"
    _fake_proc(tmp_path, 42, b"new\0")
    (reused,) = table.read(_record(42, start=2 * 10**9, exec_id=2, memcg=8, comm=b"new"))
    assert (reused.name, reused.cmdline, reused.start_ticks) == ("new", "new", 200), "a new process"
    (kthread,) = table.read(_record(42, start=2 * 10**9, exec_id=2, memcg=8, comm=b"new", flags=0x00200000))
    assert kthread.kernel_thread and kthread.rss_kb == 0 and kthread.cmdline == ""
    assert table.read(b"") == []


def test_processes_the_iterator_misses_are_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "stat").write_bytes(b"btime 1000\n")
    _fake_proc(tmp_path, 42, b"app\0")
    _fake_proc(tmp_path, 1, b"init\0")
    (tmp_path / "1" / "stat").write_bytes(b"1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 5 5 0 0 20 0 1 0 7 1000 10 0\n")
    (tmp_path / "1" / "status").write_bytes(b"Name:\tinit\nUid:\t0\t0\t0\t0\nVmRSS:\t  40 kB\n")
    reader = ProcReader(str(tmp_path), uid_names={0: "root"})
    table = TaskTable(reader, start_ticks=lambda ns: ns // 10**7)
    samples = table.read(_record(42))
    assert table.unlisted == [1] and sorted(s.pid for s in samples) == [1, 42]
