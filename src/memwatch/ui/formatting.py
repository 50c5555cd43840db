"""Units and small text helpers for the dashboard.

Pure functions (no Textual) so they are cheap to test and every widget formats a figure the same
way: KB like the original C monitor, or human sizes (KiB/MiB/GiB) when the user toggles ``u``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from memwatch.text import printable as printable  # widgets format every string through this module

BLOCKS = "▁▂▃▄▅▆▇█"
_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_kb(kb: int | float) -> str:
    """A KB figure as KiB/MiB/GiB with three significant digits ("12.3 MiB")."""
    value = float(kb)
    sign = "-" if value < 0 else ""
    value = abs(value)
    unit = 0
    while value >= 1024 and unit < len(_BINARY_UNITS) - 1:
        value /= 1024
        unit += 1
    if value >= 100 or unit == 0:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{sign}{text} {_BINARY_UNITS[unit]}"


def human_bytes(n: int | float) -> str:
    """A byte count in human units; under 1 KiB it stays in bytes, but zero is "0 KiB" so a zero
    reads the same in a bytes figure as in a KB one."""
    if abs(n) < 1024 and n != 0:
        return f"{int(n)} B"
    return human_kb(n / 1024)


def size_kb(kb: int, human: bool, width: int | None = None, *, unit: bool = False) -> str:
    """A KB figure in the chosen units: the one formatter of table, detail, header and events.

    KB that would not fit ``width`` falls back to human; ``unit`` adds " KB" in KB mode (the
    detail pane's figures, which have no column header to say it)."""
    if human:
        return human_kb(kb)
    text = str(kb)
    if width is not None and len(text) > width:
        return human_kb(kb)
    return f"{text} KB" if unit else text


def size_bytes(n: int, human: bool, width: int | None = None, *, unit: bool = False) -> str:
    """A byte count in the chosen units: KB (truncated) like the KB figures, or human sizes."""
    if human:
        return human_bytes(n)
    kb = n // 1024 if n >= 0 else -(-n // 1024)  # toward zero: -100 B is not -1 KB
    return size_kb(kb, False, width, unit=unit)


def count(n: int) -> str:
    """A call counter that stays narrow: 999999, then 1.23M, 123M, 1.23G."""
    if n < 1_000_000:
        return str(n)
    for divisor, suffix in ((1_000_000_000, "G"), (1_000_000, "M")):
        if n >= divisor:
            value = n / divisor
            return f"{value:.2f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"
    return str(n)  # pragma: no cover - unreachable


def growth(kb_s: float | None) -> str:
    """RSS growth in KB/s, signed, at most 7 characters; None (not known yet) is a dash."""
    if kb_s is None:
        return "-"
    if abs(kb_s) < 1000:
        return f"{kb_s:+.1f}"
    if abs(kb_s) < 1_000_000:
        return f"{kb_s:+.0f}"
    mega = kb_s / 1_000_000
    if abs(mega) < 100:
        return f"{mega:+.1f}M"
    if abs(mega) < 100_000:
        return f"{mega:+.0f}M"
    return f"{kb_s / 1e9:+.0f}G"


def rate_kb_s(kb_s: float, human: bool) -> str:
    """A signed KB/s rate with its unit, in the chosen units: "+682.7 KB/s", "+682.7 KiB/s",
    "+2.00 MiB/s" (under 1 MiB/s with its decimal: a slow leak is not "+0")."""
    if not human or abs(kb_s) < 1024:
        return f"{growth(kb_s)} {'KiB' if human else 'KB'}/s"
    return ("+" if kb_s >= 0 else "") + human_kb(kb_s) + "/s"


def rate(per_s: float) -> str:
    """An event rate for the header: 0, 12.5, 1.2k, 3.4M per second."""
    if per_s < 1000:
        return f"{per_s:.0f}" if per_s >= 100 or per_s == int(per_s) else f"{per_s:.1f}"
    if per_s < 1_000_000:
        return f"{per_s / 1000:.1f}k"
    return f"{per_s / 1_000_000:.1f}M"


def duration(seconds: float) -> str:
    """A span of time, short: "45 s", "5 min", "1.5 h", "3 d"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    for size, unit in ((86_400.0, "d"), (3_600.0, "h"), (60.0, "min")):
        if seconds >= 2 * size or unit == "min":
            value = seconds / size
            whole = value >= 10 or abs(value - round(value)) < 0.05
            return f"{value:.0f} {unit}" if whole else f"{value:.1f} {unit}"
    return f"{seconds:.0f} s"  # pragma: no cover - unreachable


def utc_time(timestamp: float, with_date: bool = False) -> str:
    """Snapshot time in UTC (never the wall clock, so renders are deterministic)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if with_date else "%H:%M:%S")


GOTO_HINT = ("type HH:MM[:SS] (UTC, on the shown frame's day), a date and time such as 2026-11-26 10:15:00, "
             "or seconds since the epoch")


def parse_utc_time(text: str, reference: float) -> float:
    """A time typed by the user, as UTC: "HH:MM[:SS]" on the reference's day, or anything ``--at``
    takes (seconds since the epoch, ISO 8601), so a time copied from one works in the other.

    Raises ValueError with a sentence the user can act on.
    """
    from memwatch.headless import parse_time  # the --at parser: one definition of what a time is

    cleaned = text.strip().removesuffix("UTC").strip()
    day = datetime.fromtimestamp(reference, UTC)
    for fmt in ("%H:%M:%S", "%H:%M"):
        try:
            parsed = datetime.strptime(cleaned, fmt)
        except ValueError:
            continue
        moment = day.replace(hour=parsed.hour, minute=parsed.minute, second=parsed.second, microsecond=0)
        return moment.timestamp()
    try:
        return parse_time(cleaned)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: {GOTO_HINT}") from None
