"""Prometheus endpoint: ``memwatch serve`` exposes the newest snapshot at /metrics.

Each scrape is built from the latest snapshot by a custom collector, so a process that left the
top N (or exited) simply stops being exported: no stale series linger as they would with
long-lived Gauge children. Per-process series carry pid, name and start_time, so a reused pid
starts a new series instead of continuing the old process's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from memwatch import __version__
from memwatch.cgroups import describe
from memwatch.exporter_http import HttpRequest, HttpResponse, start_http_server
from memwatch.fields import METRIC_FIELDS, SORT_KEYS, Field
from memwatch.groups import rank
from memwatch.model import CgroupView, Event, EventKind, ProcessView, Snapshot, UserView
from memwatch.sources.base import SnapshotSource
from memwatch.text import printable

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9464"
"""Loopback by default: exposing process names to the network must be a deliberate choice."""
PROCESS_LABELS = ("pid", "name", "start_time")
KIB = 1024

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class ListenAddressError(ValueError):
    """A --listen value that is not HOST:PORT; the message says what a valid one looks like."""


def parse_listen(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[::1]:9464``) into host and port; port 0 means any free port."""
    value = text.strip()
    example = "use HOST:PORT, e.g. 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464"
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise ListenAddressError(f"--listen {text!r}: an IPv6 address needs ']:PORT' after it; {example}")
        host, port_text = value[1:end], value[end + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ListenAddressError(
                f"--listen {text!r}: {host!r} is not an IPv6 address; {example}") from None
    else:
        if value.count(":") > 1:
            raise ListenAddressError(f"--listen {text!r}: put an IPv6 address in brackets; {example}")
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ListenAddressError(f"--listen {text!r}: no port given; {example}")
        if not host:
            raise ListenAddressError(
                f"--listen {text!r}: no host given; name the address to bind explicitly "
                f"(0.0.0.0 for every IPv4 interface); {example}")
        if not _HOSTNAME.match(host):
            raise ListenAddressError(f"--listen {text!r}: {host!r} is not a host name or address; {example}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenAddressError(f"--listen {text!r}: the port must be a number from 0 to 65535; {example}")
    return host, int(port_text)


def format_listen(host: str, port: int) -> str:
    """host:port as a URL authority (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def label_text(text: str) -> str:
    """A process-derived label value with control characters and undecodable bytes made visible.

    Anyone who reads /metrics with curl in a terminal must never have a process name drive that
    terminal (an OSC title, a screen clear, OSC 52 writing the clipboard); and a lone surrogate
    from a non-UTF-8 name would make the whole scrape fail with UnicodeEncodeError.
    prometheus_client escapes quotes and backslashes itself.
    """
    return printable(text)


def start_time_label(view: ProcessView) -> str:
    """Process start, seconds since the epoch, to the clock tick (1/100 s) the kernel keeps."""
    return f"{view.sample.start_time:.2f}"


class EventTally:
    """Counts exits and OOM kills, each once: every snapshot carries those that arrived since the
    previous one (``Snapshot.new_events``), however many there were. OOM kills are also counted by
    the victim's memory cgroup, kept after the cgroup is gone (a counter must not vanish with the
    container it counts), for the ``max_cgroups`` cgroups whose last kill is the most recent."""

    def __init__(self, max_cgroups: int = 500) -> None:
        self.exits = 0
        self.oom_kills = 0
        self.max_cgroups = max_cgroups
        self.cgroup_oom_kills: dict[str, int] = {}
        """By the victim's cgroup path; kills of an unknown cgroup are in ``oom_kills`` only."""

    def observe(self, new_events: Iterable[Event]) -> None:
        for event in new_events:
            if event.kind is EventKind.EXIT:
                self.exits += 1
            elif event.kind is EventKind.OOM:
                self.oom_kills += 1
                if event.cgroup is not None:
                    tally = self.cgroup_oom_kills
                    tally[event.cgroup] = tally.pop(event.cgroup, 0) + 1
                    while len(tally) > self.max_cgroups:
                        del tally[next(iter(tally))]


def _gauge(name: str, doc: str, labels: Sequence[str] = (), unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels), unit=unit)


