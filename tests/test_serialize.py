"""Round trips of every model object and the headless JSON contract."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from frames import BACKSLASH_NAME, DEGRADED_REASON, MARKUP_NAME, PAREN_NAME, make_frames
from memwatch.model import Event, EventKind, KernelCounts, ProcessView, Snapshot
from memwatch.serialize import (
    CGROUP_COLUMNS,
    EVENT_COUNTERS,
    HEADLESS_COLUMNS,
    USER_COLUMNS,
    SerializationError,
    event_from_dict,
    event_to_dict,
    headless_document,
    headless_process_dict,
    snapshot_from_dict,
    snapshot_to_dict,
)


def _through_json(d: dict[str, Any]) -> dict[str, Any]:
    """What a reader of a file gets back: JSON text, not the dict we built."""
    result: dict[str, Any] = json.loads(json.dumps(d))
    return result


@pytest.mark.parametrize("degraded", [False, True])
def test_every_frame_round_trips_to_an_equal_snapshot(degraded: bool) -> None:
    for frame in make_frames(5, degraded=degraded):
        back = snapshot_from_dict(_through_json(snapshot_to_dict(frame)))
        assert back == frame
        assert back.by_key.keys() == frame.by_key.keys()


def test_round_trip_keeps_tuples_and_nested_objects_typed() -> None:
    frame = make_frames(5)[-1]
    back = snapshot_from_dict(_through_json(snapshot_to_dict(frame)))
    leaky = next(v for v in back.processes if v.leak_suspect)
    assert isinstance(leaky.rss_history, tuple)
    assert isinstance(leaky.recent_events, tuple)
    assert isinstance(leaky.kernel, KernelCounts)
    assert all(e.kind is EventKind.MMAP for e in leaky.recent_events)
    assert {e.kind for e in back.events} == {EventKind.EXIT, EventKind.OOM}


def test_odd_names_survive_exactly() -> None:
    names = [MARKUP_NAME, PAREN_NAME, BACKSLASH_NAME, "new\nline\ttab", "\udcff lone surrogate", "日本語"]
    base = make_frames(1)[0]
    template = base.processes[0]
    views = tuple(
        dataclasses.replace(template, sample=dataclasses.replace(template.sample, pid=100 + i, name=n,
                                                                 cmdline=n + " --arg"))
        for i, n in enumerate(names)
    )
    frame = dataclasses.replace(base, processes=views, by_key={})
    # ensure_ascii (json's default) is how recordings write, so lone surrogates must survive it.
    back = snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(frame), ensure_ascii=True)))
    assert [v.sample.name for v in back.processes] == names
    assert [v.sample.cmdline for v in back.processes] == [n + " --arg" for n in names]


def test_event_round_trip_with_and_without_counts() -> None:
    exit_event = next(e for e in make_frames(5)[-1].events if e.kind is EventKind.EXIT)
    assert exit_event.counts is not None
    plain = Event(timestamp=1.5, kind=EventKind.BRK, pid=7, tid=8, name="[b]x", addr=0x1000, new_addr=0x3000)
    for event in (exit_event, plain):
        d = _through_json(event_to_dict(event))
        assert d["kind"] == event.kind.value
        assert event_from_dict(d) == event


def test_replay_position_round_trips() -> None:
    frame = dataclasses.replace(make_frames(1)[0], replay_position=(3, 9))
    assert snapshot_from_dict(_through_json(snapshot_to_dict(frame))).replay_position == (3, 9)


def test_foreign_dicts_raise_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="not a memwatch snapshot"):
        snapshot_from_dict({"timestamp": 1.0})
    with pytest.raises(SerializationError, match="not a memwatch event"):
        event_from_dict({**event_to_dict(make_frames(5)[-1].events[0]), "kind": "teleport"})


# --- headless JSON contract -----------------------------------------------------------------------

_INT_KEYS = ("pid", "ppid", "rss_kb", "virt_kb", "peak_kb", "swap_kb", "shared_kb")
_STR_KEYS = ("name", "cmdline", "user")
_NULLABLE_INT_KEYS = ("pss_kb", "uss_kb", "mmap_count", "munmap_count", "brk_count", "mremap_count",
                      "mmap_bytes", "munmap_bytes", "brk_bytes", "outstanding_bytes")
_KERNEL_KEYS = _NULLABLE_INT_KEYS[2:]


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_shape(doc: dict[str, Any]) -> None:
    assert list(doc) == ["timestamp", "duration_s", "hostname", "bpf", "memwatch_cpu_percent", "system",
                         "processes", "events", "cgroups", "users"]
    assert doc["memwatch_cpu_percent"] is None or isinstance(doc["memwatch_cpu_percent"], float)
    assert isinstance(doc["timestamp"], float)
    assert isinstance(doc["duration_s"], float)
    assert isinstance(doc["hostname"], str)
    bpf = doc["bpf"]
    counters = ("events", "events_dropped", "events_throttled", "events_withheld", "exits_dropped", "map_full")
    assert list(bpf) == ["enabled", "reason", *counters, "ns_per_call", "kernel_cpu_percent"]
    assert isinstance(bpf["enabled"], bool)
    assert bpf["reason"] is None or isinstance(bpf["reason"], str)
    assert all(_is_int(bpf[k]) for k in counters)
    for e in doc["events"]:
        assert list(e) == ["time", "kind", "pid", "start_time", "name", "exit_code", "signal", "peak_rss_kb",
                           "rss_kb", *EVENT_COUNTERS, "cgroup"]
        assert e["kind"] in ("exit", "oom") and _is_int(e["pid"]) and isinstance(e["name"], str)
        assert e["cgroup"] is None or (e["kind"] == "oom" and isinstance(e["cgroup"], str))
        assert (e["exit_code"] is None) != (e["signal"] is None) or e["kind"] == "oom"
    assert list(doc["system"]) == ["total_kb", "available_kb", "used_kb", "swap_total_kb", "swap_used_kb"]
    assert all(_is_int(v) for v in doc["system"].values())
    for p in doc["processes"]:
        assert tuple(p) == HEADLESS_COLUMNS
        assert all(_is_int(p[k]) for k in _INT_KEYS)
        assert all(isinstance(p[k], str) for k in _STR_KEYS)
        assert isinstance(p["start_time"], float)
        assert all(p[k] is None or _is_int(p[k]) for k in _NULLABLE_INT_KEYS)
        assert (p["outstanding_complete"] is None) == (p["outstanding_bytes"] is None)
        assert p["growth_kb_s"] is None or isinstance(p["growth_kb_s"], float)
        assert isinstance(p["leak_suspect"], bool)
    totals_ints = ("pids", "rss_kb", "swap_kb")
    totals_nullable = ("pss_kb", "mmap_count", "munmap_count", "brk_count", "mremap_count", "outstanding_bytes")
    for c in doc["cgroups"]:
        assert tuple(c) == CGROUP_COLUMNS
        assert all(isinstance(c[k], str) for k in ("path", "name", "kind"))
        assert all(_is_int(c[k]) for k in (*totals_ints, "oom_events"))
        assert all(c[k] is None or _is_int(c[k]) for k in (*totals_nullable, "memory_current_kb", "memory_max_kb",
                                                          "memory_high_kb", "swap_current_kb", "oom_kills",
                                                          "anon_kb", "file_kb", "kernel_kb"))
        assert c["pressure_some_avg10"] is None or isinstance(c["pressure_some_avg10"], float)
    for u in doc["users"]:
        assert tuple(u) == USER_COLUMNS and _is_int(u["uid"]) and isinstance(u["name"], str)
        assert all(_is_int(u[k]) for k in totals_ints)
        assert all(u[k] is None or _is_int(u[k]) for k in totals_nullable)


def _document(frame: Snapshot) -> dict[str, Any]:
    return _through_json(headless_document(frame, frame.top(0), 0.25, list(frame.events)))


def test_headless_document_shape_with_ebpf() -> None:
    frame = make_frames(5)[-1]
    doc = _document(frame)
    _check_shape(doc)
    assert [e["kind"] for e in doc["events"]] == ["exit", "oom"]
    assert doc["bpf"] == {"enabled": True, "reason": None, "events": frame.tracer.events,
                          "events_dropped": 0, "events_throttled": 0, "events_withheld": 0,
                          "exits_dropped": 0, "map_full": 0, "ns_per_call": None, "kernel_cpu_percent": None}
    assert doc["hostname"] == "testhost"
    by_pid = {p["pid"]: p for p in doc["processes"]}
    user_procs = [v for v in frame.processes if not v.sample.kernel_thread]
    assert all(by_pid[v.pid]["mmap_count"] is not None for v in user_procs)
    kthread = next(v for v in frame.processes if v.sample.kernel_thread)
    assert all(by_pid[kthread.pid][k] is None for k in _KERNEL_KEYS)


def test_headless_document_nulls_when_ebpf_is_off() -> None:
    doc = _document(make_frames(5, degraded=True)[-1])
    _check_shape(doc)
    assert doc["bpf"]["enabled"] is False
    assert doc["bpf"]["reason"] == DEGRADED_REASON
    assert doc["processes"]
    for p in doc["processes"]:
        assert all(p[k] is None for k in _KERNEL_KEYS), p["name"]


def test_headless_process_uses_net_brk_and_rollup() -> None:
    frame = make_frames(5)[-1]
    view: ProcessView = next(v for v in frame.processes if v.rollup is not None and v.kernel is not None)
    assert view.kernel is not None and view.rollup is not None
    assert view.kernel.brk_shrink_bytes > 0
    d = headless_process_dict(view)
    assert d["brk_bytes"] == view.kernel.brk_grow_bytes - view.kernel.brk_shrink_bytes
    assert (d["pss_kb"], d["uss_kb"]) == (view.rollup.pss_kb, view.rollup.uss_kb)
    without = headless_process_dict(dataclasses.replace(view, rollup=None))
    assert without["pss_kb"] is None and without["uss_kb"] is None


def test_headless_keeps_odd_names_literal() -> None:
    doc = _document(make_frames(5)[-1])
    names = {p["name"] for p in doc["processes"]}
    assert {MARKUP_NAME, PAREN_NAME, BACKSLASH_NAME} <= names


# --- damaged or foreign data: one sentence naming the value -------------------------------------

def _frame_dict() -> dict[str, Any]:
    return _through_json(snapshot_to_dict(make_frames(5)[-1]))


def _leaky(d: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = next(p for p in d["processes"] if p["leak_suspect"])
    return view


def _set(path: str, value: Any) -> Any:
    """A change to a frame dict at ``path`` (``processes.0.sample.pid``); ``"-"`` deletes the key."""
    def change(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = d
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value == "-":
            del target[last]
        else:
            target[int(last) if isinstance(target, list) else last] = value
    return change


@pytest.mark.parametrize(("path", "value", "message"), [
    ("timestamp", "yesterday", r"timestamp should be a number, not a string \('yesterday'\)"),
    ("hostname", None, "hostname should be a string, not null"),
    ("paused", 0, "paused should be true or false, not an integer"),
    ("system", [1, 2], "system should be an object, not a list"),
    ("system.used_kb", 1.5, r"system.used_kb should be an integer, not a number \(1.5\)"),
    ("tracer.enabled", 1, "tracer.enabled should be true or false, not an integer"),
    ("tracer.reason", 7, "tracer.reason should be a string or null, not an integer"),
    ("tracer", "-", "tracer is missing"),
    ("processes", {"0": {}}, "processes should be a list, not an object"),
    ("processes.0", "x", r"processes\[0\] should be an object, not a string"),
    ("processes.3.sample.rss_kb", "12", r"processes\[3\].sample.rss_kb should be an integer, not a string \('12'\)"),
    ("processes.3.sample.pid", True, r"processes\[3\].sample.pid should be an integer, not a boolean"),
    ("processes.3.sample.name", None, r"processes\[3\].sample.name should be a string, not null"),
    ("processes.3.sample.cmdline", "-", r"processes\[3\].sample.cmdline is missing"),
    ("processes.3.kernel", [], r"processes\[3\].kernel should be an object, not a list"),
    ("processes.3.kernel", "-", r"processes\[3\].kernel is missing"),
    ("processes.3.kernel.mmap_count", None, r"processes\[3\].kernel.mmap_count should be an integer, not null"),
    ("processes.3.growth_kb_s", "fast", r"processes\[3\].growth_kb_s should be a number or null"),
    ("processes.3.rss_history", 5, r"processes\[3\].rss_history should be a list, not an integer"),
    ("processes.3.rss_history.2", "5", r"processes\[3\].rss_history should hold integers only, not a string"),
    ("processes.3.rss_history.2", 5.5, r"processes\[3\].rss_history should hold integers only, not a number"),
    ("processes.3.event_rate_history.1", None, r"processes\[3\].event_rate_history should hold numbers only"),
    ("processes.3.event_rate_history.1", [1], r"processes\[3\].event_rate_history should hold numbers only"),
    ("events.0.kind", "teleport", r"events\[0\].kind should be one of mmap, .*, not a string"),
    ("events.0.pid", "5678", r"events\[0\].pid should be an integer"),
    ("events.0.counts", 3, r"events\[0\].counts should be an object, not an integer"),
    ("events.0.counts.mmap_bytes", "lots", r"events\[0\].counts.mmap_bytes should be an integer"),
    ("events", {}, "events should be a list, not an object"),
    ("new_events.0.timestamp", None, r"new_events\[0\].timestamp should be a number, not null"),
    ("system_history.1.total_kb", "16G", r"system_history\[1\].total_kb should be an integer"),
    ("replay_position", [1], "replay_position should be two integers or null, not a list"),
    ("replay_position", ["1", "2"], "replay_position should be two integers or null"),
])
def test_a_wrong_value_is_named_with_its_path(path: str, value: Any, message: str) -> None:
    d = _frame_dict()
    assert d["processes"][3]["kernel"] is not None and d["events"] and d["new_events"]
    _set(path, value)(d)
    with pytest.raises(SerializationError, match=f"^not a memwatch snapshot: {message}"):
        snapshot_from_dict(d)


def test_a_leaky_process_event_is_named_with_its_path() -> None:
    d = _frame_dict()
    i = d["processes"].index(_leaky(d))
    _leaky(d)["recent_events"][1]["addr"] = "0x7f00"
    with pytest.raises(SerializationError, match=rf"processes\[{i}\].recent_events\[1\].addr should be an integer"):
        snapshot_from_dict(d)


@pytest.mark.parametrize("value", [[], "frame", 3, None])
def test_not_an_object_at_all(value: Any) -> None:
    with pytest.raises(SerializationError, match="should be an object"):
        snapshot_from_dict(value)
    with pytest.raises(SerializationError, match="should be an object"):
        event_from_dict(value)


def test_numbers_are_accepted_where_the_model_says_float() -> None:
    d = _frame_dict()
    d["interval_s"] = 3
    d["processes"][3]["growth_kb_s"] = 0
    d["processes"][3]["event_rate_history"] = [0, 1, 2.5]
    back = snapshot_from_dict(d)
    assert back.interval_s == 3
    assert back.processes[3].event_rate_history == (0, 1, 2.5)


def test_missing_defaulted_fields_take_their_default_and_unknown_keys_are_ignored() -> None:
    frame = make_frames(5)[-1]
    d = _frame_dict()
    for key in ("paused", "replay_position", "system_history", "new_events"):
        del d[key]
    del d["tracer"]["exits_dropped"]
    del d["processes"][3]["kernel"]["lost_mappings"]
    del d["events"][0]["prot"]
    d["processes"][3]["sample"]["from_the_future"] = {"x": 1}
    d["added_later"] = [1, 2, 3]
    back = snapshot_from_dict(d)
    assert back.paused is False and back.replay_position is None
    assert back.system_history == () and back.new_events == ()
    assert back.tracer == frame.tracer  # exits_dropped was 0, its default
    assert back.processes == frame.processes
    assert back.events == frame.events


@pytest.mark.parametrize(("status", "code", "signal"), [(768, 3, None), (9, None, "SIGKILL"), (0, 0, None)])
def test_events_written_before_exit_codes_were_decoded(status: int, code: int | None, signal: str | None) -> None:
    """Format 1 stored the wait(2) status in exit_code and had no "signal" key."""
    d = _through_json(event_to_dict(next(e for e in make_frames(5)[-1].events if e.kind is EventKind.EXIT)))
    del d["signal"]
    d["exit_code"] = status
    back = event_from_dict(d)
    assert (back.exit_code, back.signal) == (code, signal)


def test_without_events_leaves_the_log_out() -> None:
    frame = make_frames(5)[-1]
    assert frame.events and frame.new_events
    d = _through_json(snapshot_to_dict(frame, with_events=False))
    assert "events" not in d and "new_events" not in d
    assert snapshot_from_dict(d) == dataclasses.replace(frame, events=(), new_events=())
