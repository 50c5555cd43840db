"""memwatch.procfs: parsing on fake /proc trees built per test, then the real /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from memwatch import procfs
from memwatch.model import ProcessSample, SmapsRollup
from memwatch.procfs import (
    ProcfsUnavailable,
    ProcReader,
    boot_time,
    read_process_sample,
    read_processes,
    read_smaps_rollup,
    read_smaps_rollup_async,
    read_system_memory,
)

BTIME = 1_700_000_000
HZ = 100
PAGE = 4096
USERS = {0: "root", 1000: "alice"}
STAT_LAG_KB = 37 * PAGE // 1024
"""How far the fake stat's RSS sits below the exact figure, as the kernel's per-CPU counter can."""


# ---------------------------------------------------------------------------------------------
# A fake /proc, written byte by byte so that odd names are exactly what the kernel would show.


def stat_line(pid: int, comm: bytes, *, state: str = "S", ppid: int = 1, flags: int = 0x400100,
              threads: int = 1, start: int = 500, vsize: int = 0, rss_pages: int = 0) -> bytes:
    """A /proc/PID/stat line with the 52 fields of a 6.x kernel."""
    after = [state, ppid, pid, pid, 0, -1, flags, 11, 0, 0, 0, 3, 1, 0, 0, 20, 0, threads, 0, start,
             vsize, rss_pages] + [0] * 30
    return b"%d (%s) " % (pid, comm) + " ".join(str(x) for x in after).encode() + b"\n"


def status_text(name: str, *, uid: int = 1000, ppid: int = 1, vm: dict[str, int] | None = None,
                threads: int = 1) -> bytes:
    lines = [f"Name:\t{name}", "Umask:\t0022", "State:\tS (sleeping)", "Tgid:\t1", f"PPid:\t{ppid}",
             f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}", f"Gid:\t{uid}\t{uid}\t{uid}\t{uid}"]
    for key, value in (vm or {}).items():
        lines.append(f"{key}:\t{value:8d} kB")
    lines += [f"Threads:\t{threads}", "SigQ:\t0/96365", "Cpus_allowed_list:\t0-1"]
    return ("\n".join(lines) + "\n").encode()


def vm(size: int, rss: int, hwm: int, anon: int, file: int, shmem: int, swap: int) -> dict[str, int]:
    return {"VmPeak": size, "VmSize": size, "VmLck": 0, "VmPin": 0, "VmHWM": hwm, "VmRSS": rss,
            "RssAnon": anon, "RssFile": file, "RssShmem": shmem, "VmData": anon, "VmStk": 132,
            "VmExe": 20, "VmLib": 1800, "VmPTE": 48, "VmSwap": swap}


def statm_text(*, size_kb: int, rss_kb: int, shared_kb: int = 0, data_kb: int = 0) -> bytes:
    """/proc/PID/statm: size resident shared text lib data dt, in pages."""
    pages = [size_kb, rss_kb, shared_kb, 20, 0, data_kb, 0]
    return " ".join(str(kb * 1024 // PAGE) for kb in pages).encode() + b"\n"


def write_pid(root: Path, pid: int, files: dict[str, bytes]) -> Path:
    d = root / str(pid)
    d.mkdir(exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


def user_process(root: Path, pid: int, comm: bytes, *, cmdline: bytes = b"", uid: int = 1000,
                 ppid: int = 1, start: int = 500, rss_kb: int = 2048, size_kb: int = 10240,
                 hwm_kb: int = 4096, anon_kb: int = 1024, file_kb: int = 900, shmem_kb: int = 124,
                 swap_kb: int = 16, threads: int = 1, cgroup: bytes = b"0::/user.slice\n",
                 state: str = "S", stat_rss_kb: int | None = None, utime: int = 0) -> Path:
    """A process whose stat shows an approximate RSS (``stat_rss_kb``, by default a little below
    the exact ``rss_kb`` that status and statm show), as recent kernels do."""
    if stat_rss_kb is None:
        stat_rss_kb = max(0, rss_kb - STAT_LAG_KB)
    stat = stat_line(pid, comm, ppid=ppid, threads=threads, start=start, vsize=size_kb * 1024,
                     rss_pages=stat_rss_kb * 1024 // PAGE, state=state)
    if utime:  # field 14, after the name: what changes when a process runs
        head, _, tail = stat.rpartition(b") ")
        fields = tail.split(b" ")
        fields[11] = b"%d" % utime
        stat = head + b") " + b" ".join(fields)
    return write_pid(root, pid, {
        "stat": stat,
        "statm": statm_text(size_kb=size_kb, rss_kb=rss_kb, shared_kb=file_kb + shmem_kb, data_kb=anon_kb),
        "status": status_text(comm.decode("utf-8", "replace"), uid=uid, ppid=ppid, threads=threads,
                              vm=vm(size_kb, rss_kb, hwm_kb, anon_kb, file_kb, shmem_kb, swap_kb)),
        "cmdline": cmdline,
        "cgroup": cgroup,
    })


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    root.mkdir()
    (root / "stat").write_bytes(b"cpu  1 2 3 4\nintr 5\nctxt 6\nbtime %d\nprocesses 7\n" % BTIME)
    (root / "meminfo").write_bytes(
        b"MemTotal:       24000000 kB\nMemFree:        20000000 kB\nMemAvailable:   21000000 kB\n"
        b"Buffers:            1000 kB\nCached:           50000 kB\nSwapTotal:       2000000 kB\n"
        b"SwapFree:        1500000 kB\n"
    )
    (root / "pressure").mkdir()
    (root / "pressure" / "memory").write_bytes(
        b"some avg10=1.25 avg60=0.50 avg300=0.10 total=12345\n"
        b"full avg10=0.75 avg60=0.20 avg300=0.05 total=6789\n"
    )
    (root / "self").mkdir()  # non-numeric entries are not processes
    (root / "sys").mkdir()
    user_process(root, 1, b"init", cmdline=b"/sbin/init\0splash\0", uid=0, ppid=0, start=10,
                 rss_kb=8192, size_kb=20480, hwm_kb=9000, anon_kb=3000, file_kb=5000, shmem_kb=192,
                 swap_kb=0, cgroup=b"0::/init.scope\n")
    write_pid(root / "", 2, {
        "stat": stat_line(2, b"kthreadd", ppid=0, flags=0x00208040, start=10),
        "status": status_text("kthreadd", uid=0, ppid=0),
        "cmdline": b"",
        "cgroup": b"0::/\n",
    })
    write_pid(root, 3, {  # a kernel worker: no PF_KTHREAD in the fake flags, but its parent is 2
        "stat": stat_line(3, b"kworker/0:1-events", ppid=2, flags=0, start=12),
        "status": status_text("kworker/0:1-events", uid=0, ppid=2),
        "cmdline": b"",
        "cgroup": b"0::/\n",
    })
    user_process(root, 100, b"a) (b c", cmdline=b"./a) (b c\0--flag\0\0\0", threads=4)
    user_process(root, 101, b"new\nline", cmdline=b"new\nline\0")
    user_process(root, 102, b"bad\xff\xfename", cmdline=b"/opt/bad\xff\0arg")
    user_process(root, 103, b"[red]x[/red]", cmdline=b"[red]x[/red]\0[bold]y")
    (root / "104").mkdir()  # vanished before we read anything
    write_pid(root, 105, {"stat": b"", "status": b""})  # exiting: empty stat
    write_pid(root, 106, {"stat": stat_line(106, b"halfgone", start=900)})  # gone before status
    user_process(root, 107, b"hybrid", cmdline=b"hybrid\0",
                 cgroup=b"9:name=systemd:/\n4:memory:/jobs/42\n1:cpu,cpuacct:/\n0::/\n", uid=4_000_123)
    write_pid(root, 108, {  # a zombie: no mm, no Vm lines, statm all zeros
        "stat": stat_line(108, b"defunct", state="Z", start=950),
        "statm": b"0 0 0 0 0 0 0\n",
        "status": status_text("defunct"),
        "cmdline": b"",
        "cgroup": b"0::/user.slice\n",
    })
    (root / "1" / "smaps_rollup").write_bytes(
        b"55d0c0000000-7ffd00000000 ---p 00000000 00:00 0                          [rollup]\n"
        b"Rss:                8192 kB\nPss:                5000 kB\nPss_Anon:           3000 kB\n"
        b"Shared_Clean:       4000 kB\nShared_Dirty:          0 kB\nPrivate_Clean:       700 kB\n"
        b"Private_Dirty:      3000 kB\nSwap:                  0 kB\nSwapPss:              12 kB\n"
    )
    return root


def fake_reader(root: Path, **kwargs: int) -> ProcReader:
    return ProcReader(str(root), clock_ticks=HZ, page_size=PAGE, uid_names=dict(USERS), **kwargs)


def by_pid(samples: list[ProcessSample]) -> dict[int, ProcessSample]:
    return {s.pid: s for s in samples}


# ---------------------------------------------------------------------------------------------
# Parsing on the fake tree.


def test_user_process_fields(fake_proc: Path) -> None:
    got = by_pid(read_processes(str(fake_proc), clock_ticks=HZ, page_size=PAGE, uid_names=USERS))
    init = got[1]
    assert init == ProcessSample(
        pid=1, ppid=0, name="init", cmdline="/sbin/init splash", user="root", start_ticks=10,
        start_time=BTIME + 0.1, threads=1, rss_kb=8192, virt_kb=20480, peak_kb=9000, swap_kb=0,
        shared_kb=5192, anon_kb=3000, cgroup="/init.scope", kernel_thread=False, state="S",
        cpu_time_s=(3 + 1) / HZ,   # utime + stime, in ticks
        uid=0, memory_cgroup="/init.scope",
    )
    assert init.key == (1, 10)
    assert (got[100].uid, got[107].uid, got[2].uid) == (1000, 4_000_123, 0)


@pytest.mark.parametrize(
    ("pid", "name", "cmdline"),
    [
        (100, "a) (b c", "./a) (b c --flag"),
        (101, "new\nline", "new\nline"),
        (102, "bad\\xff\\xfename", "/opt/bad\\xff arg"),
        (103, "[red]x[/red]", "[red]x[/red] [bold]y"),
    ],
)
def test_odd_names_survive(fake_proc: Path, pid: int, name: str, cmdline: str) -> None:
    got = by_pid(read_processes(str(fake_proc), clock_ticks=HZ, page_size=PAGE, uid_names=USERS))[pid]
    assert (got.name, got.cmdline) == (name, cmdline)
    # The fields after the name are still parsed right, whatever the name holds.
    assert (got.state, got.ppid, got.start_ticks, got.rss_kb, got.user) == ("S", 1, 500, 2048, "alice")
    assert got.threads == (4 if pid == 100 else 1)


def test_kernel_threads_have_no_memory(fake_proc: Path) -> None:
    got = by_pid(read_processes(str(fake_proc), clock_ticks=HZ, page_size=PAGE, uid_names=USERS))
    for pid, name in ((2, "kthreadd"), (3, "kworker/0:1-events")):
        k = got[pid]
        assert k.kernel_thread, pid
        assert (k.name, k.cmdline, k.user, k.cgroup) == (name, "", "root", "/")
        assert (k.rss_kb, k.virt_kb, k.peak_kb, k.swap_kb, k.shared_kb, k.anon_kb) == (0,) * 6
    assert not got[1].kernel_thread


def test_vanished_and_exiting_pids_are_skipped(fake_proc: Path) -> None:
    got = by_pid(read_processes(str(fake_proc), clock_ticks=HZ, page_size=PAGE, uid_names=USERS))
    assert sorted(got) == [1, 2, 3, 100, 101, 102, 103, 107, 108]
    assert read_process_sample(104, str(fake_proc)) is None
    assert read_process_sample(105, str(fake_proc)) is None
    assert read_process_sample(106, str(fake_proc)) is None
    assert read_process_sample(99999, str(fake_proc)) is None


def test_zombie_and_hybrid_cgroup(fake_proc: Path) -> None:
    got = by_pid(read_processes(str(fake_proc), clock_ticks=HZ, page_size=PAGE, uid_names=USERS))
    zombie = got[108]
    assert (zombie.state, zombie.rss_kb, zombie.peak_kb, zombie.kernel_thread) == ("Z", 0, 0, False)
    hybrid = got[107]
    assert hybrid.cgroup == "/jobs/42"  # v2 is only "/" here: the v1 memory controller's path
    assert hybrid.user == "4000123"  # a uid without a name shows as its number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"0::/system.slice/sshd.service\n", "/system.slice/sshd.service"),
        (b"12:pids:/a\n4:memory:/b\n0::/c\n", "/c"),
        (b"12:pids:/a\n4:memory:/b\n0::/\n", "/b"),
        (b"3:cpu:/first\n2:blkio:/second\n", "/first"),
        (b"0::/\n", "/"),
        (b"", ""),
    ],
)
def test_cgroup_choice(text: bytes, expected: str) -> None:
    assert procfs._parse_cgroup(text) == expected


@pytest.mark.parametrize(
    ("text", "shown", "memory"),
    [
        (b"0::/system.slice/sshd.service\n", "/system.slice/sshd.service", b"/system.slice/sshd.service"),
        # hybrid: the v1 memory controller's line governs memory, whatever v2 says
        (b"12:pids:/a\n4:memory:/b\n0::/c\n", "/c", b"/b"),
        (b"9:name=systemd:/\n4:cpu,memory:/b c\n0::/\n", "/b c", b"/b c"),
        # v1 without a memory controller: the v2 line
        (b"3:cpu:/first\n0::/v2\n", "/v2", b"/v2"),
        (b"3:cpu:/first\n2:blkio:/second\n", "/first", b""),
        # a name holding a newline (the kernel prints paths raw), and bytes that are not UTF-8
        (b"4:memory:/odd\nname\n0::/\n", "/odd\nname", b"/odd\nname"),
        (b"0::/x\xff\n5:y\n", "/x\\xff\n5:y", b"/x\xff\n5:y"),
        (b"", "", b""),
    ],
)
def test_memory_cgroup_choice(text: bytes, shown: str, memory: bytes) -> None:
    assert procfs._cgroup_paths(text) == (shown, memory)


def test_memory_cgroup_and_its_raw_path(fake_proc: Path) -> None:
    write_pid(fake_proc, 100, {"cgroup": b"4:memory:/jobs/caf\xe9 1\n0::/\n"})
    with fake_reader(fake_proc) as reader:
        got = by_pid(reader.read_processes())
        assert (got[100].cgroup, got[100].memory_cgroup) == ("/jobs/caf\\xe9 1", "/jobs/caf\\xe9 1")
        assert (got[107].cgroup, got[107].memory_cgroup) == ("/jobs/42", "/jobs/42")
        assert (got[2].memory_cgroup, got[1].memory_cgroup) == ("/", "/init.scope")
        paths = reader.memory_cgroup_paths()
        assert paths["/jobs/caf\\xe9 1"] == b"/jobs/caf\xe9 1"   # what finds its directory
        assert paths["/user.slice"] == b"/user.slice"


def test_cgroup_is_read_again_at_exec_and_when_asked(fake_proc: Path) -> None:
    with fake_reader(fake_proc, slow_every=1000) as reader:
        assert by_pid(reader.read_processes())[101].memory_cgroup == "/user.slice"
        # moved by a runtime, then exec'd: the new name has its cgroup read again
        (fake_proc / "101" / "cgroup").write_bytes(b"0::/system.slice/docker-0123.scope\n")
        assert by_pid(reader.read_processes())[101].memory_cgroup == "/user.slice"   # cached
        (fake_proc / "101" / "stat").write_bytes(stat_line(101, b"nginx", rss_pages=512, vsize=10485760))
        assert by_pid(reader.read_processes())[101].memory_cgroup == "/system.slice/docker-0123.scope"
        # moved without an exec: read again only when the collector asks (its cgroup vanished)
        (fake_proc / "100" / "cgroup").write_bytes(b"0::/elsewhere\n")
        assert by_pid(reader.read_processes())[100].memory_cgroup == "/user.slice"
        assert reader.recheck_cgroups({"/user.slice"}) == 4   # 100, 102, 103, 108 (101 has moved)
        got = by_pid(reader.read_processes())
        assert (got[100].memory_cgroup, got[103].memory_cgroup) == ("/elsewhere", "/user.slice")


def test_stat_parser_rejects_garbage() -> None:
    assert procfs._parse_stat(b"") is None
    assert procfs._parse_stat(b"12 (trunc") is None
    assert procfs._parse_stat(b"12 (x) S 1 2 3") is None
    assert procfs._parse_stat(stat_line(5, b"ok)")) is not None


def test_permission_errors_degrade(fake_proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_read = procfs._read

    def guarded(path: str) -> bytes:
        if path.endswith(("/status", "/cmdline", "/cgroup")):
            raise PermissionError(13, "Permission denied", path)
        return real_read(path)

    monkeypatch.setattr(procfs, "_read", guarded)
    got = by_pid(read_processes(str(fake_proc), clock_ticks=HZ, page_size=PAGE, uid_names=USERS))
    p = got[100]
    assert (p.name, p.rss_kb, p.virt_kb, p.threads) == ("a) (b c", 2048, 10240, 4)  # stat and statm
    assert (p.cmdline, p.user, p.cgroup, p.peak_kb, p.swap_kb, p.anon_kb) == ("", "", "", 0, 0, 0)


def test_without_statm_or_status_rss_is_stats_approximation(
    fake_proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read = procfs._read

    def guarded(path: str) -> bytes:
        if path.endswith(("/status", "/statm")):
            raise PermissionError(13, "Permission denied", path)
        return real_read(path)

    monkeypatch.setattr(procfs, "_read", guarded)
    p = read_process_sample(100, str(fake_proc))
    assert p is not None and p.rss_kb == 2048 - STAT_LAG_KB  # better than nothing


def test_processes_that_share_a_name_and_cgroup_share_one_copy_of_each() -> None:
    """Real /proc: at 10,000 processes a copy of the same texts for each one costs megabytes."""
    children = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    try:
        reader = ProcReader()
        samples = [s for s in reader.read_processes() if s.pid in {c.pid for c in children}]
        assert len(samples) == 3
        for field in ("name", "cmdline", "cgroup", "memory_cgroup"):
            values = [getattr(s, field) for s in samples]
            assert values[0] == "sleep 60" if field == "cmdline" else values[0]
            assert all(v is values[0] for v in values), f"{field}: {len(set(map(id, values)))} copies"
    finally:
        for c in children:
            c.kill()
            c.wait()


def test_the_shared_texts_stay_bounded() -> None:
    long = b"x" * (procfs._SHARED_LEN + 1)
    assert procfs._decode(long) == long.decode() and long not in procfs._shared_texts
    for i in range(procfs._SHARED_MAX + 10):
        assert procfs._decode(b"name-%d" % i) == f"name-{i}"
    assert 0 < len(procfs._shared_texts) <= procfs._SHARED_MAX
    assert procfs._decode(b"\xffname") == "\\xffname"


def test_missing_proc_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProcfsUnavailable, match="is procfs mounted"):
        read_processes(str(tmp_path / "nope"), clock_ticks=HZ)
    with pytest.raises(ProcfsUnavailable, match="meminfo"):
        read_system_memory(str(tmp_path))
    with pytest.raises(ProcfsUnavailable, match="stat"):
        boot_time(str(tmp_path))
    with pytest.raises(ValueError, match="at least 1"):
        ProcReader(str(tmp_path), status_every=0)


def test_boot_time_and_start_time(fake_proc: Path) -> None:
    assert boot_time(str(fake_proc)) == BTIME
    p = read_process_sample(100, str(fake_proc))
    assert p is not None
    assert p.start_time == pytest.approx(BTIME + 500 / os.sysconf("SC_CLK_TCK"))


def test_system_memory(fake_proc: Path) -> None:
    m = read_system_memory(str(fake_proc))
    assert (m.total_kb, m.available_kb, m.used_kb, m.free_kb) == (24000000, 21000000, 3000000, 20000000)
    assert (m.swap_total_kb, m.swap_used_kb) == (2000000, 500000)
    assert (m.pressure_some_avg10, m.pressure_full_avg10) == (1.25, 0.75)


def test_system_memory_without_psi_or_memavailable(fake_proc: Path) -> None:
    (fake_proc / "pressure" / "memory").unlink()
    (fake_proc / "meminfo").write_bytes(
        b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"
    )
    m = read_system_memory(str(fake_proc))
    assert (m.available_kb, m.used_kb, m.swap_total_kb, m.swap_used_kb) == (400, 600, 0, 0)
    assert m.pressure_some_avg10 is None and m.pressure_full_avg10 is None


def test_smaps_rollup(fake_proc: Path) -> None:
    assert read_smaps_rollup(1, str(fake_proc)) == SmapsRollup(pss_kb=5000, uss_kb=3700, swap_pss_kb=12)
    assert read_smaps_rollup(100, str(fake_proc)) is None  # no file: gone or not permitted
    (fake_proc / "2" / "smaps_rollup").write_bytes(b"")
    assert read_smaps_rollup(2, str(fake_proc)) is None  # kernel thread: nothing to roll up


async def test_smaps_rollup_async(fake_proc: Path) -> None:
    got = await read_smaps_rollup_async(1, proc_root=str(fake_proc))
    assert got is not None and got.pss_kb == 5000


async def test_smaps_rollup_async_gives_up_on_a_blocked_read(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    finished = threading.Event()

    def blocked(pid: int, proc_root: str = "/proc", **_: object) -> SmapsRollup | None:
        release.wait(10)
        finished.set()
        return SmapsRollup(1, 1, 0)

    monkeypatch.setattr(procfs, "read_smaps_rollup", blocked)
    assert await read_smaps_rollup_async(1, timeout_s=0.05) is None
    assert not finished.is_set()  # the thread is still waiting in the background, as documented
    release.set()
    await asyncio.to_thread(finished.wait, 10)
    assert finished.is_set()


# ---------------------------------------------------------------------------------------------
# The reader's caches on the fake tree.


def test_status_is_reread_when_stat_moves_or_when_due(fake_proc: Path) -> None:
    reader = fake_reader(fake_proc, status_every=3)
    assert by_pid(reader.read_processes())[100].peak_kb == 4096
    # Only status changes: stat is identical, so the figures from status are not re-read yet.
    user_process(fake_proc, 100, b"a) (b c", hwm_kb=7000, swap_kb=64, threads=4)
    p = by_pid(reader.read_processes())[100]
    assert (p.peak_kb, p.swap_kb) == (4096, 16)
    # Within status_every ticks the refresh comes anyway.
    for _ in range(3):
        p = by_pid(reader.read_processes())[100]
    assert (p.peak_kb, p.swap_kb) == (7000, 64)
    # The exact RSS (statm, read because stat moved) moving triggers a status read at once.
    user_process(fake_proc, 100, b"a) (b c", rss_kb=4096, hwm_kb=8000, anon_kb=3000, threads=4)
    p = by_pid(reader.read_processes())[100]
    assert (p.rss_kb, p.peak_kb, p.anon_kb) == (4096, 8000, 3000)
    reader.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every /proc file the readers open by path, as "pid/name", in order."""
    seen: list[str] = []
    real = procfs._read

    def recording(path: str) -> bytes:
        seen.append("/".join(path.rsplit("/", 2)[-2:]))
        return real(path)

    monkeypatch.setattr(procfs, "_read", recording)
    return seen


