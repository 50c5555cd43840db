"""The process screen's memory map and allocation sites tabs, driven through Pilot with a scripted
source (tests/inspect_fixtures.py): every state they can be in, reads and captures only while
their tab is open, and a capture that always ends when the tab, the screen or the process goes."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, Tree

sys.path.insert(0, str(Path(__file__).parent))

from frames import KERNEL_THREAD_PID, LEAKY_PID, make_frames
from inspect_fixtures import InspectingScripted, stack_report
from memwatch.maps import Mapping, MemoryMap
from memwatch.model import ProcessKey, Snapshot
from memwatch.sources.base import InspectingSource, StacksUnavailable
from memwatch.sources.live import LiveSource
from memwatch.sources.replay import ReplaySource
from memwatch.ui import keys
from memwatch.ui.app import MemwatchApp
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.widgets import alloc_sites, memory_map
from memwatch.ui.widgets.alloc_sites import AllocationSites, bar
from memwatch.ui.widgets.memory_map import MemoryMapView, group_mappings, listed
from test_ui_support import ScriptedSource, until

SIZE = (160, 40)


def leaky_key(frame: Snapshot) -> ProcessKey:
    return next(v.key for v in frame.processes if v.pid == LEAKY_PID)


def status(app: MemwatchApp, widget_id: str) -> str:
    return str(app.screen.query_one(widget_id, Static).render())


async def open_screen(app: MemwatchApp, pilot: Pilot[int], key: ProcessKey, tab: str | None = None) -> DetailScreen:
    await pilot.pause()
    screen = DetailScreen(key)
    await app.push_screen(screen)
    await pilot.pause()
    if tab is not None:
        await pilot.press(tab)
        await pilot.pause()
    return screen


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refresh paces short enough for a test to see several."""
    monkeypatch.setattr(memory_map, "MAP_REFRESH_S", 0.05)
    monkeypatch.setattr(alloc_sites, "SITES_REFRESH_S", 0.05)


def test_live_sources_can_inspect_and_replays_cannot() -> None:
    assert isinstance(LiveSource(use_bpf=False, groups=False), InspectingSource)
    assert not isinstance(ReplaySource(make_frames()), InspectingSource)
    assert isinstance(InspectingScripted(make_frames()[0]), InspectingSource)


def test_groups_sum_their_mappings_and_rank_by_the_sort_column() -> None:
    from inspect_fixtures import LIBC
    from inspect_fixtures import memory_map as fixture_map

    mm = fixture_map()
    groups = group_mappings(mm, "path", "rss_kb", True)
    assert [g.name for g in groups][:3] == ["[anonymous]", "[heap]", "/dev/shm/[red]pool[/red]"]
    libc = next(g for g in groups if g.name == LIBC)
    assert libc.total("rss_kb") == 160 + 1200 + 16 and libc.total("pss_kb") == 40 + 300 + 16
    assert [m.rss_kb for m in libc.members] == [1200, 160, 16]
    assert sum(g.total("size_kb") for g in groups) == sum(m.size_kb for m in mm.mappings)
    kinds = group_mappings(mm, "kind", "start", False)
    assert [g.name for g in kinds] == ["file", "heap", "anonymous", "shared memory", "stack", "vdso"]
    assert bar(50, 100, 8) == "████    " and bar(0, 100, 4) == "    " and bar(1, 8 * 16, 16).strip() == "▏"


async def test_the_map_is_read_only_while_its_tab_is_open(fast: None) -> None:
    frame = make_frames()[2]
    source = InspectingScripted(frame)
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frame))
        await pilot.pause(0.2)
        assert source.map_reads == [], "read before its tab was opened"
        await pilot.press("m")
        await until(pilot, lambda: len(source.map_reads) >= 3, "reads every MAP_REFRESH_S")
        assert set(source.map_reads) == {leaky_key(frame)}
        view = app.screen.query_one(MemoryMapView)
        table = app.screen.query_one("#map-table", DataTable)
        assert table.row_count == 13 + 8   # every mapping, and a line for each of the 8 paths
        await pilot.press("f")
        await pilot.pause()
        left_at = len(source.map_reads)
        await pilot.pause(0.3)
        assert len(source.map_reads) <= left_at + 1, "still read after the tab was left"
        assert view.reads >= 3


