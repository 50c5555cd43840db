"""The process table's own line renderer draws what Rich draws for the same cells, and redraws
only the lines whose picture changed."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.text import Text

sys.path.insert(0, str(Path(__file__).parent))

from frames import make_frames
from memwatch.ui.app import MemwatchApp
from memwatch.ui.widgets.process_table import CELL_PADDING, cell_body
from test_ui_support import ScriptedSource


def cells_of(segments: list[Segment]) -> list[tuple[str, object]]:
    """One (character, how it looks) per screen cell, however the segments are split: a space's
    look is only what shows on a blank (background, reverse, underline, strike)."""
    out: list[tuple[str, object]] = []
    for text, style, _ in segments:
        plain = Style() if style is None else style.copy()
        plain._meta = None
        for ch in text:
            if ch == " ":
                out.append((ch, (plain.bgcolor, plain.reverse, plain.underline, plain.strike)))
            else:
                out.append((ch, plain))
    return out


def rich_cell(text: Text, width: int, app: MemwatchApp) -> list[Segment]:
    """Rich's general path: render the Text in ``width`` cells, first line, padded."""
    console = app.console
    return console.render_lines(text, console.options.update(width=width, height=1), pad=True)[0]


async def test_cell_bodies_equal_rich_rendering_in_every_state() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[3]))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        compared = 0
        for human in (False, True):
            if human:
                await pilot.press("u")
            table = app.dashboard.table
            for key in table.row_order:
                for spec in table._specs:
                    cell = table.get_cell(key, spec.key)
                    ours = cell_body(cell, spec.width, app.console)
                    assert cells_of(ours) == cells_of(rich_cell(cell, spec.width, app)), (key, spec.key)
                    compared += 1
        assert compared > 100


async def test_a_drawn_line_is_the_cells_side_by_side_and_the_cursor_is_styled() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[3]))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        table = app.dashboard.table
        width = table.scrollable_content_region.width
        for row, key in enumerate(table.row_order[:3]):
            strip = table.render_line(row + 1)
            text = strip.text
            assert len(text) == width
            left = 0
            for spec in table._specs:  # each cell in its fixed place, padded, justified
                cell = table.get_cell(key, spec.key).plain
                start = left + spec.lead + CELL_PADDING  # a chart column keeps a blank lead cell
                assert text[left:start].strip() == ""
                shown = text[start: start + spec.width]
                assert shown == (cell.rjust(spec.width) if spec.justify == "right" else cell.ljust(spec.width))
                left += spec.lead + spec.width + 2 * CELL_PADDING
            cursor_bg = {seg.style.bgcolor for seg in strip if seg.style is not None and seg.text.strip()}
            if row == table.cursor_row:
                assert cursor_bg == {table.get_component_rich_style("process-table--cursor").bgcolor}
            else:
                assert table.get_component_rich_style("process-table--cursor").bgcolor not in cursor_bg
        header = table.render_line(0).text
        assert header.split()[:2] == ["PID", "NAME"] and "▼RSS(KB)" in header


async def test_only_changed_lines_are_redrawn() -> None:
    frames = make_frames()
    source = ScriptedSource(frames[3])
    app = MemwatchApp(source)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        table = app.dashboard.table
        drawn: list[int] = []
        original = table.render_line

        def spy(y: int) -> object:
            drawn.append(y)
            return original(y)

        table.render_line = spy  # type: ignore[method-assign,assignment]
        source.push(dataclasses.replace(frames[3], timestamp=frames[3].timestamp + 1))  # same processes
        while source.taken < 1:
            await pilot.pause()
        await pilot.pause()
        assert drawn == []  # nothing in the table changed: no line drawn
        await pilot.press("down")
        await pilot.pause()
        assert sorted(drawn) == [1, 2]  # the old cursor line and the new one
