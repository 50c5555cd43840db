"""memwatch.groups and the store's groups: the process tree, cgroup and user sums, then the live
source on real cgroups of this machine's memory controller."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cgroupfs import CgroupFactory, cgroups  # noqa: F401  (the fixture)
from frames import HOG_PID, SESSION_CGROUP, make_frames
from memwatch.cgroups import CgroupReading
from memwatch.groups import GROUP_SORT_KEYS, build_cgroups, build_users, process_tree, rank, totals_of
from memwatch.model import (
    CgroupMemory,
    Event,
    EventKind,
    GroupTotals,
    KernelCounts,
    ProcessSample,
    ProcessView,
    SmapsRollup,
    SystemMemory,
    TracerHealth,
)
from memwatch.serialize import snapshot_from_dict, snapshot_to_dict
from memwatch.sources.live import LiveSource
from memwatch.store import Store

MiB = 1 << 20


def proc(pid: int, ppid: int, *, rss: int = 100, start: int = 10, cgroup: str = "/", uid: int = 1000,
         user: str = "alice", kernel: KernelCounts | None = None, pss: int | None = None,
         growth: float | None = None, kthread: bool = False, swap: int = 0) -> ProcessView:
    sample = ProcessSample(pid, ppid, f"p{pid}", "", user, start, 0.0, 1, rss, 0, 0, swap, 0, 0, "",
                           kthread, uid=uid, memory_cgroup=cgroup)
    return ProcessView(sample, kernel, SmapsRollup(pss, pss, 0) if pss is not None else None, growth_kb_s=growth)


# ---------------------------------------------------------------------------------------------
# The process tree.


def test_tree_of_the_frames_has_subtree_sums() -> None:
    snap = make_frames(5)[1]
    tree = process_tree(snap)
    assert tree == process_tree(snap.processes), "of a snapshot or of its processes"
    assert len(tree) == len(snap.processes)
    by_pid = {k[0]: n for k, n in tree.nodes.items()}
    assert {k[0] for k in tree.roots} == {1, 2}                 # init and kthreadd
    bash = by_pid[1001]
    assert (bash.depth, bash.parent) == (2, by_pid[812].key)    # init -> sshd -> bash
    below = [v for v in snap.processes if v.sample.ppid == 1001]
    assert {c[0] for c in bash.children} == {v.pid for v in below}
    assert bash.subtree == totals_of([by_pid[1001].view, *below])
    assert bash.subtree.processes == 1 + len(below)
    init = by_pid[1]
    assert init.subtree.rss_kb == sum(v.sample.rss_kb for v in snap.processes)   # every user process
    assert by_pid[2].subtree.processes == 0, "kernel threads are in the tree, not in its sums"
    rows = tree.rows("rss")
    assert [n.view.pid for n in rows[:3]] == [1, 812, 1001], "the hog makes sshd's subtree the largest"
    assert rows[-1].view.pid == 2
    assert [n.key for n in tree.path_to(bash.key)] == [init.key, by_pid[812].key, bash.key]


def test_tree_rows_put_parents_first_and_rank_siblings_by_their_subtree() -> None:
    views = [proc(1, 0, rss=10), proc(2, 1, rss=5), proc(3, 1, rss=50), proc(4, 2, rss=100), proc(5, 3, rss=1)]
    rows = process_tree(views).rows("rss")
    # 2's subtree (105) outranks 3's (51) though 3 alone is larger
    assert [n.view.pid for n in rows] == [1, 2, 4, 3, 5]
    assert [n.depth for n in rows] == [0, 1, 2, 1, 2]
    assert [n.view.pid for n in process_tree(views).rows("pid")] == [1, 2, 4, 3, 5]
    assert [n.view.pid for n in process_tree(views).rows("name")] == [1, 2, 4, 3, 5]
    with pytest.raises(ValueError, match="cannot be sorted by 'bogus'"):
        process_tree(views).rows("bogus")


def test_a_younger_process_with_the_ppid_is_not_the_parent() -> None:
    """The parent exited and its pid was reused: the child's ppid names a stranger."""
    views = [proc(10, 0, start=500), proc(11, 10, start=100)]
    tree = process_tree(views)
    assert set(tree.roots) == {(10, 500), (11, 100)}


def test_a_loop_from_damaged_data_becomes_a_root_and_a_deep_chain_is_fine() -> None:
    looped = [proc(1, 3), proc(2, 1), proc(3, 2), proc(4, 2)]
    tree = process_tree(looped)
    assert len(tree.roots) == 1 and len(tree.rows()) == 4
    root = tree.nodes[tree.roots[0]]
    assert root.subtree.processes == 4
    chain = [proc(i, i - 1) for i in range(1, 5001)]
    deep = process_tree(chain)
    assert deep.nodes[(1, 10)].subtree.processes == 5000 and deep.nodes[(5000, 10)].depth == 4999


