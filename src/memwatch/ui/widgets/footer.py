"""The key footer, fitted to the terminal: fewer hints rather than one cut mid-word.

Textual's Footer lays its hints out in a row and lets the last ones run off the edge ("? H").
:class:`KeyFooter` shows the hints in their order while they fit, always keeps the help key's
(whatever the width, ``?`` says where the rest are), and drops the command palette's first: the
help screen lists it. Which hints fit is :func:`fit_hints`, a pure function.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

ALWAYS_SHOWN = frozenset({"app.help"})
"""Actions whose hint stays whatever the width."""


def fit_hints(widths: Sequence[int], kept: Sequence[bool], room: int) -> list[bool]:
    """Which hints show in ``room`` cells: every ``kept`` one, then the others in order while
    they fit (after the first that does not, none: the order is the keys' importance)."""
    used = sum(w for w, keep in zip(widths, kept, strict=True) if keep)
    shown, full = [], False
    for width, keep in zip(widths, kept, strict=True):
        fits = keep or (not full and used + width <= room)
        full = full or not fits
        used += width if fits and not keep else 0
        shown.append(fits)
    return shown


class KeyFooter(Footer):
    """A Footer whose hints fit its width (see the module's docstring)."""

    async def recompose(self) -> None:
        await super().recompose()
        self.fit()

    def on_resize(self) -> None:
        self.fit()

    def fit(self) -> None:
        """Show the hints that fit the footer's width, hide the others."""
        hints = list(self.query(FooterKey))
        if not hints or self.size.width <= 0:
            return
        # the palette's hint is docked right but drops first: it goes last in the order
        hints.sort(key=lambda hint: hint.has_class("-command-palette"))
        widths = [cell_len(hint.render().plain) + hint.styles.gutter.width + hint.styles.margin.width
                  for hint in hints]
        kept = [hint.action in ALWAYS_SHOWN for hint in hints]
        for hint, shown in zip(hints, fit_hints(widths, kept, self.size.width), strict=True):
            hint.display = shown
