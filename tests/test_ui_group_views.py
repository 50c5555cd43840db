"""The dashboard's group views driven through Pilot: switching, sorting, filtering, collapsing the
tree, the cursor across frames, Enter on a group and Escape back, and a recording's groups."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from cgroupfs import CgroupFactory, cgroups  # noqa: F401  (the fixture)
from frames import CONTAINER_CGROUP, HOG_PID, LEAKY_PID, SESSION_CGROUP, make_frames
from memwatch.recording import Recorder
from memwatch.sources.live import LiveSource
from memwatch.sources.replay import ReplaySource
from memwatch.ui.app import MemwatchApp
from memwatch.ui.group_rows import TreeRow
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.widgets.group_table import GroupTable
from test_ui_support import ScriptedSource

SIZE = (200, 50)
MiB = 1 << 20


def groups(app: MemwatchApp) -> GroupTable:
    return app.dashboard.groups


def tree_pids(app: MemwatchApp) -> list[int]:
    return [int(k.split(":")[0]) for k in groups(app).row_order]


def cgroup_paths(app: MemwatchApp) -> list[str]:
    return [k.removeprefix("cgroup:") for k in groups(app).row_order]


def status(app: MemwatchApp) -> str:
    return str(app.dashboard.query_one("#status").render())


async def goto(pilot: Any, app: MemwatchApp, key: str) -> None:
    """Move the group table's cursor down to the row of ``key``."""
    for _ in range(len(groups(app).row_order)):
        if groups(app).current_key == key:
            return
        await pilot.press("down")
    raise AssertionError(f"{key} not in {groups(app).row_order}")


async def test_v_cycles_the_views_and_digits_choose_one() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table, grouped = app.dashboard.table, groups(app)
        assert table.display and not grouped.display
        seen = []
        for _ in range(4):
            await pilot.press("v")
            seen.append((app.view.mode, table.display, grouped.display, app.focused is grouped))
        assert seen == [("tree", False, True, True), ("cgroups", False, True, True), ("users", False, True, True),
                        ("processes", True, False, False)]
        assert app.focused is table
        await pilot.press("3")
        assert app.view.mode == "cgroups" and cgroup_paths(app)[0] == "/"
        assert "memory cgroups" in status(app)
        assert not app.dashboard.pane.display, "no process pane beside cgroups"
        n = len(make_frames()[1].cgroups)
        await pilot.press("p")   # a redraw of the status line alone still counts cgroups
        assert f"PAUSED   {n} memory cgroups  sort USAGE" in status(app)
        await pilot.press("p")
        await pilot.press("P")   # cgroups have no pid: said, and the sort stays
        assert app.view.group_sort == ("memory", True)
        assert any("cannot be sorted by pid" in str(n.message) for n in app._notifications)
        await pilot.press("2")
        assert app.view.mode == "tree" and tree_pids(app)[0] == 1 and app.dashboard.pane.display
        await pilot.press("4")
        assert grouped.row_order[0].split(":")[2] == "alice"
        await pilot.press("1")
        assert app.view.mode == "processes"
        titles = {c.title: c for c in app.get_system_commands(app.screen)}
        assert {"View", "Processes", "Tree", "Cgroups", "Users"} <= set(titles)
        await titles["Tree"].callback()
        await pilot.pause()
        assert app.view.mode == "tree"


