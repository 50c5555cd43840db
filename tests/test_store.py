"""The state store and the leak signal, on made-up ticks (no kernel, no /proc)."""

from __future__ import annotations

import math
from dataclasses import replace

from memwatch.leak import LeakPolicy, assess, slope
from memwatch.model import (
    SHARED_MIN_POINTS,
    Event,
    EventKind,
    KernelCounts,
    ProcessSample,
    SmapsRollup,
    SystemMemory,
    TracerHealth,
)
from memwatch.store import Store

SYSTEM = SystemMemory(total_kb=1000, available_kb=500, used_kb=500, free_kb=400, swap_total_kb=0, swap_used_kb=0)
ON = TracerHealth(enabled=True, mode="raw")


def sample(pid: int, start: int, rss: int = 1000, name: str = "p") -> ProcessSample:
    return ProcessSample(pid=pid, ppid=1, name=name, cmdline=name, user="root", start_ticks=start,
                         start_time=float(start), threads=1, rss_kb=rss, virt_kb=rss * 2, peak_kb=rss,
                         swap_kb=0, shared_kb=0, anon_kb=rss, cgroup="/", kernel_thread=False)


def call(pid: int, t: float, length: int = 4096) -> Event:
    return Event(timestamp=t, kind=EventKind.MMAP, pid=pid, tid=pid, name="p", addr=0x1000, length=length)


def test_pid_reuse_starts_fresh() -> None:
    store = Store()
    old = sample(42, start=100, rss=5000)
    store.add_events([call(42, 0.5)])
    store.update(1.0, 3, [old], {old.key: KernelCounts(mmap_count=7)}, SYSTEM, ON)
    snap = store.update(2.0, 3, [old], {old.key: KernelCounts(mmap_count=9)}, SYSTEM, ON)
    (v,) = snap.processes
    assert v.kernel is not None and v.kernel.mmap_count == 9
    assert v.rss_history == (5000, 5000)
    new = sample(42, start=200, rss=10)
    snap = store.update(3.0, 3, [new], {new.key: KernelCounts(mmap_count=1)}, SYSTEM, ON)
    (v,) = snap.processes
    assert v.key == (42, 200)
    assert v.kernel is not None and v.kernel.mmap_count == 1
    assert v.rss_history == (10,)
    assert v.recent_events == ()
    # counters of the old process under the reused pid are never merged into the new one
    snap = store.update(4.0, 3, [new], {old.key: KernelCounts(mmap_count=99)}, SYSTEM, ON)
    assert snap.processes[0].kernel == KernelCounts()


def test_events_go_to_their_process_exits_to_the_log() -> None:
    store = Store(recent_len=3)
    a = sample(1, 10)
    store.update(1.0, 3, [a], {}, SYSTEM, ON)
    store.add_events([call(1, 1.1 + i / 10) for i in range(5)])
    store.add_events([call(2, 1.2)])  # born since the last tick
    exit_ev = Event(timestamp=1.5, kind=EventKind.EXIT, pid=3, tid=3, name="gone", exit_code=0,
                    counts=KernelCounts(mmap_count=4))
    store.add_events([exit_ev])
    b = sample(2, 20)
    snap = store.update(2.0, 3, [a, b], {}, SYSTEM, ON)
    va, vb = snap.by_key[a.key], snap.by_key[b.key]
    assert [round(e.timestamp, 1) for e in va.recent_events] == [1.3, 1.4, 1.5]  # bounded, newest kept
    assert len(vb.recent_events) == 1
    assert snap.events == (exit_ev,)
    # exited processes leave the table, their exit stays in the log
    snap = store.update(3.0, 3, [b], {}, SYSTEM, ON)
    assert [v.pid for v in snap.processes] == [2]
    assert snap.events == (exit_ev,)


def test_kernel_off_means_none_not_zero_and_rollups_stick() -> None:
    store = Store()
    a = sample(1, 10)
    store.update(1.0, 3, [a], None, SYSTEM, TracerHealth(enabled=False, reason="off"))
    store.set_rollup(a.key, SmapsRollup(pss_kb=5, uss_kb=4, swap_pss_kb=0))
    snap = store.update(2.0, 3, [a], None, SYSTEM, TracerHealth(enabled=False, reason="off"))
    (v,) = snap.processes
    assert v.kernel is None
    assert v.rollup == SmapsRollup(5, 4, 0)


