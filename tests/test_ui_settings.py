"""Settings that stick, through Pilot: what the user changes in the dashboard is written to the
settings file, a new dashboard starts with it, and a file that cannot be used is said, not lost."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from frames import make_frames
from memwatch import cli
from memwatch.fields import DEFAULT_COLUMNS
from memwatch.settings import Settings, SettingsFile, read, write
from memwatch.sources.replay import ReplaySource
from memwatch.ui.app import MemwatchApp, theme_names
from memwatch.ui.screens.column_chooser import ColumnChooser
from test_ui_support import ScriptedSource

SIZE = (200, 50)


def settings_at(path: Path) -> SettingsFile:
    return SettingsFile(path, themes=theme_names())


def app_from(path: Path, argv: list[str] = (), source: object = None) -> MemwatchApp:  # type: ignore[assignment]
    """The app the command line would start with this settings file and these flags."""
    args = cli.build_parser().parse_args([*argv, "--config", str(path)])
    settings = settings_at(path)
    kw = cli.dashboard_options(args, settings.settings)  # args.interval: flag, file or default
    live = ScriptedSource(make_frames()[1], interval_s=args.interval)
    return MemwatchApp(source or live, settings=settings, **kw)  # type: ignore[arg-type]


async def test_changes_in_the_dashboard_are_written_and_the_next_one_starts_with_them(tmp_path: Path) -> None:
    path = tmp_path / "memwatch" / "config.toml"
    app = app_from(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not path.exists()  # nothing changed yet, nothing written
        await pilot.press("P", "u", "plus")  # sort by PID (low first), KiB/MiB, a shorter interval
        await pilot.press("c")
        await pilot.pause()
        chooser = app.screen
        assert isinstance(chooser, ColumnChooser)
        chooser.entries.highlighted = chooser.entries.get_option_index("threads")
        await pilot.press("space", "left_square_bracket", "escape")
        await pilot.pause(0.8)  # the write comes shortly after the last change
        written = tomllib.loads(path.read_text())
        interval = app.interval_s
    columns = (*DEFAULT_COLUMNS[:-1], "threads", DEFAULT_COLUMNS[-1])
    assert written == {"sort": "pid", "descending": False, "units": "human", "interval": interval,
                       "columns": list(columns)}
    assert interval < 3.0

    again = app_from(path)
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        view = again.view
        assert (view.sort, view.descending, view.human, view.columns) == ("pid", False, True, columns)
        assert again.dashboard.table.visible_columns == columns
        assert again.interval_s == interval
        assert "▲" in again.dashboard.table.header_text("pid").plain


async def test_flags_win_for_the_run_and_are_not_written_back(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write(path, Settings(sort="pid", descending=False, theme="nord", columns=("pid", "name", "rss")))
    app = app_from(path, ["--sort", "rss", "--theme", "dracula"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.view.sort == "rss" and app.view.descending is True and app.theme == "dracula"
        assert app.view.columns == ("pid", "name", "rss")  # no flag for them: the file's
        await pilot.press("u")
        await pilot.pause()
    # what the user changed is kept; the flags of this run are not
    assert read(path) == Settings(sort="pid", descending=False, theme="nord", columns=("pid", "name", "rss"),
                                  human=True)


async def test_a_theme_chosen_in_the_dashboard_sticks(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    app = app_from(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.theme = "nord"  # as the palette's "Change theme" does
        await pilot.pause()
    assert read(path) == Settings(theme="nord")
    again = app_from(path)
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.theme == "nord"


async def test_a_broken_file_is_said_and_never_written_over(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('sort = "pid"\nunits = 3\n')
    app = app_from(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("units must be" in m and "Using the defaults; the file is left as it is" in m for m in messages)
        assert app.view.sort == "rss"  # the defaults, not half the file
        await pilot.press("P", "u")
        await pilot.pause(0.8)
        unsaved = [n for n in app._notifications if n.title == "Settings not saved"]
        assert len(unsaved) == 1 and "not saved, so as not to write over it" in unsaved[0].message
        await pilot.press("N")
        await pilot.pause(0.8)
        assert len([n for n in app._notifications if n.title == "Settings not saved"]) == 1  # said once
    assert path.read_text() == 'sort = "pid"\nunits = 3\n'


async def test_pace_of_a_replay_is_not_an_interval_to_keep(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    app = app_from(path, ["--replay", "unused"], source=ReplaySource(make_frames()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("plus", "u")
        await pilot.pause(0.8)
    assert read(path) == Settings(human=True)


async def test_an_app_without_a_settings_file_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("P", "u")
        await pilot.pause(0.8)
    assert list(tmp_path.iterdir()) == []
