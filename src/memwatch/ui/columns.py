"""The process table's columns: fixed widths, drop priority, sort key and cell rendering.

Fixed widths keep the table from re-measuring every tick; the priority decides which columns go
first when the terminal is narrow (the original monitor's PID/NAME/RSS/VIRT/MMAP#/MUNMAP# stay).
Every process-derived string becomes a ``rich.text.Text`` so a name like ``[red]x`` shows literally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.text import Text

from memwatch.model import ProcessView
from memwatch.ui import formatting as fmt

Justify = Literal["left", "right"]
NAME_WIDTH = 20


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One table column: its key, header, width in cells and how soon it is dropped (higher first)."""

    key: str
    label: str
    width: int
    drop_priority: int
    sort: str | None
    justify: Justify
    render: Callable[[ProcessView, bool], Text]


DASH = Text("-", justify="right", style="dim")


def _right(text: str, style: str = "") -> Text:
    return Text(text, justify="right", style=style)


def _kernel_count(attr: str) -> Callable[[ProcessView, bool], Text]:
    def render(view: ProcessView, human: bool) -> Text:
        if view.kernel is None:
            return DASH
        value: int = getattr(view.kernel, attr)
        return _right(fmt.count(value))

    return render


def _sample_kb(attr: str, width: int) -> Callable[[ProcessView, bool], Text]:
    def render(view: ProcessView, human: bool) -> Text:
        value: int = getattr(view.sample, attr)
        return _right(fmt.size_kb(value, human, width))

    return render


def _pid(view: ProcessView, human: bool) -> Text:
    return _right(str(view.sample.pid))


def _name(view: ProcessView, human: bool) -> Text:
    name = fmt.printable(view.sample.name)
    if view.leak_suspect:
        text = Text("!", style="bold red")
        text.append(name[: NAME_WIDTH - 1], style="red")
        return text
    if view.sample.kernel_thread:
        return Text(name[:NAME_WIDTH], style="dim")
    return Text(name[:NAME_WIDTH])


def _outstanding(view: ProcessView, human: bool) -> Text:
    """'≥' marks a lower bound: the kernel could not follow some of the process's mappings."""
    k = view.kernel
    if k is None:
        return DASH
    if k.outstanding_complete:
        return _right(fmt.size_bytes(k.outstanding_bytes, human, 9))
    return _right("≥" + fmt.size_bytes(k.outstanding_bytes, human, 8), "yellow")


def _growth(view: ProcessView, human: bool) -> Text:
    text = fmt.growth(view.growth_kb_s)
    if view.leak_suspect:
        return _right(text, "bold red")
    if view.growth_kb_s is not None and view.growth_kb_s > 0:
        return _right(text, "yellow")
    return _right(text)


def _trend(view: ProcessView, human: bool) -> Text:
    return Text(fmt.trend(view.rss_history), style="red" if view.leak_suspect else "green")


COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("pid", "PID", 7, 0, "pid", "right", _pid),
    ColumnSpec("name", "NAME", NAME_WIDTH, 0, "name", "left", _name),
    ColumnSpec("rss", "RSS", 8, 1, "rss", "right", _sample_kb("rss_kb", 8)),
    ColumnSpec("virt", "VIRT", 9, 5, "virt", "right", _sample_kb("virt_kb", 9)),
    ColumnSpec("peak", "PEAK", 8, 7, "peak", "right", _sample_kb("peak_kb", 8)),
    ColumnSpec("mmap", "MMAP#", 6, 3, "mmap", "right", _kernel_count("mmap_count")),
    ColumnSpec("munmap", "MUNMAP#", 7, 4, "munmap", "right", _kernel_count("munmap_count")),
    ColumnSpec("brk", "BRK#", 6, 6, "brk", "right", _kernel_count("brk_count")),
    ColumnSpec("swap", "SWAP", 8, 8, "swap", "right", _sample_kb("swap_kb", 8)),
    ColumnSpec("outstanding", "OUTST", 9, 9, "outstanding", "right", _outstanding),
    ColumnSpec("growth", "GROWTH", 7, 2, "growth", "right", _growth),
    ColumnSpec("trend", "TREND", 8, 10, None, "left", _trend),
)
BY_KEY = {c.key: c for c in COLUMNS}
SORTABLE = tuple(c.key for c in COLUMNS if c.sort is not None)
ASCENDING_BY_DEFAULT = frozenset({"pid", "name"})


def column_cost(spec: ColumnSpec, padding: int) -> int:
    """Cells a column takes on screen, padding on both sides included."""
    return spec.width + 2 * padding


def fit_columns(available: int, padding: int = 1) -> tuple[ColumnSpec, ...]:
    """The columns that fit ``available`` cells, dropping the highest drop_priority first.

    PID and NAME (priority 0) always stay, even when they do not fit.
    """
    chosen = list(COLUMNS)
    by_drop = sorted(COLUMNS, key=lambda c: c.drop_priority, reverse=True)
    for spec in by_drop:
        if sum(column_cost(c, padding) for c in chosen) <= available or spec.drop_priority == 0:
            break
        chosen.remove(spec)
    return tuple(chosen)


def header_label(spec: ColumnSpec, sort: str, descending: bool, human: bool) -> Text:
    """The header with its unit (KB mode) and a ▲/▼ on the sorted column."""
    arrow = ""
    if spec.sort == sort:
        arrow = "▼" if descending else "▲"
    label = spec.label
    if not human and spec.key in ("rss", "virt", "peak", "swap") and len(label) + 4 + len(arrow) <= spec.width:
        label = f"{label}(KB)"
    label = label[: spec.width - len(arrow)]
    text = Text(justify=spec.justify)
    if spec.justify == "right":
        text.append(arrow, style="bold")
        text.append(label)
    else:
        text.append(label)
        text.append(arrow, style="bold")
    return text


def row_cells(view: ProcessView, specs: Sequence[ColumnSpec], human: bool) -> list[Text]:
    """Every visible cell of one process, in column order."""
    return [spec.render(view, human) for spec in specs]
