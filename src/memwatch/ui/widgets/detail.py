"""The detail pane: every figure of one process, its RSS history and its recent memory events.

PSS/USS/SwapPss are not in the snapshot's cheap path: the pane asks the source for them itself
(``source.rollup(key)``, which reads smaps_rollup in its own thread, time-capped) in a worker, for
the process it shows, at most every ``ROLLUP_REFRESH_S`` of snapshot time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from memwatch.fields import BY_KEY, DETAIL_SECTIONS
from memwatch.model import Event, EventKind, ProcessKey, ProcessView, SmapsRollup
from memwatch.ui import formatting as fmt
from memwatch.ui import workers
from memwatch.ui.columns import figure_text
from memwatch.ui.widgets.chart import ScaledChart
from memwatch.ui.widgets.quiet_update import set_static

RECENT_EVENTS_SHOWN = 12
DENIED = "permission denied"
KERNEL_THREAD = "not available for kernel threads"
IN_REPLAY = "not available in a replay"
GONE = "process has exited"
ROLLUP_REFRESH_S = 5.0
RollupReader = Callable[[ProcessKey], Awaitable[SmapsRollup | None]]


def _bytes(n: int, human: bool) -> str:
    return fmt.size_bytes(n, human, unit=True)


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


def exit_line(event: Event | None, gone_by: float) -> Text:
    """How a process ended, over its last figures: "exited (code 0) at 10:15:02". Without its
    exit record (eBPF off, or lost), the time of the first frame it was missing from."""
    if event is None:
        return Text(f"exited by {fmt.utc_time(gone_by)} (how it ended is not known)", style="bold yellow")
    how = f"signal {event.signal}" if event.signal is not None else (
        f"code {event.exit_code}" if event.exit_code is not None else "no exit code")
    style = "bold red" if event.signal is not None or event.exit_code else "bold yellow"
    return Text(f"exited ({how}) at {fmt.utc_time(event.timestamp)}", style=style)


LONG_TEXT = frozenset({"start", "cgroup", "cmdline"})
"""Fields that take a line of their own; the others are laid out as "LABEL value" cells."""


def describe_process(view: ProcessView, rollup: SmapsRollup | None, rollup_state: str, human: bool,
                     width: int = 80) -> Text:
    """All figures of a process, section by section as the field registry lists them
    (memwatch.fields.DETAIL_SECTIONS): short figures in a grid of "LABEL value" cells as many to a
    line as ``width`` holds (a cell never breaks), a command line or a cgroup on a line of its own."""
    if rollup is not None:   # read just now for this pane: fresher than the snapshot's
        view = replace(view, rollup=rollup)
    text = Text(no_wrap=False)

    def grid(cells: list[tuple[str, str, str]]) -> None:
        if not cells:
            return
        cell = min(max(len(label) + 1 + len(value) for label, value, _ in cells) + 3, max(width, 1))
        per_line = max(1, width // cell)
        for n, (label, value, style) in enumerate(cells):
            text.append(label + " ", style="bold")
            text.append(value, style=style)
            last = n == len(cells) - 1 or (n + 1) % per_line == 0
            text.append("\n" if last else " " * (cell - len(label) - 1 - len(value)))

    for section in DETAIL_SECTIONS:
        fields = [BY_KEY[key] for key in section]
        cells: list[tuple[str, str, str]] = []
        lines: list[tuple[str, str]] = []
        if fields[0].source == "rollup" and view.rollup is None:
            cells.append(("PSS/USS", rollup_state, "dim"))
        elif fields[0].source == "kernel" and view.kernel is None:
            cells.append(("KERNEL", "- (eBPF off: no traced counters)", "dim"))
        else:
            for f in fields:
                value = figure_text(f, f.read(view), human)
                if f.key in LONG_TEXT:
                    lines.append((f.label, value))
                    continue
                bound = f.lower_bound is not None and f.lower_bound(view)
                cells.append((f.label, ("≥" if bound else "") + value, "yellow" if bound else ""))
        grid(cells)
        for label, value in lines:
            text.append(label + " ", style="bold")
            text.append(value + "\n")
        k = view.kernel
        if "outstanding" in section and k is not None and not k.outstanding_complete:
            text.append(f"≥ {k.lost_mappings} mappings ({figure_text(BY_KEY['outstanding'], k.lost_bytes, human)})"
                        " could not be followed: the tracer's map was full or the process held its quota\n",
                        style="yellow")
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

    def __init__(self, *, rollup: RollupReader | None = None, replay: bool = False, id: str | None = None,
                 classes: str | None = None) -> None:
        """``replay``: the source is a recording, whose PSS/USS are what the frames hold."""
        super().__init__(id=id, classes=classes)
        self.view_key: ProcessKey | None = None
        self._read_rollup = rollup
        self._replay = replay
        self._exited: Text | None = None
        self._rollup: SmapsRollup | None = None
        self._rollup_state = "select a process"
        self._rollup_asked: dict[ProcessKey, float] = {}
        self._shown: tuple[ProcessView | None, bool, float] = (None, False, 0.0)
        self._interval: tuple[float, float | None] = (0.0, None)

    def compose(self) -> ComposeResult:
        yield Static("No process selected", id="detail-body")
        yield Static("RSS history", id="detail-title")
        yield ScaledChart(id="detail-spark")
        yield Static(id="detail-events")

    def set_rollup(self, key: ProcessKey, rollup: SmapsRollup | None, state: str) -> None:
        """Result of the off-thread PSS/USS read for ``key`` (ignored if the cursor moved on)."""
        if key == self.view_key:
            self._rollup = rollup
            self._rollup_state = state

    @property
    def shown_view(self) -> ProcessView | None:
        """The process drawn last (its last figures, if it has exited since)."""
        return self._shown[0]

    @property
    def exited(self) -> bool:
        """The pane shows a process that has exited."""
        return self._exited is not None

    def show(self, view: ProcessView | None, human: bool, now: float = 0.0, interval_s: float = 0.0,
             steady_since: float | None = None) -> None:
        """Redraw for ``view`` (None: nothing highlighted) as of snapshot time ``now`` (its history
        one point every ``interval_s``, since ``steady_since``: see ScaledChart.show), and ask for
        its PSS/USS if they are due."""
        self._exited = None
        self._shown = (view, human, now)
        self._interval = (interval_s, steady_since)
        self._draw(view, human)
        if view is not None:
            self._maybe_read_rollup(view, now)

    def show_exited(self, view: ProcessView, human: bool, event: Event | None, gone_by: float) -> None:
        """Keep the last figures of ``view``, which has exited, under how it ended (``event``, its
        exit record if there is one; ``gone_by``: the time of the first frame without it)."""
        if view.key != self.view_key:
            self.view_key = view.key
            self._rollup = None
            self._rollup_state = self._no_rollup_reason(view) or GONE
        elif self._rollup is None and self._rollup_state == "reading…":
            self._rollup_state = GONE
        self._exited = exit_line(event, gone_by)
        self._shown = (view, human, gone_by)
        self._draw(view, human)

    def _no_rollup_reason(self, view: ProcessView) -> str | None:
        """Why the pane will not ask for PSS/USS, in the words it shows; None: it will."""
        if view.sample.kernel_thread:
            return KERNEL_THREAD  # no memory of its own (no mm): smaps_rollup has nothing
        if self._replay:
            return IN_REPLAY  # what the recorder read, if anything, is in the frame itself
        if self._read_rollup is None:
            return "not available"
        return None

    def _maybe_read_rollup(self, view: ProcessView, now: float) -> None:
        key = view.key
        if self._read_rollup is None or self._no_rollup_reason(view) is not None:
            return
        last = self._rollup_asked.get(key)
        if last is not None and now - last < ROLLUP_REFRESH_S and last <= now:
            return
        self._rollup_asked = {key: now}
        # one read at a time per pane (a newer one cancels the older): two panes, two reads, so a
        # pane on a screen underneath never waits for a read the other pane cancelled
        workers.start(self, self._fetch_rollup(self._read_rollup, key), name="rollup", group=f"rollup-{id(self)}",
                      exclusive=True, description=f"reading PSS/USS of pid {key[0]}")

    async def _fetch_rollup(self, read: RollupReader, key: ProcessKey) -> None:
        try:
            rollup = await read(key)
            state = GONE if rollup is None else ""
        except PermissionError:  # EACCES/EPERM: another user's process, without CAP_SYS_PTRACE
            rollup, state = None, DENIED
        except Exception as error:  # anything else: shown in the pane, not raised
            rollup, state = None, f"unavailable: {error}"
        if not self.is_attached:  # its screen was closed meanwhile
            return
        self.set_rollup(key, rollup, state)
        view, human, _ = self._shown
        self._draw(view, human)

    def _draw(self, view: ProcessView | None, human: bool) -> None:
        body = self.query_one("#detail-body", Static)
        if view is None:
            self.view_key = None
            set_static(body, "No process selected")
            self.query_one(ScaledChart).show((), 0.0)
            set_static(self.query_one("#detail-title", Static), "RSS history")
            set_static(self.query_one("#detail-events", Static), "")
            return
        if view.key != self.view_key:
            self.view_key = view.key
            self._rollup = None
            self._rollup_state = self._no_rollup_reason(view) or "reading…"
        width = self.scrollable_content_region.width or 80
        figures = describe_process(view, self._rollup, self._rollup_state, human, width)
        if self._exited is not None:
            figures = Text.assemble(self._exited, "\n", ("last figures seen:", "dim"), "\n\n", figures)
        set_static(body, figures)
        chart = self.query_one(ScaledChart)
        interval_s, steady_since = self._interval
        chart.show(view.rss_history or (view.sample.rss_kb,), interval_s, now=self._shown[2],
                   steady_since=steady_since)
        chart.set_class(view.leak_suspect, "-alert")
        set_static(self.query_one("#detail-title", Static), f"RSS history, {chart.span}")
        events = Text("Recent memory events\n", style="bold")
        recent = view.recent_events[-RECENT_EVENTS_SHOWN:]
        if not recent:
            events.append("none" if view.kernel is not None else "- (eBPF off)", style="dim")
        for event in reversed(recent):
            events.append_text(event_line(event, human))
            events.append("\n")
        set_static(self.query_one("#detail-events", Static), events)