def _counter(name: str, doc: str, labels: Sequence[str] = (), unit: str = "") -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels), unit=unit)


def _single(family: Metric, value: float, labels: dict[str, str] | None = None) -> Metric:
    suffix = "_total" if family.type == "counter" else ""
    family.add_sample(family.name + suffix, labels or {}, value)
    return family


def system_families(snapshot: Snapshot) -> Iterator[Metric]:
    """Whole-machine memory from /proc/meminfo and /proc/pressure/memory."""
    m = snapshot.system
    yield _single(_gauge("memwatch_memory_total_bytes", "Total usable RAM (MemTotal).", unit="bytes"),
                  m.total_kb * KIB)
    yield _single(_gauge("memwatch_memory_available_bytes",
                         "RAM available for new work without swapping (MemAvailable).", unit="bytes"),
                  m.available_kb * KIB)
    yield _single(_gauge("memwatch_memory_used_bytes", "RAM in use: MemTotal minus MemAvailable.",
                         unit="bytes"), m.used_kb * KIB)
    yield _single(_gauge("memwatch_memory_free_bytes", "RAM not used for anything (MemFree).",
                         unit="bytes"), m.free_kb * KIB)
    yield _single(_gauge("memwatch_swap_total_bytes", "Total swap space (SwapTotal).", unit="bytes"),
                  m.swap_total_kb * KIB)
    yield _single(_gauge("memwatch_swap_used_bytes", "Swap in use: SwapTotal minus SwapFree.",
                         unit="bytes"), m.swap_used_kb * KIB)
    if m.pressure_some_avg10 is not None:
        yield _single(_gauge("memwatch_memory_pressure_some_avg10_ratio",
                             "Share of the last 10 s in which at least one task stalled on memory "
                             "(PSI 'some' avg10 / 100); absent when the kernel has no PSI."),
                      m.pressure_some_avg10 / 100.0)
    if m.pressure_full_avg10 is not None:
        yield _single(_gauge("memwatch_memory_pressure_full_avg10_ratio",
                             "Share of the last 10 s in which all non-idle tasks stalled on memory "
                             "(PSI 'full' avg10 / 100); absent when the kernel has no PSI."),
                      m.pressure_full_avg10 / 100.0)


def tracer_families(snapshot: Snapshot) -> Iterator[Metric]:
    """eBPF tracer state and the losses it counted; counters only while it is attached."""
    t = snapshot.tracer
    mode = (t.mode or "unknown") if t.enabled else "none"
    yield _single(_gauge("memwatch_tracer_attached",
                         "1 when the eBPF tracer is attached (mode: tracepoint or raw), 0 when memwatch "
                         "runs on /proc alone (mode none; see /healthz for the reason).", ["mode"]),
                  1.0 if t.enabled else 0.0, {"mode": mode})
    if not t.enabled:
        return
    yield _single(_counter("memwatch_tracer_events", "Events the eBPF tracer delivered to user space."),
                  t.events)
    yield _single(_counter("memwatch_tracer_events_dropped",
                           "Events lost because the ring buffer was full (bpf_ringbuf_reserve failed)."),
                  t.events_dropped)
    yield _single(_counter("memwatch_tracer_events_throttled",
                           "Events not streamed because a process exceeded the per-process event rate; "
                           "its counters still count them."), t.events_throttled)
    yield _single(_counter("memwatch_tracer_events_withheld",
                           "Call events withheld because memwatch's own global budget per second was "
                           "spent (--events-budget); the counters still count them."), t.events_withheld)
    yield _single(_counter("memwatch_tracer_exits_dropped",
                           "Exit and OOM events lost: processes whose final figures were not seen."),
                  t.exits_dropped)
    if t.kernel_cpu_percent is not None:
        yield _single(_gauge("memwatch_tracer_cpu_ratio",
                             "Share of one CPU that memwatch's eBPF programs took, as last measured (BPF "
                             "run-time statistics over one interval in ten): its own cost in the kernel."),
                      t.kernel_cpu_percent / 100)
    if t.ns_per_call is not None:
        yield _single(_gauge("memwatch_tracer_call_cost_seconds",
                             "What accounting one traced call cost in the kernel, as last measured.",
                             unit="seconds"), t.ns_per_call / 1e9)
    yield _single(_counter("memwatch_tracer_map_full",
                           "Processes or mappings the kernel could not track: a full map, or a process "
                           "at its quota of it."), t.map_full)