async def test_map_sorts_groups_and_units_by_key_and_click() -> None:
    frame = make_frames()[2]
    app = MemwatchApp(InspectingScripted(frame))
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frame), "m")
        view = app.screen.query_one(MemoryMapView)
        table = app.screen.query_one("#map-table", DataTable)
        await until(pilot, lambda: table.row_count > 0, "the map shown")
        first = table.coordinate_to_cell_key((0, 0)).row_key.value
        assert first == "g:[anonymous]"
        await pilot.press("s")
        assert view.sort == "pss_kb"
        await pilot.press("r")
        assert view.descending is False
        await pilot.press("g")
        assert view.group_by == "kind"
        assert table.row_count == 13 + 6
        assert await pilot.click("#map-table", offset=(2, 0))   # the RANGE header
        await pilot.pause()
        assert view.sort == "start" and view.descending is False
        assert table.coordinate_to_cell_key((0, 0)).row_key.value == "g:file"
        assert "PSS" in status(app, "#map-status")
        await pilot.press("u")
        await pilot.pause()
        assert "MiB" in status(app, "#map-status")
        # keys of the map do nothing on the other tabs
        await pilot.press("f", "g")
        assert view.group_by == "kind"


@pytest.mark.parametrize(("error", "says"), [
    (TimeoutError(), "timed out"),
    (PermissionError(13, "Permission denied"), "permission denied"),
    (ProcessLookupError(), "process has exited"),
    (OSError(5, "Input/output error"), "Input/output error"),
])
async def test_map_failures_are_states_of_the_tab(error: BaseException, says: str) -> None:
    frame = make_frames()[2]
    source = InspectingScripted(frame)
    source.map_error = error
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frame), "m")
        await until(pilot, lambda: says in status(app, "#map-status"), f"the tab says {says!r}")
        assert not app.screen.query_one("#map-table", DataTable).display


async def test_map_reading_state_and_a_read_that_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_map, "MAP_TIMEOUT_S", 0.1)
    frame = make_frames()[2]
    source = InspectingScripted(frame)
    source.map_gate = asyncio.Event()   # never set: the read hangs, as on a stuck mmap lock
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frame), "m")
        assert "reading /proc/4567/smaps" in status(app, "#map-status")
        await until(pilot, lambda: "timed out" in status(app, "#map-status"), "the tab gives up waiting")


async def test_map_and_sites_in_a_replay_say_so() -> None:
    frames = make_frames()
    app = MemwatchApp(ReplaySource(frames))
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frames[0]), "m")
        assert "not available in a replay" in status(app, "#map-status")
        await pilot.press("a")
        await pilot.pause()
        assert "not available in a replay" in status(app, "#sites-status")


async def test_a_source_that_cannot_look_inside_says_so() -> None:
    frame = make_frames()[2]
    app = MemwatchApp(ScriptedSource(frame))
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frame), "a")
        assert "not available from this source" in status(app, "#sites-status")


async def test_capture_runs_while_the_sites_tab_is_open(fast: None) -> None:
    frame = make_frames()[2]
    source = InspectingScripted(frame)
    app = MemwatchApp(source)
    key = leaky_key(frame)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, key)
        assert source.started == []
        await pilot.press("a")
        sites = app.screen.query_one(AllocationSites)
        tree = app.screen.query_one("#sites-tree", Tree)
        await until(pilot, lambda: len(tree.root.children) == 4, "the stacks shown")
        assert source.started == [key] and source.targets == {LEAKY_PID}
        assert "4 stacks; 5072 calls with their stack, 12 without" in status(app, "#sites-status")
        top = tree.root.children[0]
        assert "arena_grow" in str(top.label) and "[b]handle[/b]_request" in str(top.label)
        await pilot.press("enter")    # the first stack opens into its frames, and stays open
        await pilot.pause(0.2)
        top = tree.root.children[0]
        assert top.is_expanded and "main" in str(top.children[-1].label)
        await pilot.press("m")
        await until(pilot, lambda: not source.targets, "capture stopped on leaving the tab")
        assert source.stopped == [LEAKY_PID] and not sites.capturing
        await pilot.press("a")
        await until(pilot, lambda: source.targets == {LEAKY_PID}, "capture again on coming back")
        await pilot.press("escape")
        await until(pilot, lambda: not source.targets, "capture stopped when the screen closed")
        assert source.stopped == [LEAKY_PID, LEAKY_PID]


async def test_open_and_leave_at_once_ends_stopped() -> None:
    frame = make_frames()[2]
    source = InspectingScripted(frame)
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frame))
        await pilot.press("a", "f", "a", "m")
        await pilot.pause(0.2)
        assert source.targets == set()
        assert len(source.started) == len(source.stopped)


async def test_capture_stops_when_the_process_exits() -> None:
    frames = make_frames()
    source = InspectingScripted(frames[2])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frames[2]), "a")
        await until(pilot, lambda: source.targets == {LEAKY_PID}, "capture started")
        gone = dataclasses.replace(frames[3], processes=tuple(v for v in frames[3].processes if v.pid != LEAKY_PID),
                                   by_key={})
        source.push(gone)
        await until(pilot, lambda: not source.targets, "capture stopped when the process went")
        assert "process has exited" in status(app, "#sites-status")


