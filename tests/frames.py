"""Deterministic Snapshot frames for tests: fixed clock, fixed host, awkward names on purpose.

Nothing here reads the clock, /proc or the environment, so the dashboard's snapshot pictures built
from these frames are identical on every machine and every run.

What the frames hold (frame i, timestamp 1_700_000_000 + 3 i):
- ~12 processes sorted by pid, among them "[red]x[/red]" (markup), "we ird) (name" (spaces and
  parentheses, as in /proc/PID/stat), "caf\\xe9" (non-UTF-8 decoded with backslashreplace), a command
  line with a newline, a kernel thread (never has kernel counters) and "leaky-server", which grows
  every frame and is a leak suspect from frame 2 on, with a leak_reason;
- "short-job" (pid 5678) lives in frames 0-2; from frame 3 on an EXIT event with its final counts
  is in the snapshot's events;
- "hog" (pid 6789) lives in every frame but the last; the last frame has an OOM event for it;
- histories (rss, outstanding, event rate, system) hold one entry per frame so far;
- every process has a uid and a memory cgroup (systemd units, a docker container with a limit,
  alice's session, where "hog" runs); the snapshot carries the cgroups (fixed kernel figures for
  some, as cgroup v2 has them) and users, and the hog's OOM event names its cgroup.
``degraded=True`` only changes what eBPF-off changes: TracerHealth(enabled=False, reason=...),
kernel=None on every process, counts=None on exit events.
"""

from __future__ import annotations

from dataclasses import dataclass

from memwatch.cgroups import CgroupReading
from memwatch.groups import build_cgroups, build_users
from memwatch.model import (
    CgroupMemory,
    Event,
    EventKind,
    KernelCounts,
    ProcessSample,
    ProcessView,
    SmapsRollup,
    Snapshot,
    SystemMemory,
    TracerHealth,
)

BASE_TIMESTAMP = 1_700_000_000.0
FRAME_GAP_S = 3.0
HOSTNAME = "testhost"
DEGRADED_REASON = (
    "eBPF is off: memwatch needs root (or CAP_BPF and CAP_PERFMON) to load its tracer; run it with sudo."
)
BOOT_TIME = 1_699_000_000.0
CLOCK_TICKS = 100
SHORT_JOB_PID = 5678
SHORT_JOB_LAST_FRAME = 2
HOG_PID = 6789
LEAKY_PID = 4567
MARKUP_NAME = "[red]x[/red]"
PAREN_NAME = "we ird) (name"
BACKSLASH_NAME = "caf\\xe9"
KERNEL_THREAD_PID = 2
CONTAINER_ID = "4f1c2d3e5a6b" + "7" * 52
CONTAINER_CGROUP = f"/system.slice/docker-{CONTAINER_ID}.scope"
SESSION_CGROUP = "/user.slice/user-1000.slice/session-2.scope"
UIDS = {"root": 0, "alice": 1000, "bob": 1001, "carol": 1002, "postgres": 113, "www-data": 33}
CGROUPS = {1: "/init.scope", KERNEL_THREAD_PID: "/", 812: "/system.slice/ssh.service",
           3999: "/system.slice/postgresql.service", 4567: CONTAINER_CGROUP, 7001: CONTAINER_CGROUP}
"""Memory cgroups by pid; every other process is in alice's (or bob's) session."""
HOG_CGROUP_ID = 4242


def _cgroup_of(pid: int, user: str) -> str:
    if pid in CGROUPS:
        return CGROUPS[pid]
    return SESSION_CGROUP if user == "alice" else "/user.slice/user-1001.slice/session-5.scope"


def _readings(i: int) -> dict[str, CgroupReading]:
    """What the cgroup reader would have found: the container's limit and figures, the session's."""
    mib = 1024
    return {
        CONTAINER_CGROUP: CgroupReading(7001, CgroupMemory(
            current_kb=(180 + 3 * i) * mib, max_kb=512 * mib, high_kb=448 * mib, peak_kb=(190 + 3 * i) * mib,
            swap_current_kb=0, oom=0, oom_kill=0, high_events=0, max_events=0, pressure_some_avg10=0.5 * i,
            pressure_full_avg10=0.0, anon_kb=(120 + 2 * i) * mib, file_kb=50 * mib, kernel_kb=9 * mib,
            shmem_kb=2 * mib)),
        SESSION_CGROUP: CgroupReading(HOG_CGROUP_ID, CgroupMemory(
            current_kb=(1100 + 100 * i) * mib, max_kb=None, peak_kb=(1100 + 100 * i) * mib, swap_current_kb=0,
            oom_kill=1 if i == 4 else 0, anon_kb=(1000 + 100 * i) * mib, file_kb=80 * mib, kernel_kb=12 * mib,
            shmem_kb=0)),
        "/": CgroupReading(1, CgroupMemory(current_kb=(5800 + 110 * i) * mib, anon_kb=3000 * mib,
                                           file_kb=2500 * mib, kernel_kb=300 * mib, shmem_kb=10 * mib)),
    }


