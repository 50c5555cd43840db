"""The top of the dashboard: system memory, tracer health, and a chart of used memory.

The text is built by pure functions from a Snapshot (easy to test); the widgets only hold it.
The figures come first: the chart takes the width they leave, up to :data:`CHART_MAX_BARS`
columns, and hides when fewer than :data:`~memwatch.ui.widgets.chart.MIN_BARS` would fit.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from memwatch.model import Snapshot, TracerHealth
from memwatch.ui import formatting as fmt
from memwatch.ui.widgets.chart import MIN_BARS, ScaledChart, chart_width
from memwatch.ui.widgets.quiet_update import set_static

CHART_MAX_BARS = 40
CHART_GAP = 2
"""Cells kept between the figures and the chart."""


def system_lines(snap: Snapshot, width: int | None = None) -> Text:
    """Two lines: used / available / total memory, then swap and memory pressure (human sizes).
    Within ``width`` cells the host name gives way first, so "avail" stays."""
    m = snap.system

    def h(kb: int) -> str:
        return fmt.size_kb(kb, True)  # system totals are always human: KB of a whole machine is unreadable

    pct = 100 * m.used_kb / m.total_kb if m.total_kb else 0.0
    memory = Text("Mem used ")
    memory.append(f"{h(m.used_kb)} ({pct:.0f}%)", style="bold")
    memory.append(f" of {h(m.total_kb)}, avail {h(m.available_kb)}\n")
    host = Text(fmt.printable(snap.hostname), style="bold")
    separator = " │ "  # a visible separator: some renderers collapse plain spaces
    if width is not None:
        room = width - len(separator) - memory.cell_len
        if host.cell_len > room:  # cut it, or leave it out if hardly anything would be left
            if room < 5:
                host = Text()
            else:
                host.truncate(room, overflow="ellipsis")
    text = Text()
    if host:
        text.append_text(host)
        text.append(separator, style="dim")
    text.append_text(memory)
    text.append(f"Swap {h(m.swap_used_kb)} of {h(m.swap_total_kb)}" if m.swap_total_kb else "no swap")
    if m.pressure_some_avg10 is not None:
        style = "bold red" if m.pressure_some_avg10 >= 10 else ("yellow" if m.pressure_some_avg10 > 0 else "")
        full = f" full {m.pressure_full_avg10:.2f}" if m.pressure_full_avg10 is not None else ""
        text.append(f"  PSI some {m.pressure_some_avg10:.2f}{full}", style=style)
    return text


TRACER_DROPS = ("cost", "every", "date", "no-drops", "mode", "recording", "rate", "throttled")
"""What the tracer line leaves out, first to last, until it fits: never PAUSED, the tracer's
state, a loss (dropped, exits lost, map full) or the clock."""


def tracer_line(snap: Snapshot, interval_s: float, paused: bool, width: int | None = None) -> Text:
    """Tracer state, event rate, drops, the interval, the snapshot time (UTC) and PAUSED; for a
    recording, whose host it is and how it was traced there. Within ``width`` cells the least
    needed parts go first (:data:`TRACER_DROPS`)."""
    for n in range(len(TRACER_DROPS) + 1):
        text = _tracer_text(snap, interval_s, paused, frozenset(TRACER_DROPS[:n]))
        if width is None or text.cell_len <= width:
            break
    return text


def _tracer_text(snap: Snapshot, interval_s: float, paused: bool, left_out: frozenset[str]) -> Text:
    t: TracerHealth = snap.tracer
    text = Text()
    if paused:  # first, so a narrow terminal never cuts it off
        text.append(" PAUSED ", style="bold reverse yellow")
        text.append(" ")
    recording = snap.replay_position is not None
    told = recording and "recording" not in left_out
    if told:  # what was true where it was recorded, not of this machine now
        text.append("Recording of ", style="bold")
        text.append(fmt.printable(snap.hostname), style="bold")
        text.append(", ")
    if t.enabled:
        if told:
            text.append("traced by ")
        text.append("eBPF", style="bold")
        if "mode" not in left_out:
            mode = fmt.printable(t.mode or "unknown mode")
            text.append(f" ({mode})" if recording else f" attached ({mode})", style="green")
        if "rate" not in left_out:
            text.append(f"  {fmt.rate(t.event_rate)} ev/s")
        if t.events_dropped or t.map_full or "no-drops" not in left_out:
            dropped_style = "bold red" if t.events_dropped or t.map_full else ""
            text.append(f"  dropped {t.events_dropped}", style=dropped_style)
        if t.exits_dropped:
            text.append(f"  exits lost {t.exits_dropped}", style="bold red")
        if t.map_full:
            text.append(f"  map full {t.map_full}", style="bold red")
        if (t.events_throttled or t.events_withheld) and "throttled" not in left_out:
            text.append(f"  throttled {t.events_throttled + t.events_withheld}", style="yellow")
    elif recording:
        text.append("eBPF was off", style="bold red")
        if "mode" not in left_out:
            text.append(" (/proc only)")
    else:
        text.append("eBPF OFF", style="bold red")
        if "mode" not in left_out:
            text.append(" (/proc only)")
    if "every" not in left_out:
        text.append(f"  every {interval_s:.3g}s")
    clock = fmt.utc_time(snap.timestamp, with_date="date" not in left_out)
    text.append(f"  {clock}" if "date" not in left_out else f"  {clock} UTC", style="dim")
    cost = own_cost(snap)
    if cost and not recording and "cost" not in left_out:  # least needed, so last
        text.append(f"  {cost}", style="dim")
    return text


def own_cost(snap: Snapshot) -> str:
    """What memwatch itself costs: its CPU, and its eBPF programs' share of a CPU and cost per
    traced call as last measured (empty until known)."""
    parts = []
    if snap.self_cpu_percent is not None:
        parts.append(f"{snap.self_cpu_percent:.1f}% CPU")
    t = snap.tracer
    if t.kernel_cpu_percent is not None:
        parts.append(f"+{t.kernel_cpu_percent:.2f}% in kernel")
    if t.ns_per_call is not None:
        parts.append(f"{t.ns_per_call:.0f} ns/call")
    return "memwatch " + ", ".join(parts) if parts else ""


def degraded_banner(snap: Snapshot) -> Text | None:
    """The visible sentence saying why eBPF is off (was off, for a recording), or None when it is on."""
    if snap.tracer.enabled:
        return None
    reason = fmt.printable(snap.tracer.reason or "eBPF is off (no reason given).")
    text = Text("⚠ ", style="bold")
    if snap.replay_position is not None:
        text.append(f"Recorded on {fmt.printable(snap.hostname)}: ")
    text.append(reason)
    text.append("  Kernel columns show '-'.", style="italic")
    return text


def used_history(snap: Snapshot) -> list[float]:
    """Used memory over the snapshot's system history, oldest first."""
    history = [float(m.used_kb) for m in snap.system_history]
    return history or [float(snap.system.used_kb)]