async def test_tree_sorts_by_keys_and_header_clicks() -> None:
    frame = make_frames()[1]
    app = MemwatchApp(ScriptedSource(frame))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("2")
        by_rss = tree_pids(app)
        assert by_rss[:3] == [1, 812, 1001] and by_rss[-1] == 2
        await pilot.press("P")
        assert tree_pids(app)[:4] == [1, 812, 1001, 1234] and app.view.group_sort == ("pid", False)
        await pilot.press("r")
        assert tree_pids(app)[:2] == [2, 1]
        await pilot.press("N")
        names = [frame.by_key[tuple(map(int, k.split(":")))].sample.name  # type: ignore[index]
                 for k in groups(app).row_order[:6]]
        assert names == ["kthreadd", "systemd", "leaky-server", "postgres", "python3", "sshd"], "A-Z, siblings"
        assert app.view.sort == "rss", "the process table keeps its own sort"
        # a click on PROCS (the third column: PID 7, NAME 36, OWN 9, each padded by 2)
        x = (7 + 2) + (36 + 2) + (9 + 2) + 2
        assert await pilot.click("#groups", offset=(x, 0))
        await pilot.pause()
        assert app.view.group_sort == ("processes", True)
        assert "▼" in groups(app).header_text("processes").plain
        await pilot.press("s")
        assert app.view.group_sort == ("rss", True), "s: the next column to the right"
        await pilot.press("O")
        assert app.view.group_sort[0] == "outstanding"
        await pilot.press("G")
        assert app.view.group_sort[0] == "growth"


async def test_tree_collapses_expands_and_keeps_the_cursor_across_frames() -> None:
    frames = make_frames()
    source = ScriptedSource(frames[1])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("2")
        bash = "1001:50000"
        await goto(pilot, app, bash)
        children = {v.pid for v in frames[1].processes if v.sample.ppid == 1001}
        assert children <= set(tree_pids(app))
        await pilot.press("left")
        assert app.view.collapsed == {(1001, 50000)}
        assert not children & set(tree_pids(app)) and groups(app).current_key == bash
        row = groups(app).current_row
        assert isinstance(row, TreeRow) and row.collapsed
        assert groups(app).get_cell(bash, "name").plain.endswith(f"bash (+{len(children)})")
        await pilot.press("left")
        assert groups(app).current_key == "812:900", "left on a collapsed process: its parent"
        await pilot.press("down", "right")
        assert children <= set(tree_pids(app)) and app.view.collapsed == set()
        # a new frame reorders the tree (the hog grew): the cursor stays on its process
        await goto(pilot, app, f"{LEAKY_PID}:70000")
        index = groups(app).cursor_row
        source.push(frames[3])
        await pilot.pause()
        await pilot.pause()
        assert app.snapshot is not None and app.snapshot.timestamp == frames[3].timestamp
        assert groups(app).current_key == f"{LEAKY_PID}:70000"
        assert groups(app).cursor_row == groups(app).row_order.index(f"{LEAKY_PID}:70000") != index, (
            "short-job, above it, exited: its row moved, the cursor with it")
        assert app.dashboard.pane.view_key == (LEAKY_PID, 70000), "the pane shows the tree's process"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)


async def test_filter_in_every_view() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("2", "slash", *"hog", "enter")
        assert tree_pids(app) == [1, 812, 1001, HOG_PID], "the match, hanging where it lives"
        assert "4 of " in status(app)
        await pilot.press("3")
        assert app.view.filter == "hog" and cgroup_paths(app) == []
        await pilot.press("escape")
        assert app.view.filter == "" and len(cgroup_paths(app)) > 3
        await pilot.press("slash", *"docker", "enter")
        assert cgroup_paths(app) == ["/", "/system.slice", CONTAINER_CGROUP]
        await pilot.press("escape", "4", "slash", *"[red]", "enter")
        assert groups(app).row_order == [], "markup is text: no user is called [red]"
        await pilot.press("escape", "slash", *"bob", "enter")
        assert [k.split(":")[2] for k in groups(app).row_order] == ["bob"]