def test_event_rate_history_from_counter_deltas() -> None:
    store = Store()
    a = sample(1, 10)
    store.update(0.0, 3, [a], {a.key: KernelCounts(mmap_count=0)}, SYSTEM, ON)
    snap = store.update(2.0, 3, [a], {a.key: KernelCounts(mmap_count=10, munmap_count=10)}, SYSTEM, ON)
    assert snap.processes[0].event_rate_history == (0.0, 10.0)


def test_histories_are_bounded() -> None:
    store = Store(history_len=5)
    a = sample(1, 10)
    snap = None
    for i in range(12):
        snap = store.update(float(i), 1, [replace(a, rss_kb=i)], None, SYSTEM, ON)
    assert snap is not None
    assert snap.processes[0].rss_history == (7, 8, 9, 10, 11)
    assert len(snap.system_history) == 5


def test_slope() -> None:
    assert math.isclose(slope([0, 1, 2, 3], [10, 12, 14, 16]), 2.0)
    assert slope([0, 1], [5, 5]) == 0.0


POLICY = LeakPolicy(min_span_s=60, min_points=6, min_rate_kb_s=1, min_growth_kb=1024, warmup_s=0)


def series(values: list[int], step: float = 3.0) -> tuple[list[float], list[int]]:
    return [i * step for i in range(len(values))], values


def test_steady_leak_is_flagged_with_a_reason() -> None:
    times, rss = series([100_000 + 200 * i for i in range(40)])  # +200 KB every 3 s
    v = assess(times, rss, POLICY)
    assert v.suspect
    assert v.growth_kb_s is not None and math.isclose(v.growth_kb_s, 200 / 3, rel_tol=1e-6)
    assert v.reason is not None and "KB/s" in v.reason and "floor" in v.reason


def test_stable_process_is_not_flagged() -> None:
    times, rss = series([100_000 + (i % 2) * 8 for i in range(40)])
    v = assess(times, rss, POLICY)
    assert not v.suspect
    assert v.growth_kb_s is not None and abs(v.growth_kb_s) < 1


def test_sawtooth_is_not_flagged_even_ending_on_a_peak() -> None:
    tooth = [100_000 + 2_000 * i for i in range(10)]
    times, rss = series(tooth * 4)
    v = assess(times, rss, POLICY)
    assert not v.suspect, v.reason


def test_noisy_leak_is_flagged_and_short_history_is_not() -> None:
    noise = [0, 300, -200, 100, -100, 250]
    times, rss = series([100_000 + 150 * i + noise[i % 6] for i in range(60)])
    assert assess(times, rss, POLICY).suspect
    times, rss = series([100_000 + 1_000 * i for i in range(10)])  # 27 s: too short to judge
    v = assess(times, rss, POLICY)
    assert not v.suspect and v.growth_kb_s is not None and v.growth_kb_s > 0


def test_store_flags_a_leaking_process() -> None:
    store = Store(leak_policy=POLICY)
    snap = None
    for i in range(40):
        snap = store.update(i * 3.0, 3, [sample(1, 10, rss=50_000 + 300 * i), sample(2, 20, rss=9_000)],
                            None, SYSTEM, ON)
    assert snap is not None
    leaky, flat = snap.by_key[(1, 10)], snap.by_key[(2, 20)]
    assert leaky.leak_suspect and leaky.leak_reason
    assert not flat.leak_suspect and flat.growth_kb_s == 0.0
    assert snap.top(1, "growth")[0].pid == 1


def test_growth_that_dies_down_is_warm_up_not_a_leak() -> None:
    """Filling a bounded cache: fast growth that slows to a stop, seen after the process's
    warm-up window, is not a leak; the same rise at a steady pace is."""
    times = [i * 3.0 for i in range(60)]
    filling = [100_000 + int(20_000 * (1 - math.exp(-i / 12))) for i in range(60)]
    steady = [100_000 + 250 * i for i in range(60)]
    assert not assess(times, filling, POLICY).suspect
    assert assess(times, steady, POLICY).suspect


