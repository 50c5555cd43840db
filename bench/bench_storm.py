"""What an mmap storm costs the dashboard and ``memwatch serve``, with and without the events budget.

Two tight C loops (bench/mmap_loop.c: mmap one page, munmap it, again), each pinned to a CPU of
its own, so that the storm is the same in every condition and memwatch always shares a CPU with
one of them at equal weight (the harsh case; --no-pin leaves them to the scheduler), and memwatch
with no per-process limit (``--events-per-sec 0``: every call may be streamed). The conditions,
measured in the same run, round after round:

* ``no storm``    the baseline: the loops are not running (default budget);
* ``budget N``    the storm, with ``--events-budget N`` (N is memwatch's default unless --budgets
                  says otherwise; ``--budgets 5000,1000,0`` compares several, 0 being the floor:
                  the storm and the tracer, with no call event parsed at all);
* ``budget off``  the storm, with a budget no storm reaches (--events-budget 10000000): what the
                  consumer pays for parsing every event it can, i.e. what the budget buys.

(a) The dashboard, in a child process of its own (a fresh interpreter per condition, as a user
    starts it): ``MemwatchApp`` headless (``App.run_test``) on a ``LiveSource`` with
    ``TracerConfig(events_per_sec=0)``. Its CPU (% of one core: its own process time) over an idle
    window at the default 3 s interval; then key-to-frame latency (bench_dashboard's
    ``press_keys``: arrows and sort keys, the time until the table shows the key *and* the next
    frame is written out) with a new snapshot every --latency-interval s. Also, from the tracer's
    own counters over the CPU window: the loops' calls, and events parsed, withheld and dropped,
    per second.
(b) ``memwatch serve --listen 127.0.0.1:0 --events-per-sec 0`` in a child process: its CPU (utime +
    stime from /proc/PID/stat) over a window, with a Prometheus-like scrape of /metrics every
    --scrape-every s; the loops' calls, withheld and dropped per second from /metrics (between
    the snapshots the first and last scrape served), events parsed per second from /healthz.

Each figure is printed as the median over rounds with its range, and as ratios (per round, then
the median): against the no-storm baseline, and against the budget-off case. The loops also count
their own pairs: the storm's rate, independent of memwatch. Last, CPU per parsed event: (CPU with
the storm - CPU without) / events parsed per second.

Every child is started in a session of its own with a parent-death signal, and stopped on the way
out (Ctrl+C and SIGTERM included): memwatch with SIGTERM, so that it detaches its probes.

Usage (as root, about 7 minutes): .venv/bin/python bench/bench_storm.py [--rounds 2] [--budgets N,N]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it one round of every condition with short windows (--rounds 1 --seconds 2 --serve-seconds 4
--scrape-every 2 --warmup 1 --presses 5 --press-seconds 3): the same report, in about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(HERE)]

from smoke import smoke_defaults  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BUDGET_OFF = 10_000_000
PR_SET_PDEATHSIG = 1
SIZE = (200, 50)


# ----- children: started in their own session, killed with their parent -----------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)   # loaded here: the forked child only calls into it


def _child_setup(cpu: int | None) -> Callable[[], None]:
    def setup() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return setup


class Children:
    """Every process the bench starts; ``stop_all`` ends them (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], *, cpu: int | None = None, **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                                preexec_fn=_child_setup(cpu), **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# ----- the storm ------------------------------------------------------------------------------------

def build_loop() -> Path:
    out = Path(tempfile.mkdtemp(prefix="memwatch-storm-")) / "mmap_loop"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(HERE / "mmap_loop.c")], check=True)
    return out


@dataclass
class Storm:
    pids: list[int] = field(default_factory=list)
    pairs: int = 0
    seconds: float = 0.0
    """Summed over loops: each loop's own count and how long it ran."""

    @property
    def calls_per_s(self) -> float:
        return 2 * self.pairs / (self.seconds / len(self.pids)) if self.pids and self.seconds else 0.0


@contextlib.contextmanager
def storm(children: Children, loop: Path | None, count: int, pin: bool) -> Iterator[Storm]:
    """``count`` loops running until the block ends (none when ``loop`` is None); their own counts."""
    s = Storm()
    cpus = sorted(os.sched_getaffinity(0))
    procs = [children.start([str(loop), "0"], cpu=cpus[i % len(cpus)] if pin else None,
                            stdout=subprocess.PIPE)
             for i in range(count)] if loop else []
    s.pids = [p.pid for p in procs]
    try:
        yield s
    finally:
        for p in procs:
            children.stop(p)
            assert p.stdout is not None
            out = p.stdout.read().split()
            p.stdout.close()
            if len(out) == 2:
                s.pairs += int(out[0])
                s.seconds += float(out[1])


# ----- (a) the dashboard, in a child process ----------------------------------------------------------