def test_sums_keep_unknown_as_unknown() -> None:
    counts = KernelCounts(mmap_count=3, munmap_count=1, brk_count=2, mremap_count=1, outstanding_bytes=4096)
    t = totals_of([proc(1, 0, rss=100, kernel=counts, pss=80, growth=1.5, swap=7),
                   proc(2, 0, rss=50, kernel=counts), proc(3, 0, kthread=True, rss=999)])
    assert t == GroupTotals(processes=2, rss_kb=150, swap_kb=7, pss_kb=80, pss_processes=1, mmap_count=6,
                            munmap_count=2, brk_count=4, mremap_count=2, outstanding_bytes=8192, growth_kb_s=1.5)
    off = totals_of([proc(1, 0)])
    assert (off.pss_kb, off.mmap_count, off.outstanding_bytes, off.growth_kb_s) == (None, None, None, None)


# ---------------------------------------------------------------------------------------------
# Cgroups and users.


def test_cgroups_sum_their_processes_and_those_below() -> None:
    views = [proc(1, 0, rss=10, cgroup="/init.scope"), proc(2, 1, rss=20, cgroup="/system.slice/a.service"),
             proc(3, 1, rss=30, cgroup="/system.slice/a.service"), proc(4, 1, rss=40, cgroup="/system.slice/b b"),
             proc(5, 1, rss=999, cgroup="/system.slice", kthread=True)]
    reading = CgroupReading(77, CgroupMemory(current_kb=500, max_kb=1024))
    groups = build_cgroups(views, {"/system.slice/a.service": reading, "/watched": CgroupReading(5, None)},
                           version=2, oom_events={"/system.slice/a.service": 2, "/system.slice": 2, "/": 2})
    by_path = {c.path: c for c in groups}
    assert [c.path for c in groups] == ["/", "/init.scope", "/system.slice", "/system.slice/a.service",
                                        "/system.slice/b b", "/watched"]          # tree order
    a = by_path["/system.slice/a.service"]
    assert (a.name, a.kind, a.version, a.ino, a.memory) == ("a.service", "service", 2, 77, reading.memory)
    assert (a.totals.processes, a.totals.rss_kb, a.own.rss_kb, a.oom_events) == (2, 50, 50, 2)
    sl = by_path["/system.slice"]
    assert (sl.totals.processes, sl.totals.rss_kb, sl.own.processes) == (3, 90, 0), "hierarchical; kthreads out"
    assert (sl.memory, sl.depth, sl.parent_path) == (None, 1, "/")
    assert by_path["/"].totals.rss_kb == 100 and by_path["/"].parent_path is None
    assert by_path["/watched"].totals.processes == 0, "read for its OOM kills, no process in it"
    assert by_path["/system.slice/b b"].parent_path == "/system.slice"


def test_users_by_uid() -> None:
    views = [proc(1, 0, rss=10, uid=0, user="root"), proc(2, 0, rss=20), proc(3, 0, rss=30),
             proc(4, 0, rss=5, uid=-1, user="old"), proc(5, 0, uid=0, user="root", kthread=True)]
    users = build_users(views)
    assert [(u.uid, u.name, u.totals.processes, u.totals.rss_kb) for u in users] == [
        (-1, "old", 1, 5), (0, "root", 1, 10), (1000, "alice", 2, 50)]


def test_a_tally_kept_through_changes_equals_a_fresh_sum() -> None:
    """The store's GroupTally is told of every view that comes, changes and goes: after a long run
    of random changes its cgroups and users are those a fresh sum of the survivors gives, and a
    group nothing touched keeps its view object."""
    import random

    from memwatch.groups import GroupTally

    rnd = random.Random(7)
    paths = ["/a", "/a/b", "/a/b/c", "/d", "/", "/d/e f"]
    counts = [None, KernelCounts(mmap_count=2, outstanding_bytes=8192), KernelCounts(brk_count=5)]

    def make(pid: int) -> ProcessView:
        uid = rnd.choice([0, 1000, -1])   # a uid has one name; an unknown one is grouped by name
        user = {0: "root", 1000: "alice"}.get(uid) or rnd.choice(["old", "older"])
        return proc(pid, 1, rss=rnd.randrange(1, 10_000), cgroup=rnd.choice(paths), uid=uid, user=user,
                    kernel=rnd.choice(counts),
                    pss=rnd.choice([None, rnd.randrange(100)]), growth=rnd.choice([None, 0.0, 0.1, 1e-9, -2.5, 1e6]),
                    kthread=rnd.random() < 0.1, swap=rnd.randrange(3))

    tally, live = GroupTally(), {}
    for step in range(3000):
        pid = rnd.randrange(200)
        new = make(pid) if rnd.random() < 0.8 else None
        tally.replace(live.pop(pid, None), new)
        if new is not None:
            live[pid] = new
        if step % 500 == 0:
            readings = {"/watched": CgroupReading(5, None)}
            assert tally.cgroups(readings, version=2) == build_cgroups(live.values(), readings, version=2)
            assert tally.users() == build_users(live.values())
    before = tally.cgroups()
    users = tally.users()
    moved = next(v for v in live.values() if not v.sample.kernel_thread and v.sample.memory_cgroup == "/d")
    tally.replace(moved, proc(moved.pid, 1, rss=moved.sample.rss_kb + 1, cgroup="/d", uid=moved.sample.uid,
                              user=moved.sample.user, kernel=moved.kernel))
    after = {c.path: c for c in tally.cgroups()}
    untouched = [c for c in before if c.path in ("/a", "/a/b", "/a/b/c", "/d/e f")]
    assert all(after[c.path] is c for c in untouched)
    assert after["/d"] is not before[[c.path for c in before].index("/d")]
    assert sum(u is v for u, v in zip(tally.users(), users, strict=True)) >= len(users) - 1


