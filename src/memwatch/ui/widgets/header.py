"""The top of the dashboard: system memory, tracer health, and a sparkline of used memory.

The text is built by pure functions from a Snapshot (easy to test); the widgets only hold it.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static

from memwatch.model import Snapshot, TracerHealth
from memwatch.ui import formatting as fmt


def _size(kb: int, human: bool) -> str:
    return fmt.human_kb(kb) if human else f"{kb} KB"


def system_line(snap: Snapshot, human: bool) -> Text:
    """Used / available / total, swap and memory pressure."""
    m = snap.system
    text = Text()
    text.append(fmt.printable(snap.hostname), style="bold")
    text.append("  Mem ")
    pct = 100 * m.used_kb / m.total_kb if m.total_kb else 0.0
    text.append(f"{_size(m.used_kb, human)} used ({pct:.0f}%)", style="bold")
    text.append(f", {_size(m.available_kb, human)} avail of {_size(m.total_kb, human)}")
    text.append(f"  Swap {_size(m.swap_used_kb, human)}/{_size(m.swap_total_kb, human)}")
    if m.pressure_some_avg10 is not None:
        style = "bold red" if m.pressure_some_avg10 >= 10 else ("yellow" if m.pressure_some_avg10 > 0 else "")
        full = f" full {m.pressure_full_avg10:.2f}" if m.pressure_full_avg10 is not None else ""
        text.append(f"  PSI some {m.pressure_some_avg10:.2f}{full}", style=style)
    return text


def tracer_line(snap: Snapshot, interval_s: float, paused: bool) -> Text:
    """Tracer state, event rate, drops, the interval, the snapshot time (UTC) and PAUSED."""
    t: TracerHealth = snap.tracer
    text = Text()
    if t.enabled:
        text.append("eBPF ", style="bold")
        text.append(f"attached ({fmt.printable(t.mode or 'unknown mode')})", style="green")
        text.append(f"  {fmt.rate(t.event_rate)} ev/s")
        dropped_style = "bold red" if t.events_dropped or t.map_full else ""
        text.append(f"  dropped {t.events_dropped}", style=dropped_style)
        if t.map_full:
            text.append(f"  map full {t.map_full}", style="bold red")
        if t.events_throttled:
            text.append(f"  throttled {t.events_throttled}", style="yellow")
    else:
        text.append("eBPF OFF", style="bold red")
        text.append(" (/proc only)")
    text.append(f"  every {interval_s:g}s")
    text.append(f"  {fmt.utc_time(snap.timestamp, with_date=True)}", style="dim")
    if paused:
        text.append("  ")
        text.append(" PAUSED ", style="bold reverse yellow")
    return text


def degraded_banner(snap: Snapshot) -> Text | None:
    """The visible sentence saying why eBPF is off, or None when it is on."""
    if snap.tracer.enabled:
        return None
    reason = fmt.printable(snap.tracer.reason or "eBPF is off (no reason given).")
    text = Text("⚠ ", style="bold")
    text.append(reason)
    text.append("  Kernel columns show '-'.", style="italic")
    return text


def used_history(snap: Snapshot) -> list[float]:
    """Used memory over the snapshot's system history (a new list each time for the Sparkline)."""
    history = [float(m.used_kb) for m in snap.system_history]
    return history or [float(snap.system.used_kb)]


class SystemHeader(Horizontal):
    """Two lines of figures with a sparkline of used memory beside them."""

    DEFAULT_CSS = """
    SystemHeader { height: 2; }
    SystemHeader #sys-text { width: 1fr; height: 2; }
    SystemHeader #mem-spark { width: 24; height: 2; margin-left: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="sys-text")
        yield Sparkline([0.0], id="mem-spark")

    def update_from(self, snap: Snapshot, *, interval_s: float, paused: bool, human: bool) -> None:
        """Redraw from one snapshot."""
        text = system_line(snap, human)
        text.append("\n")
        text.append_text(tracer_line(snap, interval_s, paused))
        text.no_wrap = True
        text.overflow = "ellipsis"
        self.query_one("#sys-text", Static).update(text)
        self.query_one("#mem-spark", Sparkline).data = used_history(snap)
