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
        assert "GROWTH +682.7 KiB/s" in body
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


def _screen_lines(app: MemwatchApp) -> list[str]:
    """The screen as plain text, one string per line."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, force_terminal=True)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text().split("\n")


async def test_at_80x24_the_header_keeps_avail_and_the_clock_and_the_footer_fits() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[4]))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert app.query_one("#mem-spark").display  # room for it beside the figures
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        assert not app.query_one("#mem-spark").display  # the chart gives up its width first
        assert "avail 9.12 GiB" in _text(app, "#sys-text")
        tracer = _text(app, "#tracer-text")
        assert tracer.rstrip().endswith("22:13:32 UTC") and len(tracer) <= 78
        lines = _screen_lines(app)
        assert "avail 9.12 GiB" in lines[0] and "…" not in lines[0] + lines[2]
        footer = lines[23]
        assert footer.rstrip().endswith("? Help")  # whole hints only, help last and visible
        assert "▏" not in footer  # the palette's hint did not fit: it went, not the words
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        await pilot.pause()
        footer = _screen_lines(app)[19]
        assert "? Help" in footer and "e Events" not in footer


def test_fit_hints_keeps_help_and_the_order() -> None:
    from memwatch.ui.widgets.footer import fit_hints

    widths = [8, 9, 10, 9, 8]
    kept = [False, False, False, False, True]
    assert fit_hints(widths, kept, 100) == [True] * 5
    assert fit_hints(widths, kept, 30) == [True, True, False, False, True]
    assert fit_hints(widths, kept, 5) == [False, False, False, False, True]  # help even when nothing fits
    assert fit_hints([8, 20, 3], [False, False, False], 12) == [True, False, False]  # no gaps in the order


async def test_a_sorted_header_keeps_its_unit_and_charts_keep_apart() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[4]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.view = app.view.sorted_by("munmap")
        await pilot.pause()
        header = app.dashboard.table.render_line(0).text
        assert "▼MUNMAP#" in header and "MMAP# ▼MUNMAP#" in header
        assert app.dashboard.table.visible_columns == ("pid", "name", "rss", "virt", "mmap", "munmap", "growth")
    app = MemwatchApp(ScriptedSource(make_frames()[4]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.dashboard.table
        assert "GROWTH   TREND" in table.render_line(0).text  # a blank lead cell beside the padding
        for y in range(1, table.row_count + 1):
            line = table.render_line(y).text
            growth = table.get_cell(table.row_order[y - 1], "growth").plain
            trend = table.get_cell(table.row_order[y - 1], "trend").plain
            assert f"{growth}   {trend}" in line  # the figure, its padding, a lead cell, the chart


def test_the_replay_bar_leaves_its_keys_out_rather_than_cut_them() -> None:
    from memwatch.ui.widgets.bars import REPLAY_KEYS, replay_text

    frame = make_frames()[4]
    assert replay_text(frame, 4, 5, True).plain.endswith(REPLAY_KEYS)
    assert replay_text(frame, 4, 5, True, 120).plain.endswith(REPLAY_KEYS)
    narrow = replay_text(frame, 4, 5, True, 78).plain
    assert narrow.endswith("22:13:32 UTC") and len(narrow) <= 78


async def test_a_chart_across_an_interval_change_marks_its_span() -> None:
    frames = make_frames()
    source = ScriptedSource(frames[1])
    app = MemwatchApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        source.push(frames[2])
        await pilot.pause()
        assert _text(app, "#mem-spark").endswith(" last 6 s")
        source.push(replace(frames[3], interval_s=1.0))  # the user asked for a shorter interval
        await pilot.pause()
        await pilot.pause()
        assert _text(app, "#mem-spark").endswith(" last ~3 s")  # 4 points at 1 s: not what they span
        assert _text(app, "#detail-title").endswith("last ~3 s")


def test_header_lines_give_way_in_order_within_a_width() -> None:
    from memwatch.ui.widgets.header import system_lines, tracer_line

    frame = replace(make_frames()[4], hostname="ip-10-0-0-1.eu-west-1.compute.internal")
    for width in (78, 62, 58):
        first = system_lines(frame, width).plain.split("\n")[0]
        assert len(first) <= width and first.endswith("avail 9.12 GiB")  # the host name gave way
    assert system_lines(frame, 78).plain.startswith("ip-10-0-0-1.eu-west-1.c… │ ")
    lossy = replace(frame, tracer=replace(frame.tracer, events_dropped=5, map_full=2))
    full = tracer_line(lossy, 3.0, True).plain
    assert "every 3s" in full and "2023-11-14 22:13:32 UTC" in full
    for width in (78, 58):
        line = tracer_line(lossy, 3.0, True, width).plain
        assert len(line) <= width and line.endswith("22:13:32 UTC"), line
        assert "PAUSED" in line and "dropped 5" in line and "map full 2" in line  # never left out
        assert "every" not in line  # the interval went before any of them