def test_rank_by_any_group_figure() -> None:
    views = [proc(1, 0, rss=10, cgroup="/a"), proc(2, 0, rss=30, cgroup="/b"), proc(3, 0, rss=20, cgroup="/c")]
    groups = build_cgroups(views, {"/a": CgroupReading(1, CgroupMemory(current_kb=900)),
                                   "/c": CgroupReading(2, CgroupMemory(current_kb=50))})
    leaves = [g for g in groups if g.path != "/"]
    assert [g.path for g in rank(leaves, "rss")] == ["/b", "/c", "/a"]
    assert [g.path for g in rank(leaves, "memory")] == ["/a", "/c", "/b"], "the kernel's usage, then the rest"
    assert [g.path for g in rank(leaves, "name")] == ["/a", "/b", "/c"]
    for key in GROUP_SORT_KEYS:
        assert len(rank(groups, key)) == 4
    with pytest.raises(ValueError, match="choose one of"):
        rank(groups, "virt")


# ---------------------------------------------------------------------------------------------
# The store: groups in every snapshot, OOM kills counted per cgroup.

SYSTEM = SystemMemory(1000, 500, 500, 400, 0, 0)
ON = TracerHealth(enabled=True, mode="raw")


def sample(pid: int, cgroup: str, rss: int = 100, uid: int = 1000) -> ProcessSample:
    return ProcessSample(pid, 1, f"p{pid}", "", "alice", 50 + pid, 0.0, 1, rss, 0, 0, 0, 0, 0, "", False,
                         uid=uid, memory_cgroup=cgroup)


def test_the_store_counts_oom_kills_per_cgroup_and_fills_in_an_unknown_one() -> None:
    store = Store()
    victim, other = sample(10, "/pods/a"), sample(11, "/pods/b")
    store.update(1.0, 3, [victim, other], {}, SYSTEM, ON)
    # the kernel named the cgroup of one kill; of the other (an older kernel) it did not
    store.add_events([Event(1.5, EventKind.OOM, 11, 11, "p11", start_ticks=61, cgroup="/pods/b", cgroup_id=9),
                      Event(1.6, EventKind.OOM, 10, 10, "p10", start_ticks=60)])
    snap = store.update(2.0, 3, [other], {}, SYSTEM, ON)
    oom = [e for e in snap.new_events if e.kind is EventKind.OOM]
    assert [e.cgroup for e in oom] == ["/pods/b", "/pods/a"], "the victim's cgroup as last read stands in"
    by_path = {c.path: c for c in snap.cgroups}
    assert (by_path["/pods/b"].oom_events, by_path["/pods"].oom_events, by_path["/"].oom_events) == (1, 2, 2)
    assert "/pods/a" not in by_path, "no process left in it and nobody read it"
    assert store.oom_kills("/pods/a") == 1
    # a reused pid is not the victim
    store.add_events([Event(2.5, EventKind.OOM, 11, 11, "p11", start_ticks=999)])
    assert store.update(3.0, 3, [other], {}, SYSTEM, ON).new_events[0].cgroup is None


def test_a_store_without_groups_makes_none() -> None:
    snap = Store(groups=False).update(1.0, 3, [sample(1, "/a")], {}, SYSTEM, ON)
    assert (snap.cgroups, snap.users) == ((), ())