def chart_bars(room: int, history: Sequence[float], caption: str) -> int:
    """Columns of bars the header's chart gets in ``room`` cells beside the figures: 0 (hidden)
    when fewer than MIN_BARS fit, at most CHART_MAX_BARS."""
    bars = min(CHART_MAX_BARS, room - CHART_GAP - chart_width(history, 0, caption))
    return bars if bars >= MIN_BARS else 0


class SystemHeader(Vertical):
    """System figures beside a chart of used memory, then a line of tracer health."""

    DEFAULT_CSS = """
    SystemHeader { height: 3; }
    SystemHeader > Horizontal { height: 2; }
    SystemHeader #sys-text { width: 1fr; height: 2; text-wrap: nowrap; text-overflow: ellipsis; }
    SystemHeader #mem-spark { width: auto; height: 2; margin-left: 2; }
    SystemHeader #tracer-text { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._figures_width = 0
        self._shown: tuple[Snapshot, float, bool, float | None] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static(id="sys-text")
            yield ScaledChart(caption=True, id="mem-spark")
        yield Static(id="tracer-text")

    def update_from(self, snap: Snapshot, *, interval_s: float, paused: bool,
                    steady_since: float | None = None) -> None:
        """Redraw from one snapshot, fitted to the header's width (``steady_since``: see
        ScaledChart.show)."""
        self._shown = (snap, interval_s, paused, steady_since)
        width = self.content_region.width or None
        figures = system_lines(snap, width)
        self._figures_width = max(cell_len(line) for line in figures.plain.split("\n"))
        set_static(self.query_one("#sys-text", Static), figures)
        set_static(self.query_one("#tracer-text", Static), tracer_line(snap, interval_s, paused, width))
        self.query_one(ScaledChart).show(used_history(snap), snap.interval_s, now=snap.timestamp,
                                         steady_since=steady_since)
        self._fit_chart()

    def on_resize(self) -> None:
        if self._shown is not None:
            snap, interval_s, paused, since = self._shown
            self.update_from(snap, interval_s=interval_s, paused=paused, steady_since=since)

    def _fit_chart(self) -> None:
        """Give the chart the width the figures leave (it shrinks, then hides, first)."""
        chart = self.query_one(ScaledChart)
        room = self.content_region.width - self._figures_width
        bars = chart_bars(room, list(chart.values), chart.span)
        chart.display = bars > 0
        if bars:
            chart.styles.width = chart_width(chart.values, bars, chart.span)
