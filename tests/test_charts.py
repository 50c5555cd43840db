"""The scale of the history charts (memwatch.ui.charts) and the labelled chart text."""

from __future__ import annotations

import pytest

from memwatch.ui import formatting as fmt
from memwatch.ui.charts import MIN_SPAN_FRACTION, bar_rows, chart_scale, columns, span_text, trend
from memwatch.ui.widgets.chart import chart_text

ROWS = 3


def _heights(values: list[float], width: int = 24, rows: int = ROWS) -> list[int]:
    """How many eighths of a cell each column is filled, bottom to top."""
    lines = bar_rows(values, width, rows, chart_scale(values))
    eighths = {" ": 0} | {block: n + 1 for n, block in enumerate(fmt.BLOCKS)}
    return [sum(eighths[line[c]] for line in lines) for c in range(width)]


def test_a_half_percent_change_stays_a_small_change() -> None:
    # a +4 KB/s process at 150 MB over 5 minutes (3 s ticks): +0.27 %
    values = [150_000 + 4 * 3 * i for i in range(100)]
    heights = _heights(values)
    assert max(heights) - min(heights) <= 2  # out of 24 eighths: never empty-to-full
    flat_then_step = [100_000.0] * 50 + [100_500.0] * 50  # a 0.5 % step
    heights = _heights(flat_then_step)
    assert max(heights) - min(heights) <= 2


def test_a_doubling_spans_the_full_height() -> None:
    values = [100_000 * (1 + i / 99) for i in range(100)]
    heights = _heights(values)
    assert heights[0] <= 2 and heights[-1] == 8 * ROWS  # (about) the lowest block to a full column
    assert heights == sorted(heights)


def test_a_small_change_gets_a_least_span_centred_on_it() -> None:
    scale = chart_scale([1000.0, 1010.0])
    assert scale.high - scale.low == pytest.approx(1010.0 * MIN_SPAN_FRACTION)
    assert (scale.low + scale.high) / 2 == pytest.approx(1005.0)
    assert chart_scale([5.0]) == chart_scale([5.0, 5.0])
    assert chart_scale([5.0]).fraction(5.0) == pytest.approx(0.5)  # a flat line sits half-way
    assert chart_scale([0.0, 1.0]).low == 0.0  # never below zero for figures that are not
    assert chart_scale([0.0, 0.0]).high > chart_scale([0.0, 0.0]).low  # never a zero-height scale


def test_a_real_change_spans_min_to_max() -> None:
    assert chart_scale([10.0, 200.0]) == chart_scale([200.0, 10.0])
    assert (chart_scale([10.0, 200.0]).low, chart_scale([10.0, 200.0]).high) == (10.0, 200.0)


def test_the_table_trend_uses_the_same_scale() -> None:
    assert trend([]) == ""
    assert trend([5, 5, 5]) == "▅▅▅"  # flat: half-way, not pinned to the bottom or the top
    assert trend(list(range(20))) == "▁▂▃▄▅▆▇█"  # the last 8 points, a real change
    assert trend([0, 10, 0]) == "▁█▁"
    small = trend([150_000 + 12 * i for i in range(8)])  # +4 KB/s at 150 MB
    assert len(set(small)) <= 2 and "█" not in small and "▁" not in small


def test_columns_keep_the_peaks_and_stretch_few_points() -> None:
    assert columns([1, 2], 4) == [1, 1, 2, 2]
    assert columns([1, 9, 1, 1, 1, 1], 3) == [9, 1, 1]  # the spike survives the bucketing
    assert columns([], 5) == []


@pytest.mark.parametrize(("points", "interval", "text"), [
    (1, 3.0, "now"), (5, 3.0, "last 12 s"), (101, 3.0, "last 5 min"), (121, 60.0, "last 2 h"),
    (2, 0.0, "now"),
])
def test_the_span_says_what_time_the_chart_covers(points: int, interval: float, text: str) -> None:
    assert span_text(points, interval) == text


def test_chart_text_labels_the_ends_in_human_units() -> None:
    values = [4_000_000.0 + 1_000_000 * i for i in range(5)]  # a real change: labels are its ends
    lines = chart_text(values, 40, 2, caption="last 12 s").plain.split("\n")
    assert lines[0].startswith("7.63 GiB ")
    assert lines[1].startswith("3.81 GiB ") and lines[1].endswith(" last 12 s")
    flat = chart_text([150_000.0] * 5, 30, 3).plain.split("\n")  # a flat line: the least span around it
    assert flat[0].startswith("154 MiB ") and flat[2].startswith("139 MiB ") and flat[1].startswith("        ")
    assert all(len(line) <= 40 for line in lines)
    assert chart_text(values, 12, 2).plain.strip() == ""  # too narrow for bars: nothing, not a stub


def test_a_span_across_an_interval_change_is_marked() -> None:
    from memwatch.ui.charts import steady

    assert span_text(5, 3.0, exact=False) == "last ~12 s"
    assert steady(5, 3.0, now=100.0, steady_since=None)
    assert steady(5, 3.0, now=100.0, steady_since=91.0)  # points at 88..100, the change at 91
    assert not steady(5, 3.0, now=100.0, steady_since=95.0)  # the window reaches before it
