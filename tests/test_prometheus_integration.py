"""A real Prometheus server scrapes a memwatch exporter fed by the live source.

Needs /usr/bin/prometheus (Debian package ``prometheus``): skipped without it, failed without it
under MEMWATCH_REQUIRE_PROMETHEUS=1. The eBPF part (exact mmap count) is marked ``bpf``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from memwatch.exporter import ExporterApp, SnapshotCollector, pump_snapshots
from memwatch.exporter_http import start_http_server
from memwatch.sources.base import SnapshotSource

WAIT_S = 30.0
MMAP_CALLS = 37
MMAP_SIZE = 1 << 20

# The workload maps MMAP_CALLS anonymous 1 MiB regions through libc (one mmap syscall each) and
# touches every page, between two lines on stdin, so a tracer attached while it waits sees exactly
# MMAP_CALLS mmaps. Everything it needs for the loop is created (and exercised once) beforehand.
WORKLOAD = textwrap.dedent(f"""
    import ctypes, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    PROT_RW, MAP_PRIVATE_ANON, SIZE, N = 3, 0x22, {MMAP_SIZE}, {MMAP_CALLS}
    warm = libc.mmap(None, SIZE, PROT_RW, MAP_PRIVATE_ANON, -1, 0)
    ctypes.memset(warm, 1, SIZE)
    libc.munmap(warm, SIZE)
    addrs = [0] * N
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()
    for i in range(N):
        addrs[i] = libc.mmap(None, SIZE, PROT_RW, MAP_PRIVATE_ANON, -1, 0)
        ctypes.memset(addrs[i], 1, SIZE)
    sys.stdout.write("done\\n"); sys.stdout.flush()
    sys.stdin.readline()
""")


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None and os.path.exists("/usr/bin/prometheus"):
        path = "/usr/bin/prometheus"
    if path is None:
        if os.environ.get("MEMWATCH_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("prometheus is not installed (Debian package 'prometheus') and "
                        "MEMWATCH_REQUIRE_PROMETHEUS=1 requires this test to run")
        pytest.skip("prometheus is not installed: apt-get install prometheus to run this test")
    return path


def live_source_factory() -> Callable[..., SnapshotSource]:
    try:
        from memwatch.sources.live import LiveSource
    except ImportError as exc:
        pytest.skip(f"memwatch.sources.live.LiveSource is not available yet ({exc})")
    return cast(Callable[..., SnapshotSource], LiveSource)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def query(prom_port: int, promql: str) -> list[dict[str, Any]]:
    """Instant query through Prometheus' HTTP API; the result vector."""
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    doc = await asyncio.to_thread(http_json, url)
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


async def wait_for(check: Callable[[], Any], what: str) -> Any:
    """Poll an async check until it returns something truthy, for at most WAIT_S seconds."""
    deadline = time.monotonic() + WAIT_S
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    pytest.fail(f"timed out after {WAIT_S:.0f} s waiting for {what}; last answer: {last!r}")


class Workload:
    """The child that maps a known number of regions when told to."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.expect("ready")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, word: str) -> None:
        line = self.stdout.readline().strip()
        assert line == word, f"workload said {line!r}, expected {word!r}"

    async def map_regions(self) -> None:
        self.stdin.write("go\n")
        self.stdin.flush()
        await asyncio.to_thread(self.expect, "done")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.asynccontextmanager
async def exporter_for(source: SnapshotSource,
                       pids: tuple[int, ...]) -> AsyncIterator[tuple[int, SnapshotCollector]]:
    """memwatch's exporter on 127.0.0.1 (any free port), fed by ``source``, top 3 plus ``pids``."""
    collector = SnapshotCollector(top=3, pids=pids)
    server = await start_http_server("127.0.0.1", 0, ExporterApp(collector).handle)
    pump = asyncio.create_task(pump_snapshots(source, collector))
    try:
        yield server.sockets[0].getsockname()[1], collector
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        server.close()
        await server.wait_closed()
        await source.close()


