"""memwatch.cgroups: v2 files on a fixture tree (this machine has no v2 memory controller), names,
mountinfo, then real v1 cgroups on this machine's memory controller."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cgroupfs import CgroupFactory, cgroups  # noqa: F401  (the fixture)
from memwatch import cgroups as cg
from memwatch.cgroups import CgroupReader, Hierarchy, describe, find_memory_hierarchy, parse_v1, parse_v2
from memwatch.model import CgroupMemory

MiB = 1 << 20


# ---------------------------------------------------------------------------------------------
# v2 on a fixture tree: what cannot exist on this machine.

STAT_V2 = (b"anon 104857600\nfile 52428800\nkernel 8388608\nkernel_stack 1048576\npagetables 2097152\n"
           b"sec_pagetables 0\npercpu 65536\nsock 0\nvmalloc 0\nshmem 4194304\nfile_mapped 1048576\n")
STAT_V2_OLD = (b"anon 4096\nfile 8192\nkernel_stack 16384\npagetables 32768\npercpu 1024\nsock 0\n"
               b"slab 65536\nshmem 0\n")
"""memory.stat of a kernel that had no "kernel" line yet: the kernel figure is its parts' sum."""


def write_cgroup(root: Path, rel: str, files: dict[str, bytes]) -> Path:
    d = root / rel.strip("/") if rel.strip("/") else root
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


