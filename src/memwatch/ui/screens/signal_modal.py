"""Confirmation before ``k`` sends a signal: which signal, to whom, and a way out.

Keyboard first: the focus starts on the list of signals; the arrows move, a number (1-9) or a
signal's initial (t, i, h, k, q, s, c, u) moves to it, Enter or ``y`` sends the highlighted one,
Escape or ``n`` cancels. A click only highlights: the Send button sends.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from memwatch.ui import formatting as fmt
from memwatch.ui import keys

SIGNAL_CHOICES: tuple[tuple[signal.Signals, str], ...] = (
    (signal.SIGTERM, "ask it to end"),
    (signal.SIGINT, "interrupt, as Ctrl+C"),
    (signal.SIGHUP, "hang up (many daemons reload)"),
    (signal.SIGKILL, "end it now, no clean-up"),
    (signal.SIGQUIT, "quit, with a core dump"),
    (signal.SIGSTOP, "stop (freeze) it"),
    (signal.SIGCONT, "continue a stopped process"),
    (signal.SIGUSR1, "user signal 1"),
    (signal.SIGUSR2, "user signal 2"),
)
"""The signals offered, in the list's order: 1-9 pick them by position."""


def initial(sig: signal.Signals) -> str:
    """The letter that picks a signal: SIGTERM's is t."""
    return sig.name.removeprefix("SIG")[0].lower()


class SignalList(OptionList):
    """The signals; a click highlights one (sending is Enter's or the button's, never a stray click)."""

    async def _on_click(self, event: events.Click) -> None:
        event.prevent_default()  # OptionList's own handler would select (send) at once
        clicked: int | None = event.style.meta.get("option")
        if clicked is not None:
            self.highlighted = clicked


class SignalModal(ModalScreen[signal.Signals | None]):
    """Dismisses with the chosen signal, or None when cancelled."""

    DEFAULT_CSS = """
    SignalModal { align: center middle; }
    SignalModal > Vertical { width: 64; max-width: 100%; height: auto; border: thick $error;
        background: $surface; padding: 1 2; }
    SignalModal OptionList { width: 100%; height: auto; max-height: 12; margin-top: 1; }
    SignalModal Horizontal { height: auto; margin-top: 1; }
    SignalModal Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("signal")

    def __init__(self, targets: Sequence[tuple[int, str]]) -> None:
        """``targets``: (pid, name) of each process the signal will go to."""
        super().__init__()
        self.targets = tuple(targets)

    def question(self) -> Text:
        text = Text("Send a signal to ")
        if len(self.targets) == 1:
            pid, name = self.targets[0]
            text.append(fmt.printable(name), style="bold")
            text.append(f" (pid {pid})?")
        else:
            text.append(f"{len(self.targets)} tagged processes", style="bold")
            text.append("?\n")
            shown = ", ".join(f"{fmt.printable(name)} ({pid})" for pid, name in self.targets[:6])
            more = f" and {len(self.targets) - 6} more" if len(self.targets) > 6 else ""
            text.append(shown + more, style="dim")
        return text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question())
            yield SignalList(*(Option(Text.assemble((f"{n} ", "dim"), (sig.name.ljust(8), "bold"), what),
                                      id=sig.name) for n, (sig, what) in enumerate(SIGNAL_CHOICES, 1)),
                             id="signal-choice")
            yield Static(Text("↑↓, 1-9 or an initial chooses; Enter sends, Escape cancels", style="dim"))
            with Horizontal():
                yield Button("Send", variant="error", id="send")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        choices = self.query_one(SignalList)
        choices.highlighted = 0
        choices.focus()

    @property
    def chosen(self) -> signal.Signals:
        """The highlighted signal (SIGTERM until moved)."""
        index = self.query_one(SignalList).highlighted
        return SIGNAL_CHOICES[index if index is not None else 0][0]

    def on_key(self, event: events.Key) -> None:
        """A number picks by position, a letter by initial (again: the next with that initial)."""
        char = (event.character or "").lower()
        if not char or char in "yn":
            return
        choices = self.query_one(SignalList)
        if char.isdigit() and 1 <= int(char) <= len(SIGNAL_CHOICES):
            choices.highlighted = int(char) - 1
            event.stop()
            return
        current = choices.highlighted or 0
        order = list(range(current + 1, len(SIGNAL_CHOICES))) + list(range(current + 1))
        for index in order:
            if initial(SIGNAL_CHOICES[index][0]) == char:
                choices.highlighted = index
                event.stop()
                return

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter on the list: send the highlighted signal."""
        event.stop()
        self.action_send()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "send":
            self.action_send()
        else:
            self.action_cancel()

    def action_send(self) -> None:
        self.dismiss(self.chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)
