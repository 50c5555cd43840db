"""The process table's columns, built from the field registry (memwatch.fields).

Each field becomes a column with a fixed width, a drop priority and a renderer chosen by its unit;
a few figures get a style of their own (the leak marker on the name, growth in colour, the RSS
trend, which keeps a blank cell before it so it never runs into the figure on its left). The
sorted column's arrow may take a cell of the column's padding (:data:`ARROW_ROOM`), so a label as
wide as its column keeps every character ("▼MUNMAP#", never "▼MUNMAP"). Fixed widths keep the
table from re-measuring every tick; the priority decides which columns go first when the terminal
is narrow (PID and NAME always stay). Every process-derived string becomes a ``rich.text.Text``
so a name like ``[red]x`` shows literally.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.text import Text

from memwatch.fields import DEFAULT_COLUMNS, FIELDS, Field, Unit, Value
from memwatch.model import ProcessView
from memwatch.ui import formatting as fmt
from memwatch.ui.charts import trend

Justify = Literal["left", "right"]
NAME_WIDTH = 20
ARROW_ROOM = 1
"""Cells of padding the sort arrow may take beside its label (the table pads cells by at least this)."""


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
    field: Field
    lead: int = 0
    """Blank cells before the column, beyond the padding (a chart beside figures)."""


DASH = Text("-", justify="right", style="dim")


def _right(text: str, style: str = "") -> Text:
    return Text(text, justify="right", style=style)


def figure_text(f: Field, value: Value, human: bool) -> str:
    """A value with its unit, for the detail pane: no width limit, KB or human sizes as the table."""
    if value is None:
        return "-"
    if f.unit is Unit.TEXT:
        return fmt.printable(str(value)) or "-"
    if f.unit is Unit.FLAG:
        return "yes" if value else "no"
    if f.unit is Unit.TIME:
        return fmt.utc_time(float(value), with_date=True)
    if f.unit is Unit.PERCENT:
        return f"{float(value):.1f} %"
    if f.unit is Unit.KB_S:
        return fmt.rate_kb_s(float(value), human)
    if f.unit is Unit.KB:
        return fmt.size_kb(int(value), human, unit=True)
    if f.unit is Unit.BYTES:
        return fmt.size_bytes(int(value), human, unit=True)
    return str(value)


def _by_unit(f: Field) -> Callable[[ProcessView, bool], Text]:
    """The renderer of a field's unit: KB or human sizes, narrow counts, '≥' before a lower bound."""
    width = f.width

    def render(view: ProcessView, human: bool) -> Text:
        v = f.read(view)
        if v is None:
            return DASH
        if f.unit is Unit.TEXT:
            return Text(fmt.printable(str(v))[:width])
        if f.unit is Unit.FLAG:
            return _right("yes" if v else "", "bold red" if v else "")
        if f.unit is Unit.TIME:
            return _right(fmt.utc_time(float(v)))
        if f.unit is Unit.PERCENT:
            return _right(f"{float(v):.1f}")
        if f.unit is Unit.KB_S:
            return _right(fmt.growth(float(v)))
        bound = f.lower_bound is not None and f.lower_bound(view)
        room = width - 1 if bound else width
        if f.unit is Unit.KB:
            text = fmt.size_kb(int(v), human, room)
        elif f.unit is Unit.BYTES:
            text = fmt.size_bytes(int(v), human, room)
        else:
            text = fmt.count(int(v)) if f.source == "kernel" else str(v)
        return _right("≥" + text, "yellow") if bound else _right(text)

    return render


def _name(view: ProcessView, human: bool) -> Text:
    name = fmt.printable(view.sample.name)
    if view.leak_suspect:
        text = Text("!", style="bold red")
        text.append(name[: NAME_WIDTH - 1], style="red")
        return text
    if view.sample.kernel_thread:
        return Text(name[:NAME_WIDTH], style="dim")
    return Text(name[:NAME_WIDTH])


def _growth(view: ProcessView, human: bool) -> Text:
    text = fmt.growth(view.growth_kb_s)
    if view.leak_suspect:
        return _right(text, "bold red")
    if view.growth_kb_s is not None and view.growth_kb_s > 0:
        return _right(text, "yellow")
    return _right(text)


def _trend(view: ProcessView, human: bool) -> Text:
    return Text(trend(view.rss_history), style="red" if view.leak_suspect else "green")


_OWN_STYLE: dict[str, Callable[[ProcessView, bool], Text]] = {"name": _name, "growth": _growth, "trend": _trend}


def _spec(f: Field) -> ColumnSpec:
    justify: Justify = "left" if f.unit in (Unit.TEXT, Unit.HISTORY) else "right"
    return ColumnSpec(f.key, f.label, f.width, f.drop_priority, f.key if f.sortable else None, justify,
                      _OWN_STYLE.get(f.key) or _by_unit(f), f, lead=1 if f.unit is Unit.HISTORY else 0)


ALL_COLUMNS: tuple[ColumnSpec, ...] = tuple(_spec(f) for f in FIELDS)
"""A column for every field: what the column chooser offers."""
BY_KEY = {c.key: c for c in ALL_COLUMNS}
COLUMNS: tuple[ColumnSpec, ...] = tuple(BY_KEY[k] for k in DEFAULT_COLUMNS)
"""The columns shown until the user chooses others."""
SORTABLE = tuple(c.key for c in ALL_COLUMNS if c.sort is not None)
ASCENDING_BY_DEFAULT = frozenset(f.key for f in FIELDS if not f.descending)


def column_cost(spec: ColumnSpec, padding: int) -> int:
    """Cells a column takes on screen, padding on both sides (and its lead) included."""
    return spec.lead + spec.width + 2 * padding


def fit_columns(available: int, padding: int = 1,
                columns: Sequence[ColumnSpec] = COLUMNS) -> tuple[ColumnSpec, ...]:
    """The ``columns`` that fit ``available`` cells, dropping the highest drop_priority first.

    PID and NAME (priority 0) always stay, even when they do not fit.
    """
    chosen = list(columns)
    by_drop = sorted(chosen, key=lambda c: c.drop_priority, reverse=True)
    for spec in by_drop:
        if sum(column_cost(c, padding) for c in chosen) <= available or spec.drop_priority == 0:
            break
        chosen.remove(spec)
    return tuple(chosen)


def header_label(spec: ColumnSpec, sort: str, descending: bool, human: bool) -> Text:
    """The header with its unit (KB mode) and a ▲/▼ on the sorted column: ``spec.width`` cells,
    or one more (:data:`ARROW_ROOM`, taken from the padding on the arrow's side) with the arrow."""
    arrow = ""
    if spec.sort == sort:
        arrow = "▼" if descending else "▲"
    room = spec.width + (ARROW_ROOM if arrow else 0)
    label = spec.label
    if not human and spec.field.unit is Unit.KB and len(label) + 4 + len(arrow) <= room:
        label = f"{label}(KB)"
    label = label[: room - len(arrow)]
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
