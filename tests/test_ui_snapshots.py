"""Pictures of the dashboard (pytest-textual-snapshot), fed by fixed replay frames.

Baselines live in the top-level ``snapshots/`` directory: pytest-textual-snapshot always stores
beside the test (``tests/__snapshots__``) through its SVGImageExtension, so this module swaps in a
subclass whose ``dirname`` points at ``snapshots/<module>/``. Regenerate with ``--snapshot-update``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_textual_snapshot
from syrupy.location import PyTestLocation

sys.path.insert(0, str(Path(__file__).parent))

from frames import make_frames
from memwatch.sources.replay import ReplaySource
from memwatch.ui.app import MemwatchApp

SNAPSHOT_ROOT = Path(__file__).resolve().parent.parent / "snapshots"
THEME = "textual-dark"


class TopLevelSVGExtension(pytest_textual_snapshot.SVGImageExtension):
    """Same SVG handling, stored under the repository's snapshots/ directory."""

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(SNAPSHOT_ROOT / test_location.basename)


@pytest.fixture(autouse=True)
def _snapshots_at_top_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", TopLevelSVGExtension)


async def _at_last_frame(pilot: Any) -> None:
    """Jump to the last frame (which pauses playback) so the picture never depends on timing."""
    await pilot.pause()
    await pilot.press("right_square_bracket")
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def _app(degraded: bool = False) -> MemwatchApp:
    return MemwatchApp(ReplaySource(make_frames(degraded=degraded)), theme=THEME)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 50)], ids=["80x24", "120x40", "200x50"])
def test_dashboard(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_app(), terminal_size=size, run_before=_at_last_frame)


def test_degraded_banner(snap_compare: Any) -> None:
    assert snap_compare(_app(degraded=True), terminal_size=(120, 40), run_before=_at_last_frame)


def test_human_units_and_name_sort(snap_compare: Any) -> None:
    async def run_before(pilot: Any) -> None:
        await _at_last_frame(pilot)
        await pilot.press("u", "N", "down", "down")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=(120, 40), run_before=run_before)


def test_events_screen(snap_compare: Any) -> None:
    async def run_before(pilot: Any) -> None:
        await _at_last_frame(pilot)
        await pilot.press("e")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=(120, 30), run_before=run_before)


def test_too_small(snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=(40, 12), run_before=_at_last_frame)


def test_column_chooser(snap_compare: Any) -> None:
    """eBPF off: the kernel figures are marked; THR shown and moved before GROWTH."""
    async def run_before(pilot: Any) -> None:
        await _at_last_frame(pilot)
        await pilot.press("c")
        await pilot.pause()
        for _ in range(29):  # down to THR, the first lines of the hidden part
            await pilot.press("down")
        await pilot.press("space", "left_square_bracket", "left_square_bracket")
        await pilot.pause()

    assert snap_compare(_app(degraded=True), terminal_size=(120, 40), run_before=run_before)


GROUP_VIEWS = {
    "tree-collapsed": (("2", "down", "down", "down", "left"), (120, 40)),  # sshd's children hidden
    "tree": (("2",), (200, 50)),
    "cgroups": (("3", "down", "down"), (160, 30)),
    "cgroups-80x24": (("3",), (80, 24)),
}


@pytest.mark.parametrize("view", list(GROUP_VIEWS))
def test_group_views(snap_compare: Any, view: str) -> None:
    presses, size = GROUP_VIEWS[view]

    async def run_before(pilot: Any) -> None:
        await _at_last_frame(pilot)
        await pilot.press(*presses)
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=size, run_before=run_before)


def test_small_terminal_sorted_by_a_full_width_label(snap_compare: Any) -> None:
    """80x24 sorted by MUNMAP#: the arrow takes the padding, the label keeps its "#"; the header
    keeps avail and the clock, the footer shows whole hints with help."""

    async def run_before(pilot: Any) -> None:
        await _at_last_frame(pilot)
        pilot.app.view = pilot.app.view.sorted_by("munmap")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=run_before)


def _process_tab_app() -> tuple[MemwatchApp, Any]:
    from frames import LEAKY_PID
    from inspect_fixtures import InspectingScripted

    frame = make_frames()[2]
    key = next(v.key for v in frame.processes if v.pid == LEAKY_PID)
    return MemwatchApp(InspectingScripted(frame), theme=THEME), key


def _on_tab(key: Any, tab: str, *presses: str) -> Any:
    """The process screen of ``key`` on ``tab``, once its fixture data is drawn."""
    from memwatch.ui.screens.detail_screen import DetailScreen
    from test_ui_support import until

    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        await pilot.app.push_screen(DetailScreen(key, tab=tab))
        widget = "#map-table" if tab == "map" else "#sites-tree"
        await until(pilot, lambda: bool(pilot.app.screen.query_one(widget).display), f"the {tab} tab drawn")
        await pilot.press(*presses)
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    return run_before


def test_memory_map_tab(snap_compare: Any) -> None:
    app, key = _process_tab_app()
    assert snap_compare(app, terminal_size=(150, 36), run_before=_on_tab(key, "map"))


def test_allocation_sites_tab(snap_compare: Any) -> None:
    app, key = _process_tab_app()
    assert snap_compare(app, terminal_size=(150, 30), run_before=_on_tab(key, "sites", "enter"))


def test_exited_detail(snap_compare: Any) -> None:
    """The pane on short-job, which exited after frame 2: its last figures under how it ended."""

    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        await pilot.press("left_square_bracket", "full_stop", "full_stop")  # frame 2, paused
        await pilot.pause()
        table = pilot.app.dashboard.table
        while table.current_key != "5678:80000":
            await pilot.press("down")
        await pilot.pause()
        await pilot.press("full_stop")  # frame 3: short-job has exited
        pilot.app.clear_notifications()  # an OOM toast if playback had reached the last frame first
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=(200, 50), run_before=run_before)
