"""The column chooser, driven through Pilot: every field of the registry, shown or hidden and
ordered by keys and by the mouse, the table following, and figures it cannot fill marked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.text import Text

sys.path.insert(0, str(Path(__file__).parent))

from frames import HOG_PID, LEAKY_PID, make_frames
from memwatch.fields import DEFAULT_COLUMNS, FIELDS
from memwatch.ui.app import MemwatchApp
from memwatch.ui.screens.column_chooser import EBPF_OFF, NO_ROOM, ColumnChooser
from memwatch.ui.screens.dashboard import DashboardScreen
from test_ui_support import ScriptedSource

SIZE = (200, 50)


def chooser(app: MemwatchApp) -> ColumnChooser:
    screen = app.screen
    assert isinstance(screen, ColumnChooser)
    return screen


def lines(app: MemwatchApp) -> dict[str, str]:
    """Field key -> the chooser's line for it, in the chooser's order."""
    entries = chooser(app).entries
    out = {}
    for i in range(entries.option_count):
        option = entries.get_option_at_index(i)
        assert isinstance(option.prompt, Text) and option.id is not None
        out[option.id] = option.prompt.plain
    return out


async def highlight(app: MemwatchApp, pilot: object, key: str) -> None:
    entries = chooser(app).entries
    entries.highlighted = entries.get_option_index(key)
    await pilot.pause()  # type: ignore[attr-defined]


def cell(app: MemwatchApp, pid: int, column: str) -> str:
    table = app.dashboard.table
    row = next(k for k in table.row_order if k.startswith(f"{pid}:"))
    return table.get_cell(row, column).plain


@pytest.mark.parametrize("key", ["c", "f2"])
async def test_the_chooser_lists_every_field_and_closes_back_to_the_table(key: str) -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(key)
        await pilot.pause()
        listed = lines(app)
        assert set(listed) == {f.key for f in FIELDS}
        for label in ("PSS", "USS", "SWAP", "SHARED", "THR", "MREMAP#", "CPU%"):
            assert any(f" {label} " in line for line in listed.values()), label
        assert list(listed)[: len(DEFAULT_COLUMNS)] == list(DEFAULT_COLUMNS)  # the shown first, in order
        assert listed["pid"].startswith(" 1 [x] PID") and listed["pss"].startswith("   [ ] PSS")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and app.focused is app.dashboard.table
        assert app.view.columns == DEFAULT_COLUMNS  # looking changes nothing


async def test_keys_show_hide_and_reorder_and_the_table_follows() -> None:
    frame = make_frames()[1]
    app = MemwatchApp(ScriptedSource(frame))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        await highlight(app, pilot, "threads")
        await pilot.press("space")
        await pilot.pause()
        assert app.view.columns == (*DEFAULT_COLUMNS, "threads")
        assert lines(app)["threads"].startswith(f"{len(DEFAULT_COLUMNS) + 1:>2} [x] THR")
        assert app.dashboard.table.visible_columns[-1] == "threads"  # behind the dialog, at once
        leaky = next(v for v in frame.processes if v.pid == LEAKY_PID)
        assert cell(app, LEAKY_PID, "threads") == str(leaky.sample.threads) == "8"
        await pilot.press("shift+up", "left_square_bracket")  # the highlight follows the column
        await pilot.pause()
        assert app.view.columns[-3:] == ("threads", "growth", "trend")
        await pilot.press("right_square_bracket")
        assert app.view.columns[-3:] == ("growth", "threads", "trend")
        await highlight(app, pilot, "rss")
        await pilot.press("enter")  # Enter toggles too
        await pilot.pause()
        assert "rss" not in app.view.columns and "rss" not in app.dashboard.table.visible_columns
        assert lines(app)["rss"].startswith("   [ ] RSS")
        await pilot.press("shift+down")  # a hidden column does not move
        await pilot.pause()
        assert "rss" not in app.view.columns
        await pilot.press("escape")
        await pilot.pause()
        table = app.dashboard.table
        assert table.columns == app.view.columns
        assert table.visible_columns == tuple(c for c in app.view.columns)  # 200 wide: room for all
        assert cell(app, HOG_PID, "threads") == "1"


async def test_the_mouse_shows_and_moves_a_column() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        entries = chooser(app).entries
        index = entries.get_option_index("cpu")
        entries.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause()
        row = entries.region.y + 1 + index - round(entries.scroll_y)  # the list has a border line on top
        if row >= entries.region.bottom - 1:
            entries.scroll_to(y=index, animate=False, immediate=True)
            await pilot.pause()
            row = entries.region.y + 1 + index - round(entries.scroll_y)
        assert await pilot.click(offset=(entries.region.x + 10, row))
        await pilot.pause()
        assert app.view.columns == (*DEFAULT_COLUMNS, "cpu")
        assert await pilot.click("#up")
        await pilot.pause()
        assert app.view.columns[-2:] == ("cpu", "trend")
        assert app.focused is entries  # back on the list after a button
        assert await pilot.click("#close")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert app.dashboard.table.visible_columns[-2:] == ("cpu", "trend")


async def test_defaults_and_the_last_column_stays() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    app.view = app.view.__class__(columns=("pid",))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.dashboard.table.visible_columns == ("pid",)
        await pilot.press("c")
        await pilot.pause()
        await highlight(app, pilot, "pid")
        await pilot.press("space")
        await pilot.pause()
        assert app.view.columns == ("pid",)
        assert any("at least one column" in n.message for n in app._notifications)
        await pilot.press("d")
        await pilot.pause()
        assert app.view.columns == DEFAULT_COLUMNS == app.dashboard.table.columns


@pytest.mark.parametrize("degraded", [True, False])
async def test_kernel_figures_are_marked_when_ebpf_is_off(degraded: bool) -> None:
    app = MemwatchApp(ScriptedSource(make_frames(degraded=degraded)[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        listed = lines(app)
        kernel = [f.key for f in FIELDS if f.needs_kernel]
        assert kernel and all((EBPF_OFF in listed[k]) is degraded for k in kernel)
        assert not any(EBPF_OFF in listed[f.key] for f in FIELDS if not f.needs_kernel)
        await highlight(app, pilot, "mremap")
        await pilot.press("space", "escape")
        await pilot.pause()
        # a dash, never a zero that looks like a real count
        assert (cell(app, HOG_PID, "mremap") == "-") is degraded


async def test_a_chosen_column_without_room_is_marked() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        dropped = [c for c in app.view.columns if c not in app.dashboard.table.visible_columns]
        assert dropped, "80 columns should not hold every default column"
        await pilot.press("c")
        await pilot.pause()
        listed = lines(app)
        assert all(NO_ROOM in listed[c] for c in dropped)
        assert not any(NO_ROOM in listed[c] for c in app.dashboard.table.visible_columns)


async def test_the_marks_follow_the_tracer_and_the_width() -> None:
    frames = make_frames(degraded=True)
    source = ScriptedSource(frames[1])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert EBPF_OFF in lines(app)["mmap"]
        source.push(make_frames()[2])  # the tracer is on in this frame
        await pilot.pause(0.3)
        assert EBPF_OFF not in lines(app)["mmap"]
        assert not any(NO_ROOM in line for line in lines(app).values())
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)
        assert any(NO_ROOM in line for line in lines(app).values())