async def test_sites_without_the_tracer_say_why() -> None:
    frame = make_frames()[2]
    source = InspectingScripted(frame)
    source.stacks_error = StacksUnavailable("eBPF off: allocation stacks need the tracer (--no-bpf)")
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frame), "a")
        await until(pilot, lambda: "eBPF off: allocation stacks need the tracer" in status(app, "#sites-status"),
                    "the reason shown")
        assert source.targets == set()


def test_the_tab_keys_are_in_the_key_list() -> None:
    detail = {k.keys: k.action for k in keys.keys_of("detail")}
    assert detail["m"] == "show_tab('map')" and detail["a"] == "show_tab('sites')"
    assert "detail" in keys.DOCUMENTED


async def test_a_kernel_thread_has_nothing_to_look_at() -> None:
    frame = make_frames()[2]
    source = InspectingScripted(frame)
    app = MemwatchApp(source)
    key = next(v.key for v in frame.processes if v.pid == KERNEL_THREAD_PID)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, key, "m")
        assert "a kernel thread has no user memory" in status(app, "#map-status")
        await pilot.press("a")
        await pilot.pause()
        assert "a kernel thread has no user memory" in status(app, "#sites-status")
        assert source.map_reads == [] and source.started == []


def test_a_huge_map_lists_a_bounded_number_of_lines() -> None:
    """Tens of thousands of mappings: each group's first ones, a line for the rest of a group, a
    line for the groups that did not fit; the group lines still sum every mapping."""
    anon = tuple(Mapping(0x7f00_0000_0000 + i * 0x2000, 0x7f00_0000_0000 + i * 0x2000 + 0x1000, "rw-p", 0, "",
                         "anonymous", rss_kb=i % 5) for i in range(20_000))
    libs = tuple(Mapping(0x7e00_0000_0000 + i * 0x2000, 0x7e00_0000_0000 + i * 0x2000 + 0x1000, "r-xp", 0,
                         f"/lib/l{i}.so", "file", rss_kb=1) for i in range(1000))
    groups = group_mappings(MemoryMap(1, anon + libs), "path", "rss_kb", True)
    lines = list(listed(groups, per_group=12, rows=250))
    assert len(lines) <= 250 + 2
    assert lines[0][1] == groups[0] and groups[0].total("rss_kb") == sum(m.rss_kb for m in anon)
    assert [k for k, _, _ in lines[:14]] == ["group", *["mapping"] * 12, "in-group"]
    assert lines[13][2] == 20_000 - 12
    assert lines[-1][0] == "rest"
    shown = sum(1 for k, _, _ in lines if k == "mapping")
    assert shown + sum(n for k, _, n in lines if k in ("in-group", "rest")) == 21_000


async def test_refreshes_keep_an_expanded_stack_open_and_the_cursor_on_it(fast: None) -> None:
    frame = make_frames()[2]
    source = InspectingScripted(frame)
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(app, pilot, leaky_key(frame), "a")
        tree = app.screen.query_one("#sites-tree", Tree)
        await until(pilot, lambda: len(tree.root.children) == 4, "the stacks shown")
        await pilot.press("down", "enter")     # the brk stack, second
        await until(pilot, lambda: tree.root.children[1].is_expanded, "expanded")
        brk = tree.root.children[1].data
        first = stack_report()
        more = dataclasses.replace(first.stacks[1], calls=41)
        source.report = dataclasses.replace(first, stacks=(first.stacks[0], more, *first.stacks[2:]))
        await until(pilot, lambda: "41 calls" in str(tree.root.children[1].label), "the new figure")
        assert tree.root.children[1].is_expanded and len(tree.root.children[1].children) == 4
        # the brk stack overtakes the first: lines anew, still open, the cursor still on it
        await pilot.press("up", "enter")       # the first open too, and the cursor on it
        await until(pilot, lambda: tree.root.children[0].is_expanded, "the first expanded")
        lead = tree.root.children[0].data
        grown = dataclasses.replace(more, outstanding_bytes=1 << 30)
        source.report = dataclasses.replace(first, stacks=(grown, first.stacks[0], *first.stacks[2:]))
        await until(pilot, lambda: tree.root.children[0].data == brk, "re-ranked")
        assert tree.root.children[0].is_expanded and tree.root.children[1].is_expanded
        assert not tree.root.children[2].is_expanded
        assert tree.cursor_node is not None and tree.cursor_node.data == lead
