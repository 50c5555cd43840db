"""CSV as spreadsheets and scripts read it: true/false, floats at the precision of their unit
(fields.CSV_DECIMALS), unknown empty, text escaped; the processes' and the groups' CSV alike."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from frames import make_frames
from memwatch.fields import CSV_DECIMALS, JSON_FIELDS, Unit, csv_text
from memwatch.headless import render_csv, render_groups
from memwatch.serialize import HEADLESS_COLUMNS

MEMWATCH = [sys.executable, "-m", "memwatch"]
NUMBER = {0: r"-?\d+", 1: r"-?\d+\.\d", 2: r"-?\d+\.\d\d"}


@pytest.mark.parametrize(("value", "decimals", "text"), [
    (True, None, "true"), (False, None, "false"), (None, None, ""), (None, 1, ""),
    (0.1 + 0.2, None, "0.30"), (1234.5678, 1, "1234.6"), (-0.04, 1, "0.0"), (-0.06, 1, "-0.1"),
    (1796187566.8812345, 2, "1796187566.88"), (5, 1, "5"), (0, None, "0"),
    ("a\x1b[31mb,c", None, "a\\x1b[31mb,c"),
])
def test_a_cell(value: object, decimals: int | None, text: str) -> None:
    assert csv_text(value, decimals) == text  # type: ignore[arg-type]


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def check_row(row: dict[str, str]) -> None:
    """Every cell as its field's unit says: booleans true/false, floats at their precision."""
    for f in JSON_FIELDS:
        assert f.json is not None
        cell = row[f.json]
        if cell == "":
            continue
        if f.unit is Unit.FLAG:
            assert cell in ("true", "false"), (f.json, cell)
        elif f.unit in CSV_DECIMALS:
            assert re.fullmatch(NUMBER[CSV_DECIMALS[f.unit]], cell), (f.json, cell)
        elif f.unit is not Unit.TEXT:
            assert re.fullmatch(NUMBER[0], cell), (f.json, cell)


def test_the_processes_csv_formats_by_unit() -> None:
    frame = make_frames()[3]
    views = list(frame.processes)
    rows = rows_of(render_csv(views))
    assert tuple(rows[0]) == HEADLESS_COLUMNS
    for row, view in zip(rows, views, strict=True):
        check_row(row)
        assert row["leak_suspect"] == ("true" if view.leak_suspect else "false")
        if view.growth_kb_s is not None:
            assert row["growth_kb_s"] == f"{view.growth_kb_s:.1f}".replace("-0.0", "0.0")
        assert row["start_time"] == f"{view.sample.start_time:.2f}"
    flags = {row["leak_suspect"] for row in rows} | {row["outstanding_complete"] for row in rows}
    assert {"true", "false"} <= flags  # the frames have both, so both spellings were checked
    assert any(re.fullmatch(r"-?\d+\.\d", row["growth_kb_s"]) for row in rows)


def test_a_process_without_ebpf_has_empty_kernel_cells_not_false() -> None:
    rows = rows_of(render_csv(list(make_frames(degraded=True)[3].processes)))
    assert all(row["outstanding_complete"] == "" and row["mmap_count"] == "" for row in rows)
    assert all(row["leak_suspect"] in ("true", "false") for row in rows)


@pytest.mark.parametrize("group", ["tree", "cgroup", "user"])
def test_the_groups_csv_rounds_growth_as_the_processes(group: str) -> None:
    rows = rows_of(render_groups(make_frames()[3], group, "csv", top=0, sort=None))
    assert rows
    key = "subtree_growth_kb_s" if group == "tree" else "growth_kb_s"
    assert any(row[key] for row in rows)
    for row in rows:
        assert row[key] == "" or re.fullmatch(NUMBER[1], row[key]), row[key]
        assert not any(cell in ("True", "False") for cell in row.values())


def test_a_real_run_writes_no_python_spellings() -> None:
    res = subprocess.run([*MEMWATCH, "--once", "--csv", "--no-bpf", "--duration", "1", "--top", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = rows_of(res.stdout)
    assert len(rows) > 1
    for row in rows:
        check_row(row)