def test_rss_is_exact_on_every_path(fake_proc: Path, reads: list[str]) -> None:
    """stat's RSS is the kernel's approximation: every sample shows what statm/status show."""
    def tick() -> ProcessSample:
        reads.clear()
        return by_pid(reader.read_processes())[100]

    with fake_reader(fake_proc, status_every=1000, slow_every=1000) as reader:
        # A new process: status is read, its VmRSS is the figure (stat shows 2048 - STAT_LAG_KB).
        assert tick().rss_kb == 2048
        assert "100/status" in reads and "100/statm" not in reads
        # Idle (stat unchanged): nothing is read, even though statm moved behind its back.
        (fake_proc / "100" / "statm").write_bytes(statm_text(size_kb=10240, rss_kb=1800))
        assert tick().rss_kb == 2048
        assert not [r for r in reads if r.startswith("100/")]
        # It ran (utime) but its memory did not move: statm is read, status is not.
        user_process(fake_proc, 100, b"a) (b c", threads=4, utime=5, hwm_kb=9999)
        p = tick()
        assert (p.rss_kb, p.peak_kb) == (2048, 4096)
        assert [r for r in reads if r.startswith("100/")] == ["100/statm"]
        # stat's approximation moved but the exact figure did not: still no status read.
        user_process(fake_proc, 100, b"a) (b c", threads=4, utime=6, hwm_kb=9999, stat_rss_kb=2048 + 200)
        assert tick().rss_kb == 2048
        assert [r for r in reads if r.startswith("100/")] == ["100/statm"]
        # The exact figure moved while stat's approximation did not: status is read at once.
        user_process(fake_proc, 100, b"a) (b c", threads=4, utime=7, rss_kb=3000, hwm_kb=9999,
                     stat_rss_kb=2048 + 200)
        p = tick()
        assert (p.rss_kb, p.peak_kb) == (3000, 9999)
        assert [r for r in reads if r.startswith("100/")] == ["100/statm", "100/status"]


