"""Updates that do nothing when nothing changed.

``Static.update`` and assigning ``Sparkline.data`` always schedule a redraw (and a Static a layout
pass), even for the same content; the dashboard redraws its header, status line and detail pane
on every frame, mostly with what they already show. These helpers compare first.
"""

from __future__ import annotations

from collections.abc import Sequence
from weakref import WeakKeyDictionary

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Sparkline, Static

_shown: WeakKeyDictionary[Widget, object] = WeakKeyDictionary()


def _print(content: Text | str) -> object:
    if isinstance(content, str):
        return content
    return (content.plain, str(content.style), tuple((s.start, s.end, str(s.style)) for s in content.spans),
            content.justify, content.overflow, content.no_wrap, content.end)


def set_static(widget: Static, content: Text | str) -> bool:
    """``widget.update(content)`` unless it already shows exactly that; True if it was updated."""
    fingerprint = _print(content)
    if _shown.get(widget) == fingerprint:
        return False
    _shown[widget] = fingerprint
    widget.update(content)
    return True


def set_sparkline(widget: Sparkline, data: Sequence[float]) -> bool:
    """Assign new sparkline data (a new list, as Sparkline needs) unless it is the same."""
    values = tuple(data)
    if _shown.get(widget) == values:
        return False
    _shown[widget] = values
    widget.data = list(values)
    return True
