"""The one-line bars around the table: the status line under it and the replay bar above it.

Each builds its text with a pure function (tested without an app) and shows it through
``set_static``, which does nothing when the line is unchanged: both are redrawn on every frame.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from memwatch.fields import BY_KEY
from memwatch.model import Snapshot
from memwatch.ui import formatting as fmt
from memwatch.ui.view_state import ViewState
from memwatch.ui.widgets.quiet_update import set_static

REPLAY_BAR_WIDTH = 20


def status_text(view: ViewState, shown: int, total: int | None, ended: str | None,
                lead: Text | None = None) -> Text:
    """PAUSED, how many processes are shown of how many, sort, units, filter, --pid, and why the
    source ended. ``lead`` is a group view's own start (its rows and sort), or the group whose
    processes these are."""
    text = Text()
    if view.paused:
        text.append(" PAUSED ", style="bold reverse yellow")
        text.append("  ")
    if lead is not None:
        text.append_text(lead)
    if view.mode == "processes":
        if total is not None:
            text.append(f"{shown} of {total} processes")
        spec = BY_KEY.get(view.sort)
        label = spec.label if spec else view.sort
        text.append(f"  sort {label} {'▼' if view.descending else '▲'}")
    text.append(f"  units {'KiB/MiB/GiB' if view.human else 'KB'}")
    if view.filter:
        text.append("  filter ")
        text.append(repr(view.filter), style="bold")
    if view.pids:
        text.append("  only pid " if view.top < 0 else "  with pid ")
        text.append(" ".join(str(p) for p in view.pids), style="bold")
    if ended:
        text.append(f"  {ended}", style="italic")
    return text


REPLAY_KEYS = "   , . step  [ ] start/end  g go to"


def replay_text(snap: Snapshot, index: int, total: int, paused: bool, width: int | None = None) -> Text:
    """Where the replay is: playing or paused, the frame, a progress bar, the time and its keys
    (left out when they would not fit ``width`` whole: the help screen lists them)."""
    filled = round(REPLAY_BAR_WIDTH * (index + 1) / total) if total else 0
    text = Text("REPLAY ", style="bold magenta")
    text.append("paused " if paused else "playing ")
    text.append(f"frame {index + 1}/{total}  ")
    text.append("█" * filled + "░" * (REPLAY_BAR_WIDTH - filled), style="magenta")
    text.append(f"  {fmt.utc_time(snap.timestamp, with_date=True)}")
    if width is None or text.cell_len + len(REPLAY_KEYS) <= width:
        text.append(REPLAY_KEYS, style="dim")
    return text


class StatusBar(Static):
    """The line under the table."""

    def show(self, view: ViewState, shown: int, total: int | None, ended: str | None,
             lead: Text | None = None) -> None:
        set_static(self, status_text(view, shown, total, ended, lead))


class ReplayBar(Static):
    """The line above the table on a recording (hidden on a live source)."""

    _shown: tuple[Snapshot, int, int, bool] | None = None

    def show(self, snap: Snapshot, index: int, total: int, paused: bool) -> None:
        self._shown = (snap, index, total, paused)
        set_static(self, replay_text(snap, index, total, paused, self.content_region.width or None))

    def on_resize(self) -> None:
        if self._shown is not None:
            self.show(*self._shown)