def test_a_process_warming_up_is_not_flagged_and_a_later_leak_is() -> None:
    """With the default policy a process's first 10 minutes (or one whole history window) do not
    count for the flag: memwatch itself, filling its histories after a restart, is never flagged;
    an old process that leaks is flagged as soon as the window is long enough."""
    store = Store(history_len=120)
    assert store.warmup_s(3.0) == 600.0 and store.warmup_s(10.0) == 1200.0
    interval = 3.0
    flagged_young: list[float] = []
    flagged_old: list[float] = []
    for i in range(400):                                   # 20 minutes
        t = 1_000_000.0 + i * interval
        young = sample(1, 10, rss=30_000 + min(i, 120) * 200)   # grows for 6 minutes, then flat
        young = replace(young, start_time=1_000_000.0)
        leaky = sample(2, 20, rss=30_000 + i * 200)             # a steady leak, started long ago
        leaky = replace(leaky, start_time=1_000_000.0 - 86_400)
        late = sample(3, 30, rss=30_000 + i * 200)              # a leak in a young process
        late = replace(late, start_time=1_000_000.0)
        snap = store.update(t, interval, [young, leaky, late], None, SYSTEM, ON)
        if snap.by_key[young.key].leak_suspect:
            flagged_young.append(t)
        if snap.by_key[leaky.key].leak_suspect:
            flagged_old.append(t)
        if snap.by_key[late.key].leak_suspect and t - 1_000_000.0 < 600:
            raise AssertionError("flagged during its warm-up")
    assert flagged_young == [], "growth while warming up is not a leak"
    assert flagged_old and flagged_old[0] - 1_000_000.0 <= 63, "an old leaking process: after 60 s"
    assert snap.by_key[late.key].leak_suspect, "a young process that keeps leaking is flagged after warm-up"
    assert snap.by_key[late.key].growth_kb_s is not None and snap.by_key[young.key].growth_kb_s == 0.0


def test_history_is_a_frozen_copy_that_equals_its_tuple() -> None:
    from array import array

    from memwatch.model import History

    ring = array("q", [1, 2, 3])
    h = History.of(ring)
    ring.append(4)
    ring[0] = 99
    assert h == (1, 2, 3) and len(h) == 3 and h[-1] == 3 and h[1:] == (2, 3)
    assert list(h) == [1, 2, 3] and hash(h) == hash((1, 2, 3))
    assert History.of(array("d", [0.5])) == (0.5,)
    assert h != (1, 2)


def test_histories_in_snapshots_share_chunks_and_stay_frozen() -> None:
    from memwatch.store import CHUNK

    store = Store(history_len=3 * CHUNK)
    a = sample(1, 10)
    snaps = [store.update(float(i), 1, [replace(a, rss_kb=i)], None, SYSTEM, ON) for i in range(5 * CHUNK)]
    first_full = snaps[3 * CHUNK - 1].processes[0].rss_history
    assert first_full == tuple(range(3 * CHUNK))
    assert snaps[-1].processes[0].rss_history == tuple(range(2 * CHUNK, 5 * CHUNK))
    assert first_full == tuple(range(3 * CHUNK)), "later ticks did not change an older snapshot"
    assert snaps[CHUNK + 2].processes[0].rss_history[-3:] == (CHUNK, CHUNK + 1, CHUNK + 2)


def test_history_rings_keep_exactly_the_last_window() -> None:
    """Runs of equal values (kept as one number) mixed with changing ones (packed), any window."""
    import random

    from memwatch.store import _Ring

    rng = random.Random(5)
    for cap in (1, 3, 15, 16, 17, 32, 120):
        for code in "qd":
            ring, window = _Ring(code, cap), []
            for i in range(400):
                v = rng.choice([0, 1, 5]) if rng.random() < 0.7 else rng.randint(-10**12, 10**12)
                value = float(v) / 3 if code == "d" else v
                ring.append(value)
                window = [*window, value][-cap:]
                assert ring.history() == tuple(window), (cap, code, i)
                assert len(ring.history()) == len(window)


