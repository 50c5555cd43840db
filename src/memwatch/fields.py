"""One definition per figure, which every view derives from.

A figure is a :class:`Field`: its key (sort key, column id, config name), its header label, its
unit, a phrase for humans, how to read it from a :class:`~memwatch.model.ProcessView`, where it
comes from, and its names in headless JSON/CSV and in Prometheus. The dashboard's columns and sort
keys, the headless table, CSV and JSON, the exporter's per-process families and the detail pane's
figures are all built from :data:`FIELDS`, so a figure is written out once, and a view cannot rank
by or export a figure that no one can see listed here.

Values are ``None`` when unknown: a kernel figure without eBPF (a dash, never a 0), PSS/USS before
they were read, a rate before there were two samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from memwatch.model import KernelCounts, ProcessView
from memwatch.text import printable

Value = int | float | str | bool | None


class Unit(StrEnum):
    """What a value counts; views format by unit (KB or human sizes, signed rates, ...)."""

    COUNT = "count"
    KB = "kb"
    BYTES = "bytes"
    KB_S = "kb/s"
    PERCENT = "percent"
    TEXT = "text"
    TIME = "time"
    """Seconds since the epoch."""
    FLAG = "flag"
    HISTORY = "history"
    """A sparkline of the RSS history: shown, never sorted or exported."""


Source = Literal["proc", "kernel", "rollup", "store"]
"""proc: /proc every tick; kernel: the eBPF tracer (None without it); rollup: smaps_rollup, read
on demand (None until read); store: derived from the history (None until there is one)."""


@dataclass(frozen=True, slots=True)
class Metric:
    """How a field is exported to Prometheus (per process, labelled pid, name, start_time)."""

    name: str
    kind: Literal["gauge", "counter"]
    help: str
    scale: float = 1.0
    """The exported value is the field's value times this (KB to bytes: 1024)."""
    unit: str = ""
    """Prometheus unit, which the name must end with (``bytes``)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One figure of a process, and everything a view needs to show, sort and export it."""

    key: str
    label: str
    unit: Unit
    title: str
    """What it is, in a few words: detail pane, help, column chooser."""
    read: Callable[[ProcessView], Value]
    source: Source
    json: str | None = None
    """Key in headless JSON and CSV header; None: not in headless documents."""
    metric: Metric | None = None
    width: int = 8
    """Cells in the dashboard table."""
    drop_priority: int = 9
    """A narrow terminal drops visible columns with the highest first; 0 never."""
    descending: bool = True
    """The direction a first sort by it picks (largest first for figures, A-Z for names)."""
    lower_bound: Callable[[ProcessView], bool] | None = None
    """True when the value is only a lower bound for this process (shown with '≥')."""

    @property
    def sortable(self) -> bool:
        return self.unit is not Unit.HISTORY

    @property
    def needs_kernel(self) -> bool:
        return self.source == "kernel"

    def value(self, view: ProcessView) -> Value:
        return self.read(view)


def _kernel(name: str) -> Callable[[ProcessView], Value]:
    def read(view: ProcessView) -> Value:
        k = view.kernel
        return None if k is None else getattr(k, name)

    return read


def _rollup(name: str) -> Callable[[ProcessView], Value]:
    def read(view: ProcessView) -> Value:
        r = view.rollup
        return None if r is None else getattr(r, name)

    return read


def _sample(name: str) -> Callable[[ProcessView], Value]:
    def read(view: ProcessView) -> Value:
        return getattr(view.sample, name)  # type: ignore[no-any-return]

    return read


def _brk_net(view: ProcessView) -> Value:
    return None if view.kernel is None else view.kernel.brk_bytes


def _outstanding_complete(view: ProcessView) -> Value:
    return None if view.kernel is None else view.kernel.outstanding_complete


def _incomplete(view: ProcessView) -> bool:
    k: KernelCounts | None = view.kernel
    return k is not None and not k.outstanding_complete


def _gauge(name: str, help_: str, scale: float = 1.0, unit: str = "") -> Metric:
    return Metric(f"memwatch_process_{name}", "gauge", help_, scale, unit)


def _counter(name: str, help_: str, unit: str = "") -> Metric:
    return Metric(f"memwatch_process_{name}", "counter", help_, 1.0, unit)


KB = 1024.0

