"""The Prometheus exporter: exposition content, cardinality, identity of series, HTTP and shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import cast

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.samples import Sample

from frames import HOG_PID, LEAKY_PID, MARKUP_NAME, SHORT_JOB_PID, make_frames
from memwatch.exporter import (
    ExporterApp,
    ListenAddressError,
    SnapshotCollector,
    build_metric_families,
    parse_listen,
    serve,
)
from memwatch.exporter_http import HttpRequest, start_http_server
from memwatch.model import (
    KernelCounts,
    ProcessSample,
    ProcessView,
    Snapshot,
    SystemMemory,
    TracerHealth,
)
from memwatch.sources.replay import ReplaySource

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

KERNEL_FAMILIES = {
    "memwatch_process_outstanding_mapped_bytes", "memwatch_process_mmap_calls",
    "memwatch_process_munmap_calls", "memwatch_process_brk_calls", "memwatch_process_mremap_calls",
    "memwatch_process_mmap_bytes", "memwatch_process_munmap_bytes", "memwatch_process_brk_grow_bytes",
    "memwatch_process_brk_shrink_bytes",
}


# --- helpers -------------------------------------------------------------------------------------

def sample_of(pid: int, name: str = "proc", *, start: float = 1_699_000_000.0, rss_kb: int = 1000,
              kernel: KernelCounts | None = None) -> ProcessView:
    s = ProcessSample(pid=pid, ppid=1, name=name, cmdline=name, user="u", start_ticks=int(start * 100),
                      start_time=start, threads=1, rss_kb=rss_kb, virt_kb=rss_kb * 2, peak_kb=rss_kb,
                      swap_kb=0, shared_kb=0, anon_kb=rss_kb, cgroup="/", kernel_thread=False)
    return ProcessView(sample=s, kernel=kernel)


def snapshot_of(views: Iterable[ProcessView], *, timestamp: float = 1_700_000_000.0,
                tracer: TracerHealth | None = None) -> Snapshot:
    system = SystemMemory(total_kb=1000, available_kb=600, used_kb=400, free_kb=100, swap_total_kb=0,
                          swap_used_kb=0)
    return Snapshot(timestamp=timestamp, interval_s=1.0, hostname="h", system=system,
                    tracer=tracer or TracerHealth(enabled=True, mode="raw"), processes=tuple(views))


def render_text(snapshot: Snapshot | None, **kw: object) -> str:
    collector = SnapshotCollector(**kw)  # type: ignore[arg-type]
    if snapshot is not None:
        collector.update(snapshot)
    response = ExporterApp(collector).handle(HttpRequest("GET", "/metrics", "", {}))
    assert response.status == 200
    return response.body.decode()


def parse_openmetrics(text: str) -> Iterator[Metric]:
    """The OpenMetrics parser (untyped in prometheus_client), typed for this file."""
    return cast(Iterator[Metric], openmetrics_parser.text_string_to_metric_families(text))  # type: ignore[no-untyped-call]


def samples(text: str) -> list[Sample]:
    return [s for fam in parse_text(text) for s in fam.samples]


def series_of(text: str, name: str) -> dict[tuple[str, str], float]:
    """(pid, start_time) -> value for one per-process sample name."""
    return {(s.labels["pid"], s.labels["start_time"]): s.value for s in samples(text) if s.name == name}


def family_names(text: str) -> set[str]:
    return {fam.name for fam in parse_text(text)}


# --- listen addresses ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("[::1]:9464", ("::1", 9464)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("localhost:80", ("localhost", 80)),
    (" host.example.org:65535 ", ("host.example.org", 65535)),
])
def test_parse_listen_accepts_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(("text", "hint"), [
    ("9464", "no port given"),
    (":9464", "no host given"),
    ("::1:9464", "brackets"),
    ("[::1]9464", "]:PORT"),
    ("[nope]:1", "not an IPv6 address"),
    ("127.0.0.1:99999", "0 to 65535"),
    ("127.0.0.1:http", "0 to 65535"),
    ("bad host:1", "not a host name"),
])
def test_parse_listen_rejects_bad_input_with_a_hint(text: str, hint: str) -> None:
    with pytest.raises(ListenAddressError, match=re.escape(hint)) as info:
        parse_listen(text)
    assert "e.g. 127.0.0.1:9464" in str(info.value)


# --- exposition content --------------------------------------------------------------------------

def test_text_exposition_reports_the_frame() -> None:
    frame = make_frames(5)[-1]
    text = render_text(frame)
    families = list(parse_text(text))
    assert all(f.documentation for f in families), "every family needs HELP text"
    by_name = {f.name: f for f in families}
    leaky = next(v for v in frame.processes if v.pid == LEAKY_PID)
    assert leaky.kernel is not None and leaky.growth_kb_s is not None
    rss = series_of(text, "memwatch_process_rss_bytes")
    label = (str(LEAKY_PID), f"{leaky.sample.start_time:.2f}")
    assert rss[label] == leaky.sample.rss_kb * 1024
    assert series_of(text, "memwatch_process_mmap_calls_total")[label] == leaky.kernel.mmap_count
    assert series_of(text, "memwatch_process_brk_shrink_bytes_total")[label] == leaky.kernel.brk_shrink_bytes
    assert series_of(text, "memwatch_process_growth_bytes_per_second")[label] == leaky.growth_kb_s * 1024
    assert series_of(text, "memwatch_process_leak_suspect")[label] == 1.0
    assert by_name["memwatch_process_mmap_calls"].type == "counter"
    assert by_name["memwatch_process_rss_bytes"].type == "gauge"
    values = {s.name: s.value for s in samples(text) if not s.labels or s.name == "memwatch_tracer_attached"}
    assert values["memwatch_memory_total_bytes"] == frame.system.total_kb * 1024
    assert values["memwatch_memory_pressure_some_avg10_ratio"] == pytest.approx(
        (frame.system.pressure_some_avg10 or 0) / 100)
    assert values["memwatch_tracer_attached"] == 1.0
    assert values["memwatch_tracer_events_total"] == frame.tracer.events
    assert values["memwatch_snapshot_timestamp_seconds"] == frame.timestamp
    assert values["memwatch_exported_processes"] == len(frame.processes)
    assert values["memwatch_processes"] == len(frame.processes)


def test_openmetrics_is_negotiated_and_parses() -> None:
    collector = SnapshotCollector()
    collector.update(make_frames(5)[-1])
    app = ExporterApp(collector)
    response = app.handle(HttpRequest("GET", "/metrics", "", {"accept": OPENMETRICS_ACCEPT}))
    assert response.content_type.startswith("application/openmetrics-text")
    body = response.body.decode()
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(body)}
    assert families["memwatch_process_mmap_bytes"].unit == "bytes"
    assert families["memwatch_process_mmap_bytes"].type == "counter"
    assert families["memwatch_build"].type == "info"
    plain = app.handle(HttpRequest("GET", "/metrics", "", {"accept": "text/plain"}))
    assert plain.content_type.startswith("text/plain")
    assert "# EOF" not in plain.body.decode()


def test_events_count_each_exit_and_oom_once_across_frames() -> None:
    collector = SnapshotCollector()
    for frame in make_frames(5):  # the exit is in frames 3 and 4, the OOM in frame 4
        collector.update(frame)
    text = render_text(None)
    assert "memwatch_oom_kills_total" not in text  # nothing before the first snapshot
    body = ExporterApp(collector).handle(HttpRequest("GET", "/metrics", "", {})).body.decode()
    values = {s.name: s.value for s in samples(body) if not s.labels}
    assert values["memwatch_process_exits_total"] == 1
    assert values["memwatch_oom_kills_total"] == 1


ODD_NAMES = [
    'say "hi"', "back\\slash", "new\nline", MARKUP_NAME, "<b>tag</b> & co", "we ird) (name", "tab\there",
    "caf\udce9",  # non-UTF-8 byte 0xe9 decoded with surrogateescape
    "\x1b]0;owned\x07", "\x1b]52;c;aGk=\x07\x1b[2J", "csi\u009b31m",   # OSC title, OSC 52 + clear, C1 CSI
]
ESCAPED = {"new\nline": "new\\nline", "tab\there": "tab\\there", "caf\udce9": "caf\\xe9",
           "\x1b]0;owned\x07": "\\x1b]0;owned\\x07", "\x1b]52;c;aGk=\x07\x1b[2J": "\\x1b]52;c;aGk=\\x07\\x1b[2J",
           "csi\u009b31m": "csi\\x9b31m"}


def test_odd_process_names_round_trip_in_both_formats() -> None:
    views = [sample_of(100 + i, name) for i, name in enumerate(ODD_NAMES)]
    collector = SnapshotCollector()
    collector.update(snapshot_of(views))
    app = ExporterApp(collector)
    expected = {str(100 + i): ESCAPED.get(name, name) for i, name in enumerate(ODD_NAMES)}
    for accept, parse in (("", parse_text), (OPENMETRICS_ACCEPT, parse_openmetrics)):
        body = app.handle(HttpRequest("GET", "/metrics", "", {"accept": accept})).body.decode("utf-8")
        names = {s.labels["pid"]: s.labels["name"] for f in parse(body) for s in f.samples
                 if s.name == "memwatch_process_rss_bytes"}
        assert names == expected
        assert "\x1b" not in body and "\x9b" not in body and "\x07" not in body


# --- which series exist --------------------------------------------------------------------------

def test_cardinality_is_top_n_plus_requested_pids() -> None:
    views = [sample_of(1000 + i, f"p{i}", rss_kb=10_000 - i) for i in range(50)]
    smallest = 1049
    text = render_text(snapshot_of(views), top=10, pids=(smallest, 424242))
    wanted = {str(1000 + i) for i in range(10)} | {str(smallest)}
    per_process = [s for s in samples(text) if "pid" in s.labels]
    assert {s.labels["pid"] for s in per_process} == wanted
    by_name: dict[str, int] = {}
    for s in per_process:
        by_name[s.name] = by_name.get(s.name, 0) + 1
    assert by_name["memwatch_process_rss_bytes"] == len(wanted)
    assert max(by_name.values()) == len(wanted)
    assert {s.value for s in samples(text) if s.name == "memwatch_exported_processes"} == {len(wanted)}


def test_top_zero_exports_every_process_and_sort_is_honoured() -> None:
    views = [sample_of(10 + i, rss_kb=100 + i) for i in range(5)]
    assert len(series_of(render_text(snapshot_of(views), top=0), "memwatch_process_rss_bytes")) == 5
    by_pid = series_of(render_text(snapshot_of(views), top=2, sort="pid"), "memwatch_process_rss_bytes")
    assert {pid for pid, _ in by_pid} == {"14", "13"}


def test_bad_sort_or_top_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown sort column 'size'"):
        SnapshotCollector(sort="size")
    with pytest.raises(ValueError, match="--top must be 0"):
        SnapshotCollector(top=-1)


def test_a_reused_pid_starts_a_new_series_and_the_old_one_goes() -> None:
    old = sample_of(500, "old", start=1_699_000_000.0, kernel=KernelCounts(mmap_count=900))
    new = sample_of(500, "new", start=1_699_000_050.5, kernel=KernelCounts(mmap_count=3))
    collector = SnapshotCollector()
    app = ExporterApp(collector)
    collector.update(snapshot_of([old]))
    first = app.handle(HttpRequest("GET", "/metrics", "", {})).body.decode()
    collector.update(snapshot_of([new], timestamp=1_700_000_001.0))
    second = app.handle(HttpRequest("GET", "/metrics", "", {})).body.decode()
    assert series_of(first, "memwatch_process_mmap_calls_total") == {("500", "1699000000.00"): 900}
    assert series_of(second, "memwatch_process_mmap_calls_total") == {("500", "1699000050.50"): 3}


def test_without_ebpf_no_kernel_series_and_tracer_reports_off() -> None:
    frame = make_frames(5, degraded=True)[-1]
    text = render_text(frame)
    names = family_names(text)
    assert not names & KERNEL_FAMILIES
    assert "memwatch_tracer_events" not in names
    attached = [s for s in samples(text) if s.name == "memwatch_tracer_attached"]
    assert [(s.labels, s.value) for s in attached] == [({"mode": "none"}, 0.0)]
    assert "memwatch_process_rss_bytes" in names


def churn_frames(count: int, seed: int) -> list[Snapshot]:
    """Frames where processes start, exit and get their pid reused, with random RSS."""
    rng = random.Random(seed)
    alive: dict[int, float] = {}
    frames = []
    for i in range(count):
        for pid in list(alive):
            if rng.random() < 0.3:
                del alive[pid]
        for _ in range(rng.randint(0, 8)):
            alive[rng.randint(100, 140)] = 1_699_000_000.0 + i  # may reuse a pid with a new start
        views = [sample_of(pid, f"p{pid}", start=start, rss_kb=rng.randint(1, 10_000),
                           kernel=KernelCounts(mmap_count=i) if pid % 2 else None)
                 for pid, start in sorted(alive.items())]
        frames.append(snapshot_of(views, timestamp=1_700_000_000.0 + i))
    return frames


async def test_scrapes_while_processes_churn_show_no_stale_series() -> None:
    source = ReplaySource(churn_frames(40, seed=7))
    watched = (101, 139)
    collector = SnapshotCollector(top=10, pids=watched)
    app = ExporterApp(collector)
    snapshot = await source.open()
    gone = reused = 0
    previous: set[tuple[str, str]] = set()
    for _ in range(source.frame_count):
        collector.update(snapshot)
        text = app.handle(HttpRequest("GET", "/metrics", "", {})).body.decode()
        ranked = sorted(snapshot.processes, key=lambda v: (-v.sample.rss_kb, v.pid))
        chosen = ranked[:10] + [v for v in ranked[10:] if v.pid in watched]
        expected = {(str(v.pid), f"{v.sample.start_time:.2f}") for v in chosen}
        exported = set(series_of(text, "memwatch_process_rss_bytes"))
        assert exported == expected
        assert set(series_of(text, "memwatch_process_mmap_calls_total")) == {
            (str(v.pid), f"{v.sample.start_time:.2f}") for v in chosen if v.kernel is not None}
        gone += len(previous - exported)
        reused += len({p for p, _ in previous} & {p for p, _ in exported - previous})
        previous = exported
        snapshot = await source.next()
    assert gone > 10 and reused > 0  # the frames really churned


def test_builder_is_pure() -> None:
    frame = make_frames(3)[-1]
    first = build_metric_families(frame, top=5)
    second = build_metric_families(frame, top=5)
    assert [(f.name, f.samples) for f in first] == [(f.name, f.samples) for f in second]


# --- HTTP ----------------------------------------------------------------------------------------

async def http_get(port: int, path: str, *, method: str = "GET", accept: str = "",
                   raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = raw or (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n").encode()
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
async def exporter() -> AsyncIterator[tuple[int, SnapshotCollector]]:
    collector = SnapshotCollector(top=5)
    server = await start_http_server("127.0.0.1", 0, ExporterApp(collector).handle)
    try:
        yield server.sockets[0].getsockname()[1], collector
    finally:
        server.close()
        await server.wait_closed()


async def test_http_metrics_healthz_and_errors(exporter: tuple[int, SnapshotCollector]) -> None:
    port, collector = exporter
    status, headers, body = await http_get(port, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "starting"
    status, _, body = await http_get(port, "/metrics")
    assert status == 200 and b"memwatch_build_info" in body and b"memwatch_process_" not in body

    collector.update(make_frames(5, degraded=True)[-1])
    status, headers, body = await http_get(port, "/healthz")
    health = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert health["status"] == "ok" and health["tracer"]["enabled"] is False
    assert "root" in health["tracer"]["reason"]
    assert {"events_dropped", "events_throttled", "events_withheld", "exits_dropped", "map_full"} <= set(
        health["tracer"]), "every loss counter, as in JSON and /metrics"

    status, headers, body = await http_get(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert int(headers["content-length"]) == len(body)
    assert len(series_of(body.decode(), "memwatch_process_rss_bytes")) == 5
    own = {s.name for s in samples(body.decode()) if s.name.startswith("process_")}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= own, "memwatch's own cost"
    status, headers, body = await http_get(port, "/metrics?x=1", accept=OPENMETRICS_ACCEPT)
    assert headers["content-type"].startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")

    status, headers, body = await http_get(port, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert (await http_get(port, "/nope"))[0] == 404
    status, headers, _ = await http_get(port, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert (await http_get(port, "", raw=b"garbage\r\n\r\n"))[0] == 400
    assert (await http_get(port, "", raw=b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 4000 + b"\r\n"))[0] == 431


async def test_serve_rejects_bad_arguments_and_busy_ports(capsys: pytest.CaptureFixture[str]) -> None:
    closed: list[bool] = []

    class Recording(ReplaySource):
        async def close(self) -> None:
            closed.append(True)
            await super().close()

    assert await serve(Recording(make_frames(2)), listen="9464") == 2
    assert "no port given" in capsys.readouterr().err
    assert await serve(Recording(make_frames(2)), sort="bogus") == 2
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    try:
        port = blocker.sockets[0].getsockname()[1]
        assert await serve(Recording(make_frames(2)), listen=f"127.0.0.1:{port}") == 1
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    finally:
        blocker.close()
    assert closed == [True, True, True]


SERVE_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from frames import make_frames
    from memwatch.exporter import serve
    from memwatch.sources.replay import ReplaySource

    class Closing(ReplaySource):
        async def close(self):
            await super().close()
            print("source closed", file=sys.stderr, flush=True)

    sys.exit(asyncio.run(serve(Closing(make_frames(5), realtime=True), listen="127.0.0.1:0", top=3)))
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
async def test_serve_in_a_subprocess_stops_cleanly_on_signal(sig: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVE_SCRIPT, env=env,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert match, line
        port = int(match.group(1))
        for _ in range(100):  # until the first snapshot is in
            status, _, body = await http_get(port, "/healthz")
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200
        status, _, body = await http_get(port, "/metrics")
        assert status == 200 and len(series_of(body.decode(), "memwatch_process_rss_bytes")) == 3
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert b"source closed" in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- deploy/ -------------------------------------------------------------------------------------

def all_exported_names() -> set[str]:
    """Sample names a full frame produces (eBPF on, growth, pressure, an exit and an OOM)."""
    return {s.name for s in samples(render_text(make_frames(5)[-1]))}


def grafana_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return exprs


def test_grafana_dashboard_uses_only_shipped_metric_names() -> None:
    exprs = grafana_expressions()
    used = {name for e in exprs for name in re.findall(r"memwatch_[a-z0-9_]+", e)}
    assert len(used) >= 20
    assert used - all_exported_names() == set()
    raw_names = set(re.findall(r"memwatch_[a-z0-9_]+", (DEPLOY / "grafana-dashboard.json").read_text()))
    assert raw_names <= used  # no name hides outside the expressions
    assert any("rate(memwatch_process_mmap_calls_total" in e for e in exprs)
    assert any("memwatch_tracer_events_dropped_total" in e for e in exprs)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("MEMWATCH_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("promtool not found (Debian package 'prometheus') and MEMWATCH_REQUIRE_PROMETHEUS=1")
        pytest.skip("promtool not found: install the Debian package 'prometheus' to check deploy/ configs")
    return path


def test_prometheus_config_is_valid() -> None:
    result = subprocess.run([promtool(), "check", "config", str(DEPLOY / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "prometheus.yml").read_text()
    assert "- 127.0.0.1:9464" in text and "scrape_interval: 15s" in text


def test_grafana_expressions_are_valid_promql(tmp_path: Path) -> None:
    grafana_vars = {"$topn": "10", "$__rate_interval": "1m", "$__range": "1h", "$instance": ".*"}
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(grafana_expressions()):
        if expr.startswith("label_values("):
            continue
        for var, value in grafana_vars.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules += [f"      - record: dashboard:expr{i}", f"        expr: {json.dumps(expr)}"]
    path = tmp_path / "rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_unit_runs_serve_on_loopback_and_verifies() -> None:
    unit = (DEPLOY / "memwatch.service").read_text()
    settings = [line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")]
    values = {k: v for k, v in settings}
    assert values["ExecStart"].endswith("memwatch serve --listen 127.0.0.1:9464")
    assert values["Restart"] == "on-failure"
    assert {"CAP_BPF", "CAP_PERFMON"} <= set(values["CapabilityBoundingSet"].split())
    for option in ("ProtectProc", "SystemCallFilter", "MemoryDenyWriteExecute", "PrivateUsers"):
        assert option not in values, f"{option} would stop the eBPF tracer or hide processes"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not found; unit syntax not verified")
    result = subprocess.run([analyze, "verify", str(DEPLOY / "memwatch.service")], capture_output=True,
                            text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.strip() and "memwatch is not executable" not in line]
    assert complaints == []


@pytest.mark.parametrize("pid", [SHORT_JOB_PID, HOG_PID])
def test_processes_that_left_are_not_exported(pid: int) -> None:
    frames = make_frames(5)
    collector = SnapshotCollector(top=0)
    app = ExporterApp(collector)
    collector.update(frames[0])
    assert str(pid) in {p for p, _ in series_of(
        app.handle(HttpRequest("GET", "/metrics", "", {})).body.decode(), "memwatch_process_rss_bytes")}
    collector.update(frames[-1])
    body = app.handle(HttpRequest("GET", "/metrics", "", {})).body.decode()
    assert str(pid) not in {p for p, _ in series_of(body, "memwatch_process_rss_bytes")}
    assert not [s for s in samples(body) if s.labels.get("pid") == str(pid)]



def test_tracer_cost_is_exported_as_gauges() -> None:
    from dataclasses import replace as _replace

    frame = make_frames(5)[-1]
    frame = _replace(frame, tracer=_replace(frame.tracer, ns_per_call=350.0, kernel_cpu_percent=1.5))
    text = render_text(frame)
    values = {s.name: s.value for s in samples(text) if not s.labels}
    assert values["memwatch_tracer_call_cost_seconds"] == 350e-9
    assert values["memwatch_tracer_cpu_ratio"] == 0.015
    assert "memwatch_tracer_cpu_ratio" not in render_text(make_frames(5)[-1]), "absent until measured"