def test_groups_round_trip_and_old_frames_read_without_them() -> None:
    frames = make_frames(5)
    last = frames[-1]
    assert last.cgroups and last.users
    again = snapshot_from_dict(snapshot_to_dict(last))
    assert again == last and again.cgroups == last.cgroups and again.users == last.users
    session = next(c for c in again.cgroups if c.path == SESSION_CGROUP)
    assert session.oom_events == 1 and session.memory is not None and session.memory.oom_kill == 1
    hog_oom = next(e for e in again.new_events if e.pid == HOG_PID)
    assert (hog_oom.cgroup, hog_oom.cgroup_id) == (SESSION_CGROUP, 4242)
    # a frame from before groups: no cgroups, users or OOM cgroup, no uid or memory cgroup
    d = snapshot_to_dict(last)
    del d["cgroups"], d["users"]
    for v in d["processes"]:
        del v["sample"]["uid"], v["sample"]["memory_cgroup"]
    for e in d["new_events"] + d["events"]:
        del e["cgroup"], e["cgroup_id"]
    old = snapshot_from_dict(d)
    assert (old.cgroups, old.users) == ((), ())
    assert old.processes[0].sample.uid == -1 and old.processes[0].sample.memory_cgroup == ""
    assert all(e.cgroup is None for e in old.events)


# ---------------------------------------------------------------------------------------------
# The live source on real cgroups (v1 memory controller here).


async def test_live_snapshots_carry_real_cgroups_with_the_kernels_figures(cgroups: CgroupFactory) -> None:  # noqa: F811
    parent = cgroups.make(b"app")
    web = cgroups.make(b"web", parent)
    web.limit(300 * MiB)
    shm = Path(f"/dev/shm/memwatch-groups-{os.getpid()}")
    holders = [web.hold(40 * MiB), web.hold(24 * MiB, shm, 16 * MiB)]
    sleeper = parent.spawn(["sleep", "60"])
    source = LiveSource(0.5, use_bpf=False)
    try:
        snap = await source.open()
        snap = await source.next()    # memory.stat is read on the first tick; figures settle
        by_path = {c.path: c for c in snap.cgroups}
        w, p = by_path[web.path], by_path[parent.path]
        mine = [v for v in snap.processes if v.sample.memory_cgroup == web.path]
        assert {v.pid for v in mine} == {h.pid for h in holders}
        # the processes' sums, exactly
        assert w.totals.processes == 2 and w.totals.rss_kb == sum(v.sample.rss_kb for v in mine)
        assert p.totals.processes == 3 and p.own.processes == 1, "the parent counts its child's processes"
        assert p.totals.rss_kb == w.totals.rss_kb + sum(v.sample.rss_kb for v in snap.processes
                                                          if v.pid == sleeper.pid)
        # the kernel's own figures, read a moment apart
        m = w.memory
        assert m is not None and m.current_kb is not None and m.max_kb == 300 * 1024
        usage_kb = web.number("memory.usage_in_bytes" if web.hierarchy.version == 1 else "memory.current") // 1024
        assert abs(m.current_kb - usage_kb) <= 4096
        assert m.current_kb >= (40 + 24 + 16) * 1024, "tmpfs included: what RSS misses"
        assert m.shmem_kb is not None and m.shmem_kb >= 16 * 1024
        assert m.anon_kb is not None and m.anon_kb >= 60 * 1024
        assert p.memory is not None and p.memory.current_kb is not None and p.memory.current_kb >= m.current_kb
        assert (w.ino, w.version, w.name, w.kind) == (web.ino, web.hierarchy.version, "web", "cgroup")
        assert any(u.uid == 0 and u.totals.processes >= 4 for u in snap.users)
        # a vanishing cgroup is normal: its processes are moved out and it is removed
        for h in holders:
            assert h.stdin is not None
            h.stdin.close()
            h.wait(10)
        sleeper.kill()
        sleeper.wait()
        web.remove()
        deadline = time.monotonic() + 10
        while web.path in {c.path for c in snap.cgroups} and time.monotonic() < deadline:
            snap = await source.next()
        assert web.path not in {c.path for c in snap.cgroups}
    finally:
        await source.close()
        shm.unlink(missing_ok=True)
        for h in holders:
            h.kill()
            h.wait()


async def test_a_process_moved_to_another_cgroup_is_followed_when_its_cgroup_goes(
        cgroups: CgroupFactory) -> None:  # noqa: F811
    old, new = cgroups.make(b"old"), cgroups.make(b"new")
    sleeper = old.spawn(["sleep", "60"])
    source = LiveSource(0.3, use_bpf=False)
    try:
        snap = await source.open()
        assert next(v for v in snap.processes if v.pid == sleeper.pid).sample.memory_cgroup == old.path
        new.write("cgroup.procs", str(sleeper.pid))   # moved without an exec: /proc/PID/cgroup is
        old.remove()                                  # not re-read until its old cgroup goes
        for _ in range(3):
            snap = await source.next()
        assert next(v for v in snap.processes if v.pid == sleeper.pid).sample.memory_cgroup == new.path
        assert next(c for c in snap.cgroups if c.path == new.path).totals.processes == 1
    finally:
        await source.close()
        sleeper.kill()
        sleeper.wait()