FIELDS: tuple[Field, ...] = (
    Field("pid", "PID", Unit.COUNT, "process id", _sample("pid"), "proc", json="pid", width=7, drop_priority=0,
          descending=False),
    Field("ppid", "PPID", Unit.COUNT, "parent's process id", _sample("ppid"), "proc", json="ppid", width=7),
    Field("name", "NAME", Unit.TEXT, "process name (comm)", _sample("name"), "proc", json="name", width=20,
          drop_priority=0, descending=False),
    Field("cmdline", "COMMAND", Unit.TEXT, "command line", _sample("cmdline"), "proc", json="cmdline",
          width=40, descending=False),
    Field("user", "USER", Unit.TEXT, "owner", _sample("user"), "proc", json="user", width=10, descending=False),
    Field("start", "START", Unit.TIME, "when it started", _sample("start_time"), "proc", json="start_time",
          width=8),
    Field("state", "S", Unit.TEXT, "state (R running, S sleeping, D in I/O, Z zombie ...)", _sample("state"),
          "proc", width=1, descending=False),
    Field("rss", "RSS", Unit.KB, "resident memory (VmRSS)", _sample("rss_kb"), "proc", json="rss_kb",
          metric=_gauge("rss_bytes", "Resident set size (VmRSS).", KB, "bytes"), drop_priority=1),
    Field("virt", "VIRT", Unit.KB, "virtual memory (VmSize)", _sample("virt_kb"), "proc", json="virt_kb",
          metric=_gauge("virtual_bytes", "Virtual memory size (VmSize).", KB, "bytes"), width=9, drop_priority=5),
    Field("peak", "PEAK", Unit.KB, "peak resident memory (VmHWM)", _sample("peak_kb"), "proc", json="peak_kb",
          metric=_gauge("peak_rss_bytes", "Peak resident set size (VmHWM).", KB, "bytes"), drop_priority=7),
    Field("swap", "SWAP", Unit.KB, "swapped out (VmSwap)", _sample("swap_kb"), "proc", json="swap_kb",
          metric=_gauge("swap_bytes", "Swapped-out anonymous memory (VmSwap).", KB, "bytes"), drop_priority=8),
    Field("shared", "SHARED", Unit.KB, "resident file and shared memory", _sample("shared_kb"), "proc",
          json="shared_kb"),
    Field("pss", "PSS", Unit.KB, "proportional set size (smaps_rollup)", _rollup("pss_kb"), "rollup",
          json="pss_kb"),
    Field("uss", "USS", Unit.KB, "unique set size: private clean + dirty", _rollup("uss_kb"), "rollup",
          json="uss_kb"),
    Field("mmap", "MMAP#", Unit.COUNT, "successful mmap calls", _kernel("mmap_count"), "kernel",
          json="mmap_count", metric=_counter("mmap_calls", "Successful mmap calls since traced."),
          width=6, drop_priority=3),
    Field("munmap", "MUNMAP#", Unit.COUNT, "successful munmap calls", _kernel("munmap_count"), "kernel",
          json="munmap_count", metric=_counter("munmap_calls", "Successful munmap calls since traced."),
          width=7, drop_priority=4),
    Field("brk", "BRK#", Unit.COUNT, "brk calls that moved the break", _kernel("brk_count"), "kernel",
          json="brk_count",
          metric=_counter("brk_calls", "Successful brk calls that moved the break, since traced."),
          width=6, drop_priority=6),
    Field("mremap", "MREMAP#", Unit.COUNT, "successful mremap calls", _kernel("mremap_count"), "kernel",
          json="mremap_count", metric=_counter("mremap_calls", "Successful mremap calls since traced."),
          width=7),
    Field("mmap_bytes", "MMAP", Unit.BYTES, "bytes mapped by mmap", _kernel("mmap_bytes"), "kernel",
          json="mmap_bytes",
          metric=_counter("mmap_bytes", "Bytes mapped by successful mmap calls.", "bytes"), width=9),
    Field("munmap_bytes", "MUNMAP", Unit.BYTES, "bytes passed to munmap", _kernel("munmap_bytes"), "kernel",
          json="munmap_bytes",
          metric=_counter("munmap_bytes", "Bytes passed to successful munmap calls.", "bytes"), width=9),
    Field("brk_bytes", "BRK", Unit.BYTES, "net heap change through brk", _brk_net, "kernel", json="brk_bytes",
          width=9),
    Field("brk_grow", "BRK+", Unit.BYTES, "heap growth through brk", _kernel("brk_grow_bytes"), "kernel",
          metric=_counter("brk_grow_bytes", "Bytes the heap grew by through brk.", "bytes"), width=9),
    Field("brk_shrink", "BRK-", Unit.BYTES, "heap shrinkage through brk", _kernel("brk_shrink_bytes"), "kernel",
          metric=_counter("brk_shrink_bytes", "Bytes the heap shrank by through brk.", "bytes"), width=9),
    Field("outstanding", "OUTST", Unit.BYTES, "mapped by traced calls and still mapped",
          _kernel("outstanding_bytes"), "kernel", json="outstanding_bytes",
          metric=_gauge("outstanding_mapped_bytes",
                        "Bytes mapped by traced mmap/mremap and not yet unmapped (eBPF only).", unit="bytes"),
          width=9, drop_priority=9, lower_bound=_incomplete),
    Field("outstanding_complete", "COMPLETE", Unit.FLAG, "every traced mapping followed (else OUTST is a "
          "lower bound)", _outstanding_complete, "kernel", json="outstanding_complete", width=8),
    Field("lost", "LOST#", Unit.COUNT, "traced mappings the kernel could not follow", _kernel("lost_mappings"),
          "kernel",
          metric=_counter("lost_mappings", "Traced mappings the kernel could not follow (its map full, or "
                          "the process at its quota); while above 0, the outstanding mapped bytes are a "
                          "lower bound."), width=6),
    Field("growth", "GROWTH", Unit.KB_S, "RSS growth over the history window, KB/s", lambda v: v.growth_kb_s,
          "store", json="growth_kb_s",
          metric=_gauge("growth_bytes_per_second",
                        "RSS growth rate over the store's recent history window; absent until known.", KB),
          width=7, drop_priority=2),
    Field("leak", "LEAK", Unit.FLAG, "leak suspect", lambda v: v.leak_suspect, "store", json="leak_suspect",
          metric=_gauge("leak_suspect", "1 when the leak heuristic flags the process (steady growth), else 0."),
          width=4),
    Field("threads", "THR", Unit.COUNT, "threads", _sample("threads"), "proc", json="threads", width=4),
    Field("cpu", "CPU%", Unit.PERCENT, "CPU use over the last interval, % of one core",
          lambda v: v.cpu_percent, "store", json="cpu_percent", width=5),
    Field("cgroup", "CGROUP", Unit.TEXT, "control group (the memory controller's)", _sample("cgroup"), "proc",
          width=30, descending=False),
    Field("anon", "ANON", Unit.KB, "resident anonymous memory", _sample("anon_kb"), "proc"),
    Field("swap_pss", "SWAPPSS", Unit.KB, "proportional swap (smaps_rollup)", _rollup("swap_pss_kb"), "rollup"),
    Field("mremap_grow", "MREMAP+", Unit.BYTES, "growth through mremap", _kernel("mremap_grow_bytes"), "kernel",
          width=9),
    Field("mremap_shrink", "MREMAP-", Unit.BYTES, "shrinkage through mremap", _kernel("mremap_shrink_bytes"),
          "kernel", width=9),
    Field("outstanding_peak", "OUTST^", Unit.BYTES, "the most outstanding at once", _kernel("outstanding_peak_bytes"),
          "kernel", width=9),
    Field("untracked", "UNTRACKED", Unit.BYTES, "unmapped but not mapped by a traced call (or not resolved)",
          _kernel("untracked_unmap_bytes"), "kernel", width=9),
    Field("failed", "FAILED#", Unit.COUNT, "failed memory calls", _kernel("failed_calls"), "kernel", width=7),
    Field("trend", "TREND", Unit.HISTORY, "RSS over the last samples", lambda v: None, "store", width=8,
          drop_priority=10),
)
"""Every figure, in the order of headless JSON and CSV (for those that have a name there): figures
added later go at the end, so that CSV read by position keeps working."""

