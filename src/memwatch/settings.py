"""The dashboard's settings that stick: columns, sort and direction, units, interval and theme.

They live in a small TOML file, ``$XDG_CONFIG_HOME/memwatch/config.toml`` (``~/.config/...`` when
the variable is unset or not an absolute path, as the XDG spec says), or the file ``--config``
names. The dashboard writes it when the user changes one of them; the command line's flags win
over it for that run and are not written back. ``--once``, ``record`` and ``serve`` never read
it, so scripts do not change with what someone chose on screen.

A file that cannot be used (not TOML, a wrong type, an unknown column, sort or theme, unreadable)
gives one sentence, the defaults, and is never written over: the user's file stays as they left
it until they fix or remove it. Reading uses :mod:`tomllib`; writing uses ``tomli-w`` and an
atomic replace (a temporary file in the same directory, then ``rename``), so a crash or a second
dashboard never leaves half a file.

No Textual here: the theme names are handed in by whoever knows them.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import threading
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from memwatch.fields import BY_KEY, SORT_KEYS

MIN_INTERVAL_S = 0.2
MAX_INTERVAL_S = 365 * 24 * 3600.0
UNITS = ("kb", "human")
HEADER = ("# memwatch dashboard settings. memwatch rewrites this file when you change these in the\n"
          "# dashboard (comments are not kept); command-line flags win over it. Delete it for the defaults.\n")


class SettingsError(Exception):
    """A settings file that cannot be used or written; ``str()`` is one sentence for the user."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What a settings file says; None: not set there (the default, or a flag, decides)."""

    columns: tuple[str, ...] | None = None
    sort: str | None = None
    descending: bool | None = None
    """The sort's direction; None: the sort field's own (see fields.Field.descending)."""
    human: bool | None = None
    """Units: KiB/MiB/GiB (``units = "human"``) or KB (``units = "kb"``)."""
    interval: float | None = None
    theme: str | None = None

    def merged(self, other: Settings) -> Settings:
        """These settings with every value ``other`` sets taken from it."""
        return replace(self, **{f.name: getattr(other, f.name) for f in fields(other)
                                if getattr(other, f.name) is not None})


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/memwatch/config.toml``, or ``~/.config/memwatch/config.toml``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "memwatch" / "config.toml"


def _problem(path: Path, what: str) -> SettingsError:
    return SettingsError(f"settings file {path}: {what}")