class _ProcessFamilies:
    """The per-process families of one scrape (one per field of the registry that has a metric),
    filled one process at a time; a value that is unknown (None) is left out, not exported as 0."""

    def __init__(self) -> None:
        self._families: list[tuple[Field, Metric]] = []
        for f in METRIC_FIELDS:
            m = f.metric
            assert m is not None
            make = _gauge if m.kind == "gauge" else _counter
            self._families.append((f, make(m.name, m.help, PROCESS_LABELS, m.unit)))

    def add(self, view: ProcessView) -> None:
        s = view.sample
        labels = {"pid": str(s.pid), "name": label_text(s.name), "start_time": start_time_label(view)}
        for f, family in self._families:
            value = f.read(view)
            if value is None:
                continue
            assert f.metric is not None
            suffix = "_total" if family.type == "counter" else ""
            family.add_sample(family.name + suffix, labels, float(value) * f.metric.scale)

    def families(self) -> list[Metric]:
        return [family for _, family in self._families if family.samples]


def process_families(views: Iterable[ProcessView]) -> list[Metric]:
    """Per-process families; a family with no samples (e.g. kernel counters without eBPF) is left out."""
    families = _ProcessFamilies()
    for view in views:
        families.add(view)
    return families.families()


CGROUP_LABELS = ("path", "name")
USER_LABELS = ("uid", "user")

_CGROUP_GAUGES: tuple[tuple[str, str, str, str], ...] = (
    ("memwatch_cgroup_memory_usage_bytes", "current_kb",
     "Memory the kernel charges to the cgroup and those below it (v2 memory.current, v1 "
     "memory.usage_in_bytes): page cache, tmpfs and kernel memory included.", "bytes"),
    ("memwatch_cgroup_memory_limit_bytes", "max_kb",
     "The cgroup's memory limit (memory.max, v1 memory.limit_in_bytes); absent when it has none.", "bytes"),
    ("memwatch_cgroup_memory_high_bytes", "high_kb",
     "The cgroup's throttling threshold (v2 memory.high); absent when it has none.", "bytes"),
    ("memwatch_cgroup_memory_peak_bytes", "peak_kb",
     "The most memory the cgroup was charged at once (v2 memory.peak, v1 max_usage_in_bytes).", "bytes"),
    ("memwatch_cgroup_swap_usage_bytes", "swap_current_kb",
     "Swap the cgroup uses (v2 memory.swap.current, v1 memsw minus memory usage).", "bytes"),
    ("memwatch_cgroup_anon_bytes", "anon_kb", "Anonymous memory of the cgroup (memory.stat).", "bytes"),
    ("memwatch_cgroup_file_bytes", "file_kb", "Page cache of the cgroup, tmpfs included (memory.stat).",
     "bytes"),
    ("memwatch_cgroup_kernel_bytes", "kernel_kb",
     "Kernel memory charged to the cgroup: slab, stacks, page tables, sockets (memory.stat).", "bytes"),
    ("memwatch_cgroup_shmem_bytes", "shmem_kb", "Shared memory and tmpfs of the cgroup (memory.stat).", "bytes"),
)
"""(metric, CgroupMemory field in KB, help, unit) of the per-cgroup gauges."""


def exported_cgroups(snapshot: Snapshot, *, top: int, paths: tuple[str, ...] = ()) -> list[CgroupView]:
    """The cgroups a scrape exports: the ``top`` largest by the kernel's usage (then their processes'
    RSS) plus any asked for by path."""
    chosen = rank(list(snapshot.cgroups), "memory")[:top] if top > 0 else []
    if paths:
        have = {c.path for c in chosen}
        wanted = set(paths)
        chosen += [c for c in snapshot.cgroups if c.path in wanted and c.path not in have]
    return chosen


