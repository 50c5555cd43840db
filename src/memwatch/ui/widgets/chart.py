"""A history chart with a scale: block bars between labelled ends, and the time it covers.

Textual's Sparkline stretches its data's minimum to its maximum; this widget draws the scale of
:func:`memwatch.ui.charts.chart_scale` instead and says what that scale is: the top and bottom
in human units on the left, and (``caption`` on) the span on the right of the bottom row. The
text is built by :func:`chart_text`, a pure function; the widget only keeps what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from memwatch.ui.charts import bar_rows, chart_scale, scale_labels, span_text, steady

MIN_BARS = 6
"""Fewer columns of bars than this say nothing: the chart draws nothing rather than a stub."""


def chart_width(values: Sequence[float], bars: int, caption: str = "") -> int:
    """Cells a chart of ``bars`` columns takes with its labels (and caption, if any)."""
    top, bottom = scale_labels(chart_scale(values))
    return max(cell_len(top), cell_len(bottom)) + 1 + bars + (1 + cell_len(caption) if caption else 0)


def chart_text(values: Sequence[float], width: int, rows: int, caption: str = "",
               bar_style: Style | str = "", label_style: Style | str = "dim") -> Text:
    """``rows`` lines of ``width`` cells: the scale's top label on the first line, its bottom on
    the last, the bars between, and ``caption`` after the bars of the last line. Empty when too
    narrow for :data:`MIN_BARS` columns of bars."""
    rows = max(rows, 1)
    top, bottom = scale_labels(chart_scale(values))
    label_width = max(cell_len(top), cell_len(bottom))
    tail = 1 + cell_len(caption) if caption else 0
    bars = width - label_width - 1 - tail
    if not values or bars < MIN_BARS:
        return Text("\n" * (rows - 1))
    lines = bar_rows(values, bars, rows, chart_scale(values))
    text = Text(no_wrap=True, overflow="crop")
    for n, line in enumerate(lines):
        label = top if n == 0 else (bottom if n == rows - 1 else "")
        text.append(f"{label:>{label_width}} ", style=label_style)
        text.append(line, style=bar_style)
        if n == rows - 1 and caption:
            text.append(" " + caption, style=label_style)
        if n < rows - 1:
            text.append("\n")
    return text


class ScaledChart(Widget):
    """A labelled history chart; :meth:`show` it KB values one per tick ``interval_s`` apart."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"scaled-chart--bars", "scaled-chart--labels"}
    DEFAULT_CSS = """
    ScaledChart { height: 2; }
    ScaledChart > .scaled-chart--bars { color: $primary; }
    ScaledChart.-alert > .scaled-chart--bars { color: $error; }
    ScaledChart > .scaled-chart--labels { color: $text-muted; }
    """

    def __init__(self, *, caption: bool = False, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.caption = caption
        """Write the span on the right of the bottom row (else the owner shows :attr:`span`)."""
        self.values: tuple[float, ...] = ()
        self.span = "now"

    def show(self, values: Sequence[float], interval_s: float, *, now: float = 0.0,
             steady_since: float | None = None) -> None:
        """Draw ``values``, the last taken at ``now``, the interval ``interval_s`` since
        ``steady_since`` (see :func:`memwatch.ui.charts.steady`); refreshes only on a change."""
        shown = tuple(float(v) for v in values)
        span = span_text(len(shown), interval_s, steady(len(shown), interval_s, now, steady_since))
        if (shown, span) != (self.values, self.span):
            self.values, self.span = shown, span
            self.refresh()

    def render(self) -> Text:
        return chart_text(self.values, self.size.width, self.size.height, self.span if self.caption else "",
                          self.get_component_rich_style("scaled-chart--bars"),
                          self.get_component_rich_style("scaled-chart--labels"))
