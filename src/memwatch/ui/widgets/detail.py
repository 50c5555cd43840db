"""The detail pane: every figure of one process, its RSS history and its recent memory events.

PSS/USS/SwapPss are not in the snapshot's cheap path; the app fetches them with
``source.rollup(key)`` in a worker and hands them in through :meth:`DetailPane.set_rollup`.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Sparkline, Static

from memwatch.model import Event, EventKind, ProcessKey, ProcessView, SmapsRollup
from memwatch.ui import formatting as fmt
from memwatch.ui.widgets.quiet_update import set_sparkline, set_static

RECENT_EVENTS_SHOWN = 12


def _kb(kb: int, human: bool) -> str:
    return fmt.human_kb(kb) if human else f"{kb} KB"


def _bytes(n: int, human: bool) -> str:
    return fmt.human_bytes(n) if human else f"{n} B"


def event_line(event: Event, human: bool) -> Text:
    """One recent event: UTC time, kind, size, address."""
    text = Text(f"{fmt.utc_time(event.timestamp)}.{int(event.timestamp * 1000) % 1000:03d} ", style="dim")
    text.append(f"{event.kind.value:<7}", style="bold")
    if event.kind is EventKind.MREMAP:
        text.append(f"{_bytes(event.length, human)} -> {_bytes(event.new_length, human)}")
        text.append(f" @ {event.addr:#x} -> {event.new_addr:#x}", style="dim")
    elif event.kind is EventKind.BRK:
        text.append(f"{_bytes(event.new_addr - event.addr, human)}")
        text.append(f" break {event.addr:#x} -> {event.new_addr:#x}", style="dim")
    elif event.kind in (EventKind.MMAP, EventKind.MUNMAP):
        text.append(_bytes(event.length, human))
        text.append(f" @ {event.addr:#x}", style="dim")
    else:
        text.append(fmt.printable(event.describe()))
    return text


def describe_process(view: ProcessView, rollup: SmapsRollup | None, rollup_state: str, human: bool) -> Text:
    """All figures of a process as a block of labelled lines."""
    s, k = view.sample, view.kernel
    text = Text()

    def row(label: str, value: str | Text, style: str = "") -> None:
        text.append(f"{label:<12}", style="bold")
        if isinstance(value, Text):
            text.append_text(value)
        else:
            text.append(value, style=style)
        text.append("\n")

    row("Process", Text(fmt.printable(s.name)))
    row("PID", f"{s.pid}  (ppid {s.ppid}, state {fmt.printable(s.state)})")
    row("User", Text(fmt.printable(s.user)))
    row("Threads", str(s.threads))
    row("Started", fmt.utc_time(s.start_time, with_date=True))
    row("Cgroup", Text(fmt.printable(s.cgroup) or "-"))
    row("Cmdline", Text(fmt.printable(s.cmdline) or "-"))
    text.append("\n")
    row("RSS", _kb(s.rss_kb, human))
    row("VIRT", _kb(s.virt_kb, human))
    row("Peak RSS", _kb(s.peak_kb, human))
    row("Swap", _kb(s.swap_kb, human))
    row("Shared", _kb(s.shared_kb, human))
    row("Anon", _kb(s.anon_kb, human))
    figures = rollup or view.rollup
    if figures is not None:
        row("PSS", _kb(figures.pss_kb, human))
        row("USS", _kb(figures.uss_kb, human))
        row("SwapPss", _kb(figures.swap_pss_kb, human))
    else:
        row("PSS/USS", rollup_state, "dim")
    row("Growth", f"{fmt.growth(view.growth_kb_s)} KB/s")
    text.append("\n")
    if k is None:
        row("Kernel", "- (eBPF off: no traced counters)", "dim")
    else:
        row("mmap", f"{k.mmap_count} calls, {_bytes(k.mmap_bytes, human)}")
        row("munmap", f"{k.munmap_count} calls, {_bytes(k.munmap_bytes, human)}")
        row("brk", f"{k.brk_count} calls, {_bytes(k.brk_bytes, human)} net")
        row("mremap", f"{k.mremap_count} calls, +{_bytes(k.mremap_grow_bytes, human)}"
                      f" -{_bytes(k.mremap_shrink_bytes, human)}")
        row("Outstanding", f"{_bytes(k.outstanding_bytes, human)} (peak {_bytes(k.outstanding_peak_bytes, human)})")
        if not k.outstanding_complete:
            row("", f"at least: {k.lost_mappings} mappings ({_bytes(k.lost_bytes, human)}) could not be "
                    "followed (the tracer's map was full or the process held its quota)", "yellow")
        row("Untracked", f"{_bytes(k.untracked_unmap_bytes, human)} unmapped, {k.failed_calls} failed calls")
    text.append("\n")
    if view.leak_suspect:
        text.append("LEAK SUSPECT", style="bold reverse red")
        text.append(" ")
        text.append(fmt.printable(view.leak_reason or "no reason given"), style="red")
    else:
        text.append("No leak signal.", style="dim")
    return text


class DetailPane(VerticalScroll):
    """Figures, RSS sparkline and recent events of the highlighted process."""

    DEFAULT_CSS = """
    DetailPane { border-left: tall $panel; padding: 0 1; }
    DetailPane #detail-title { text-style: bold; }
    DetailPane #detail-spark { height: 3; margin: 1 0; }
    DetailPane #detail-events { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view_key: ProcessKey | None = None
        self._rollup: SmapsRollup | None = None
        self._rollup_state = "select a process"

    def compose(self) -> ComposeResult:
        yield Static("No process selected", id="detail-body")
        yield Static("RSS history", id="detail-title")
        yield Sparkline([0.0], id="detail-spark")
        yield Static(id="detail-events")

    def set_rollup(self, key: ProcessKey, rollup: SmapsRollup | None, state: str) -> None:
        """Result of the off-thread PSS/USS read for ``key`` (ignored if the cursor moved on)."""
        if key == self.view_key:
            self._rollup = rollup
            self._rollup_state = state

    def show(self, view: ProcessView | None, human: bool) -> None:
        """Redraw for ``view`` (None: nothing highlighted)."""
        body = self.query_one("#detail-body", Static)
        if view is None:
            self.view_key = None
            set_static(body, "No process selected")
            set_sparkline(self.query_one("#detail-spark", Sparkline), [0.0])
            set_static(self.query_one("#detail-events", Static), "")
            return
        if view.key != self.view_key:
            self.view_key = view.key
            self._rollup = None
            self._rollup_state = "reading…"
        set_static(body, describe_process(view, self._rollup, self._rollup_state, human))
        set_sparkline(self.query_one("#detail-spark", Sparkline), [float(v) for v in view.rss_history] or [0.0])
        events = Text("Recent memory events\n", style="bold")
        recent = view.recent_events[-RECENT_EVENTS_SHOWN:]
        if not recent:
            events.append("none" if view.kernel is not None else "- (eBPF off)", style="dim")
        for event in reversed(recent):
            events.append_text(event_line(event, human))
            events.append("\n")
        set_static(self.query_one("#detail-events", Static), events)