def test_idle_rss_waits_for_the_periodic_status_read(fake_proc: Path) -> None:
    """Reclaim can shrink an idle process without touching its stat: status_every bounds it."""
    with fake_reader(fake_proc, status_every=3) as reader:
        assert by_pid(reader.read_processes())[100].rss_kb == 2048
        user_process(fake_proc, 100, b"a) (b c", threads=4, rss_kb=1500, stat_rss_kb=2048 - STAT_LAG_KB)
        assert [by_pid(reader.read_processes())[100].rss_kb for _ in range(3)] == [2048, 2048, 1500]


def test_peak_is_never_below_the_exact_rss(fake_proc: Path) -> None:
    """VmHWM comes from the approximate counters: it can sit below VmRSS."""
    user_process(fake_proc, 100, b"a) (b c", rss_kb=4100, hwm_kb=4096, stat_rss_kb=3996)
    with fake_reader(fake_proc, status_every=1000) as reader:
        p = by_pid(reader.read_processes())[100]
        assert (p.rss_kb, p.peak_kb) == (4100, 4100)
        user_process(fake_proc, 100, b"a) (b c", rss_kb=4200, hwm_kb=4096, utime=1)
        p = by_pid(reader.read_processes())[100]
        assert (p.rss_kb, p.peak_kb) == (4200, 4200)