@pytest.fixture
def v2_tree(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup2"
    write_cgroup(root, "/", {"cgroup.controllers": b"cpuset cpu io memory pids\n", "memory.stat": STAT_V2,
                             "memory.pressure": b"some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
                                                b"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"})
    write_cgroup(root, "/system.slice", {
        "memory.current": b"524288000\n", "memory.max": b"max\n", "memory.high": b"max\n",
        "memory.peak": b"629145600\n", "memory.swap.current": b"1048576\n",
        "memory.events": b"low 0\nhigh 0\nmax 7\noom 2\noom_kill 3\noom_group_kill 0\n",
        "memory.pressure": b"some avg10=1.50 avg60=0.40 avg300=0.10 total=99\n"
                           b"full avg10=0.25 avg60=0.00 avg300=0.00 total=9\n",
        "memory.stat": STAT_V2,
    })
    write_cgroup(root, "/system.slice/nginx.service", {   # no memory.peak, no swap accounting
        "memory.current": b"268435456\n", "memory.max": b"536870912\n", "memory.high": b"402653184\n",
        "memory.events": b"low 0\nhigh 5\nmax 1\noom 1\noom_kill 1\n",
        "memory.pressure": b"some avg10=3.00 avg60=1.00 avg300=0.00 total=5\n"
                           b"full avg10=2.00 avg60=0 avg300=0 total=1\n",
        "memory.stat": STAT_V2_OLD,
    })
    write_cgroup(root, "/gone", {"memory.current": b"1\n", "memory.max": b"max\n", "memory.high": b"max\n"})
    return root


def v2_reader(root: Path, **kw: int) -> CgroupReader:
    return CgroupReader(Hierarchy(2, os.fsencode(root)), **kw)


def test_v2_files_parse() -> None:
    m = parse_v2({"memory.current": b"524288000\n", "memory.max": b"max\n", "memory.high": b"1048576\n",
                  "memory.events": b"high 5\nmax 1\noom 2\noom_kill 3\n", "memory.stat": STAT_V2,
                  "memory.pressure": b"some avg10=1.50 avg60=0 avg300=0 total=1\nfull avg10=0.25 avg60=0 "
                                     b"avg300=0 total=0\n"})
    assert m == CgroupMemory(current_kb=512_000, max_kb=None, high_kb=1024, peak_kb=None, swap_current_kb=None,
                             oom=2, oom_kill=3, high_events=5, max_events=1, pressure_some_avg10=1.5,
                             pressure_full_avg10=0.25, anon_kb=102_400, file_kb=51_200, kernel_kb=8192,
                             shmem_kb=4096)
    assert parse_v2({"memory.stat": STAT_V2_OLD}).kernel_kb == (16384 + 32768 + 1024 + 65536) // 1024
    assert parse_v2({}) == CgroupMemory()                          # no files: every figure unknown
    assert parse_v2({"memory.current": b"garbage\n", "memory.max": b"", "memory.events": b"oom x\n"}) \
        == CgroupMemory()                                          # nor does garbage raise


def test_v1_files_parse() -> None:
    m = parse_v1({"memory.usage_in_bytes": b"104857600\n", "memory.limit_in_bytes": b"9223372036854771712\n",
                  "memory.max_usage_in_bytes": b"209715200\n", "memory.memsw.usage_in_bytes": b"115343360\n",
                  "memory.oom_control": b"oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
                  "memory.failcnt": b"12\n", "memory.kmem.usage_in_bytes": b"3145728\n",
                  "memory.stat": b"cache 1\nrss 2\nshmem 3\ntotal_cache 8388608\ntotal_rss 94371840\n"
                                 b"total_shmem 1048576\n"})
    assert m == CgroupMemory(current_kb=102_400, max_kb=None, peak_kb=204_800, swap_current_kb=10_240,
                             oom_kill=4, max_events=12, anon_kb=92_160, file_kb=8192, kernel_kb=3072, shmem_kb=1024)
    # a limit near 2^63 on 64 KiB pages is no limit either; a real one is in KB
    assert parse_v1({"memory.limit_in_bytes": b"9223372036854710272\n"}).max_kb is None
    assert parse_v1({"memory.limit_in_bytes": b"100663296\n"}).max_kb == 98_304


def test_v2_reader_reads_ancestors_and_copes_with_what_is_missing(v2_tree: Path) -> None:
    with v2_reader(v2_tree) as reader:
        got = reader.read({"/system.slice/nginx.service": b"/system.slice/nginx.service"})
        assert sorted(got) == ["/", "/system.slice", "/system.slice/nginx.service"]   # with its ancestors
        nginx = got["/system.slice/nginx.service"].memory
        assert nginx is not None
        assert (nginx.current_kb, nginx.max_kb, nginx.high_kb) == (262_144, 524_288, 393_216)
        assert (nginx.peak_kb, nginx.swap_current_kb) == (None, None)                 # no such files
        assert (nginx.oom, nginx.oom_kill, nginx.high_events, nginx.pressure_some_avg10) == (1, 1, 5, 3.0)
        assert nginx.kernel_kb == (16384 + 32768 + 1024 + 65536) // 1024               # the parts' sum
        parent = got["/system.slice"].memory
        assert parent is not None
        assert (parent.current_kb, parent.max_kb, parent.high_kb, parent.swap_current_kb) == (512_000, None, None, 1024)
        root = got["/"].memory
        assert root is not None and root.current_kb is None and root.anon_kb == 102_400   # v2's root: no memory.current
        assert got["/system.slice"].ino == (v2_tree / "system.slice").stat().st_ino
        assert reader.open_files > 0
        # the next tick re-reads the cheap files from the descriptors it kept
        (v2_tree / "system.slice" / "nginx.service" / "memory.current").write_bytes(b"1048576\n")
        again = reader.read({"/system.slice/nginx.service": b"/system.slice/nginx.service"})
        assert again["/system.slice/nginx.service"].memory.current_kb == 1024  # type: ignore[union-attr]
    assert reader.open_files == 0


def test_a_cgroup_that_vanishes_mid_read_is_left_out(v2_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = v2_tree / "gone"
    real_open = os.open

    def opening(path: bytes | str, flags: int, *args: int, **kw: int) -> int:
        if os.fsdecode(path).endswith("/gone/memory.high"):
            shutil.rmtree(gone)    # removed between two files of one read
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(cg.os, "open", opening)
    with v2_reader(v2_tree, keep_open=0) as reader:
        got = reader.read({"/gone": b"/gone", "/system.slice": b"/system.slice"})
    assert "/system.slice" in got and got["/gone"].memory is None
    assert reader.vanished == {"/gone"}, "the collector is told, to look where its processes went"


def test_watched_cgroups_are_read_while_they_exist(v2_tree: Path) -> None:
    # files read by path: a plain file kept open still reads after its directory is removed,
    # where a cgroup's reads ENODEV (the real test below)
    with v2_reader(v2_tree, keep_open=0) as reader:
        reader.watch("/system.slice/nginx.service")
        assert "/system.slice/nginx.service" in reader.read({})
        shutil.rmtree(v2_tree / "system.slice" / "nginx.service")
        assert "/system.slice/nginx.service" not in reader.read({})
        assert reader.vanished == set(), "nobody's process was in it"
        write_cgroup(v2_tree, "/system.slice/nginx.service", {"memory.current": b"0\n"})
        assert "/system.slice/nginx.service" not in reader.read({}), "no longer watched once gone"


def test_resolve_walks_for_a_cgroup_never_read(v2_tree: Path) -> None:
    with v2_reader(v2_tree) as reader:
        ino = (v2_tree / "system.slice" / "nginx.service").stat().st_ino
        assert reader.resolve(ino) == "/system.slice/nginx.service"
        assert reader.resolve(0) is None
        assert reader.resolve(1 << 60) is None


# ---------------------------------------------------------------------------------------------
# Finding the hierarchy.

HYBRID_MOUNTINFO = b"""\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/mem\\040ory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
77 35 0:32 /docker/abc /mnt/inner rw,relatime - cgroup cgroup rw,memory
"""


def test_the_memory_hierarchy_comes_from_mountinfo(tmp_path: Path) -> None:
    info, own = tmp_path / "mountinfo", tmp_path / "cgroup"
    info.write_bytes(HYBRID_MOUNTINFO)
    own.write_bytes(b"4:memory:/x\n1:cpu:/\n0::/\n")
    h = find_memory_hierarchy(str(info), str(own))
    assert h == Hierarchy(1, b"/sys/fs/cgroup/mem ory", b"/", True)   # \040 is a space; the whole tree
    # no v1 memory line: the v2 mount, memory or not
    own.write_bytes(b"0::/user.slice\n")
    v2 = find_memory_hierarchy(str(info), str(own))
    assert v2 is not None and (v2.version, v2.mount) == (2, b"/sys/fs/cgroup/unified")
    info.write_bytes(b"32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    assert find_memory_hierarchy(str(info), str(own)) is None
    assert find_memory_hierarchy(str(tmp_path / "absent"), str(own)) is None


def test_a_mount_of_a_subtree_finds_directories_under_its_root() -> None:
    h = Hierarchy(1, b"/mnt/inner", b"/docker/abc")
    assert h.directory(b"/docker/abc") == b"/mnt/inner"
    assert h.directory(b"/docker/abc/child x") == b"/mnt/inner/child x"
    assert h.directory(b"/docker/abcd") is None         # not under the root, whatever its prefix
    assert h.directory(b"/other") is None
    assert h.directory(b"/docker/abc/../../etc") is None
    assert Hierarchy(2, b"/sys/fs/cgroup").directory(b"/") == b"/sys/fs/cgroup"


def test_this_machine_has_a_memory_hierarchy() -> None:
    """The tests below need one; on this VM it is v1 memory beside a v2 hierarchy without it."""
    h = find_memory_hierarchy()
    if h is None:
        pytest.skip("no memory cgroup hierarchy mounted")
    mine = Path("/proc/self/cgroup").read_bytes()
    path = cg._decode(next((line.split(b":", 2)[2] for line in mine.splitlines()
                            if b"memory" in line.split(b":")[1].split(b",")), b"/"))
    directory = h.directory(os.fsencode(path))
    assert directory is not None and os.path.isdir(directory)


# ---------------------------------------------------------------------------------------------
# Names from paths.

DOCKER = "0123456789ab" + "c" * 52
POD = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"


@pytest.mark.parametrize(
    ("path", "name", "kind"),
    [
        ("/", "root", "root"),
        ("/system.slice/nginx.service", "nginx.service", "service"),
        ("/system.slice", "system.slice", "slice"),
        ("/user.slice/user-1000.slice/session-3.scope", "session-3.scope", "scope"),
        ("/system.slice/system-systemd\\x2dfsck.slice", "system-systemd-fsck.slice", "slice"),
        ("/system.slice/caf\\xe9.service", "caf\\xe9.service", "service"),     # not UTF-8: stays escaped
        (f"/system.slice/docker-{DOCKER}.scope", "docker 0123456789ab", "container"),
        (f"/docker/{DOCKER}", "docker 0123456789ab", "container"),
        (f"/machine.slice/libpod-{DOCKER}.scope", "podman 0123456789ab", "container"),
        (f"/machine.slice/libpod-conmon-{DOCKER}.scope", "podman conmon 0123456789ab", "container"),
        (f"/system.slice/cri-containerd-{DOCKER}.scope", "containerd 0123456789ab", "container"),
        (f"/system.slice/crio-{DOCKER}.scope", "cri-o 0123456789ab", "container"),
        ("/kubepods.slice", "k8s pods", "qos"),
        ("/kubepods.slice/kubepods-burstable.slice", "k8s burstable pods", "qos"),
        ("/kubepods/besteffort", "k8s besteffort pods", "qos"),
        (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice",
         f"pod {POD} (burstable)", "pod"),
        (f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice", f"pod {POD} (guaranteed)", "pod"),
        (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD.replace('-', '_')}.slice/"
         f"cri-containerd-{DOCKER}.scope", f"containerd 0123456789ab in pod {POD}", "container"),
        (f"/kubepods/burstable/pod{POD}", f"pod {POD} (burstable)", "pod"),
        (f"/kubepods/pod{POD}/{DOCKER}", f"container 0123456789ab in pod {POD}", "container"),
        ("/a b/odd\nname\x1b[2J", "odd\nname\x1b[2J", "cgroup"),             # names are data; views escape
    ],
)
def test_names_from_paths(path: str, name: str, kind: str) -> None:
    d = describe(path)
    assert (d.name, d.kind) == (name, kind)


def test_identity_details_for_views() -> None:
    d = describe(f"/kubepods/burstable/pod{POD}/{DOCKER}")
    assert (d.container_id, d.pod_uid, d.qos) == (DOCKER, POD, "burstable")
    assert describe(f"/system.slice/docker-{DOCKER}.scope").runtime == "docker"


# ---------------------------------------------------------------------------------------------
# The real v1 memory controller of this machine.


def test_a_real_cgroup_with_a_workload_matches_the_kernels_files(cgroups: CgroupFactory) -> None:  # noqa: F811
    group = cgroups.make(b"hold")
    group.limit(256 * MiB)
    shm = Path(f"/dev/shm/memwatch-test-{os.getpid()}")
    proc = group.hold(48 * MiB, shm, 24 * MiB)
    try:
        with CgroupReader() as reader:
            got = reader.read({group.path: group.raw})
            kernel_usage = group.number("memory.usage_in_bytes" if group.hierarchy.version == 1 else "memory.current")
        m = got[group.path].memory
        assert m is not None and m.current_kb is not None
        assert abs(m.current_kb - kernel_usage // 1024) <= 2048, "the same figure, read a moment apart"
        assert m.current_kb >= (48 + 24) * 1024, "what it holds, tmpfs included"
        assert m.max_kb == 256 * 1024
        assert m.anon_kb is not None and m.anon_kb >= 48 * 1024
        assert m.shmem_kb is not None and m.shmem_kb >= 24 * 1024, "tmpfs: charged to it, in no RSS"
        assert m.oom_kill == 0 and m.kernel_kb is not None
        assert got[group.path].ino == group.ino
        assert "/" in got, "its ancestors are read with it"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
        shm.unlink(missing_ok=True)


@pytest.mark.parametrize("leaf", [b"sp ace", b"esc\x1b]0;title\x07", b"caf\xe9\xff", b"4:memory:x", b"back\\x2dslash"])
def test_odd_real_names_are_read_and_resolved(cgroups: CgroupFactory, leaf: bytes) -> None:  # noqa: F811
    group = cgroups.make(b"odd-" + leaf)
    proc = group.spawn(["sleep", "60"])
    try:
        from memwatch.procfs import ProcReader

        with ProcReader() as procs, CgroupReader() as reader:
            sample = next(s for s in procs.read_processes() if s.pid == proc.pid)
            # /proc names it raw; the sample shows it decoded; the reader finds it from the raw path
            assert sample.memory_cgroup == group.path
            got = reader.read(procs.memory_cgroup_paths())
            assert got[group.path].memory is not None
            assert got[group.path].memory.current_kb is not None  # type: ignore[union-attr]
        with CgroupReader() as fresh:
            assert fresh.resolve(group.ino) == group.path, "found by walking the hierarchy"
    finally:
        proc.kill()
        proc.wait()


def test_the_kernel_refuses_a_newline_in_a_cgroup_name(cgroups: CgroupFactory) -> None:  # noqa: F811
    """So /proc/PID/cgroup lines cannot be split by one (procfs copes all the same)."""
    with pytest.raises(OSError) as err:
        cgroups.make(b"new\nline")
    assert err.value.errno == 22


def test_a_real_cgroup_removed_between_ticks_is_said_to_have_vanished(cgroups: CgroupFactory) -> None:  # noqa: F811
    group = cgroups.make(b"short-lived")
    with CgroupReader() as reader:
        assert reader.read({group.path: group.raw})[group.path].memory is not None
        assert reader.open_files > 0, "its files are held open between ticks"
        os.rmdir(group.directory)    # kernfs: the descriptors kept now read as ENODEV
        got = reader.read({group.path: group.raw})
        assert got[group.path].memory is None and reader.vanished == {group.path}
        os.mkdir(group.directory)    # made again under the same name: a new cgroup, read afresh
        got = reader.read({group.path: group.raw})
        assert got[group.path].memory is not None and got[group.path].ino == group.ino


def test_the_hierarchys_own_names_resolve(cgroups: CgroupFactory) -> None:  # noqa: F811
    parent = cgroups.make(b"parent")
    child = cgroups.make(b"child", parent)
    proc = child.spawn(["sleep", "60"])
    try:
        with CgroupReader() as reader:
            got = reader.read({child.path: child.raw})
            assert {child.path, parent.path, "/"} <= set(got)
            assert reader.resolve(parent.ino) == parent.path
        ps = subprocess.run(["cat", f"/proc/{proc.pid}/cgroup"], capture_output=True, check=True).stdout
        assert child.raw in ps
    finally:
        proc.kill()
        proc.wait()
