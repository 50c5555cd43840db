"""The field registry: one definition per figure, and every view built from it."""

from __future__ import annotations

import re
from dataclasses import replace

from frames import make_frames
from memwatch import fields
from memwatch.exporter import build_metric_families
from memwatch.fields import BY_KEY, FIELDS, JSON_FIELDS, METRIC_FIELDS, SORT_KEYS, Unit, field, plain_text
from memwatch.headless import render_table
from memwatch.model import ProcessView
from memwatch.serialize import HEADLESS_COLUMNS, headless_process_dict
from memwatch.ui.columns import ALL_COLUMNS, COLUMNS

METRIC_NAME = re.compile(r"^memwatch_process_[a-z_]+$")


def test_every_field_has_its_names_once() -> None:
    keys = [f.key for f in FIELDS]
    assert len(keys) == len(set(keys))
    jsons = [f.json for f in FIELDS if f.json]
    assert len(jsons) == len(set(jsons))
    metrics = [f.metric.name for f in FIELDS if f.metric]
    assert len(metrics) == len(set(metrics))
    for f in FIELDS:
        assert re.fullmatch(r"[a-z_]+", f.key) and f.label and f.title and f.width > 0, f.key
        if f.metric is not None:
            assert METRIC_NAME.match(f.metric.name), f.metric.name
            assert not f.metric.name.endswith("_total"), "counters get _total when exported"
            assert not f.metric.unit or f.metric.name.endswith("_" + f.metric.unit), f.metric.name
            assert f.unit not in (Unit.TEXT, Unit.HISTORY), "only numbers are exported"


def test_every_view_lists_only_registry_fields() -> None:
    for key in (*fields.DEFAULT_COLUMNS, *fields.HEADLESS_TABLE, *(k for s in fields.DETAIL_SECTIONS for k in s)):
        assert key in BY_KEY, key
    assert [c.key for c in ALL_COLUMNS] == [f.key for f in FIELDS]
    assert {c.key for c in COLUMNS} <= set(BY_KEY)
    assert tuple(f.json for f in JSON_FIELDS) == HEADLESS_COLUMNS
    from memwatch.cli import build_parser

    sort_action = next(a for a in build_parser()._actions if a.dest == "sort")
    assert tuple(sort_action.choices or ()) == SORT_KEYS


def _views() -> list[ProcessView]:
    frame = make_frames(5)[-1]
    return list(frame.processes)


def test_values_match_their_unit_and_kernel_figures_are_unknown_without_ebpf() -> None:
    views = _views()
    degraded = make_frames(5, degraded=True)[-1].processes
    for f in FIELDS:
        for v in views:
            value = f.read(v)
            if value is None:
                assert f.source != "proc", f"{f.key}: /proc figures are always known"
                continue
            if f.unit is Unit.TEXT:
                assert isinstance(value, str), f.key
            elif f.unit is Unit.FLAG:
                assert isinstance(value, bool), f.key
            elif f.unit is not Unit.HISTORY:
                assert isinstance(value, int | float) and not isinstance(value, bool), f.key
        if f.needs_kernel:
            assert all(f.read(v) is None for v in degraded), f"{f.key} is a dash, never a 0, without eBPF"


def test_headless_and_metrics_are_built_from_the_registry() -> None:
    frame = make_frames(5)[-1]
    row = headless_process_dict(frame.processes[0])
    assert list(row) == list(HEADLESS_COLUMNS)
    exported = {m.name for m in build_metric_families(frame, top=0)}
    for f in METRIC_FIELDS:
        assert f.metric is not None and f.metric.name in exported, f.metric.name if f.metric else f.key
    table = render_table(frame, frame.top(3))
    assert "RSS(KB)" in table and "OUTST(KB)" in table and "GROWTH(KB/s)" in table


def test_a_lower_bound_is_marked_everywhere_it_is_shown() -> None:
    view = next(v for v in _views() if v.kernel is not None)
    assert view.kernel is not None
    incomplete = replace(view, kernel=replace(view.kernel, lost_mappings=2, lost_bytes=8192))
    outstanding = field("outstanding")
    assert plain_text(outstanding, incomplete).startswith(">=")
    assert not plain_text(outstanding, view).startswith(">=")
    assert headless_process_dict(incomplete)["outstanding_complete"] is False
    cell = next(c for c in ALL_COLUMNS if c.key == "outstanding").render(incomplete, False)
    assert cell.plain.startswith("≥")


def test_sorting_by_any_field_works_and_text_sorts_a_to_z() -> None:
    frame = make_frames(5)[-1]
    for key in SORT_KEYS:
        ranked = frame.top(0, key, descending=field(key).descending)
        assert len(ranked) == len(frame.processes), key
    names = [v.sample.name.lower() for v in frame.top(0, "name", descending=False)]
    assert names == sorted(names)
    pids = [v.pid for v in frame.top(0, "pid", descending=False)]
    assert pids == sorted(pids)


def test_the_top_n_are_the_first_n_of_the_whole_ranking() -> None:
    """Snapshot.top picks its n without sorting the rest: the same processes in the same order as
    the head of the full ranking, ties (equal values, missing ones) by pid, for every field both
    ways, with the pinned pids after them in ranking order."""
    frame = make_frames(5)[-1]
    clones = []
    for n in range(60):  # many equal values: ties decide most places
        base = frame.processes[n % len(frame.processes)]
        sample = replace(base.sample, pid=5000 + (n * 37) % 101, rss_kb=1024 * (n % 4))
        clones.append(replace(base, sample=sample))
    crowd = replace(frame, processes=tuple(clones), by_key={})
    for key in SORT_KEYS:
        for descending in (True, False):
            whole = crowd.top(0, key, descending)
            assert [v.pid for v in crowd.top(7, key, descending)] == [v.pid for v in whole[:7]], key
            pinned = (whole[-1].pid, whole[-3].pid)
            expected = whole[:7] + [v for v in whole[7:] if v.pid in pinned]
            assert [v.pid for v in crowd.top(7, key, descending, pinned)] == [v.pid for v in expected], key
    rss = [(v.sample.rss_kb, v.pid) for v in crowd.top(10, "rss", True)]
    assert rss == sorted(rss, key=lambda r: (-r[0], r[1]))  # largest first, equal ones lower pid first