@dataclass(frozen=True)
class _Proc:
    """A scripted process: its figures at frame i are base + slope * i."""

    pid: int
    ppid: int
    name: str
    cmdline: str
    user: str
    start_ticks: int
    rss_kb: int
    rss_slope_kb: int = 0
    threads: int = 1
    kernel_thread: bool = False
    calls_per_frame: int = 10
    leaks_from_frame: int | None = None
    with_rollup: bool = False


_PROCS: tuple[_Proc, ...] = (
    _Proc(1, 0, "systemd", "/sbin/init splash", "root", 10, 12_288),
    _Proc(KERNEL_THREAD_PID, 0, "kthreadd", "", "root", 11, 0, kernel_thread=True, calls_per_frame=0),
    _Proc(812, 1, "sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", "root", 900, 8_192),
    _Proc(1001, 812, "bash", "-bash", "alice", 50_000, 5_120, calls_per_frame=2),
    _Proc(1234, 1001, MARKUP_NAME, "./x --style [bold]y[/bold]", "alice", 60_000, 20_480, 64),
    _Proc(2345, 1001, PAREN_NAME, "/opt/we ird) (name --flag", "bob", 61_000, 30_720, -32, threads=3),
    _Proc(3456, 1001, BACKSLASH_NAME, "/usr/bin/caf\\xe9 --menu", "bob", 62_000, 4_096),
    _Proc(3999, 1, "postgres", "postgres: checkpointer\nsecond line", "postgres", 2_000, 150_000, 16,
          threads=1, with_rollup=True),
    _Proc(LEAKY_PID, 1, "leaky-server", "/srv/leaky-server --port 8080", "www-data", 70_000, 100_000, 2_048,
          threads=8, calls_per_frame=400, leaks_from_frame=2, with_rollup=True),
    _Proc(SHORT_JOB_PID, 1001, "short-job", "short-job --once", "alice", 80_000, 2_048, 512),
    _Proc(HOG_PID, 1001, "hog", "hog --eat-memory", "alice", 81_000, 900_000, 100_000, calls_per_frame=50),
    _Proc(7001, 1, "python3", "python3 -m http.server", "carol", 90_000, 25_600, 8, threads=2),
)


def _timestamp(i: int) -> float:
    return BASE_TIMESTAMP + FRAME_GAP_S * i


def _alive(p: _Proc, i: int, n: int) -> bool:
    if p.pid == SHORT_JOB_PID:
        return i <= SHORT_JOB_LAST_FRAME
    if p.pid == HOG_PID:
        return i < n - 1
    return True


def _rss(p: _Proc, i: int) -> int:
    return p.rss_kb + p.rss_slope_kb * i


