"""The ``?`` help: every key, from the one key list (memwatch.ui.keys)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from memwatch.ui import keys

KEYS_WIDTH = 24


def help_text() -> Text:
    """The key table as one Text."""
    text = Text("memwatch keys\n\n", style="bold")
    for shown, what in keys.help_rows():
        text.append(f"{shown:<{KEYS_WIDTH}}", style="bold cyan")
        if len(shown) >= KEYS_WIDTH:  # a long list of keys gets a line of its own
            text.append("\n" + " " * KEYS_WIDTH)
        text.append(f"{what}\n")
    text.append("\nLeak suspects are marked ! in red. '-' means eBPF is off for that figure.", style="dim")
    return text


class HelpScreen(ModalScreen[None]):
    """Modal list of keys; any of Escape, q or ? closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("help")

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_text())
