"""The dashboard's one line of typed input: a filter (applied as it is typed) or a time to go to.

It reads the text and says what was asked in typed messages; the screen decides what they do.
Whatever ends it (Enter, Escape, a time that cannot be read), it hides itself and gives the focus
back, so the keys that follow are commands again, never text typed into a hidden line.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from textual import on
from textual.binding import BindingType
from textual.message import Message
from textual.widgets import Input

from memwatch.ui import keys

Mode = Literal["filter", "events", "goto"]
"""The dashboard's filter, the events screen's filter, or a time to go to."""
FILTERS: tuple[Mode, ...] = ("filter", "events")
PLACEHOLDERS: dict[Mode, str] = {
    "filter": "filter by name, command line or pid (Enter keeps it, Escape clears it)",
    "events": "filter by name, pid, kind (exit, oom) or signal (Enter keeps it, Escape clears it)",
    "goto": "go to time (UTC): HH:MM[:SS], YYYY-MM-DD HH:MM:SS, or seconds since the epoch",
}


class Prompt(Input):
    """Hidden until :meth:`ask`; posts :class:`FilterChanged`, :class:`GotoAsked` and :class:`Closed`."""

    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("prompt")

    class FilterChanged(Message):
        """The filter is now ``text`` (empty: no filter)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class GotoAsked(Message):
        """The user asked to go to the time written ``text`` (not parsed yet)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Closed(Message):
        """The line is hidden again; whoever had the focus before should take it back."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode: Mode | None = None
        self.display = False

    def ask(self, mode: Mode, value: str = "") -> None:
        """Show the line for ``mode``, holding ``value`` (selected, so typing replaces it)."""
        self.mode = mode
        self.placeholder = PLACEHOLDERS[mode]
        self.value = value
        self.display = True
        self.focus()

    def close(self) -> None:
        self.mode = None
        self.display = False
        self.post_message(self.Closed())

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.mode in FILTERS and event.input is self:
            self.post_message(self.FilterChanged(event.value.strip()))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.mode == "goto":
            self.post_message(self.GotoAsked(event.value))
            self.value = ""
        self.close()  # a filter stays as typed

    def action_cancel(self) -> None:
        if self.mode in FILTERS:
            self.value = ""
            self.post_message(self.FilterChanged(""))
        elif self.mode == "goto":
            self.value = ""
        self.close()
