"""The dashboard's settings file (memwatch.settings) on a real file system: where it is, round trips,
files that cannot be used (each a sentence, never written over), atomic writes, and how the
command line's flags win over it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from memwatch import cli
from memwatch.fields import DEFAULT_COLUMNS
from memwatch.settings import HEADER, Settings, SettingsError, SettingsFile, default_path, read, write

THEMES = ("textual-dark", "nord", "dracula")
FULL = Settings(columns=("pid", "name", "pss", "threads"), sort="pid", descending=True, human=True,
                interval=5.0, theme="nord")


def test_the_default_place_follows_xdg_config_home(tmp_path: Path) -> None:
    assert default_path({"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/home/x"}) == (
        tmp_path / "memwatch" / "config.toml")
    assert default_path({"HOME": "/home/x"}) == Path("/home/x/.config/memwatch/config.toml")
    # the XDG spec: a relative path in the variable is invalid and ignored
    assert default_path({"XDG_CONFIG_HOME": "rel/dir", "HOME": "/home/x"}) == (
        Path("/home/x/.config/memwatch/config.toml"))
    assert default_path({"XDG_CONFIG_HOME": "", "HOME": "/home/x"}) == Path("/home/x/.config/memwatch/config.toml")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "config.toml"  # directories made as needed
    write(path, FULL)
    assert read(path, THEMES) == FULL
    text = path.read_text()
    assert text.startswith(HEADER)
    assert tomllib.loads(text) == {"columns": ["pid", "name", "pss", "threads"], "sort": "pid",
                                   "descending": True, "units": "human", "interval": 5.0, "theme": "nord"}
    write(path, Settings(human=False))
    assert read(path) == Settings(human=False) and 'units = "kb"' in path.read_text()
    assert read(tmp_path / "absent.toml") == Settings()  # no file yet: nothing set, no problem


def test_a_write_is_atomic_follows_a_link_and_keeps_the_mode(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "memwatch.toml"
    write(real, Settings(sort="rss"))
    os.chmod(real, 0o600)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    before = os.stat(real).st_ino
    write(link, FULL)
    assert link.is_symlink() and read(real, THEMES) == FULL
    assert os.stat(real).st_ino != before  # a new file renamed over the old one, not rewritten in place
    assert os.stat(real).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["memwatch.toml"]  # no temporary left behind


BROKEN = {
    "not TOML": (b"columns = [pid, name\n", "is not valid TOML"),
    "not UTF-8": (b'theme = "caf\xe9"\n', "is not UTF-8"),
    "columns not a list": (b'columns = "pid"\n', "columns must be a list"),
    "a column not a name": (b"columns = [1, 2]\n", "columns must be a list"),
    "unknown column": (b'columns = ["pid", "bogus"]\n', "unknown column 'bogus'"),
    "no columns": (b"columns = []\n", "at least one"),
    "a column twice": (b'columns = ["pid", "pid"]\n', "listed twice"),
    "unknown sort": (b'sort = "size"\n', "unknown sort 'size'"),
    "sort by the trend": (b'sort = "trend"\n', "unknown sort 'trend'"),
    "descending a string": (b'descending = "yes"\n', "true or false"),
    "unknown units": (b'units = "MB"\n', "units must be"),
    "interval a string": (b'interval = "fast"\n', "interval must be a number"),
    "interval true": (b"interval = true\n", "interval must be a number"),
    "interval nan": (b"interval = nan\n", "interval must be a number"),
    "interval too short": (b"interval = 0.05\n", "interval must be from 0.2"),
    "unknown theme": (b'theme = "solarized-ugly"\n', "unknown theme 'solarized-ugly'; choose one of dracula"),
    "unknown setting": (b'colour = "red"\n', "unknown setting 'colour'"),
    "a table where a value goes": (b"[sort]\nkey = 1\n", "unknown sort"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_file_is_one_sentence_the_defaults_and_left_alone(tmp_path: Path, name: str) -> None:
    content, message = BROKEN[name]
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(SettingsError, match=r"settings file .*config\.toml: ") as caught:
        read(path, THEMES)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    settings = SettingsFile(path, THEMES)
    assert settings.settings == Settings() and settings.problem == str(caught.value)
    with pytest.raises(SettingsError, match="not saved, so as not to write over it"):
        settings.update(Settings(sort="pid"))
    assert path.read_bytes() == content


def test_a_directory_is_not_a_settings_file(tmp_path: Path) -> None:
    settings = SettingsFile(tmp_path, THEMES)
    assert settings.problem is not None and "is a directory" in settings.problem


def test_a_file_the_user_cannot_read(tmp_path: Path) -> None:
    """As another user (root reads every file, so the check runs as nobody)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    path = tmp_path / "config.toml"
    path.write_text('sort = "pid"\n')
    os.chmod(path, 0o600)
    os.chmod(tmp_path, 0o755)
    code = ("import sys; from pathlib import Path; from memwatch.settings import SettingsFile; "
            "s = SettingsFile(Path(sys.argv[1])); print(s.problem)")
    src = str(Path(__file__).resolve().parent.parent / "src")
    res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                          code, str(path)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": src},
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"settings file {path}: cannot be read: permission denied"


