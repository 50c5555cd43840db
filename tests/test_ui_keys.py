"""The key list (memwatch.ui.keys) is the one source: every binding, the help screen, the command
palette and README.md's key table agree with it."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.binding import Binding
from textual.dom import DOMNode

sys.path.insert(0, str(Path(__file__).parent))

from frames import make_frames
from memwatch.sources.replay import ReplaySource
from memwatch.ui import keys
from memwatch.ui.app import MemwatchApp
from memwatch.ui.screens.column_chooser import ColumnChooser
from memwatch.ui.screens.dashboard import DashboardScreen
from memwatch.ui.screens.detail_screen import DetailScreen
from memwatch.ui.screens.events_screen import EventsScreen
from memwatch.ui.screens.help_screen import HelpScreen, help_text
from memwatch.ui.screens.signal_modal import SignalModal
from memwatch.ui.widgets.event_list import EventList
from memwatch.ui.widgets.process_table import ProcessTable
from memwatch.ui.widgets.prompt import Prompt
from test_ui_support import ScriptedSource

README = Path(__file__).resolve().parent.parent / "README.md"
SIZE = (200, 50)

# Who holds which rooms. A room listed here that the key list does not have, or the other way
# round, fails below; so does a class whose BINDINGS are not exactly its rooms' keys.
HOLDERS: dict[type[DOMNode], tuple[keys.Room, ...]] = {
    MemwatchApp: ("app",),
    DashboardScreen: ("dashboard", "shared", "replay"),
    DetailScreen: ("detail", "shared"),
    EventsScreen: ("events", "shared"),
    EventList: ("event_table",),
    HelpScreen: ("help",),
    SignalModal: ("signal",),
    ColumnChooser: ("columns",),
    ProcessTable: ("table",),
    Prompt: ("prompt",),
}


def as_tuple(binding: Any) -> tuple[object, ...]:
    assert isinstance(binding, Binding)
    return binding.key, binding.action, binding.description, binding.show, binding.priority


def test_every_room_is_held_once_and_every_key_is_bound() -> None:
    held = [room for rooms in HOLDERS.values() for room in rooms if room != "shared"]
    assert len(held) == len(set(held)), "a room held by two classes"
    listed = {row.room for row in keys.KEY_ROWS}
    assert listed == {room for rooms in HOLDERS.values() for room in rooms}


@pytest.mark.parametrize("holder", list(HOLDERS), ids=lambda c: c.__name__)
def test_bindings_are_the_key_lists(holder: type[DOMNode]) -> None:
    """A class's own BINDINGS (not what Textual adds) are exactly its rooms' keys, nothing else."""
    own = holder.__dict__["BINDINGS"]
    expected = [k for room in HOLDERS[holder] for k in keys.keys_of(room)]
    assert sorted(map(as_tuple, own)) == sorted(as_tuple(k.binding()) for k in expected)
    if hasattr(holder, "ROOMS"):
        assert set(holder.ROOMS) == set(HOLDERS[holder])


@pytest.mark.parametrize("holder", list(HOLDERS), ids=lambda c: c.__name__)
def test_every_action_exists(holder: type[DOMNode]) -> None:
    """No key names an action that nothing carries out (a typo would do nothing, silently)."""
    for room in HOLDERS[holder]:
        for key in keys.keys_of(room):
            namespace, _, action = key.action.rpartition(".")
            target = MemwatchApp if namespace == "app" else holder
            name = action.split("(")[0]
            assert callable(getattr(target, f"action_{name}", None)), f"{key.keys}: no action_{name} on {target}"


def test_the_dashboard_footer_keeps_its_order() -> None:
    shown = [k.title for k in keys.keys_of(*HOLDERS[DashboardScreen]) if k.show]
    assert shown == ["Quit", "Pause", "Filter", "Sort", "View", "Units", "Signal", "Events", "Help"]


def test_the_palette_key_is_textuals() -> None:
    assert MemwatchApp.COMMAND_PALETTE_BINDING == keys.PALETTE_KEY


def test_the_help_screen_lists_every_documented_row() -> None:
    text = help_text().plain
    rows = keys.documented()
    for row in rows:
        assert row.what in text
        assert keys.row_label(row) in text
    assert text.count("\n") >= len(rows)
    assert {row.room for row in rows} == set(keys.DOCUMENTED)


def test_readme_key_table_is_the_key_lists() -> None:
    readme = README.read_text()
    section = readme[readme.index("## The dashboard"):]
    match = re.search(r"^\| keys \| \|\n(?:\|.*\n)+", section, re.MULTILINE)
    assert match, "README.md: no key table under 'The dashboard'"
    assert match.group(0) == keys.markdown_table(), (
        "README.md's key table differs from the key list; paste the output of "
        "`python -m memwatch.ui.keys` in its place")


def test_key_names_read_as_on_the_keyboard() -> None:
    assert [keys.key_name(k) for k in ("slash", "ctrl+c", "ctrl+home", "question_mark", "M", "pageup")] == [
        "/", "Ctrl+C", "Ctrl+Home", "?", "M", "PgUp"]


async def _palette_titles(app: MemwatchApp) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


async def test_the_palette_offers_the_keys_of_the_screen_once_each() -> None:
    app = MemwatchApp(ReplaySource(make_frames()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = await _palette_titles(app)
        assert len(titles) == len(set(titles)), f"listed twice: {sorted(t for t in titles if titles.count(t) > 1)}"
        assert "Keys" not in titles and "Help" in titles  # Textual's key panel gives way to our Help
        for key in keys.palette_keys(HOLDERS[DashboardScreen]):
            assert key.title in titles
        assert "Sort by RSS" in titles and "Quit" in titles
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, EventsScreen)
        on_events = await _palette_titles(app)
        assert "Sort by RSS" not in on_events and "Signal" not in on_events  # the dashboard's, not here
        helps = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert helps["Filter"] == "Events by name, pid, kind or signal"  # the events screen's own filter
        assert {"Pause", "Units", "Help"} <= set(on_events)


async def test_a_palette_command_runs_its_key_action() -> None:
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = {c.title: c for c in app.get_system_commands(app.screen)}
        assert "Back" not in titles  # replay keys only on a recording
        await titles["Units"].callback()  # the palette awaits what a command returns, as here
        await titles["Sort by PID"].callback()
        await pilot.pause()
        assert app.view.human is True
        assert app.view.sort == "pid"
