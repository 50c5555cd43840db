"""The dashboard's charts, units and small-terminal layout, driven through Textual's Pilot."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from frames import LEAKY_PID, make_frames
from memwatch.ui.app import MemwatchApp
from test_ui_support import ScriptedSource

SIZE = (200, 50)
HUMAN_SIZE = re.compile(r"-?\d+(\.\d+)? (B|KiB|MiB|GiB|TiB)\b")


def _text(app: MemwatchApp, selector: str) -> str:
    return str(app.query_one(selector).render())


async def _highlight(pilot, app: MemwatchApp, pid: int) -> None:  # type: ignore[no-untyped-def]
    table = app.dashboard.table
    for _ in range(table.row_count):
        if table.current_view is not None and table.current_view.pid == pid:
            break
        await pilot.press("down")
    await pilot.pause()
    await pilot.pause()
    assert table.current_view is not None and table.current_view.pid == pid


async def test_the_detail_pane_follows_the_units_key() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[4]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await _highlight(pilot, app, LEAKY_PID)
        body, events = _text(app, "#detail-body"), _text(app, "#detail-events")
        assert "VIRT 443008 KB" in body and "MMAP 26240 KB" in body  # a KB and a bytes figure, both KB
        assert "mmap   2048 KB @" in events  # the recent events too, never raw bytes
        assert not re.search(r"\d B\b|KiB|MiB", body + events)
        await pilot.press("u")
        await pilot.pause()
        body, events = _text(app, "#detail-body"), _text(app, "#detail-events")
        assert "VIRT 433 MiB" in body and "MMAP 25.6 MiB" in body
        assert "mmap   2.00 MiB @" in events
        figures = body.split("LEAK SUSPECT")[0]  # the leak reason is the store's sentence, in KB
        assert not re.search(r"\d+ KB\b(?!/s)", figures + events)
        assert " 0 B" not in body  # a zero reads "0 KiB", as beside it
        for label in ("SWAPPSS", "MREMAP-", "UNTRACKED"):
            assert re.search(label + r" " + HUMAN_SIZE.pattern, body), label


async def test_a_machine_without_swap_says_so() -> None:
    frame = make_frames()[1]
    frame = replace(frame, system=replace(frame.system, swap_total_kb=0, swap_used_kb=0))
    app = MemwatchApp(ScriptedSource(frame))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = _text(app, "#sys-text")
        assert "no swap" in text and "Swap" not in text


async def test_charts_are_labelled_with_their_scale_and_span() -> None:
    frames = make_frames()  # 5 frames 3 s apart: the charts cover 12 s
    app = MemwatchApp(ScriptedSource(frames[4]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        header = _text(app, "#mem-spark").split("\n")
        # used memory went 5.72 -> 6.14 GiB (+7 %): under the least span (10 %), centred on it
        assert header[0].startswith("6.24 GiB ") and header[1].startswith("5.62 GiB ")
        assert header[1].endswith(" last 12 s")
        await _highlight(pilot, app, LEAKY_PID)
        assert _text(app, "#detail-title") == "RSS history, last 12 s"
        chart = _text(app, "#detail-spark").split("\n")
        # 100,000 -> 108,192 KB (+8 %): the least span centred on it, the labels right-aligned
        assert chart[0].startswith(" 107 MiB ") and chart[-1].startswith("96.4 MiB ")
        assert app.query_one("#detail-spark").has_class("-alert")  # a leak suspect's chart is red