def _names(value: object, path: Path, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _problem(path, f"{key} must be a list of names, like [\"pid\", \"name\", \"rss\"]")
    return value


def from_table(table: Mapping[str, Any], path: Path, themes: Collection[str] | None = None) -> Settings:
    """Settings from a parsed TOML table; a SettingsError names the first thing wrong."""
    known = {"columns", "sort", "descending", "units", "interval", "theme"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise _problem(path, f"unknown setting {unknown[0]!r}; the settings are {', '.join(sorted(known))}")
    columns = sort = theme = None
    descending = human = None
    interval = None
    if "columns" in table:
        names = _names(table["columns"], path, "columns")
        bad = [n for n in names if n not in BY_KEY]
        if bad:
            raise _problem(path, f"unknown column {bad[0]!r}; choose among {', '.join(BY_KEY)}")
        if not names:
            raise _problem(path, "columns is empty; the table needs at least one")
        if len(set(names)) != len(names):
            raise _problem(path, f"column {next(n for n in names if names.count(n) > 1)!r} is listed twice")
        columns = tuple(names)
    if "sort" in table:
        sort = table["sort"]
        if not isinstance(sort, str) or sort not in SORT_KEYS:
            raise _problem(path, f"unknown sort {sort!r}; choose one of {', '.join(SORT_KEYS)}")
    if "descending" in table:
        descending = table["descending"]
        if not isinstance(descending, bool):
            raise _problem(path, f"descending must be true or false, not {descending!r}")
    if "units" in table:
        units = table["units"]
        if units not in UNITS:
            raise _problem(path, f"units must be \"kb\" or \"human\", not {units!r}")
        human = units == "human"
    if "interval" in table:
        value = table["interval"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _problem(path, f"interval must be a number of seconds, not {value!r}")
        if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
            raise _problem(path, f"interval must be from {MIN_INTERVAL_S} to {MAX_INTERVAL_S:.0f} seconds, "
                                 f"not {value}")
        interval = float(value)
    if "theme" in table:
        theme = table["theme"]
        if not isinstance(theme, str) or (themes is not None and theme not in themes):
            listed = f"; choose one of {', '.join(sorted(themes))}" if themes is not None else ""
            raise _problem(path, f"unknown theme {theme!r}{listed}")
    return Settings(columns, sort, descending, human, interval, theme)


def to_table(settings: Settings) -> dict[str, Any]:
    """The TOML table of ``settings``: only what is set."""
    table: dict[str, Any] = {}
    if settings.columns is not None:
        table["columns"] = list(settings.columns)
    if settings.sort is not None:
        table["sort"] = settings.sort
    if settings.descending is not None:
        table["descending"] = settings.descending
    if settings.human is not None:
        table["units"] = "human" if settings.human else "kb"
    if settings.interval is not None:
        table["interval"] = settings.interval
    if settings.theme is not None:
        table["theme"] = settings.theme
    return table


def read(path: Path, themes: Collection[str] | None = None) -> Settings:
    """The settings in ``path``; an absent file is empty settings. Anything else that keeps the
    file from being used is a SettingsError with one sentence."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Settings()
    except IsADirectoryError:
        raise _problem(path, "is a directory, not a file") from None
    except PermissionError:
        raise _problem(path, "cannot be read: permission denied") from None
    except OSError as error:
        raise _problem(path, f"cannot be read: {error.strerror or error}") from None
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _problem(path, "is not UTF-8 text, so not TOML") from None
    except tomllib.TOMLDecodeError as error:
        raise _problem(path, f"is not valid TOML ({error})") from None
    return from_table(table, path, themes)


def write(path: Path, settings: Settings) -> None:
    """Write ``settings`` to ``path`` atomically: a temporary file beside it, then a rename, so a
    reader sees the old file or the new one, never part of one. A symbolic link (a dotfiles
    repository) is followed, and an existing file keeps its permissions."""
    target = path.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER + tomli_w.dumps(to_table(settings))
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644 & ~_umask()
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _umask() -> int:
    """The process's umask, read from /proc (os.umask would have to change it to read it, for a
    moment in which another thread's new files would be made with none)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


class SettingsFile:
    """One settings file, as a dashboard uses it: read once at start, then updated key by key.

    ``problem`` is why the file could not be used at start (None when it could, or it does not
    exist yet); such a file is never written over. Each :meth:`update` reads the file again and
    changes only what the user just changed, so two dashboards do not undo each other's choices
    and a file someone edited since is not lost."""

    def __init__(self, path: Path, themes: Collection[str] | None = None) -> None:
        self._lock = threading.Lock()  # a dashboard writes from a worker thread, and at exit
        self.path = path
        self.themes = themes
        self.problem: str | None = None
        try:
            self.settings = read(path, themes)
        except SettingsError as error:
            self.problem = str(error)
            self.settings = Settings()

    def update(self, change: Settings) -> Settings:
        """Write what ``change`` sets over what the file holds now; returns the file's settings.
        A SettingsError (one sentence) when the file cannot be used or written."""
        with self._lock:
            return self._update(change)

    def _update(self, change: Settings) -> Settings:
        if self.problem is not None:
            raise SettingsError(f"{self.problem}; not saved, so as not to write over it (fix or remove it)")
        try:
            current = read(self.path, self.themes)
        except SettingsError as error:
            raise SettingsError(f"{error}; not saved, so as not to write over it (fix or remove it)") from None
        new = current.merged(change)
        if new != current or not self.path.exists():
            try:
                write(self.path, new)
            except OSError as error:
                raise _problem(self.path, f"cannot be written: {error.strerror or error}") from None
        self.settings = new
        return new