async def test_enter_on_a_cgroup_shows_its_processes_and_escape_returns() -> None:
    frame = make_frames()[1]
    app = MemwatchApp(ScriptedSource(frame))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("3", "slash", *"session", "enter")
        await goto(pilot, app, f"cgroup:{SESSION_CGROUP}")
        await pilot.press("enter")
        await pilot.pause()
        assert app.view.mode == "processes" and app.view.group is not None
        assert app.focused is app.dashboard.table
        expected = {v.pid for v in frame.processes if v.sample.memory_cgroup == SESSION_CGROUP}
        shown = {int(k.split(":")[0]) for k in app.dashboard.table.row_order}
        assert shown == expected and HOG_PID in shown
        assert "cgroup session-2.scope" in status(app) and "Escape" in status(app)
        await pilot.press("slash", *"hog", "enter")
        assert [int(k.split(":")[0]) for k in app.dashboard.table.row_order] == [HOG_PID]
        await pilot.press("escape")   # the filter first
        assert app.view.group is not None and len(app.dashboard.table.row_order) == len(expected)
        await pilot.press("escape")   # then back to the cgroups, with their filter and the cursor
        assert app.view.mode == "cgroups" and app.view.filter == "session"
        assert groups(app).current_key == f"cgroup:{SESSION_CGROUP}"
        assert app.focused is groups(app)


async def test_enter_on_a_user_shows_their_processes() -> None:
    frame = make_frames()[1]
    app = MemwatchApp(ScriptedSource(frame))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("4")
        await goto(pilot, app, "user:1001:bob")
        await pilot.press("enter")
        await pilot.pause()
        shown = {int(k.split(":")[0]) for k in app.dashboard.table.row_order}
        assert shown == {v.pid for v in frame.processes if v.sample.user == "bob"} and shown
        assert "user bob" in status(app)
        await pilot.press("v")   # another view leaves the group
        assert app.view.mode == "tree" and app.view.group is None


async def test_a_recording_shows_its_groups(tmp_path: Path) -> None:
    path = tmp_path / "run.mwrec"
    frames = make_frames()
    with Recorder.open(path, hostname="testhost") as recorder:
        for frame in frames:
            recorder.append(frame)
    app = MemwatchApp(ReplaySource.from_file(path, realtime=False))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("right_square_bracket", "3")
        await pilot.pause()
        paths = cgroup_paths(app)
        assert SESSION_CGROUP in paths and CONTAINER_CGROUP in paths
        oom = groups(app).get_cell(f"cgroup:{SESSION_CGROUP}", "oom").plain
        assert oom == "1/1", "the kernel's count and the kill memwatch saw, from the file"
        assert "%" in groups(app).get_cell(f"cgroup:{CONTAINER_CGROUP}", "bar").plain


async def test_a_real_cgroup_with_a_limit_and_an_odd_name(cgroups: CgroupFactory) -> None:  # noqa: F811
    """The live source on a cgroup this test made: its limit, its bar, its name as text, Enter."""
    web = cgroups.make(b"[bold]web\x1b[31m")
    web.limit(256 * MiB)
    holder = web.hold(32 * MiB)
    app = MemwatchApp(LiveSource(0.3, use_bpf=False))
    key = f"cgroup:{web.path}"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("3", "slash", *"[bold]web", "enter")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                await pilot.pause(0.1)
                if key in groups(app).row_order and groups(app).get_cell(key, "limit").plain != "-":
                    break
            assert groups(app).get_cell(key, "limit").plain == str(256 * 1024)
            bar = groups(app).get_cell(key, "bar").plain
            assert "█" in bar and bar.endswith("%"), "32 MiB and more of 256: a bar with its share"
            name, path = groups(app).get_cell(key, "name").plain, groups(app).get_cell(key, "path").plain
            assert "[bold]we" in name and path.endswith("[bold]web\\x1b[31m"), "markup and escapes as text"
            assert groups(app).get_cell(key, "processes").plain == "1"
            await goto(pilot, app, key)
            await pilot.press("enter")
            await pilot.pause()
            assert [int(k.split(":")[0]) for k in app.dashboard.table.row_order] == [holder.pid]
            assert "[bold]web\\x1b[31m" in status(app)
            await pilot.press("escape")
            assert app.view.mode == "cgroups" and groups(app).current_key == key
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