BY_KEY: dict[str, Field] = {f.key: f for f in FIELDS}
SORT_KEYS: tuple[str, ...] = tuple(f.key for f in FIELDS if f.sortable)
JSON_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.json)
METRIC_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.metric)

DEFAULT_COLUMNS: tuple[str, ...] = (
    "pid", "name", "rss", "virt", "peak", "mmap", "munmap", "brk", "swap", "outstanding", "growth", "trend",
)
"""The dashboard's columns until the user chooses: the original monitor's, and memwatch's."""

DETAIL_SECTIONS: tuple[tuple[str, ...], ...] = (
    ("name", "pid", "ppid", "state", "user", "threads", "cpu", "start", "cgroup", "cmdline"),
    ("rss", "virt", "peak", "swap", "shared", "anon"),
    ("pss", "uss", "swap_pss"),
    ("growth",),
    ("mmap", "mmap_bytes", "munmap", "munmap_bytes", "brk", "brk_bytes", "mremap", "mremap_grow",
     "mremap_shrink", "outstanding", "outstanding_peak", "untracked", "failed"),
)
"""The detail pane's figures, in sections: identity, memory, PSS/USS (read on demand), growth, and
what the kernel counted."""

HEADLESS_TABLE: tuple[str, ...] = (
    "pid", "name", "rss", "virt", "peak", "swap", "mmap", "munmap", "brk", "mremap", "outstanding", "growth",
    "leak",
)
"""The columns of ``memwatch --once`` as a table."""