def cgroup_families(cgroups: Iterable[CgroupView], oom_kills: Mapping[str, int] | None = None) -> list[Metric]:
    """Per-cgroup series labelled path and name (control characters escaped); a figure the kernel
    does not have is left out. ``oom_kills`` (by the victim's cgroup, seen since memwatch started)
    are exported whether or not the cgroup is still among the exported ones, or still exists."""
    gauges = [(field_name, _gauge(name, doc, CGROUP_LABELS, unit)) for name, field_name, doc, unit in _CGROUP_GAUGES]
    pressure = _gauge("memwatch_cgroup_memory_pressure_some_avg10_ratio",
                      "Share of the last 10 s in which some task of the cgroup stalled on memory (v2 "
                      "memory.pressure 'some' avg10 / 100); absent on v1.", CGROUP_LABELS)
    kernel_ooms = _counter("memwatch_cgroup_kernel_oom_kills",
                           "Processes the OOM killer killed, as the kernel counts them (v2 memory.events "
                           "oom_kill: the cgroup and below; v1 memory.oom_control: the cgroup alone), also "
                           "before memwatch started.", CGROUP_LABELS)
    processes = _gauge("memwatch_cgroup_processes", "Processes in the cgroup and those below it (kernel "
                       "threads left out).", CGROUP_LABELS)
    rss = _gauge("memwatch_cgroup_process_rss_bytes", "The RSS of the cgroup's processes (and those below "
                 "it) added up; the usage counts what it misses.", CGROUP_LABELS, "bytes")
    for c in cgroups:
        labels = {"path": label_text(c.path), "name": label_text(c.name)}
        values = list(labels.values())
        processes.add_metric(values, c.totals.processes)
        rss.add_metric(values, c.totals.rss_kb * KIB)
        m = c.memory
        if m is None:
            continue
        for field_name, family in gauges:
            value = getattr(m, field_name)
            if value is not None:
                family.add_metric(values, value * KIB)
        if m.pressure_some_avg10 is not None:
            pressure.add_metric(values, m.pressure_some_avg10 / 100.0)
        if m.oom_kill is not None:
            kernel_ooms.add_metric(values, m.oom_kill)
    families: list[Metric] = [processes, rss, *(f for _, f in gauges), pressure, kernel_ooms]
    if oom_kills is not None:
        seen = _counter("memwatch_cgroup_oom_kills",
                        "OOM kills memwatch's tracer reported since memwatch started, by the victim's memory "
                        "cgroup (kept after the cgroup is gone).", CGROUP_LABELS)
        for path, count in sorted(oom_kills.items()):
            seen.add_metric([label_text(path), label_text(describe(path).name)], count)
        families.append(seen)
    return [f for f in families if f.samples]


def user_families(users: Iterable[UserView]) -> list[Metric]:
    """Per-user sums of processes, labelled uid and user name (control characters escaped)."""
    count = _gauge("memwatch_user_processes", "Processes of the user (real uid; kernel threads left out).",
                   USER_LABELS)
    rss = _gauge("memwatch_user_rss_bytes", "The RSS of the user's processes added up.", USER_LABELS, "bytes")
    swap = _gauge("memwatch_user_swap_bytes", "The swap of the user's processes added up.", USER_LABELS, "bytes")
    for u in users:
        values = [str(u.uid), label_text(u.name)]
        count.add_metric(values, u.totals.processes)
        rss.add_metric(values, u.totals.rss_kb * KIB)
        swap.add_metric(values, u.totals.swap_kb * KIB)
    return [f for f in (count, rss, swap) if f.samples]


def exported_views(snapshot: Snapshot, *, top: int, pids: tuple[int, ...], sort: str) -> list[ProcessView]:
    """The processes a scrape exports: the top N by ``sort`` plus any explicitly requested pids."""
    return snapshot.top(top, sort, pids=pids)