def test_exiting_process_with_empty_statm_does_not_raise(fake_proc: Path) -> None:
    with fake_reader(fake_proc, status_every=1000) as reader:
        reader.read_processes()
        # Exiting: stat still there, statm and status empty (its mm is gone).
        user_process(fake_proc, 100, b"a) (b c", threads=4, utime=9, state="X")
        (fake_proc / "100" / "statm").write_bytes(b"")
        (fake_proc / "100" / "status").write_bytes(b"")
        p = by_pid(reader.read_processes())[100]
        assert (p.state, p.rss_kb, p.peak_kb) == ("X", 0, 0)
        # Gone between stat and statm: skipped like any vanished pid, its stat file released.
        user_process(fake_proc, 101, b"new\nline", utime=9)
        (fake_proc / "101" / "statm").unlink()
        assert 101 not in by_pid(reader.read_processes())
        assert reader.cached_pids == reader.open_files == 8


def test_status_every_one_reads_status_each_tick(fake_proc: Path) -> None:
    with fake_reader(fake_proc, status_every=1) as reader:
        reader.read_processes()
        user_process(fake_proc, 100, b"a) (b c", hwm_kb=7000, threads=4)
        assert by_pid(reader.read_processes())[100].peak_kb == 7000


def test_peak_never_below_current_rss(fake_proc: Path) -> None:
    user_process(fake_proc, 100, b"a) (b c", rss_kb=5000, hwm_kb=4096)  # status read lags behind
    p = read_process_sample(100, str(fake_proc))
    assert p is not None and p.peak_kb == 5000


