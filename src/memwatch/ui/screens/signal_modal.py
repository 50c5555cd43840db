"""Confirmation before ``k`` sends a signal: which signal, to whom, and a way out."""

from __future__ import annotations

import signal
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, RadioButton, RadioSet, Static

from memwatch.ui import formatting as fmt
from memwatch.ui import keys

SIGNAL_CHOICES: tuple[signal.Signals, ...] = (
    signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT, signal.SIGHUP,
)


class SignalModal(ModalScreen[signal.Signals | None]):
    """Dismisses with the chosen signal, or None when cancelled."""

    DEFAULT_CSS = """
    SignalModal { align: center middle; }
    SignalModal > Vertical { width: 60; max-width: 100%; height: auto; border: thick $error;
        background: $surface; padding: 1 2; }
    SignalModal RadioSet { width: 100%; height: auto; }
    SignalModal Horizontal { height: auto; margin-top: 1; }
    SignalModal Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("signal")

    def __init__(self, pid: int, name: str) -> None:
        super().__init__()
        self.pid = pid
        self.process_name = name

    def compose(self) -> ComposeResult:
        question = Text("Send a signal to ")
        question.append(fmt.printable(self.process_name), style="bold")
        question.append(f" (pid {self.pid})?")
        with Vertical():
            yield Static(question)
            with RadioSet(id="signal-choice"):
                for sig in SIGNAL_CHOICES:
                    yield RadioButton(sig.name, value=sig is signal.SIGTERM, name=sig.name, id=f"sig-{sig.name}")
            with Horizontal():
                yield Button("Send", variant="error", id="send")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#send", Button).focus()

    @property
    def chosen(self) -> signal.Signals:
        """The signal picked in the radio set (SIGTERM unless changed)."""
        pressed = self.query_one(RadioSet).pressed_button
        if pressed is None or pressed.name is None:
            return signal.SIGTERM
        return signal.Signals[pressed.name]

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