def build_metric_families(snapshot: Snapshot | None, *, top: int = 100, pids: tuple[int, ...] = (),
                          sort: str = "rss", tally: EventTally | None = None, top_cgroups: int = 20,
                          cgroups: tuple[str, ...] = ()) -> list[Metric]:
    """Every metric family for one scrape of ``snapshot`` (pure: no I/O, no hidden state)."""
    families: list[Metric] = []
    info = InfoMetricFamily("memwatch_build", "memwatch version that produced these metrics.")
    info.add_metric([], {"version": __version__})
    families.append(info)
    if snapshot is None:
        return families
    views = exported_views(snapshot, top=top, pids=pids, sort=sort)
    families.extend(system_families(snapshot))
    families.extend(tracer_families(snapshot))
    families.extend(process_families(views))
    chosen = exported_cgroups(snapshot, top=top_cgroups, paths=cgroups)
    families.extend(cgroup_families(chosen, tally.cgroup_oom_kills if tally is not None else None))
    families.extend(user_families(snapshot.users))
    if tally is not None:
        families.append(_single(_counter("memwatch_process_exits",
                                         "Process exits seen in the event log since memwatch started."),
                                tally.exits))
        families.append(_single(_counter("memwatch_oom_kills",
                                         "Distinct OOM kills seen in the event log since memwatch started."),
                                tally.oom_kills))
    families.append(_single(_gauge("memwatch_snapshot_timestamp_seconds",
                                   "When the exported snapshot was taken, seconds since the epoch."),
                            snapshot.timestamp))
    families.append(_single(_gauge("memwatch_snapshot_interval_seconds",
                                   "Sampling interval of the source.", unit="seconds"),
                            snapshot.interval_s))
    families.append(_single(_gauge("memwatch_processes",
                                   "Processes in the snapshot (all, not only exported)."),
                            len(snapshot.processes)))
    families.append(_single(_gauge("memwatch_exported_processes",
                                   "Processes with per-process series in this scrape (top N plus --pid)."),
                            len(views)))
    families.append(_single(_gauge("memwatch_exported_cgroups",
                                   "Cgroups with per-cgroup series in this scrape (top N by usage plus --cgroup)."),
                            len(chosen)))
    return families


def check_sort(sort: str) -> str:
    """``sort`` if it names a column; otherwise a ValueError that lists the valid ones."""
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort column {sort!r}; choose one of {', '.join(SORT_KEYS)}")
    return sort


