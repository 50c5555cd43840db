"""Updates that do nothing when nothing changed, and lay the screen out only when a size changed.

``Static.update`` and assigning ``Sparkline.data`` always schedule a redraw, even for the same
content, and ``Static.update`` a layout of the whole screen, which re-renders every widget (the
largest cost of a key press in the dashboard). The dashboard redraws its header, status line and
detail pane on every frame and key, mostly with what they already show, and with text whose
height does not change. These helpers compare first and ask for a layout only when needed.
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
    widget.update(content, layout=False)
    height = widget.styles.height
    if height is not None and not height.is_auto:
        return True  # a fixed height: new text never moves anything else
    width = widget.content_region.width
    needed = widget.get_content_height(widget.container_size, widget.app.size, width) if width > 0 else -1
    if needed != widget.content_region.height:
        widget.refresh(layout=True)  # its height changes: the screen must be laid out again
    return True


def set_sparkline(widget: Sparkline, data: Sequence[float]) -> bool:
    """Assign new sparkline data (a new list, as Sparkline needs) unless it is the same."""
    values = tuple(data)
    if _shown.get(widget) == values:
        return False
    _shown[widget] = values
    widget.data = list(values)
    return True
