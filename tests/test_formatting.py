"""Units and text helpers of the dashboard."""

from __future__ import annotations

import pytest

from memwatch.ui import formatting as fmt
from memwatch.ui.columns import ALL_COLUMNS, ARROW_ROOM, COLUMNS, fit_columns, header_label


@pytest.mark.parametrize(("kb", "text"), [
    (0, "0 KiB"), (512, "512 KiB"), (1024, "1.00 MiB"), (1536, "1.50 MiB"), (15_000, "14.6 MiB"),
    (150_000, "146 MiB"), (16_000_000, "15.3 GiB"), (137_438_953_472, "128 TiB"), (-2048, "-2.00 MiB"),
])
def test_human_kb(kb: int, text: str) -> None:
    assert fmt.human_kb(kb) == text


def test_size_kb_falls_back_to_human_when_kb_would_not_fit() -> None:
    assert fmt.size_kb(123456, False, 8) == "123456"
    assert fmt.size_kb(137_438_953_472, False, 9) == "128 TiB"
    assert fmt.size_kb(2048, True) == "2.00 MiB"
    assert fmt.size_bytes(4096 * 1024, False) == "4096"
    assert fmt.human_bytes(100) == "100 B"


@pytest.mark.parametrize(("n", "text"), [(0, "0"), (999_999, "999999"), (1_234_567, "1.23M"),
                                         (123_456_789, "123M"), (5_000_000_000, "5.00G")])
def test_count_stays_narrow(n: int, text: str) -> None:
    assert fmt.count(n) == text


def test_growth_is_signed_and_fits_seven_cells() -> None:
    assert fmt.growth(None) == "-"
    assert fmt.growth(5.333) == "+5.3"
    assert fmt.growth(-10.7) == "-10.7"
    assert fmt.growth(12_345.6) == "+12346"
    for value in (0.0, 999.9, 999.96, -999.9, 999_999.0, -5e6, 99.96e6, 1e9, -1e12):
        assert len(fmt.growth(value)) <= 7


def test_utc_time_and_parse_round_trip() -> None:
    ts = 1_700_000_006.0
    assert fmt.utc_time(ts) == "22:13:26"
    assert fmt.utc_time(ts, with_date=True) == "2023-11-14 22:13:26 UTC"
    assert fmt.parse_utc_time("22:13:26", ts) == ts
    assert fmt.parse_utc_time("2023-11-14 22:13:26 UTC", 0.0) == ts
    assert fmt.parse_utc_time("22:13", ts) == ts - 26
    with pytest.raises(ValueError, match=r"HH:MM\[:SS\].*seconds since the epoch"):
        fmt.parse_utc_time("yesterday", ts)


@pytest.mark.parametrize("typed", ["1700000006", "1700000006.0", "2023-11-14T22:13:26", "2023-11-14 22:13:26",
                                   "2023-11-14T22:13:26+00:00", "2023-11-14T23:13:26+01:00", "22:13:26",
                                   " 22:13:26 UTC "])
def test_go_to_takes_what_at_takes_and_a_time_of_day(typed: str) -> None:
    """g in the dashboard reads every time --at reads (epoch seconds, ISO 8601), and HH:MM[:SS]."""
    from memwatch.headless import parse_time

    ts = 1_700_000_006.0  # 2023-11-14 22:13:26 UTC
    assert fmt.parse_utc_time(typed, ts - 3600) == ts
    if ":" not in typed or "-" in typed:
        assert parse_time(typed.strip()) == ts


@pytest.mark.parametrize("typed", ["nan", "inf", "", "25:00", "2023-13-01"])
def test_go_to_refuses_what_names_no_time(typed: str) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        fmt.parse_utc_time(typed, 1_700_000_000.0)


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain", "plain"), ("[red]x[/red]", "[red]x[/red]"), ("two\nlines", "two\\nlines"),
    ("tab\there", "tab\\there"), ("esc\x1b[2J", "esc\\x1b[2J"),
    (b"caf\xe9".decode("utf-8", "surrogateescape"), "caf\\xe9"), ("with space", "with space"),
])
def test_printable_makes_control_characters_visible(raw: str, shown: str) -> None:
    assert fmt.printable(raw) == shown


def test_fit_columns_keeps_the_original_monitors_columns_at_80() -> None:
    keys = [c.key for c in fit_columns(79)]
    assert keys == ["pid", "name", "rss", "virt", "mmap", "munmap", "growth"]
    assert [c.key for c in fit_columns(10_000)] == [c.key for c in COLUMNS]
    assert [c.key for c in fit_columns(5)] == ["pid", "name"]


def test_header_label_marks_the_sorted_column_and_keeps_its_unit() -> None:
    for spec in ALL_COLUMNS:
        for descending in (True, False):
            for human in (True, False):
                label = header_label(spec, spec.sort or "", descending, human)
                assert len(label.plain) <= spec.width + ARROW_ROOM  # the arrow may take the padding
                assert spec.label in label.plain  # never cut: "MUNMAP#" keeps its "#"
                assert len(header_label(spec, "", descending, human).plain) <= spec.width
    rss = next(c for c in COLUMNS if c.key == "rss")
    assert header_label(rss, "rss", True, False).plain == "▼RSS(KB)"
    assert header_label(rss, "pid", True, True).plain == "RSS"
    munmap = next(c for c in COLUMNS if c.key == "munmap")
    assert header_label(munmap, "munmap", True, False).plain == "▼MUNMAP#"
    peak = next(c for c in COLUMNS if c.key == "peak")
    assert header_label(peak, "peak", False, False).plain == "▲PEAK(KB)"


def test_the_header_shows_what_memwatch_costs() -> None:
    from dataclasses import replace

    from frames import make_frames
    from memwatch.ui.widgets.header import own_cost, tracer_line

    frame = make_frames(3)[-1]
    assert own_cost(frame) == ""
    live = replace(frame, self_cpu_percent=1.25, replay_position=None,
                   tracer=replace(frame.tracer, kernel_cpu_percent=0.4, ns_per_call=351.6))
    assert own_cost(live) == "memwatch 1.2% CPU, +0.40% in kernel, 352 ns/call"
    assert tracer_line(live, 3.0, False).plain.endswith("memwatch 1.2% CPU, +0.40% in kernel, 352 ns/call")


def test_one_formatter_for_kb_and_bytes_figures() -> None:
    # a zero reads the same whether the figure counts bytes or KB
    assert fmt.size_bytes(0, True) == fmt.size_kb(0, True) == "0 KiB"
    assert fmt.human_bytes(512) == "512 B"
    # KB mode: the same KB for a bytes figure as for a KB one, with the unit when asked for
    assert fmt.size_bytes(226_492_416, False, unit=True) == "221184 KB"
    assert fmt.size_kb(221_184, False, unit=True) == "221184 KB"
    assert fmt.size_bytes(226_492_416, True, unit=True) == fmt.size_kb(221_184, True) == "216 MiB"
    assert fmt.size_bytes(-100, False) == "0"  # toward zero, not -1
    assert fmt.size_bytes(-4096, False) == "-4"


def test_a_rate_follows_the_units_too() -> None:
    assert fmt.rate_kb_s(682.7, False) == "+682.7 KB/s"
    assert fmt.rate_kb_s(682.7, True) == "+682.7 KiB/s"
    assert fmt.rate_kb_s(0.3, True) == "+0.3 KiB/s"
    assert fmt.rate_kb_s(-10.7, True) == "-10.7 KiB/s"
    assert fmt.rate_kb_s(2048.0, True) == "+2.00 MiB/s"
