"""The leak signal: a growth rate a user can sort by, and a flag for growth that does not let up.

A process is a *leak suspect* when, over the part of its history window that lies after its
warm-up (at least ``min_span_s`` long):

1. its RSS grows at ``min_rate_kb_s`` or more (least-squares slope),
2. its *floor* rises steadily: split the span in thirds; the lowest RSS of each third is above
   the lowest of the one before, and the last is at least ``min_growth_kb`` (and 2 %) above the
   first. A sawtooth that keeps returning to the same low (caches, arenas being trimmed, garbage
   collection) is not a suspect however steep its teeth; one whose low keeps rising is, and so
   is a noisy leak, whose samples go down often but whose floor does not;
3. the growth does not die down: the floor rises in the last third by at least half as much as
   in the first. Filling a bounded cache or pool looks like a leak that slows to a stop.

Warm-up: a process that has just started grows while it fills its caches, pools and histories
(memwatch itself does so until its history windows are full), and is not a leak for that. Samples
taken in a process's first ``warmup_s`` seconds are left out of the flag (default: 10 minutes, or
one whole history window if that is longer), so that an alert on the flag does not fire after
every restart. The rate alone is what ``growth_kb_s`` reports and what the table sorts by, over
the whole window; the flag needs all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_WARMUP_S = 600.0


@dataclass(frozen=True, slots=True)
class LeakPolicy:
    min_span_s: float = 60.0
    min_points: int = 6
    min_rate_kb_s: float = 1.0
    min_growth_kb: int = 1024
    warmup_s: float | None = None
    """Seconds after a process starts before its samples count for the flag; None: 10 minutes or
    one full history window, whichever is longer (the store knows the window)."""


@dataclass(frozen=True, slots=True)
class LeakVerdict:
    growth_kb_s: float | None
    suspect: bool
    reason: str | None


def slope(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of values over times (units per second)."""
    n = len(times)
    mt = sum(times) / n
    mv = sum(values) / n
    num = sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True))
    den = sum((t - mt) ** 2 for t in times)
    return num / den if den else 0.0


def _human_kb(kb: float) -> str:
    for unit, size in (("GiB", 1 << 20), ("MiB", 1 << 10)):
        if abs(kb) >= size:
            return f"{kb / size:.1f} {unit}"
    return f"{kb:.0f} KiB"


def _human_span(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def assess(times: Sequence[float], rss_kb: Sequence[int], policy: LeakPolicy = LeakPolicy(),
           warm_from: float | None = None) -> LeakVerdict:
    """Growth rate (whole history) and leak flag (samples at or after ``warm_from``, the end of
    the process's warm-up, when given) for one process's RSS history, oldest first."""
    n = len(times)
    if n < 2 or times[-1] - times[0] <= 0:
        return LeakVerdict(None, False, None)
    rate = slope(times, rss_kb)
    if warm_from is not None and times[0] < warm_from:
        first = next((i for i, t in enumerate(times) if t >= warm_from), n)
        times, rss_kb = times[first:], rss_kb[first:]
        n = len(times)
    span = times[-1] - times[0] if n else 0.0
    if n < policy.min_points or span < policy.min_span_s:
        return LeakVerdict(rate, False, None)
    flag_rate = slope(times, rss_kb)
    third = n // 3
    f1, f2, f3 = min(rss_kb[:third]), min(rss_kb[third:n - third]), min(rss_kb[n - third:])
    rise = f3 - f1
    suspect = (
        flag_rate >= policy.min_rate_kb_s
        and f1 < f2 < f3
        and rise >= max(policy.min_growth_kb, 0.02 * f1)
        and f3 - f2 >= (f2 - f1) / 2
    )
    reason = None
    if suspect:
        reason = (
            f"RSS grew {_human_kb(rss_kb[-1] - rss_kb[0])} in {_human_span(span)} ({flag_rate:+.1f} KB/s) "
            f"and its floor rose in every third of that time, by {_human_kb(rise)} in all"
        )
    return LeakVerdict(rate, suspect, reason)