def _counts(p: _Proc, i: int) -> KernelCounts:
    """Counters as the tracer would have them after frame i (monotonic in i)."""
    c = p.calls_per_frame * (i + 1)
    mmap_bytes = c * 8192 + max(p.rss_slope_kb, 0) * 1024 * (i + 1)
    munmap_bytes = (c // 2) * 8192
    return KernelCounts(
        mmap_count=c,
        mmap_bytes=mmap_bytes,
        munmap_count=c // 2,
        munmap_bytes=munmap_bytes,
        brk_count=c // 4,
        brk_grow_bytes=(c // 4) * 4096,
        brk_shrink_bytes=(c // 8) * 4096,
        mremap_count=c // 10,
        mremap_grow_bytes=(c // 10) * 16384,
        mremap_shrink_bytes=0,
        outstanding_bytes=mmap_bytes - munmap_bytes,
        outstanding_peak_bytes=mmap_bytes - munmap_bytes + 4096,
        untracked_unmap_bytes=0,
        failed_calls=1 if c else 0,
        events_throttled=0,
        first_seen=BASE_TIMESTAMP - 1.0 if c else 0.0,
        last_seen=_timestamp(i) if c else 0.0,
    )


def _event_rate(p: _Proc, i: int) -> float:
    return p.calls_per_frame / FRAME_GAP_S if i else 0.0


def _recent_events(p: _Proc, i: int) -> tuple[Event, ...]:
    if p.pid != LEAKY_PID:
        return ()
    return tuple(
        Event(timestamp=_timestamp(j) - 0.5, kind=EventKind.MMAP, pid=p.pid, tid=p.pid + 1, name=p.name,
              addr=0x7F00_0000_0000 + j * 0x20_0000, length=2 * 1024 * 1024, flags=0x22, prot=0x3)
        for j in range(max(0, i - 4), i + 1)
    )


def _view(p: _Proc, i: int, degraded: bool) -> ProcessView:
    rss = _rss(p, i)
    sample = ProcessSample(
        pid=p.pid, ppid=p.ppid, name=p.name, cmdline=p.cmdline, user=p.user,
        start_ticks=p.start_ticks, start_time=BOOT_TIME + p.start_ticks / CLOCK_TICKS,
        threads=p.threads, rss_kb=rss, virt_kb=rss * 4 + 10_240 if rss else 0,
        peak_kb=max(_rss(p, j) for j in range(i + 1)), swap_kb=p.pid % 7 * 128,
        shared_kb=rss // 5, anon_kb=rss - rss // 5, cgroup=f"/user.slice/{p.user}.slice",
        kernel_thread=p.kernel_thread, state="I" if p.kernel_thread else "S",
        uid=UIDS[p.user], memory_cgroup=_cgroup_of(p.pid, p.user),
    )
    has_kernel = not degraded and not p.kernel_thread
    leaking = p.leaks_from_frame is not None and i >= p.leaks_from_frame
    return ProcessView(
        sample=sample,
        kernel=_counts(p, i) if has_kernel else None,
        rollup=SmapsRollup(pss_kb=rss * 9 // 10, uss_kb=rss * 8 // 10, swap_pss_kb=0)
        if p.with_rollup and i >= 1 else None,
        growth_kb_s=p.rss_slope_kb / FRAME_GAP_S if i else None,
        leak_suspect=leaking,
        leak_reason=(f"RSS grew {p.rss_slope_kb * i} KB over {FRAME_GAP_S * i:.0f} s and never shrank"
                     if leaking else None),
        rss_history=tuple(_rss(p, j) for j in range(i + 1)),
        outstanding_history=(tuple(_counts(p, j).outstanding_bytes for j in range(i + 1))
                             if has_kernel else ()),
        event_rate_history=tuple(_event_rate(p, j) for j in range(i + 1)) if has_kernel else (),
        recent_events=_recent_events(p, i) if has_kernel else (),
    )


def _system(i: int) -> SystemMemory:
    used = 6_000_000 + 110_000 * i
    return SystemMemory(total_kb=16_000_000, available_kb=16_000_000 - used, used_kb=used,
                        free_kb=16_000_000 - used - 2_000_000, swap_total_kb=2_097_148,
                        swap_used_kb=10_240 * i, pressure_some_avg10=0.25 * i, pressure_full_avg10=0.0)


def _events(i: int, n: int, degraded: bool) -> tuple[Event, ...]:
    events: list[Event] = []
    short = next(p for p in _PROCS if p.pid == SHORT_JOB_PID)
    if i > SHORT_JOB_LAST_FRAME:
        events.append(Event(
            timestamp=_timestamp(SHORT_JOB_LAST_FRAME) + 1.25, kind=EventKind.EXIT, pid=short.pid,
            tid=short.pid, name=short.name, exit_code=0, peak_rss_kb=_rss(short, SHORT_JOB_LAST_FRAME),
            counts=None if degraded else _counts(short, SHORT_JOB_LAST_FRAME), start_ticks=short.start_ticks,
        ))
    if i == n - 1:
        hog = next(p for p in _PROCS if p.pid == HOG_PID)
        rss = _rss(hog, i)
        events.append(Event(
            timestamp=_timestamp(i) - 0.75, kind=EventKind.OOM, pid=hog.pid, tid=hog.pid, name=hog.name,
            rss_kb=rss, total_vm_kb=rss * 4 + 10_240, start_ticks=hog.start_ticks,
            cgroup=SESSION_CGROUP, cgroup_id=HOG_CGROUP_ID,
        ))
    return tuple(events)


def _tracer(i: int, degraded: bool) -> TracerHealth:
    if degraded:
        return TracerHealth(enabled=False, reason=DEGRADED_REASON)
    return TracerHealth(enabled=True, mode="raw", events=1_000 * (i + 1), events_dropped=0,
                        events_throttled=0, map_full=0, event_rate=1_000 / FRAME_GAP_S if i else 0.0)


def make_frame(i: int, n: int, *, degraded: bool = False) -> Snapshot:
    """Frame ``i`` of an ``n``-frame run (the last frame differs: the OOM kill)."""
    views = tuple(_view(p, i, degraded) for p in _PROCS if _alive(p, i, n))
    ooms = {SESSION_CGROUP: 1, "/user.slice/user-1000.slice": 1, "/user.slice": 1, "/": 1} if i == n - 1 else {}
    return Snapshot(
        timestamp=_timestamp(i),
        interval_s=FRAME_GAP_S,
        hostname=HOSTNAME,
        system=_system(i),
        tracer=_tracer(i, degraded),
        processes=views,
        cgroups=build_cgroups(views, _readings(i), version=2, oom_events=ooms),
        users=build_users(views),
        events=_events(i, n, degraded),
        new_events=tuple(e for e in _events(i, n, degraded) if i == 0 or e not in _events(i - 1, n, degraded)),
        system_history=tuple(_system(j) for j in range(i + 1)),
        duration_s=FRAME_GAP_S * i,
    )


def make_frames(n: int = 5, *, degraded: bool = False) -> list[Snapshot]:
    """``n`` frames, 3 s apart from 1_700_000_000.0, on host "testhost"."""
    if n < 1:
        raise ValueError(f"make_frames needs n >= 1, got {n}")
    return [make_frame(i, n, degraded=degraded) for i in range(n)]
