"""The group views' rows and state without an app: tree order, glyphs, collapse and filter; cgroup
and user order; which processes a group holds; the view state's group transitions; the columns'
marks (usage bar, no limit, lower bounds, markup and control characters as text)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from frames import CONTAINER_CGROUP, HOG_PID, SESSION_CGROUP, make_frames
from memwatch.groups import build_cgroups, process_tree
from memwatch.model import CgroupMemory, CgroupView, GroupTotals
from memwatch.ui.group_columns import CGROUP_COLUMNS, TREE_COLUMNS, USER_COLUMNS, usage_bar
from memwatch.ui.group_rows import CgroupRow, GroupChoice, cgroup_rows, choice_of, in_group, tree_rows, user_rows
from memwatch.ui.view_state import ViewState
from test_groups import proc


def names(rows: list[object]) -> list[str]:
    return [r.view.sample.name for r in rows]  # type: ignore[attr-defined]


def cell(columns: tuple[object, ...], key: str, row: object) -> str:
    spec = next(c for c in columns if c.key == key)  # type: ignore[attr-defined]
    return spec.render(row, False).plain  # type: ignore[attr-defined, no-any-return]


# ----- the tree ------------------------------------------------------------------------------------------


def test_tree_rows_hang_children_under_parents_with_glyphs() -> None:
    views = [proc(1, 0, rss=10), proc(2, 1, rss=5), proc(3, 1, rss=50), proc(4, 2, rss=100), proc(5, 3, rss=1)]
    rows = tree_rows(process_tree(views))
    assert [r.view.pid for r in rows] == [1, 2, 4, 3, 5]   # 2's subtree (105) before 3's (51)
    assert [r.prefix for r in rows] == ["", "├─", "│  └─", "└─", "   └─"]
    assert [cell(TREE_COLUMNS, "name", r) for r in rows] == ["▾ p1", "├─▾ p2", "│  └── p4", "└─▾ p3", "   └── p5"]
    assert cell(TREE_COLUMNS, "rss", rows[1]) == "105" and cell(TREE_COLUMNS, "own_rss", rows[1]) == "5"


def test_tree_rows_sort_reverse_collapse_and_filter() -> None:
    tree = process_tree([proc(1, 0, rss=10), proc(2, 1, rss=5), proc(3, 1, rss=50), proc(4, 2, rss=100),
                         proc(5, 3, rss=1)])
    assert [r.view.pid for r in tree_rows(tree, descending=False)] == [1, 3, 5, 2, 4]
    assert [r.view.pid for r in tree_rows(tree, sort="pid", descending=False)] == [1, 2, 4, 3, 5]
    assert [r.view.pid for r in tree_rows(tree, sort="pid", descending=True)] == [1, 3, 5, 2, 4]
    folded = tree_rows(tree, collapsed=[(2, 10)])
    assert [r.view.pid for r in folded] == [1, 2, 3, 5]
    assert folded[1].collapsed and cell(TREE_COLUMNS, "name", folded[1]) == "├─▸ p2 (+1)"
    assert not tree_rows(tree, collapsed=[(4, 10)])[2].collapsed, "a leaf has nothing to hide"
    # a filter shows the matches with their ancestors, whatever is collapsed
    matched = tree_rows(tree, collapsed=[(2, 10)], matches=lambda v: v.pid == 4)
    assert [r.view.pid for r in matched] == [1, 2, 4]
    with pytest.raises(ValueError, match="cannot be sorted by 'memory'"):
        tree_rows(tree, sort="memory")


def test_tree_of_the_frames_marks_a_partial_pss_and_shows_markup_as_text() -> None:
    frame = make_frames()[1]
    rows = tree_rows(process_tree(frame))
    by_pid = {r.view.pid: r for r in rows}
    assert cell(TREE_COLUMNS, "pss", by_pid[1]).startswith("≥")   # PSS read for two processes only
    assert cell(TREE_COLUMNS, "pss", by_pid[3999]) == str(by_pid[3999].node.subtree.pss_kb)
    assert cell(TREE_COLUMNS, "name", by_pid[1234]).endswith("[red]x[/red]")
    assert cell(TREE_COLUMNS, "name", by_pid[3456]).endswith("caf\\xe9")
    assert cell(TREE_COLUMNS, "mmap", by_pid[2]) == "-", "a kernel thread has no traced calls"
    degraded = {r.view.pid: r for r in tree_rows(process_tree(make_frames(degraded=True)[1]))}
    assert cell(TREE_COLUMNS, "outstanding", degraded[1]) == "-", "no eBPF: a dash, never 0"


# ----- cgroups and users ---------------------------------------------------------------------------------


def test_cgroup_rows_in_tree_order_with_siblings_ranked_and_filtered() -> None:
    frame = make_frames()[1]
    rows = cgroup_rows(frame.cgroups)
    paths = [r.view.path for r in rows]
    assert paths[0] == "/"
    for r in rows[1:]:
        parent = r.view.parent_path
        assert parent in paths[:paths.index(r.view.path)], "every cgroup after its parent"
    assert paths.index("/user.slice") < paths.index("/system.slice"), "the session's usage is the larger"
    by_name = [r.view.path for r in cgroup_rows(frame.cgroups, sort="name", descending=False)]
    assert by_name[:3] == ["/", "/init.scope", "/system.slice"]
    found = [r.view.path for r in cgroup_rows(frame.cgroups, needle="DOCKER")]
    assert found == ["/", "/system.slice", CONTAINER_CGROUP], "the match and its ancestors"
    assert [r.view.path for r in cgroup_rows(frame.cgroups, needle="session-2")][-1] == SESSION_CGROUP


def test_cgroup_cells_bar_limit_oom_pressure() -> None:
    frame = make_frames()[-1]
    by_path = {r.view.path: r for r in cgroup_rows(frame.cgroups)}
    docker = by_path[CONTAINER_CGROUP]
    assert cell(CGROUP_COLUMNS, "bar", docker).endswith("%") and "█" in cell(CGROUP_COLUMNS, "bar", docker)
    assert cell(CGROUP_COLUMNS, "limit", docker) == str(512 * 1024)
    session = by_path[SESSION_CGROUP]
    assert cell(CGROUP_COLUMNS, "bar", session) == "no limit" and cell(CGROUP_COLUMNS, "limit", session) == "none"
    assert cell(CGROUP_COLUMNS, "oom", session) == "1/1"            # the kernel's count / memwatch's
    assert cell(CGROUP_COLUMNS, "oom", by_path["/user.slice"]) == "-/1"  # not read: the kernel's unknown
    assert cell(CGROUP_COLUMNS, "oom", by_path["/init.scope"]) == "-"
    assert cell(CGROUP_COLUMNS, "psi", docker) == "2.0"
    v1 = CgroupRow(dataclasses.replace(docker.view, version=1, memory=dataclasses.replace(
        docker.view.memory, pressure_some_avg10=None)), "")  # type: ignore[arg-type]
    assert cell(CGROUP_COLUMNS, "psi", v1) == "-", "v1 has no pressure"


def test_usage_bar() -> None:
    assert usage_bar(None).plain == "-"
    assert usage_bar(CgroupMemory(current_kb=5)).plain == "no limit"
    assert usage_bar(CgroupMemory(current_kb=50, max_kb=100), 10).plain == "█████░░░░░  50%"
    over = usage_bar(CgroupMemory(current_kb=300, max_kb=100), 4)
    assert over.plain.startswith("████") and over.plain.endswith("%")
    assert usage_bar(CgroupMemory(current_kb=0, max_kb=0), 4).plain.startswith("████")


def test_odd_cgroup_names_stay_text() -> None:
    views = [proc(10, 1, cgroup="/evil/[bold]x\x1b[31m.service")]
    rows = cgroup_rows(build_cgroups(views, version=2))
    shown = cell(CGROUP_COLUMNS, "name", rows[-1]) + cell(CGROUP_COLUMNS, "path", rows[-1])
    assert "[bold]x" in shown and "\x1b" not in shown and "\\x1b" in shown


def test_user_rows_rank_filter_and_uid() -> None:
    frame = make_frames()[1]
    by_rss = user_rows(frame.users)
    assert by_rss[0].name == "alice" and [u.totals.rss_kb for u in by_rss] == sorted(
        (u.totals.rss_kb for u in by_rss), reverse=True)
    assert [u.uid for u in user_rows(frame.users, sort="uid", descending=False)] == sorted(u.uid for u in frame.users)
    assert [u.name for u in user_rows(frame.users, needle="ALI")] == ["alice"]
    assert [u.name for u in user_rows(frame.users, needle="113")] == ["postgres"]
    assert cell(USER_COLUMNS, "name", by_rss[0]) == "alice"


def test_in_group_counts_cgroups_below_and_users_by_uid() -> None:
    frame = make_frames()[1]
    session = GroupChoice("cgroup", "/user.slice", "user.slice")
    inside = {v.pid for v in frame.processes if in_group(v, session)}
    expected = {v.pid for v in frame.processes if v.sample.memory_cgroup.startswith("/user.slice/")}
    assert inside == expected and HOG_PID in inside
    assert len(inside) == next(c for c in frame.cgroups if c.path == "/user.slice").totals.processes
    root = {v.pid for v in frame.processes if in_group(v, GroupChoice("cgroup", "/", "root"))}
    assert 2 not in root and len(root) == len(frame.processes) - 1, "every process but the kernel thread"
    alice = choice_of(next(u for u in frame.users if u.name == "alice"))
    assert {v.sample.user for v in frame.processes if in_group(v, alice)} == {"alice"}
    unknown = choice_of(dataclasses.replace(frame.users[0], uid=-1, name="old"))
    assert unknown.key == "name:old"
    assert choice_of(CgroupRow(CgroupView("/a", "a", "cgroup", totals=GroupTotals()), "")).key == "/a"


# ----- the view state ------------------------------------------------------------------------------------


def test_view_state_switches_sorts_per_view_and_enters_groups() -> None:
    state = ViewState(filter="web")
    modes = []
    for _ in range(4):
        state = state.next_mode()
        modes.append(state.mode)
    assert modes == ["tree", "cgroups", "users", "processes"]
    tree = state.switched("tree")
    assert tree.group_sort == ("rss", True)
    assert tree.sorted_by("name").group_sort == ("name", False)
    assert tree.sorted_by("rss").group_sort == ("rss", False), "the current sort again reverses it"
    assert tree.sorted_by("name").switched("cgroups").group_sort == ("memory", True), "each view its own sort"
    assert tree.sorted_by("name").switched("cgroups").switched("tree").group_sort == ("name", False)
    assert tree.sort == "rss" and tree.sorted_by("pid").sort == "rss", "the process table's sort is its own"
    with pytest.raises(ValueError, match="cannot be sorted by memory"):
        tree.sorted_by("memory")
    assert tree.next_sort(("processes", "rss", "pid")).group_sort == ("pid", False)
    cg = state.switched("cgroups")
    inside = cg.entered(GroupChoice("cgroup", "/a", "a"))
    assert (inside.mode, inside.filter, inside.back_filter) == ("processes", "", "web")
    back = inside.left_group()
    assert (back.mode, back.group, back.filter) == ("cgroups", None, "web")
    assert inside.switched("tree").filter == "web"
    folded = tree.folded((1, 10), True)
    assert folded.collapsed == {(1, 10)} and folded.folded((1, 10), False).collapsed == set()
    with pytest.raises(ValueError, match="unknown view"):
        ViewState(mode="bogus")  # type: ignore[arg-type]


def test_group_rank_is_every_process_of_the_group_filtered() -> None:
    frame = make_frames()[1]
    state = ViewState(top=2).entered(GroupChoice("cgroup", "/user.slice", "user.slice"))
    ranked = state.rank(frame)
    assert len(ranked) > 2, "a group's processes are not cut to the top N"
    assert [v.sample.rss_kb for v in ranked] == sorted((v.sample.rss_kb for v in ranked), reverse=True)
    assert [v.pid for v in dataclasses.replace(state, filter="hog").rank(frame)] == [HOG_PID]