def test_an_update_changes_only_what_changed_and_keeps_anothers_edit(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    settings = SettingsFile(path, THEMES)
    assert settings.problem is None and not path.exists()
    settings.update(Settings(sort="pid", descending=False))
    assert read(path) == Settings(sort="pid", descending=False)
    write(path, read(path).merged(Settings(theme="dracula")))  # another dashboard, or an editor
    settings.update(Settings(human=True))
    assert read(path, THEMES) == Settings(sort="pid", descending=False, human=True, theme="dracula")


def test_a_file_broken_since_the_start_is_not_written_over(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    settings = SettingsFile(path, THEMES)
    path.write_text("sort = \n")
    with pytest.raises(SettingsError, match=r"is not valid TOML.*not saved"):
        settings.update(Settings(sort="pid"))
    assert path.read_text() == "sort = \n"


UNWRITABLE = Path("/proc/self/memwatch/config.toml")
"""Absent, so nothing set; and no one, root included, can make a directory there."""


def test_a_file_that_cannot_be_written_is_a_sentence() -> None:
    settings = SettingsFile(UNWRITABLE, THEMES)
    assert settings.problem is None
    with pytest.raises(SettingsError, match=f"settings file {UNWRITABLE}: cannot be written: "):
        settings.update(Settings(sort="pid"))


def test_a_file_whose_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    settings = SettingsFile(tmp_path / "file" / "config.toml", THEMES)
    assert settings.problem == f"settings file {tmp_path}/file/config.toml: cannot be read: Not a directory"


# ----- the command line: flags win over the file -----------------------------------------------------


def options(argv: list[str], saved: Settings) -> tuple[dict[str, object], float]:
    args = cli.build_parser().parse_args(argv)
    kw = cli.dashboard_options(args, saved)
    return kw, args.interval


def test_without_a_file_the_defaults() -> None:
    kw, interval = options([], Settings())
    assert kw == {"top": None, "pids": (), "sort": "rss", "descending": None, "columns": DEFAULT_COLUMNS,
                  "human": False}
    assert interval == cli.DEFAULT_INTERVAL_S


def test_the_file_then_the_flags_win() -> None:
    kw, interval = options([], FULL)
    assert kw["sort"] == "pid" and kw["descending"] is True and kw["columns"] == FULL.columns
    assert kw["human"] is True and kw["theme"] == "nord" and interval == 5.0
    kw, interval = options(["--sort", "rss", "--theme", "dracula", "--interval", "1"], FULL)
    assert kw["sort"] == "rss" and kw["theme"] == "dracula" and interval == 1.0
    assert kw["descending"] is None  # the saved direction was PID's, not RSS's: RSS's own
    assert kw["columns"] == FULL.columns and kw["human"] is True  # no flag for these: the file's


def test_the_cli_says_a_broken_file_once_and_starts_with_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from memwatch.ui import app as app_module

    path = tmp_path / "config.toml"
    path.write_text('sort = "pid"\ncolumns = ["pid", "nope"]\n')
    seen: list[dict[str, object]] = []
    monkeypatch.setattr(app_module, "run_dashboard", lambda source, **kw: seen.append(kw) or 0)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(cli, "_live_source", lambda args, **_: object())
    assert cli.main(["--config", str(path)]) == 0
    err = capsys.readouterr().err
    assert err == (f"memwatch: settings file {path}: unknown column 'nope'; choose among "
                   f"{', '.join(__import__('memwatch.fields').fields.BY_KEY)}; using the defaults, and the file is "
                   "left as it is\n")
    assert seen[0]["sort"] == "rss" and seen[0]["columns"] == DEFAULT_COLUMNS
    settings = seen[0]["settings"]
    assert isinstance(settings, SettingsFile) and settings.path == path and settings.problem is not None


def test_the_dashboard_reads_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memwatch.ui import app as app_module

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    write(tmp_path / "memwatch" / "config.toml", Settings(sort="name", theme="nord"))
    seen: list[dict[str, object]] = []
    monkeypatch.setattr(app_module, "run_dashboard", lambda source, **kw: seen.append(kw) or 0)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(cli, "_live_source", lambda args, **_: object())
    assert cli.main([]) == 0
    assert seen[0]["sort"] == "name" and seen[0]["theme"] == "nord"


def test_once_does_not_take_a_config() -> None:
    res = subprocess.run([sys.executable, "-m", "memwatch", "--once", "--config", "x.toml"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "--config is the dashboard's settings file" in res.stderr
    assert "Traceback" not in res.stderr


def test_the_readmes_example_is_a_settings_file_memwatch_takes(tmp_path: Path) -> None:
    from memwatch.ui.app import theme_names

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "config.toml"
    path.write_text(example)
    settings = read(path, theme_names())
    assert settings.columns and settings.sort and settings.human is not None and settings.interval
    assert settings.theme in theme_names()


def test_a_new_file_has_the_mode_the_umask_gives(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write(tmp_path / "config.toml", Settings(sort="pid"))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "config.toml").st_mode & 0o777 == 0o640