def test_an_idle_history_is_a_few_shared_references() -> None:
    """10,000 processes, most idle: an unchanging process is visited until its history holds
    SHARED_MIN_POINTS points (what the dashboard's TREND draws), then every snapshot gets the very
    same view and its history is the last point repeated (Snapshot.history_of); when it changes
    again, the ticks it sat out are filled in as runs of one value, not packed copies."""
    from memwatch.store import CHUNK

    store = Store(history_len=3 * CHUNK)
    idle, busy = sample(1, 10), sample(2, 20)
    snaps = [store.update(float(i), 1, [idle, replace(busy, rss_kb=1000 + i)], None, SYSTEM, ON)
             for i in range(4 * CHUNK)]
    assert len(store._procs[idle.key].rss) == SHARED_MIN_POINTS, "settled"
    view = snaps[-1].by_key[idle.key]
    assert view is snaps[SHARED_MIN_POINTS - 1].by_key[idle.key]
    assert view is not snaps[SHARED_MIN_POINTS - 2].by_key[idle.key]
    assert view.rss_history == (1000,) * SHARED_MIN_POINTS
    assert snaps[-1].history_of(view).rss == (1000,) * (3 * CHUNK)
    assert snaps[20].history_of(view).rss == (1000,) * 21
    assert snaps[20].history_of(view).event_rate == (0.0,) * 21
    assert snaps[20].current(view).rss_history == (1000,) * 21
    assert snaps[2].history_of(snaps[2].by_key[idle.key]).rss == (1000,) * 3
    assert snaps[-1].history_of(snaps[-1].by_key[busy.key]).rss == tuple(range(1000 + CHUNK, 1000 + 4 * CHUNK))
    assert all(isinstance(c, bytes) for c in store._procs[busy.key].rss.chunks)
    moved = replace(idle, rss_kb=2000)
    snap = store.update(float(4 * CHUNK), 1, [moved], None, SYSTEM, ON)
    ring = store._procs[idle.key].rss
    assert all(not isinstance(c, bytes) for c in ring.chunks[:-1]), "the sat-out ticks are runs"
    assert snap.history_of(snap.by_key[idle.key]).rss == (1000,) * (3 * CHUNK - 1) + (2000,)
    assert snap.by_key[idle.key].rss_history == (1000,) * (3 * CHUNK - 1) + (2000,)


def test_recent_len_zero_keeps_no_call_events() -> None:
    """The exporter's store: calls are counted, never kept (nor waiting for their process); exits are."""
    store = Store(recent_len=0)
    a = sample(1, 10)
    store.update(1.0, 3, [a], {}, SYSTEM, ON)
    store.add_events([call(1, 1.1), call(2, 1.2)])  # pid 2: born since the last tick
    exit_ev = Event(timestamp=1.5, kind=EventKind.EXIT, pid=3, tid=3, name="gone", exit_code=0)
    store.add_events([exit_ev])
    snap = store.update(2.0, 3, [a, sample(2, 20)], {}, SYSTEM, ON)
    assert all(v.recent_events == () for v in snap.processes)
    assert store.events_seen == 3
    assert snap.events == (exit_ev,)
    assert not store._orphans


def test_unchanged_processes_are_merged_once_and_their_views_shared() -> None:
    """A source hands out the same sample (and counts) objects for a process that did not change:
    from the tick after its last change on, the snapshots share its view."""
    store = Store(history_len=4)
    idle, busy = sample(1, 10, rss=700), sample(2, 20, rss=100)
    counts = KernelCounts(mmap_count=3, outstanding_bytes=4096)
    busy_counts = {busy.key: KernelCounts(mmap_count=1)}
    snaps = []
    for t in range(8):
        busy = replace(busy, rss_kb=100 + t)
        snaps.append(store.update(float(t), 1.0, [idle, busy], {idle.key: counts, **busy_counts}, SYSTEM, ON))
    views = [{v.pid: v for v in s.processes} for s in snaps]
    assert views[7][1] is views[3][1], "shared once its history is full (4 points here)"
    assert views[3][1] is not views[2][1] and views[0][1].cpu_percent is None
    history = snaps[7].history_of(views[7][1])
    assert history.rss == (700,) * 4 and history.outstanding == (4096,) * 4
    assert views[7][1].cpu_percent == 0.0 and history.event_rate == (0.0,) * 4
    assert views[7][2] is not views[6][2] and snaps[7].history_of(views[7][2]).rss == (104, 105, 106, 107)
    # an event, PSS, or a change makes a new view; the history goes on from the shared one
    store.add_events([call(1, 8.5)])
    snap = store.update(9.0, 1.0, [idle], {idle.key: counts}, SYSTEM, ON)
    (v,) = snap.processes
    assert v is not views[7][1] and len(v.recent_events) == 1
    moved = replace(idle, rss_kb=800)
    (v,) = store.update(10.0, 1.0, [moved], {idle.key: counts}, SYSTEM, ON).processes
    assert v.rss_history == (700, 700, 700, 800)
    assert v.growth_kb_s is not None