def field(key: str) -> Field:
    """The field named ``key``, or a ValueError that lists the valid ones."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise ValueError(f"unknown field {key!r}; choose one of {', '.join(BY_KEY)}") from None


_MISSING = float("-inf")


def sort_value(view: ProcessView, key: str) -> float | str:
    """The value a field sorts by; unknown values sort below every known one, text A-Z."""
    return sort_key(key)(view)


def sort_key(key: str) -> Callable[[ProcessView], float | str]:
    """:func:`sort_value` for one field as a function of the view: the field is looked up and
    checked once, not once per process (a ranking calls it for every process of every frame)."""
    f = field(key)
    if not f.sortable:
        raise ValueError(f"{key!r} cannot be sorted by; choose one of {', '.join(SORT_KEYS)}")
    read = f.read
    missing: float | str = _MISSING if f.unit is not Unit.TEXT else ""

    def value(view: ProcessView) -> float | str:
        v = read(view)
        if v is None:
            return missing
        if isinstance(v, str):
            return v.lower()
        return float(v)

    return value


def plain_text(f: Field, view: ProcessView) -> str:
    """A value as plain text, as the headless table shows it: sizes in KB, '-' when unknown, control
    characters escaped, '>=' before a lower bound."""
    v = f.read(view)
    if v is None:
        return "-"
    if f.unit is Unit.TEXT:
        return printable(str(v))
    if f.unit is Unit.FLAG:
        return "yes" if v else ""
    if f.unit is Unit.BYTES:
        text = str(int(v) // 1024)
    elif f.unit in (Unit.KB_S, Unit.PERCENT):
        text = f"{float(v):.1f}"
    elif f.unit is Unit.TIME:
        text = f"{float(v):.0f}"
    else:
        text = str(v)
    if f.lower_bound is not None and f.lower_bound(view):
        text = ">=" + text
    return text


CSV_DECIMALS: dict[Unit, int] = {Unit.KB_S: 1, Unit.PERCENT: 1, Unit.TIME: 2}
"""Decimals a float of each unit gets in CSV: rates and percentages to a tenth (as the table shows
them), start times to the hundredth of a second the kernel counts them in (USER_HZ)."""
DEFAULT_DECIMALS = 2
"""For a float of any other unit."""


def csv_text(value: Value, decimals: int | None = None) -> str:
    """A CSV cell as spreadsheets and scripts read it: empty when unknown, ``true``/``false``
    (not Python's True/False), floats to ``decimals`` places (not a 16-digit repr; never ``-0.0``),
    text with its control characters escaped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, float):
        text = f"{value:.{DEFAULT_DECIMALS if decimals is None else decimals}f}"
        return text[1:] if text.startswith("-") and not text.strip("-0.") else text
    return str(value)


def csv_cell(f: Field, view: ProcessView) -> str:
    """A process's value of ``f`` as a CSV cell, at the precision of its unit."""
    return csv_text(f.read(view), CSV_DECIMALS.get(f.unit))


def header(f: Field) -> str:
    """A plain header with the unit of the headless table: RSS(KB), OUTST(KB), GROWTH(KB/s)."""
    if f.unit in (Unit.KB, Unit.BYTES):
        return f"{f.label}(KB)"
    if f.unit is Unit.KB_S:
        return f"{f.label}(KB/s)"
    return f.label
