"""What a scrape of ``memwatch serve`` costs, against plain prometheus_client measured in the same run.

A snapshot of N synthetic processes (copies of the test frames' processes with new pids and
names) is served by ``memwatch.exporter.serve`` in a child process. For each --top setting:

* ``http``      p50/p95 wall-clock latency of GET /metrics (text format) from this process, and the
                child's CPU time per scrape (utime+stime from /proc/PID/stat over all scrapes, minus
                the child's idle CPU over an equally long quiet period)
* ``build``     in this process: ExporterApp.handle for /metrics, i.e. build every family from the
                snapshot and render the text (CPU time per call); ``families`` is the building
                part alone (build_metric_families, no rendering)
* ``baseline``  prometheus_client.generate_latest of a registry holding plain Gauge objects already
                set to the same series (what an exporter that keeps long-lived Gauges pays per scrape)

build/baseline is our per-scrape building cost; cpu-per-scrape / 15 s is the share of one core a
Prometheus scraping every 15 s costs.

Usage: python bench/bench_exporter.py [--processes 1000] [--tops 100,0] [--scrapes 200]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it --processes 300 --scrapes 20: the same table, in seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import http.client
import os
import re
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from prometheus_client import CollectorRegistry, Gauge, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from frames import make_frames  # noqa: E402
from memwatch.exporter import ExporterApp, SnapshotCollector, build_metric_families  # noqa: E402
from memwatch.exporter_http import HttpRequest  # noqa: E402
from memwatch.model import Snapshot  # noqa: E402
from smoke import smoke_defaults  # noqa: E402

SCRAPE_INTERVAL_S = 15.0
TICK_S = os.sysconf("SC_CLK_TCK")


def synthetic_snapshot(count: int, timestamp: float) -> Snapshot:
    """``count`` processes cloned from the test frames (kernel counters on), distinct pids and names."""
    template = make_frames(5)[-1]
    views = [v for v in template.processes if v.kernel is not None]
    clones = []
    for i in range(count):
        view = views[i % len(views)]
        sample = dataclasses.replace(view.sample, pid=10_000 + i, name=f"{view.sample.name}-{i}",
                                     start_ticks=view.sample.start_ticks + i,
                                     rss_kb=view.sample.rss_kb + i)
        clones.append(dataclasses.replace(view, sample=sample))
    return dataclasses.replace(template, processes=tuple(clones), timestamp=timestamp, by_key={})


CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path[:0] = [{src!r}, {tests!r}]
    sys.path.insert(0, {bench!r})
    from bench_exporter import synthetic_snapshot
    from memwatch.exporter import serve
    from memwatch.sources.replay import ReplaySource
    # Two frames far apart: the replay then idles (one next() per 1000 s) while we scrape.
    frames = [synthetic_snapshot({n}, 1_700_000_000.0), synthetic_snapshot({n}, 1_700_001_000.0)]
    sys.exit(asyncio.run(serve(ReplaySource(frames), listen="127.0.0.1:0", top={top})))
""")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def get_metrics(conn_port: int) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", conn_port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Accept": "text/plain;version=0.0.4"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, response.status
        return body
    finally:
        conn.close()


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise SystemExit("the exporter did not become healthy within 60 s")


