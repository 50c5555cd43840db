"""The process table's own cell renderer draws exactly what DataTable's Rich path draws."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.style import Style
from textual.widgets import DataTable

sys.path.insert(0, str(Path(__file__).parent))

from frames import make_frames
from memwatch.ui.app import MemwatchApp
from memwatch.ui.widgets.process_table import ProcessTable
from test_ui_support import ScriptedSource


async def test_fast_cells_equal_datatable_cells_in_every_state() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[3]))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        for human in (False, True):
            if human:
                await pilot.press("u")
            table = app.table
            base = table.rich_style
            compared = 0
            for row in range(table.row_count):
                row_style = table._get_row_style(row, base)
                for column, spec in enumerate(table.ordered_columns):
                    width = spec.get_render_width(table)
                    for cursor, hover in ((False, False), (True, False), (False, True)):
                        ours = table._render_cell(row, column, row_style, width, cursor, hover)
                        table._update_count += 1  # DataTable's own cache must not answer for it
                        theirs = DataTable._render_cell(table, row, column, row_style, width, cursor, hover)
                        assert [[(s.text, str(s.style)) for s in line] for line in ours] == \
                            [[(s.text, str(s.style)) for s in line] for line in theirs], (row, column)
                        assert all(isinstance(s.style, Style) and s.style.meta == {"row": row, "column": column}
                                   for s in ours[0])
                        compared += 1
            assert isinstance(table, ProcessTable) and compared > 100
