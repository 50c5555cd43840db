"""The ``?`` help: every key in one place."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_ROWS: tuple[tuple[str, str], ...] = (
    ("↑ ↓ PgUp PgDn Home End", "move in the table (mouse: click a row)"),
    ("Enter", "this process full screen (Escape returns)"),
    ("s / r", "cycle the sort column / reverse the order"),
    ("M P N G O", "sort by memory (RSS), pid, name, growth, outstanding bytes"),
    ("click a header", "sort by it; click again to reverse"),
    ("u", "units: KB (like the original monitor) or KiB/MiB/GiB"),
    ("/", "filter by name, command line or pid (Escape clears)"),
    ("space / p", "pause: the table keeps its last frame"),
    ("+ / -", "sample more or less often"),
    ("k", "send a signal to the highlighted process (asks first)"),
    ("e", "exited processes and OOM kills"),
    (", / .", "replay: one frame back / forward"),
    ("[ / ]", "replay: jump to start / end"),
    ("g", "replay: go to a time (UTC)"),
    ("ctrl+p", "command palette"),
    ("q / ctrl+c", "quit"),
)


def help_text() -> Text:
    """The key table as one Text."""
    text = Text("memwatch keys\n\n", style="bold")
    for keys, what in HELP_ROWS:
        text.append(f"{keys:<24}", style="bold cyan")
        text.append(f"{what}\n")
    text.append("\nLeak suspects are marked ! in red. '-' means eBPF is off for that figure.", style="dim")
    return text


class HelpScreen(ModalScreen[None]):
    """Modal list of keys; any of Escape, q or ? closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2; }
    """
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_text())