def test_cmdline_cached_until_exec_or_pid_reuse(fake_proc: Path) -> None:
    with fake_reader(fake_proc, slow_every=1000) as reader:
        assert by_pid(reader.read_processes())[101].cmdline == "new\nline"
        (fake_proc / "101" / "cmdline").write_bytes(b"rewritten\0")
        assert by_pid(reader.read_processes())[101].cmdline == "new\nline"  # cached
        # An exec changes the name: cmdline is read again.
        (fake_proc / "101" / "stat").write_bytes(stat_line(101, b"python3", rss_pages=512, vsize=10485760))
        p = by_pid(reader.read_processes())[101]
        assert (p.name, p.cmdline) == ("python3", "rewritten")
        # Same pid, new start time: a new process, nothing of the old one is reused.
        (fake_proc / "101" / "cmdline").write_bytes(b"other\0")
        (fake_proc / "101" / "cgroup").write_bytes(b"0::/elsewhere\n")
        (fake_proc / "101" / "stat").write_bytes(
            stat_line(101, b"python3", start=7777, rss_pages=512, vsize=10485760))
        p = by_pid(reader.read_processes())[101]
        assert (p.key, p.cmdline, p.cgroup) == ((101, 7777), "other", "/elsewhere")


def test_gone_processes_leave_the_cache(fake_proc: Path) -> None:
    with fake_reader(fake_proc) as reader:
        reader.read_processes()
        assert reader.cached_pids == 9
        assert reader.open_files == 9
        for name in ("stat", "statm", "status", "cmdline", "cgroup"):
            (fake_proc / "103" / name).unlink()
        (fake_proc / "103").rmdir()
        # A kept stat file is only valid while its pid is listed: 103 drops out even though the
        # reader still held its file open.
        assert 103 not in by_pid(reader.read_processes())
        assert (reader.cached_pids, reader.open_files) == (8, 8)
    assert reader.open_files == 0