async def dashboard_child(budget: int, seconds: float, interval: float, latency_interval: float,
                          presses: int, press_seconds: float, loop_pids: list[int]) -> dict[str, Any]:
    from bench_dashboard import TimedApp, press_keys
    from memwatch.ebpf import TracerConfig
    from memwatch.sources.live import LiveSource

    source = LiveSource(interval, tracer_config=TracerConfig(events_per_sec=0), events_budget=budget)
    app = TimedApp(source, top=100)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(3.0)   # open, first ticks, warm caches
        tracer = source.tracer
        if tracer is None:
            raise SystemExit(f"the tracer is off: {source.bpf_reason}")

        def loop_calls() -> int:
            stats = tracer.read_stats()
            return sum(stats[p].mmap_count + stats[p].munmap_count for p in loop_pids if p in stats)

        calls0, c0, parsed0, discarded0 = loop_calls(), tracer.counters(), source.events_parsed, source.events_discarded
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        calls1, c1, parsed1, discarded1 = loop_calls(), tracer.counters(), source.events_parsed, source.events_discarded
        wall = wall1 - wall0
        source.set_interval(latency_interval)
        await pilot.pause(latency_interval)
        latencies = await press_keys(app, presses, press_seconds)
        await pilot.press("q")
    return {
        "cpu_pct": 100 * (cpu1 - cpu0) / wall,
        "latencies_ms": [1000 * v for v in latencies],
        "loop_calls_per_s": (calls1 - calls0) / wall,
        "parsed_per_s": (parsed1 - parsed0) / wall,
        "withheld_per_s": (c1.paused - c0.paused + discarded1 - discarded0) / wall,
        "dropped_per_s": (c1.dropped - c0.dropped) / wall,
    }


