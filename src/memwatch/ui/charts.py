"""The scale of the dashboard's history charts, as pure functions (no Textual).

A chart that stretches its window's minimum to its maximum makes a +4 KB/s process look like a
step from empty to full. These charts keep a scale instead: it spans the window's minimum to
maximum only when the values really move; otherwise it spans :data:`MIN_SPAN_FRACTION` of the
value, centred on the values, so a flat line sits half-way, a change of a fraction of a percent
stays a sliver (up or down) and a doubling still fills the height. The big charts are labelled
with the scale's two ends in human units and with the time they cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from memwatch.model import SHARED_MIN_POINTS
from memwatch.ui import formatting as fmt

BLOCKS = fmt.BLOCKS
MIN_SPAN_FRACTION = 0.10
"""The scale spans at least this share of its top value: smaller changes stay small steps."""


@dataclass(frozen=True, slots=True)
class Scale:
    """The values at the bottom and at the top of a chart."""

    low: float
    high: float

    def fraction(self, value: float) -> float:
        """Where ``value`` sits between bottom (0) and top (1), clamped."""
        return min(1.0, max(0.0, (value - self.low) / (self.high - self.low)))


def chart_scale(values: Sequence[float], min_fraction: float = MIN_SPAN_FRACTION) -> Scale:
    """The scale for ``values``: their minimum to maximum when that spans at least
    ``min_fraction`` of the largest magnitude, else that much centred on them (never below 0 for
    values that are not). An empty or all-zero window gets the scale 0 to 1."""
    if not values:
        return Scale(0.0, 1.0)
    low, high = float(min(values)), float(max(values))
    least = max(abs(low), abs(high)) * min_fraction or 1.0
    if high - low < least:
        middle = (low + high) / 2
        floor = middle - least / 2
        if floor < 0 <= low:
            floor = 0.0
        low, high = floor, floor + least
    return Scale(low, high)


def columns(values: Sequence[float], width: int) -> list[float]:
    """``values`` as ``width`` columns: the peak of each bucket when there are more values than
    columns (a spike never disappears), each value stretched over its share otherwise."""
    n = len(values)
    if n == 0 or width <= 0:
        return []
    if n <= width:
        return [float(values[c * n // width]) for c in range(width)]
    step = Fraction(n, width)
    return [float(max(values[int(step * c):int(step * (c + 1))])) for c in range(width)]


def bar_rows(values: Sequence[float], width: int, rows: int, scale: Scale) -> list[str]:
    """The chart as ``rows`` strings of ``width`` block characters, top row first. Every value
    shows at least the lowest block, so a value at the bottom of the scale is still drawn."""
    levels = len(BLOCKS) * rows
    heights = [1 + round(scale.fraction(v) * (levels - 1)) for v in columns(values, width)]
    lines = []
    for row in reversed(range(rows)):
        base = row * len(BLOCKS)
        line = []
        for h in heights:
            filled = h - base
            line.append(" " if filled <= 0 else BLOCKS[min(filled, len(BLOCKS)) - 1])
        lines.append("".join(line))
    return lines


def trend(history: Sequence[float], points: int = SHARED_MIN_POINTS) -> str:
    """The last ``points`` values as one line of block characters on :func:`chart_scale` (the
    table's TREND column). A shared view holds at least that many points of a flat RSS history
    (see memwatch.model.SHARED_MIN_POINTS), so its own history draws it right."""
    recent = list(history[-points:])
    if not recent:
        return ""
    return bar_rows(recent, len(recent), 1, chart_scale(recent))[0]


def scale_labels(scale: Scale) -> tuple[str, str]:
    """The top and bottom of a KB scale in human units ("6.29 GiB", "5.66 GiB")."""
    return fmt.human_kb(scale.high), fmt.human_kb(scale.low)


def span_text(points: int, interval_s: float, exact: bool = True) -> str:
    """The time ``points`` samples ``interval_s`` apart cover: "last 12 s", "last 5 min"; "last
    ~5 min" when not ``exact`` (the interval changed within the window)."""
    if points < 2 or interval_s <= 0:
        return "now"
    return f"last {'' if exact else '~'}{fmt.duration((points - 1) * interval_s)}"


def steady(points: int, interval_s: float, now: float, steady_since: float | None) -> bool:
    """Whether ``points`` samples up to ``now`` were all ``interval_s`` apart, the interval
    having been that since the sample at ``steady_since`` (None: since the first one seen)."""
    return steady_since is None or now - (points - 1) * interval_s >= steady_since - interval_s
