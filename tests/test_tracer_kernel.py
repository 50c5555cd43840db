"""The tracer on the real kernel: exact counts for a workload whose every call is known.

Each test drives tests/workload.c (no malloc, no stdio, threads on static stacks) so the only
memory syscalls it makes between two readings are the ones the test asks for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import Workload, loaded_programs
from memwatch.ebpf import RawCall, RawExit, RawStats, Tracer
from memwatch.ebpf.layouts import EV_BRK, EV_MMAP, EV_MREMAP, EV_MUNMAP, LIVE_SLOTS, parse_counts
from memwatch.procfs import ProcReader
from memwatch.task_table import TaskTable

pytestmark = pytest.mark.bpf

K = 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
NUMERIC = [f.name for f in fields(RawStats) if f.name not in ("tgid", "comm", "start_boottime_ns")]


def stats_of(tracer: Tracer, pid: int) -> dict[str, int]:
    st = tracer.read_stats().get(pid)
    return {name: getattr(st, name) if st else 0 for name in NUMERIC}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def exit_events(tracer: Tracer, pid: int, timeout_s: float = 5.0) -> list[RawExit]:
    """The exit events of ``pid`` once at least one has arrived (or the timeout passed)."""
    exits: list[RawExit] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not exits:
        exits = [e for e in tracer.life.drain() if isinstance(e, RawExit) and e.tgid == pid]
        time.sleep(0.02)
    return exits


def events_of(tracer: Tracer, pid: int) -> list[RawCall]:
    return [e for e in tracer.ring.drain(1 << 20) if isinstance(e, RawCall) and e.tgid == pid]


@pytest.fixture(params=["raw", "tracepoint"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "tracepoint":
        request.getfixturevalue("tracefs")
    return str(request.param)


def test_exact_counts_every_call_kind(open_tracer: Callable[..., Tracer], workload: Workload,
                                      mode: str) -> None:
    tracer = open_tracer(mode=mode, events_per_sec=0)
    assert tracer.mode == mode
    w = workload
    w("pid")
    before = stats_of(tracer, w.pid)
    tracer.ring.drain(1 << 20)

    # whole mapping
    a = w(f"mmap {64 * K}")
    assert w(f"munmap {a} {64 * K}") == 0
    # partial unmaps of one mapping: head, tail, a hole in the middle, then the rest
    b = w(f"mmap {1024 * K}")
    assert w(f"munmap {b} {256 * K}") == 0                          # head: tracked
    assert w(f"munmap {b + 768 * K} {256 * K}") == 0                # tail: tracked
    assert w(f"munmap {b + 260 * K} {4 * K}") == 0                  # strict middle: untracked
    assert w(f"munmap {b + 256 * K} {4 * K}") == 0                  # new head: tracked
    assert w(f"munmap {b + 260 * K} {508 * K}") == 0                # the rest, over the hole
    # one munmap spanning three adjacent traced mappings
    r = w(f"mmap {64 * K}")
    assert w(f"munmap {r} {64 * K}") == 0
    assert w(f"mmap {16 * K} {r}") == r
    assert w(f"mmap {16 * K} {r + 16 * K}") == r + 16 * K
    assert w(f"mmap {32 * K} {r + 32 * K}") == r + 32 * K
    assert w(f"munmap {r} {64 * K}") == 0
    # MAP_FIXED over a traced mapping replaces it
    f = w(f"mmap {8 * K}")
    assert w(f"mmap {8 * K} {f}") == f
    assert w(f"munmap {f} {8 * K}") == 0
    # brk: query, grow, shrink twice, a failure, another query
    cur = w("brk 0")
    assert w(f"brk {cur + 64 * K}") == cur + 64 * K
    assert w(f"brk {cur + 32 * K}") == cur + 32 * K
    assert w(f"brk {cur}") == cur
    assert w("brk 1") == cur                                          # below the heap: fails
    assert w("brk 0") == cur
    # mremap: grow (may move), shrink in place, then unmap what is left
    g = w(f"mmap {64 * K}")
    g2 = w(f"mremap {g} {64 * K} {128 * K} 1")
    assert g2 > 0
    assert w(f"mremap {g2} {128 * K} {32 * K} 0") == g2
    assert w(f"munmap {g2} {32 * K}") == 0
    # failures are not counted as calls
    assert w("badmmap") == -22
    assert w(f"munmap {PAGE + 1} {PAGE}") == -22
    assert w(f"mremap 0 {PAGE} {2 * PAGE} 0") < 0
    # threads land on their process
    assert w(f"threads 4 10 {16 * K}") == 0

    d = delta(stats_of(tracer, w.pid), before)
    assert d["mmap_count"] == 1 + 1 + 4 + 2 + 1 + 40
    assert d["mmap_bytes"] == (64 + 1024 + 64 + 16 + 16 + 32 + 8 + 8 + 64 + 40 * 16) * K
    assert d["munmap_count"] == 1 + 5 + 2 + 1 + 1 + 40
    assert d["munmap_bytes"] == (64 + 256 + 256 + 4 + 4 + 508 + 64 + 64 + 8 + 32 + 40 * 16) * K
    assert d["brk_count"] == 3
    assert d["brk_grow_bytes"] == 64 * K
    assert d["brk_shrink_bytes"] == 64 * K
    assert d["mremap_count"] == 2
    assert d["mremap_grow_bytes"] == 64 * K
    assert d["mremap_shrink_bytes"] == 96 * K
    assert d["outstanding_bytes"] == 0
    assert d["untracked_unmap_bytes"] == 4 * K
    assert d["failed_calls"] == 4
    after = stats_of(tracer, w.pid)
    assert after["outstanding_peak"] >= before["outstanding_bytes"] + 1024 * K

    # the ring buffer delivered the calls with their fields
    evs = events_of(tracer, w.pid)
    mm = [e for e in evs if e.kind == EV_MMAP]
    assert [e.addr for e in mm if e.len == 1024 * K] == [b]
    assert all(e.tgid == w.pid and e.comm == "workload" for e in evs)
    assert sum(1 for e in evs if e.kind == EV_MUNMAP) == d["munmap_count"]
    brk = [(e.addr, e.new_addr) for e in evs if e.kind == EV_BRK]
    assert brk == [(cur, cur + 64 * K), (cur + 64 * K, cur + 32 * K), (cur + 32 * K, cur)]
    rem = [(e.addr, e.len, e.new_addr, e.new_len) for e in evs if e.kind == EV_MREMAP]
    assert rem == [(g, 64 * K, g2, 128 * K), (g2, 128 * K, g2, 32 * K)]
    assert {e.tid for e in evs} - {w.pid}, "thread events carry their thread ids"


def test_mappings_beyond_the_live_slots(open_tracer: Callable[..., Tracer], workload: Workload,
                                        mode: str) -> None:
    """The newest mappings sit in the process's live slots, older ones in active_allocs: unmaps
    resolve across both, including one munmap that spans mappings in each."""
    tracer = open_tracer(mode=mode, events_per_sec=0)
    w = workload
    w("pid")
    n, size = LIVE_SLOTS + 4, 16 * K
    region = w(f"mmap {n * size}")
    assert w(f"munmap {region} {n * size}") == 0
    before = stats_of(tracer, w.pid)
    entries = tracer.map_tgids("active_allocs").count(w.pid)
    m = [w(f"mmap {size} {region + i * size}") for i in range(n)]
    assert m == [region + i * size for i in range(n)]
    assert tracer.map_tgids("active_allocs").count(w.pid) == entries + 4, "the 4 oldest were pushed out"

    assert w(f"munmap {m[0] + 8 * K} {8 * K}") == 0           # tail of an old mapping: untracked
    assert w(f"munmap {m[n - 1] + 8 * K} {8 * K}") == 0       # tail of a recent one: tracked
    assert w(f"munmap {m[1]} {4 * K}") == 0                   # head of an old one: tracked
    assert w(f"munmap {m[1] + 4 * K} {size - 4 * K + size}") == 0   # the rest of m1, and m2
    assert w(f"munmap {m[3]} {8 * size}") == 0                # m3 (map) and m4..m10 (slots)
    assert w(f"munmap {m[n - 1]} {8 * K}") == 0               # what is left of the newest
    assert w(f"munmap {m[0]} {8 * K}") == 0                   # head of m0; its tail entry stays

    d = delta(stats_of(tracer, w.pid), before)
    assert d["mmap_count"] == n
    assert d["munmap_count"] == 7
    assert d["untracked_unmap_bytes"] == 8 * K
    assert d["outstanding_bytes"] == 8 * K, "m0's tail keeps its length (see README)"
    assert tracer.map_tgids("active_allocs").count(w.pid) == entries + 1


def test_threads_racing_for_live_slots_lose_no_mapping(open_tracer: Callable[..., Tracer],
                                                        workload: Workload) -> None:
    """Threads of one process map and unmap at once, more mappings than there are slots: every
    mapping is found again at its munmap, whether it was still in a slot or pushed out."""
    tracer = open_tracer(events_per_sec=0)
    workload("pid")
    before = stats_of(tracer, workload.pid)
    assert workload(f"threads 8 2000 {16 * K}") == 0
    d = delta(stats_of(tracer, workload.pid), before)
    assert (d["mmap_count"], d["munmap_count"]) == (16000, 16000)
    assert d["outstanding_bytes"] == 0
    assert d["untracked_unmap_bytes"] == 0


def test_brk_is_exact_from_the_first_call_of_every_process(open_tracer: Callable[..., Tracer],
                                                           workload_bin: Path, mode: str) -> None:
    """brk's old break is the one recorded at the process's previous brk, so each process's is
    seeded before its first: at attach (running processes), at fork and at exec."""
    running = Workload(workload_bin)
    try:
        cur = running("brk 0")                        # before the tracer: it never saw this
        tracer = open_tracer(mode=mode)
        unseen = tracer.counters().brk_unseen         # calls that raced with attaching, if any
        assert running.pid not in tracer.read_stats(), "seeded, but with no call yet nothing to list"
        before = stats_of(tracer, running.pid)
        assert running(f"brk {cur + 64 * K}") == cur + 64 * K
        d = delta(stats_of(tracer, running.pid), before)
        assert (d["brk_count"], d["brk_grow_bytes"]) == (1, 64 * K), "seeded at attach"

        tracer.ring.drain(1 << 20)
        child = running(f"forkbrk {32 * K} 0")
        exits = exit_events(tracer, child)
        assert exits and exits[0].stats is not None
        assert (exits[0].stats.brk_count, exits[0].stats.brk_grow_bytes) == (1, 32 * K), "seeded at fork"
    finally:
        running.close()

    fresh = Workload(workload_bin)                    # exec'd after the tracer attached
    try:
        fresh("pid")
        with open(f"/proc/{fresh.pid}/stat", "rb") as f:
            start_brk = int(f.read().rsplit(b")", 1)[1].split()[44])
        before = stats_of(tracer, fresh.pid)
        assert fresh(f"brk {start_brk + 16 * K}") == start_brk + 16 * K
        d = delta(stats_of(tracer, fresh.pid), before)
        assert (d["brk_count"], d["brk_grow_bytes"]) == (1, 16 * K), "seeded at exec"
    finally:
        fresh.close()
    assert tracer.counters().brk_unseen == unseen


def test_one_pass_gives_the_table_row_and_the_exact_counts(open_tracer: Callable[..., Tracer],
                                                            workload: Workload) -> None:
    """One read of the dump_tasks iterator: the process's row as /proc shows it, and its exact
    call counts, under the same identity."""
    tracer = open_tracer(events_per_sec=0)
    workload("pid")
    tracer.read_tasks()
    before = {name: getattr(tracer.stats[workload.pid], name) if workload.pid in tracer.stats else 0
              for name in NUMERIC}
    a = workload(f"mmap {256 * K}")
    assert workload(f"munmap {a} {64 * K}") == 0
    assert workload("badmmap") < 0
    data = tracer.read_tasks()
    st = tracer.stats[workload.pid]
    d = delta({name: getattr(st, name) for name in NUMERIC}, before)
    assert (d["mmap_count"], d["mmap_bytes"], d["munmap_count"], d["munmap_bytes"]) == (1, 256 * K, 1, 64 * K)
    assert (d["failed_calls"], d["outstanding_bytes"]) == (1, 192 * K)
    assert parse_counts(data)[0][workload.pid] == st, "what read_tasks parsed is in its read"
    with ProcReader() as reader:
        table = TaskTable(reader, start_ticks=tracer.start_ticks)
        (row,) = [s for s in table.read(data) if s.pid == workload.pid]
    with open(f"/proc/{workload.pid}/status") as f:
        status = {k: v.split()[0] for k, _, v in (line.partition(":") for line in f) if v.strip()}
    assert (row.name, row.rss_kb, row.virt_kb) == ("workload", int(status["VmRSS"]), int(status["VmSize"]))
    assert row.start_ticks == tracer.start_ticks(st.start_boottime_ns) and st.comm == row.name
    tracer.read_tasks()
    assert tracer.stats[workload.pid] is st, "unchanged counts: the same object, which the store relies on"


def test_child_process_exit_event_and_cleanup(open_tracer: Callable[..., Tracer], workload: Workload) -> None:
    tracer = open_tracer()
    workload("pid")
    child = workload(f"fork {LIVE_SLOTS + 3} {8 * K} 3")
    exits = exit_events(tracer, child)
    assert len(exits) == 1, "a short-lived process leaves exactly one exit event"
    ex = exits[0]
    assert ex.comm == "workload"
    assert ex.exit_status == 3 << 8
    assert ex.stats is not None
    n = LIVE_SLOTS + 3
    assert (ex.stats.mmap_count, ex.stats.mmap_bytes, ex.stats.outstanding_bytes) == (n, n * 8 * K, n * 8 * K)
    assert ex.maxrss_pages > 0
    assert child not in tracer.read_stats(), "the kernel deleted the dead process's counters"
    # the mappings pushed out of its live slots went into active_allocs; they go at the next sweep
    assert tracer.map_tgids("active_allocs").count(child) == 3
    assert tracer.forget_processes() >= 3
    assert child not in tracer.map_tgids("active_allocs")


def test_threshold_filters_events_not_counts(open_tracer: Callable[..., Tracer], workload: Workload) -> None:
    tracer = open_tracer(event_threshold=32 * K, events_per_sec=0)
    workload("pid")
    before = stats_of(tracer, workload.pid)
    tracer.ring.drain(1 << 20)
    small = workload(f"mmap {16 * K}")
    big = workload(f"mmap {64 * K}")
    d = delta(stats_of(tracer, workload.pid), before)
    assert d["mmap_count"] == 2
    assert [e.addr for e in events_of(tracer, workload.pid) if e.kind == EV_MMAP] == [big]
    assert small != big


def test_rate_limit_throttles_events_but_counts_stay_exact(open_tracer: Callable[..., Tracer],
                                                          workload: Workload) -> None:
    tracer = open_tracer(events_per_sec=5)
    workload("pid")
    before = stats_of(tracer, workload.pid)
    tracer.ring.drain(1 << 20)
    assert workload(f"threads 1 100 {16 * K}") == 0
    d = delta(stats_of(tracer, workload.pid), before)
    assert (d["mmap_count"], d["munmap_count"]) == (100, 100)
    sent = len(events_of(tracer, workload.pid))
    assert sent <= 10  # at most two one-second windows
    assert d["events_throttled"] == 200 - d["events_sent"]
    assert d["events_sent"] == sent
    assert tracer.counters().throttled >= 200 - sent


def test_paused_calls_are_withheld_in_the_kernel_and_counted(open_tracer: Callable[..., Tracer],
                                                              workload: Workload) -> None:
    """The consumer's budget: with calls paused the kernel streams no call event, counts each one as
    paused, and the counts stay exact; unpaused, events flow again."""
    tracer = open_tracer(events_per_sec=0)
    workload("pid")
    tracer.ring.drain(1 << 20)
    before, paused_before = stats_of(tracer, workload.pid), tracer.counters().paused
    tracer.pause_calls(True)
    assert tracer.calls_paused
    assert workload(f"threads 1 100 {16 * K}") == 0
    d = delta(stats_of(tracer, workload.pid), before)
    assert (d["mmap_count"], d["munmap_count"]) == (100, 100)
    assert events_of(tracer, workload.pid) == [], "no call event reached the ring"
    assert d["events_sent"] == 0 and d["events_throttled"] == 200
    assert tracer.counters().paused - paused_before >= 200
    tracer.pause_calls(False)
    assert not tracer.calls_paused
    assert workload(f"threads 1 10 {16 * K}") == 0
    assert len(events_of(tracer, workload.pid)) == 20


def test_full_ring_counts_drops(open_tracer: Callable[..., Tracer], workload: Workload) -> None:
    tracer = open_tracer(ring_bytes=PAGE, event_threshold=0, events_per_sec=0)
    before = tracer.counters().dropped
    assert workload(f"threads 2 200 {16 * K}") == 0   # 800 events of 80 bytes, nobody consuming
    assert tracer.counters().dropped - before > 0


def test_a_stalled_consumer_is_woken_once_not_for_every_record(open_tracer: Callable[..., Tracer],
                                                              workload: Workload) -> None:
    tracer = open_tracer(wakeup_bytes=4096, events_per_sec=0)
    workload("pid")
    tracer.ring.drain(1 << 20)
    before = tracer.counters().wakeups
    assert workload(f"threads 1 100 {16 * K}") == 0   # 200 records of 80 bytes, nobody consuming
    assert tracer.counters().wakeups - before == 1, "one wakeup when the backlog crosses 4 KiB"


def test_a_full_map_leaves_a_lower_bound_marked_incomplete(open_tracer: Callable[..., Tracer],
                                                           workload: Workload) -> None:
    """Mappings the tracer cannot follow leave the outstanding figure (which stays a true lower
    bound and comes back to 0) and are counted per process, so the figure can be marked."""
    tracer = open_tracer(max_mappings=4, map_quota=4)
    workload("pid")
    before = stats_of(tracer, workload.pid)
    counters_before = tracer.counters()
    n = LIVE_SLOTS + 7      # the newest 8 stay beside the counters; the 7 they push out need the map
    addrs = [workload(f"mmap {8 * K}") for _ in range(n)]
    d = delta(stats_of(tracer, workload.pid), before)
    c = tracer.counters()
    lost = d["lost_mappings"]
    assert lost >= 3, "4 entries, shared with every other process: at least 3 of 7 cannot be followed"
    assert c.allocs_full - counters_before.allocs_full >= lost - (c.allocs_quota - counters_before.allocs_quota)
    assert c.map_full == c.stats_full + c.allocs_full + c.allocs_quota
    assert d["lost_bytes"] == lost * 8 * K
    assert d["outstanding_bytes"] == (n - lost) * 8 * K, "only followed mappings are outstanding"
    for a in addrs:
        assert workload(f"munmap {a} {8 * K}") == 0
    d = delta(stats_of(tracer, workload.pid), before)
    assert d["outstanding_bytes"] == 0, "no phantom bytes once everything is unmapped"
    assert d["untracked_unmap_bytes"] == lost * 8 * K
    assert d["lost_mappings"] == lost, "the mark stays: the figure missed those mappings"


def test_one_process_cannot_starve_the_others_of_the_map(open_tracer: Callable[..., Tracer],
                                                        workload_bin: Path) -> None:
    hog, other = Workload(workload_bin), Workload(workload_bin)
    try:
        hog("pid")
        other("pid")          # started before the tracer: their loader's mappings are not traced
        tracer = open_tracer(map_quota=3)
        h0, o0 = stats_of(tracer, hog.pid), stats_of(tracer, other.pid)
        quota0 = tracer.counters().allocs_quota
        hog_maps = [hog(f"mmap {8 * K}") for _ in range(LIVE_SLOTS + 10)]
        other_maps = [other(f"mmap {8 * K}") for _ in range(LIVE_SLOTS + 3)]
        dh, do = delta(stats_of(tracer, hog.pid), h0), delta(stats_of(tracer, other.pid), o0)
        assert dh["lost_mappings"] == 7, "10 pushed out of the slots, 3 within the quota"
        assert tracer.counters().allocs_quota - quota0 >= 7, "counted (other processes on the host count too)"
        assert do["lost_mappings"] == 0, "the other process keeps its own share of the map"
        assert do["outstanding_bytes"] == (LIVE_SLOTS + 3) * 8 * K
        assert tracer.map_tgids("active_allocs").count(hog.pid) == 3
        for a in hog_maps:
            hog(f"munmap {a} {8 * K}")
        for a in other_maps:
            other(f"munmap {a} {8 * K}")
        dh, do = delta(stats_of(tracer, hog.pid), h0), delta(stats_of(tracer, other.pid), o0)
        assert (dh["outstanding_bytes"], do["outstanding_bytes"]) == (0, 0)
        assert tracer.map_tgids("active_allocs").count(hog.pid) == 0, "entries counted back down"
        assert [hog(f"mmap {8 * K}") for _ in range(LIVE_SLOTS + 3)], "the quota is free again"
        assert delta(stats_of(tracer, hog.pid), h0)["lost_mappings"] == 7
    finally:
        hog.close()
        other.close()


def test_close_unloads_everything(open_tracer: Callable[..., Tracer]) -> None:
    """Only this tracer's own programs are looked at: another memwatch on the host (a 'serve'
    under systemd) loads programs of the same names, which must not matter here."""
    tracer = open_tracer()
    ids = tracer.program_ids
    assert len(ids) >= 7          # syscall programs + exit, exec, fork, OOM, two iterators
    assert loaded_programs(ids) == set(ids)
    tracer.close()
    tracer.close()  # twice is fine
    assert loaded_programs(ids) == set()