def test_keep_open_budget(fake_proc: Path) -> None:
    with fake_reader(fake_proc, keep_open=3) as reader:
        first = by_pid(reader.read_processes())
        assert reader.open_files == 3
        assert by_pid(reader.read_processes()) == first


def test_user_names_are_looked_up_once(fake_proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = pwd.getpwuid

    def counting(uid: int) -> object:
        calls.append(uid)
        return real(uid)

    monkeypatch.setattr(pwd, "getpwuid", counting)
    with ProcReader(str(fake_proc), clock_ticks=HZ, page_size=PAGE, status_every=1) as reader:
        reader.read_processes()
        reader.read_processes()
    assert sorted(calls) == [0, 1000, 4_000_123]


# ---------------------------------------------------------------------------------------------
# The real /proc.


def test_this_process_matches_psutil() -> None:
    me = psutil.Process()
    with ProcReader() as reader:
        got = by_pid(reader.read_processes())[os.getpid()]
        rss_psutil_kb = me.memory_info().rss // 1024
        assert got.ppid == os.getppid()
        assert got.name == Path("/proc/self/comm").read_text().rstrip("\n")
        assert got.user == me.username()
        assert got.threads == me.num_threads()
        assert got.start_time == pytest.approx(me.create_time(), abs=1.0)
        assert abs(got.rss_kb - rss_psutil_kb) <= max(4096, rss_psutil_kb // 10)
        assert got.virt_kb >= got.rss_kb > 0
        assert got.peak_kb >= got.rss_kb
        assert got.anon_kb > 0 and got.shared_kb > 0
        assert got.cgroup.startswith("/")
        assert sys.executable.split("/")[-1] in got.cmdline or "pytest" in got.cmdline
        assert not got.kernel_thread and got.state == "R"
        assert reader.read_process_sample(os.getpid()) is not None


def test_real_kernel_thread() -> None:
    k = read_process_sample(2)
    assert k is not None and k.kernel_thread and k.rss_kb == 0 and k.cmdline == ""


@pytest.fixture
def weird_child(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """/bin/sleep run through a symlink whose name is a parser's nightmare."""
    link = tmp_path / "we ird) (na[red]me"
    link.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(link), "60"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/comm").read_bytes() != b"we ird) (na[red\n":
            assert time.monotonic() < deadline, "child never exec'd"
            time.sleep(0.01)
        yield child
    finally:
        child.kill()
        child.wait()


def test_weird_exec_name(weird_child: subprocess.Popen[bytes]) -> None:
    p = read_process_sample(weird_child.pid)
    assert p is not None
    assert p.name == "we ird) (na[red"  # the kernel keeps 15 bytes of the name
    assert p.cmdline.endswith("/we ird) (na[red]me 60")
    assert (p.ppid, p.kernel_thread) == (os.getpid(), False)
    assert p.state in ("R", "S")  # just exec'd: it may not have reached its sleep yet


def test_child_renamed_to_bytes_that_are_not_utf8() -> None:
    script = (
        "import sys\n"
        "open('/proc/self/comm', 'wb').write(b'nl\\nx\\xff) (y')\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        with ProcReader() as reader:
            p = by_pid(reader.read_processes())[child.pid]
            assert p.name == "nl\nx\\xff) (y"
            assert p.state in ("R", "S") and p.rss_kb > 0
            assert child.stdin is not None
            child.stdin.close()
            child.wait(10)
            assert child.pid not in by_pid(reader.read_processes())
            listed = len(reader.read_processes())
            assert reader.cached_pids == listed, "the reader remembers exactly what it listed"
    finally:
        child.kill()
        child.wait()


def test_smaps_rollup_of_self() -> None:
    r = read_smaps_rollup(os.getpid())
    assert r is not None
    rss_kb = psutil.Process().memory_info().rss // 1024
    assert 0 < r.uss_kb <= r.pss_kb <= rss_kb + 4096
    assert r.swap_pss_kb >= 0


async def test_smaps_rollup_async_of_self() -> None:
    r = await read_smaps_rollup_async(os.getpid(), timeout_s=5)
    assert r is not None and r.pss_kb > 0


def test_exited_process_reads_as_none() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert read_process_sample(child.pid) is None
    assert read_smaps_rollup(child.pid) is None


def test_real_system_memory_and_boot_time() -> None:
    m = read_system_memory()
    assert m.total_kb == psutil.virtual_memory().total // 1024
    assert m.used_kb == m.total_kb - m.available_kb
    assert boot_time() == pytest.approx(psutil.boot_time(), abs=2)
    assert procfs.clock_ticks() == os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Exact RSS on the real /proc. Reclaim (DAMON, kswapd) can change an idle process's RSS at any
# moment, so each comparison is bracketed: it only counts when the process's stat and VmRSS are
# the same before and after the reader's tick.

TOUCHER = """
import mmap, sys
maps = []
while line := sys.stdin.readline():
    m = mmap.mmap(-1, int(line) * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE)
    for offset in range(0, len(m), mmap.PAGESIZE):
        m[offset] = 1
    maps.append(m)
    sys.stdout.write("ok\\n")
    sys.stdout.flush()
"""


def proc_rss(pid: int) -> tuple[bytes, int, int]:
    """(stat bytes, stat's approximate RSS in KB, VmRSS in KB) of a live user process."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    status = Path(f"/proc/{pid}/status").read_bytes()
    approx = int(stat.rpartition(b") ")[2].split()[21]) * PAGE // 1024
    return stat, approx, procfs._status_field(status, b"\nVmRSS:")


class Toucher:
    """A child that maps and touches the pages it is told to, then blocks reading its stdin."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", TOUCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.pid = self.proc.pid

    def touch(self, pages: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"%d\n" % pages)
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == b"ok\n"
        self.wait_idle()

    def wait_idle(self) -> None:
        """Until it sleeps in read() and its stat stops changing."""
        deadline = time.monotonic() + 10
        last = b""
        while True:
            stat = Path(f"/proc/{self.pid}/stat").read_bytes()
            if stat == last and stat.rpartition(b") ")[2].startswith(b"S "):
                return
            assert time.monotonic() < deadline, "the child never went idle"
            last = stat
            time.sleep(0.02)

    def make_stat_disagree(self) -> None:
        """Touch one page at a time until stat's RSS differs from VmRSS (a per-CPU delta is left)."""
        for _ in range(200):
            _stat, approx, exact = proc_rss(self.pid)
            if approx != exact:
                return
            self.touch(1)
        pytest.fail("stat's RSS always equals VmRSS here: this kernel sums the per-CPU deltas")


@pytest.fixture
def toucher() -> Iterator[Toucher]:
    child = Toucher()
    try:
        yield child
    finally:
        child.proc.kill()
        child.proc.wait()


def exact_sample(reader: ProcReader, pid: int) -> tuple[ProcessSample, int, int]:
    """A tick's sample of an idle pid with stat's approximation and VmRSS around it."""
    for _ in range(5):
        before = proc_rss(pid)
        sample = by_pid(reader.read_processes())[pid]
        after = proc_rss(pid)
        if before == after:
            return sample, after[1], after[2]
    pytest.fail(f"process {pid} never stayed idle across a tick")


def test_idle_child_rss_is_exact(toucher: Toucher) -> None:
    toucher.touch(2560)  # 10 MiB
    toucher.make_stat_disagree()
    with ProcReader() as reader:
        sample, approx, exact = exact_sample(reader, toucher.pid)
    assert approx != exact  # what the old reader reported, and why this test can fail
    assert sample.rss_kb == exact == psutil.Process(toucher.pid).memory_info().rss // 1024
    assert sample.rss_kb >= 2560 * PAGE // 1024
    assert sample.peak_kb >= sample.rss_kb


def test_rss_is_exact_after_the_process_grew(toucher: Toucher) -> None:
    """The warm path: stat moved, so statm (and then status) give the new exact figure."""
    toucher.touch(256)
    with ProcReader(status_every=1000, slow_every=1000) as reader:
        first, _, _ = exact_sample(reader, toucher.pid)
        toucher.touch(2560)
        toucher.make_stat_disagree()
        sample, approx, exact = exact_sample(reader, toucher.pid)
    assert approx != exact
    assert sample.rss_kb == exact == psutil.Process(toucher.pid).memory_info().rss // 1024
    assert sample.rss_kb >= first.rss_kb + 2560 * PAGE // 1024
    assert sample.peak_kb >= sample.rss_kb


def test_every_idle_process_shows_vmrss(toucher: Toucher) -> None:
    """Over two ticks of one reader, every user process idle throughout shows exactly VmRSS."""
    toucher.touch(64)
    toucher.make_stat_disagree()  # at least one process whose stat is off, so this can fail

    def snapshot() -> dict[int, tuple[bytes, int, int]]:
        out = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    out[int(entry)] = proc_rss(int(entry))
        return out

    with ProcReader(status_every=1000, slow_every=1000) as reader:
        s0 = snapshot()
        tick1 = by_pid(reader.read_processes())
        s1 = snapshot()
        tick2 = by_pid(reader.read_processes())
        s2 = snapshot()
    compared: set[int] = set()
    off = 0
    for pid, (stat, approx, exact) in s2.items():
        if s0.get(pid) != s2[pid] or s1.get(pid) != s2[pid] or pid not in tick1 or pid not in tick2:
            continue  # it ran, was reclaimed from, or came or went during the ticks
        if tick1[pid].kernel_thread or not stat.rpartition(b") ")[2].startswith(b"S "):
            continue
        compared.add(pid)
        off += approx != exact
        assert (pid, tick1[pid].rss_kb, tick2[pid].rss_kb) == (pid, exact, exact)
    assert toucher.pid in compared and off >= 1


def test_zombie_after_a_warm_tick_reads_as_empty() -> None:
    """A process that became a zombie changed its stat: the statm read finds no memory, no error."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        with ProcReader(status_every=1000, slow_every=1000) as reader:
            assert by_pid(reader.read_processes())[child.pid].state in ("R", "S")
            child.send_signal(signal.SIGKILL)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{child.pid}/stat").read_bytes().rpartition(b") ")[2][:1] != b"Z":
                assert time.monotonic() < deadline, "the child never became a zombie"
                time.sleep(0.01)
            p = by_pid(reader.read_processes())[child.pid]
            assert (p.state, p.rss_kb, p.peak_kb, p.kernel_thread) == ("Z", 0, 0, False)
    finally:
        child.kill()
        child.wait()


def test_smaps_rollup_tells_not_allowed_from_gone_on_the_real_kernel() -> None:
    """Another user's process (init, read as nobody in a forked child): PermissionError when asked
    to say so, None otherwise; a process that is gone is None either way."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to read as nobody")
    child = os.fork()
    if child == 0:  # exit status: 0 denied as expected, 1 None without raise_denied failed, 2 no error
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            if read_smaps_rollup(1) is not None:
                code = 1
            else:
                try:
                    read_smaps_rollup(1, raise_denied=True)
                    code = 2
                except PermissionError:
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert read_smaps_rollup(gone.pid, raise_denied=True) is None