def run_dashboard(children: Children, args: argparse.Namespace, budget: int, st: Storm) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--dashboard-child", "--budget", str(budget),
            "--seconds", str(args.seconds), "--interval", str(args.interval),
            "--latency-interval", str(args.latency_interval), "--presses", str(args.presses),
            "--press-seconds", str(args.press_seconds),
            "--loop-pids", ",".join(map(str, st.pids))]
    proc = children.start(argv, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=args.seconds + args.press_seconds + 120)
    children.procs.remove(proc)
    if proc.returncode != 0:
        raise SystemExit(f"the dashboard child failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    lat = result["latencies_ms"]
    result["p50_ms"] = statistics.median(lat)
    result["p95_ms"] = percentile(lat, 0.95)
    result["presses"] = len(lat)
    return result


# ----- (b) memwatch serve, in a child process ----------------------------------------------------------

def http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Accept": "text/plain;version=0.0.4"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@dataclass
class Scrape:
    at: float
    snapshot_at: float = 0.0
    """The timestamp of the snapshot the scrape served: the counters are as of then."""
    events: float = 0.0
    withheld: float = 0.0
    dropped: float = 0.0
    loop_calls: float = 0.0
    event_rate: float = 0.0


def scrape(port: int, loop_pids: list[int]) -> Scrape:
    """GET /metrics (as Prometheus would) and /healthz; the figures this bench needs from them."""
    from prometheus_client.parser import text_string_to_metric_families

    s = Scrape(time.perf_counter())
    status, body = http_get(port, "/metrics")
    assert status == 200, status
    pids = {str(p) for p in loop_pids}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "memwatch_snapshot_timestamp_seconds":
                s.snapshot_at = sample.value
            elif sample.name == "memwatch_tracer_events_total":
                s.events = sample.value
            elif sample.name == "memwatch_tracer_events_withheld_total":
                s.withheld = sample.value
            elif sample.name == "memwatch_tracer_events_dropped_total":
                s.dropped = sample.value
            elif (sample.name in ("memwatch_process_mmap_calls_total", "memwatch_process_munmap_calls_total")
                  and sample.labels.get("pid") in pids):
                s.loop_calls += sample.value
    status, body = http_get(port, "/healthz")
    if status == 200:
        s.event_rate = float(json.loads(body)["tracer"]["event_rate"])
    return s


def run_serve(children: Children, args: argparse.Namespace, budget: int, st: Storm) -> dict[str, Any]:
    argv = [sys.executable, "-m", "memwatch", "serve", "--listen", "127.0.0.1:0", "--events-per-sec", "0",
            "--events-budget", str(budget), "--interval", str(args.interval)]
    for pid in st.pids:
        argv += ["--pid", str(pid)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = children.start(argv, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)/metrics", line)
        if not match:
            raise SystemExit(f"memwatch serve did not start: {line}{proc.stderr.read()}")
        stderr = proc.stderr
        threading.Thread(target=lambda: stderr.read(), daemon=True).start()   # never blocks on a log line
        port = int(match.group(1))
        deadline = time.monotonic() + 60
        while http_get(port, "/healthz")[0] != 200:
            if time.monotonic() > deadline:
                raise SystemExit("memwatch serve had no snapshot after 60 s")
            time.sleep(0.2)
        time.sleep(args.warmup)
        cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
        scrapes = [scrape(port, st.pids)]
        end = wall0 + args.serve_seconds
        while (nxt := scrapes[-1].at + args.scrape_every) < end:
            time.sleep(max(0.0, nxt - time.perf_counter()))
            scrapes.append(scrape(port, st.pids))
        time.sleep(max(0.0, end - time.perf_counter()))
        cpu1, wall1 = cpu_seconds(proc.pid), time.perf_counter()
        last = scrape(port, st.pids)   # after the window: its counters close it
    finally:
        children.stop(proc)
    first = scrapes[0]
    dt = last.snapshot_at - first.snapshot_at   # the counters are the snapshots', not the scrapes'
    return {
        "cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "scrapes": len(scrapes),
        "loop_calls_per_s": (last.loop_calls - first.loop_calls) / dt,
        "parsed_per_s": statistics.median(s.event_rate for s in [*scrapes[1:], last]),
        "withheld_per_s": (last.withheld - first.withheld) / dt,
        "dropped_per_s": (last.dropped - first.dropped) / dt,
    }


# ----- the report -------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def number(v: float) -> str:
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e4 else f"{v:.0f}"


BASE, OFF = "no storm", "budget off"


def report(rows: dict[str, dict[str, list[float]]], label: str, key: str, fmt: str,
           ratios: bool = True) -> None:
    """One figure: median [range] per condition; ratios (per round) to the baseline and to budget off."""
    conds = list(rows)
    vals = {c: rows[c][key] for c in conds}
    print(f"  {label:34s}" + "".join(f" {spread(vals[c], fmt):>25s}" for c in conds))
    if not ratios:
        return
    for against, name in ((BASE, "x no storm"), (OFF, "x budget off")):
        cells = []
        for c in conds:
            rs = [v / b for v, b in zip(vals[c], vals[against], strict=True) if b > 0]
            cells.append(spread(rs, ".2f") + "x" if rs and c != against else "")
        print(f"  {'   ' + name:34s}" + "".join(f" {cell:>25s}" for cell in cells))


def per_event_cost(rows: dict[str, dict[str, list[float]]]) -> str:
    """µs of CPU per parsed event: (CPU with the storm - CPU without) / events parsed per second."""
    out = []
    for c in rows:
        if c == BASE:
            continue
        costs = [1e4 * (cpu - base) / parsed
                 for cpu, base, parsed in zip(rows[c]["cpu_pct"], rows[BASE]["cpu_pct"],
                                              rows[c]["parsed_per_s"], strict=True) if parsed > 100]
        if costs:
            out.append(f"{c}: {spread(costs, '.1f')} µs")
    return "; ".join(out)


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="rounds of every condition (default 2)")
    ap.add_argument("--seconds", type=float, default=15.0, help="dashboard CPU window (default 15 s)")
    ap.add_argument("--serve-seconds", type=float, default=20.0, help="serve CPU window (default 20 s)")
    ap.add_argument("--scrape-every", type=float, default=10.0, help="scrape interval (default 10 s)")
    ap.add_argument("--interval", type=float, default=3.0, help="snapshot interval (default 3 s, memwatch's)")
    ap.add_argument("--latency-interval", type=float, default=1.0,
                    help="snapshot interval while keys are pressed (default 1 s, as bench_dashboard)")
    ap.add_argument("--presses", type=int, default=100, help="key presses per condition (default 100)")
    ap.add_argument("--press-seconds", type=float, default=30.0,
                    help="stop pressing after this long (default 30 s: without a budget a press takes ~1 s)")
    ap.add_argument("--warmup", type=float, default=5.0, help="serve: seconds after the first snapshot")
    ap.add_argument("--loops", type=int, default=2, help="mmap loops in the storm (default 2)")
    ap.add_argument("--no-pin", action="store_true", help="leave the loops to the scheduler")
    ap.add_argument("--budgets", default=None, metavar="N,N",
                    help="--events-budget of each storm-with-budget condition (default: memwatch's default "
                         "alone; 0 is the floor: the storm and the tracer, no event parsed)")
    ap.add_argument("--budget", type=int, default=None, help=argparse.SUPPRESS)   # the dashboard child's
    ap.add_argument("--budget-off", type=int, default=BUDGET_OFF)
    ap.add_argument("--only", choices=("dashboard", "serve"), default=None)
    ap.add_argument("--dashboard-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--loop-pids", default="", help=argparse.SUPPRESS)
    smoke_defaults(ap, rounds=1, seconds=2.0, serve_seconds=4.0, scrape_every=2.0, warmup=1.0, presses=5,
                   press_seconds=3.0)
    args = ap.parse_args()
    from memwatch.sources.live import DEFAULT_EVENTS_BUDGET

    if args.dashboard_child:
        signal.signal(signal.SIGTERM, interrupt)   # unwind: the app quits, the source detaches
        pids = [int(p) for p in args.loop_pids.split(",") if p]
        try:
            result = asyncio.run(dashboard_child(args.budget, args.seconds, args.interval, args.latency_interval,
                                                 args.presses, args.press_seconds, pids))
        except KeyboardInterrupt:
            return 130
        print(json.dumps(result), flush=True)
        return 0
    if os.geteuid() != 0:
        print("this benchmark loads eBPF programs: run it as root", file=sys.stderr)
        return 2
    # SIGTERM to the bench ends it like Ctrl+C: every child is stopped on the way out
    signal.signal(signal.SIGTERM, interrupt)
    loop = build_loop()
    children = Children()
    chosen = [int(b) for b in args.budgets.split(",")] if args.budgets else [DEFAULT_EVENTS_BUDGET]
    budgets = {BASE: DEFAULT_EVENTS_BUDGET, **{f"budget {b}": b for b in chosen}, OFF: args.budget_off}
    conditions = list(budgets)
    parts = [p for p in ("dashboard", "serve") if args.only in (None, p)]
    rows: dict[str, dict[str, dict[str, list[float]]]] = {
        p: {c: {} for c in conditions} for p in parts}
    storms: dict[str, dict[str, list[float]]] = {p: {c: [] for c in conditions} for p in parts}
    started = time.monotonic()
    try:
        for r in range(args.rounds):
            for part in parts:
                for cond in conditions:
                    with storm(children, None if cond == BASE else loop, args.loops, not args.no_pin) as st:
                        time.sleep(0.5)
                        run = run_dashboard if part == "dashboard" else run_serve
                        res = run(children, args, budgets[cond], st)
                    for k, v in res.items():
                        if isinstance(v, (int, float)):
                            rows[part][cond].setdefault(k, []).append(float(v))
                    storms[part][cond].append(st.calls_per_s)
                    print(f"  round {r + 1}/{args.rounds} {part} {cond}: cpu {res['cpu_pct']:.1f}%"
                          + (f" p95 {res['p95_ms']:.0f} ms" if "p95_ms" in res else "")
                          + f", storm {number(st.calls_per_s)} calls/s", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: stopping every child", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        with contextlib.suppress(OSError):
            loop.unlink()
            loop.parent.rmdir()
    pin = "each pinned to a CPU of its own" if not args.no_pin else "not pinned"
    print(f"Storm: {args.loops} x bench/mmap_loop.c (mmap+munmap of one page), {pin}; memwatch with "
          f"--events-per-sec 0; {os.cpu_count()} CPUs; {args.rounds} rounds in {time.monotonic() - started:.0f} s.")
    print(f"Conditions: no storm (baseline, default budget); budget N = --events-budget N (the default is "
          f"{DEFAULT_EVENTS_BUDGET}); budget off = --events-budget {args.budget_off}. Median [min-max] over "
          "rounds; ratios per round.")
    head = f"  {'':34s}" + "".join(f" {c:>25s}" for c in conditions)
    for part in parts:
        rs = rows[part]
        if part == "dashboard":
            presses = {c: spread(rs[c]["presses"], ".0f") for c in conditions}
            print(f"(a) dashboard (headless, live source): CPU over {args.seconds:g} s at a {args.interval:g} s "
                  f"interval; key presses at a {args.latency_interval:g} s interval (up to {args.presses} or "
                  f"{args.press_seconds:g} s: {', '.join(f'{c} {n}' for c, n in presses.items())})")
        else:
            print(f"(b) memwatch serve: CPU over {args.serve_seconds:g} s at a {args.interval:g} s interval, "
                  f"a /metrics scrape every {args.scrape_every:g} s")
        print(head)
        for c in conditions:
            rs[c]["storm"] = storms[part][c]
        report(rs, "storm calls/s (loops' own count)", "storm", ",.0f", ratios=False)
        report(rs, "loop calls/s (tracer's counters)", "loop_calls_per_s", ",.0f", ratios=False)
        report(rs, "CPU % of one core", "cpu_pct", ".2f")
        if part == "dashboard":
            report(rs, "key-to-frame p50 ms", "p50_ms", ".1f")
            report(rs, "key-to-frame p95 ms", "p95_ms", ".1f")
        report(rs, "events parsed/s", "parsed_per_s", ",.0f", ratios=False)
        report(rs, "events withheld/s", "withheld_per_s", ",.0f", ratios=False)
        report(rs, "events dropped/s (ring full)", "dropped_per_s", ",.0f", ratios=False)
        print(f"  CPU per parsed event, (CPU - no storm CPU) / parsed: {per_event_cost(rs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