class SnapshotCollector(Collector):
    """Builds the exposition from the latest snapshot at every scrape; the serve loop feeds it."""

    def __init__(self, *, top: int = 100, pids: tuple[int, ...] = (), sort: str = "rss", top_cgroups: int = 20,
                 cgroups: tuple[str, ...] = ()) -> None:
        if top < 0:
            raise ValueError(f"--top must be 0 (all processes) or more, not {top}")
        if top_cgroups < 0:
            raise ValueError(f"--top-cgroups must be 0 (only --cgroup) or more, not {top_cgroups}")
        self.top = top
        self.pids = tuple(pids)
        self.sort = check_sort(sort)
        self.top_cgroups = top_cgroups
        self.cgroups = tuple(cgroups)
        self.tally = EventTally()
        self._latest: Snapshot | None = None
        self._updated_monotonic: float | None = None

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    def update(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the one the next scrape reports."""
        self.tally.observe(snapshot.new_events)
        self._latest = snapshot
        self._updated_monotonic = time.monotonic()

    def age_s(self) -> float | None:
        """Seconds since the last update, None before the first."""
        return None if self._updated_monotonic is None else time.monotonic() - self._updated_monotonic

    def collect(self) -> Iterable[Metric]:
        return build_metric_families(self._latest, top=self.top, pids=self.pids, sort=self.sort,
                                     tally=self.tally, top_cgroups=self.top_cgroups, cgroups=self.cgroups)


def health_document(collector: SnapshotCollector) -> tuple[int, dict[str, object]]:
    """/healthz status and body: 503 until the first snapshot, then 200 with the tracer's state."""
    snap = collector.latest
    if snap is None:
        return int(HTTPStatus.SERVICE_UNAVAILABLE), {"status": "starting", "detail": "no snapshot yet"}
    t = snap.tracer
    age = collector.age_s()
    return int(HTTPStatus.OK), {
        "status": "ok",
        "snapshot_timestamp": snap.timestamp,
        "snapshot_age_s": round(age, 3) if age is not None else None,
        "processes": len(snap.processes),
        "tracer": {
            "enabled": t.enabled, "mode": t.mode, "reason": t.reason, "events": t.events,
            "events_dropped": t.events_dropped, "events_throttled": t.events_throttled,
            "events_withheld": t.events_withheld, "exits_dropped": t.exits_dropped,
            "map_full": t.map_full, "event_rate": t.event_rate,
        },
    }


class ExporterApp:
    """Routes requests: /metrics (content-negotiated), /healthz, / (a pointer), 404 otherwise."""

    def __init__(self, collector: SnapshotCollector) -> None:
        self.collector = collector
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        # memwatch's own CPU, memory and file descriptors (process_cpu_seconds_total ...), the
        # standard families every Prometheus user knows: what watching the fleet costs each host
        ProcessCollector(registry=self.registry)

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/metrics":
            encoder, content_type = choose_encoder(request.headers.get("accept", ""))
            return HttpResponse(200, encoder(self.registry), content_type)
        if request.path == "/healthz":
            status, doc = health_document(self.collector)
            return HttpResponse(status, (json.dumps(doc) + "\n").encode(), "application/json")
        if request.path == "/":
            return HttpResponse(200, b"memwatch exporter: metrics at /metrics, health at /healthz\n")
        return HttpResponse(404, f"Not Found: {request.path}\n".encode("utf-8", "replace"))


OPEN_GRACE_S = 15.0
"""On shutdown during ``source.open()``, how long to let it finish so close() can detach its probes."""


async def pump_snapshots(source: SnapshotSource, collector: SnapshotCollector,
                         opened: asyncio.Event | None = None,
                         on_first: Callable[[Snapshot], None] | None = None) -> None:
    """Open the source and feed every snapshot to the collector; an ended replay keeps its last frame.

    ``on_first`` sees the first snapshot, e.g. to say at start that the tracer is off."""
    try:
        first = await source.open()
        collector.update(first)
    finally:
        if opened is not None:
            opened.set()
    if on_first is not None:
        on_first(first)
    while True:
        try:
            snapshot = await source.next()
        except (EOFError, StopAsyncIteration):
            log.info("memwatch serve: the source has no more snapshots; serving the last one")
            await asyncio.Event().wait()
        collector.update(snapshot)


def _install_stop_signals(stop: asyncio.Event) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / no signals
            continue
        installed.append(sig)
    return installed


async def serve(source: SnapshotSource, *, listen: str = DEFAULT_LISTEN, top: int = 100,
                pids: tuple[int, ...] = (), sort: str = "rss", top_cgroups: int = 20, cgroups: tuple[str, ...] = (),
                on_first: Callable[[Snapshot], None] | None = None) -> int:
    """Serve /metrics and /healthz until SIGTERM, SIGINT or SIGHUP; return the process exit code.

    0 after a clean shutdown, 2 for bad arguments, 1 when the address cannot be bound or the
    source fails. The source is always closed (probes detached) before returning.
    """
    try:
        host, port = parse_listen(listen)
        collector = SnapshotCollector(top=top, pids=pids, sort=sort, top_cgroups=top_cgroups, cgroups=cgroups)
    except ValueError as exc:
        print(f"memwatch serve: {exc}", file=sys.stderr)
        await source.close()
        return 2
    app = ExporterApp(collector)
    try:
        server = await start_http_server(host, port, app.handle)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"memwatch serve: cannot listen on {format_listen(host, port)}: {reason}", file=sys.stderr)
        await source.close()
        return 1
    bound = server.sockets[0].getsockname()
    print(f"memwatch serve: metrics at http://{format_listen(bound[0], bound[1])}/metrics",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    installed = _install_stop_signals(stop)
    opened = asyncio.Event()
    pump = asyncio.create_task(pump_snapshots(source, collector, opened, on_first),
                               name="memwatch-exporter-pump")
    stopper = asyncio.create_task(stop.wait(), name="memwatch-exporter-stop")
    exit_code = 0
    try:
        await asyncio.wait({pump, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            print(f"memwatch serve: the snapshot source failed: {pump.exception()}", file=sys.stderr)
            exit_code = 1
    finally:
        loop = asyncio.get_running_loop()
        for sig in installed:
            loop.remove_signal_handler(sig)
        server.close()
        if not opened.is_set() and not pump.done():
            # Cancelling open() midway could strand probes its worker thread is still attaching.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(opened.wait(), OPEN_GRACE_S)
        for task in (pump, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)
        await source.close()
    return exit_code