def measure_http(processes: int, top: int, scrapes: int) -> tuple[list[float], float, int]:
    """Latencies (s), child CPU seconds per scrape (idle subtracted), and the body size."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(src=str(ROOT / "src"), tests=str(ROOT / "tests"),
                                            bench=str(ROOT / "bench"), n=processes, top=top)],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stderr is not None
        line = child.stderr.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)/metrics", line)
        if not match:
            raise SystemExit(f"exporter did not start: {line}{child.stderr.read()}")
        port = int(match.group(1))
        wait_ready(port)
        for _ in range(5):  # warm-up
            size = len(get_metrics(port))
        latencies = []
        cpu0, wall0 = cpu_seconds(child.pid), time.perf_counter()
        for _ in range(scrapes):
            start = time.perf_counter()
            get_metrics(port)
            latencies.append(time.perf_counter() - start)
        busy_cpu, busy_wall = cpu_seconds(child.pid) - cpu0, time.perf_counter() - wall0
        idle0 = cpu_seconds(child.pid)
        time.sleep(busy_wall)
        idle_cpu = cpu_seconds(child.pid) - idle0
        return latencies, max(busy_cpu - idle_cpu, 0.0) / scrapes, size
    finally:
        child.terminate()
        child.wait(10)


def baseline_registry(body: str) -> CollectorRegistry:
    """Plain Gauges holding exactly the series (names, labels, values) of one exposition."""
    registry = CollectorRegistry(auto_describe=False)
    for family in text_string_to_metric_families(body):
        by_name: dict[str, Gauge] = {}
        for sample in family.samples:
            gauge = by_name.get(sample.name)
            if gauge is None:
                gauge = Gauge(sample.name, family.documentation or "x", sorted(sample.labels),
                              registry=registry)
                by_name[sample.name] = gauge
            (gauge.labels(**sample.labels) if sample.labels else gauge).set(sample.value)
    return registry


def cpu_per_call(fn: Callable[[], object], rounds: int) -> float:
    """Median thread CPU seconds per call (GC off while timing, like timeit)."""
    times = []
    gc.disable()
    try:
        for _ in range(rounds):
            start = time.thread_time()
            fn()
            times.append(time.thread_time() - start)
    finally:
        gc.enable()
    return statistics.median(times)


def measure_top(snapshot: Snapshot, top: int, processes: int, scrapes: int) -> str:
    """One table row: HTTP latency and CPU of the served exporter, in-process build vs baseline."""
    collector = SnapshotCollector(top=top)
    collector.update(snapshot)
    app = ExporterApp(collector)
    request = HttpRequest("GET", "/metrics", "", {"accept": "text/plain;version=0.0.4"})
    body = app.handle(request).body
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    registry = baseline_registry(body.decode())
    assert len(generate_latest(registry).splitlines()) >= series  # same series, own HELP/TYPE lines
    rounds = max(20, scrapes // 2)
    ours = cpu_per_call(partial(app.handle, request), rounds)
    base = cpu_per_call(partial(generate_latest, registry), rounds)
    families = cpu_per_call(partial(build_metric_families, snapshot, top=top, tally=collector.tally), rounds)
    latencies, cpu_scrape, size = measure_http(processes, top, scrapes)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[18]
    return (f"{top or 'all':>5} {series:>7} {size / 1024:>8.0f} {p50 * 1e3:>7.2f} {p95 * 1e3:>7.2f} "
            f"{cpu_scrape * 1e3:>13.2f} {families * 1e3:>11.2f} {ours * 1e3:>8.2f} {base * 1e3:>11.2f} "
            f"{ours / base:>10.2f} {cpu_scrape / ours:>8.2f} {100 * cpu_scrape / SCRAPE_INTERVAL_S:>10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--tops", default="100,0", help="comma-separated --top values (0: all)")
    parser.add_argument("--scrapes", type=int, default=200)
    smoke_defaults(parser, processes=300, scrapes=20)
    args = parser.parse_args()
    snapshot = synthetic_snapshot(args.processes, 1_700_000_000.0)
    print(f"{args.processes} processes in the snapshot, {args.scrapes} HTTP scrapes per setting, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'top':>5} {'series':>7} {'body KiB':>8} {'p50 ms':>7} {'p95 ms':>7} {'cpu/scrape ms':>13} "
          f"{'families ms':>11} {'build ms':>8} {'baseline ms':>11} {'build/base':>10} {'cpu/http':>8} "
          f"{'core% @15s':>10}")
    for top in (int(t) for t in args.tops.split(",")):
        print(measure_top(snapshot, top, args.processes, args.scrapes))
    print("families: building the metric families alone; build: families + text rendering (handle);")
    print("build/base: build vs generate_latest of pre-set Gauges holding the same series (in-process CPU);")
    print("cpu/http: the serving child's CPU per HTTP scrape vs in-process build;")
    print("core% @15s: the child's CPU per scrape as a share of one core at a 15 s scrape interval.")


if __name__ == "__main__":
    main()