@contextlib.contextmanager
def prometheus_scraping(target_port: int, tmp_path: Path) -> Iterator[int]:
    """A Prometheus on loopback with temporary storage, scraping the target every second."""
    binary = prometheus_binary()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        scrape_configs:
          - job_name: memwatch
            scrape_interval: 1s
            scrape_timeout: 1s
            static_configs:
              - targets: ["127.0.0.1:{target_port}"]
    """))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def prometheus_ready(port: int) -> bool:
    try:
        await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/-/ready", None, 2)
    except OSError:
        return False
    return True


async def scraped_value(prom_port: int, promql: str) -> float | None:
    result = await query(prom_port, promql)
    return float(result[0]["value"][1]) if result else None


async def test_prometheus_sees_the_workload_rss(tmp_path: Path) -> None:
    prometheus_binary()
    LiveSource = live_source_factory()
    workload = Workload()
    try:
        await workload.map_regions()
        source = LiveSource(interval_s=0.5, use_bpf=False)
        async with exporter_for(source, (workload.pid,)) as (port, _collector):
            with prometheus_scraping(port, tmp_path) as prom_port:
                await wait_for(lambda: prometheus_ready(prom_port), "Prometheus to be ready")
                promql = f'memwatch_process_rss_bytes{{pid="{workload.pid}"}}'
                rss = await wait_for(lambda: scraped_value(prom_port, promql), promql)
                actual = workload.rss_bytes()
                assert rss > MMAP_CALLS * MMAP_SIZE  # every mapped page was touched
                assert abs(rss - actual) <= max(2 << 20, actual // 20), (rss, actual)
                up = await query(prom_port, "up")
                assert [r["value"][1] for r in up] == ["1"]
                attached = await query(prom_port, "memwatch_tracer_attached")
                assert [(r["metric"]["mode"], r["value"][1]) for r in attached] == [("none", "0")]
    finally:
        workload.stop()


@pytest.mark.bpf
async def test_prometheus_sees_the_exact_mmap_count(tmp_path: Path) -> None:
    prometheus_binary()
    LiveSource = live_source_factory()
    require = os.environ.get("MEMWATCH_REQUIRE_BPF") == "1"
    if os.geteuid() != 0:
        if require:
            pytest.fail("MEMWATCH_REQUIRE_BPF=1 but not running as root")
        pytest.skip("eBPF needs root: run as root to check the exact mmap count")
    workload = Workload()  # waits on stdin, before the tracer attaches: its startup is not counted
    try:
        source = LiveSource(interval_s=0.5, use_bpf=True)
        async with exporter_for(source, (workload.pid,)) as (port, collector):
            first = await wait_for(lambda: _latest(collector), "the first snapshot")
            if not first.tracer.enabled:
                if require:
                    pytest.fail(f"MEMWATCH_REQUIRE_BPF=1 but eBPF is off: {first.tracer.reason}")
                pytest.skip(f"eBPF is off: {first.tracer.reason}")
            with prometheus_scraping(port, tmp_path) as prom_port:
                await wait_for(lambda: prometheus_ready(prom_port), "Prometheus to be ready")
                rss_query = f'memwatch_process_rss_bytes{{pid="{workload.pid}"}}'
                await wait_for(lambda: scraped_value(prom_port, rss_query), "the workload's first scrape")
                promql = f'memwatch_process_mmap_calls_total{{pid="{workload.pid}"}}'
                before = await scraped_value(prom_port, promql) or 0.0
                await workload.map_regions()

                async def count_reached() -> float | None:
                    value = await scraped_value(prom_port, promql)
                    return value if value is not None and value >= before + MMAP_CALLS else None

                after = await wait_for(count_reached, f"{promql} to grow by {MMAP_CALLS}")
                await asyncio.sleep(3)  # a few more scrapes: nothing else may have been counted
                settled = await scraped_value(prom_port, promql)
                assert (after - before, settled) == (MMAP_CALLS, after)
                bytes_query = f'memwatch_process_mmap_bytes_total{{pid="{workload.pid}"}}'
                mapped = await scraped_value(prom_port, bytes_query)
                assert mapped is not None and mapped >= MMAP_CALLS * MMAP_SIZE
    finally:
        workload.stop()


async def _latest(collector: SnapshotCollector) -> Any:
    return collector.latest
