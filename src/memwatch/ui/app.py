"""The memwatch dashboard: a thin Textual app over any SnapshotSource.

The app holds what every screen shows, as reactives: the ``snapshot`` on screen, the ``view``
state (sort, units, pause, filter, columns: one :class:`ViewState`), why the source ended and the
interval. Screens watch them and draw; keys replace them. The app itself only starts and stops
the source (through :class:`~memwatch.ui.feed.Feed`, whose pump runs in a worker and posts each
frame as a message whose ``can_replace`` drops stale ones), keeps Python's full collections off
key presses, quits on SIGTERM/SIGHUP as on q, and shows any worker's failure in one handler.

Rooms: :mod:`.screens.dashboard` (the table and its keys), :mod:`.screens.detail_screen`,
:mod:`.screens.events_screen`, :mod:`.screens.help_screen`, :mod:`.screens.signal_modal`; every
key is listed once in :mod:`.keys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from textual import events
from textual.app import App, SystemCommand
from textual.binding import BindingType
from textual.reactive import var
from textual.screen import Screen
from textual.theme import BUILTIN_THEMES
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from memwatch.fields import BY_KEY, DEFAULT_COLUMNS, SORT_KEYS
from memwatch.model import Snapshot
from memwatch.settings import Settings, SettingsError, SettingsFile
from memwatch.sources.base import SnapshotSource
from memwatch.ui import formatting as fmt
from memwatch.ui import keys, workers
from memwatch.ui.event_log import EventLog
from memwatch.ui.feed import Feed
from memwatch.ui.gc_pacing import GcPacer
from memwatch.ui.messages import SnapshotArrived, SourceEnded
from memwatch.ui.screens.dashboard import TOO_SMALL, DashboardScreen
from memwatch.ui.screens.help_screen import HelpScreen
from memwatch.ui.view_state import ViewState

log = logging.getLogger("memwatch.ui")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that end the dashboard the way q does. SIGINT is not among them: the terminal sends
Ctrl+C as a key, and a SIGINT from elsewhere keeps Python's KeyboardInterrupt (exit 130)."""
SAVE_AFTER_S = 0.5
"""Settings are written this long after the last change (a column moved five times is one write),
and at exit."""
TEXTUAL_KEYS_COMMAND = "Keys"
"""Textual's own palette entry for its key panel: our Help lists every key, so it goes."""

__all__ = ["TOO_SMALL", "MemwatchApp", "run_dashboard", "theme_names", "unknown_theme"]


def theme_names() -> list[str]:
    """The themes ``--theme`` takes: Textual's own, by the names it knows them (the CLI checks
    before anything starts, since an unknown one would only fail once the app is drawing)."""
    return sorted(BUILTIN_THEMES)


def unknown_theme(name: str, known: Iterable[str]) -> str:
    """The one sentence for a bad theme, wherever it is caught: it lists what would work."""
    return f"unknown theme {name!r}; choose one of {', '.join(sorted(known))}"


class MemwatchApp(App[int]):
    """The dashboard. ``run_dashboard`` is the usual way to start it."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere still find it
    TITLE = "memwatch"
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("app")

    view: var[ViewState] = var(ViewState())
    """How the processes are shown; replaced whole, so a watcher sees one change at a time."""
    snapshot: var[Snapshot | None] = var(None, always_update=True)
    """The frame on screen (a paused app keeps its frame; the newest waits in ``_pending``).
    always_update: comparing two snapshots would walk every process."""
    source_ended: var[str | None] = var(None)
    """Why the source gave no more frames (end of a recording, a failure); the status line says it."""
    interval_s: var[float] = var(0.0)
    """The source's interval, which + and - change; the header shows it (no toast per press)."""

    def __init__(self, source: SnapshotSource, *, top: int | None = None, pids: Iterable[int] = (),
                 sort: str = "rss", descending: bool | None = None, theme: str | None = None,
                 columns: Iterable[str] = DEFAULT_COLUMNS, human: bool = False,
                 settings: SettingsFile | None = None) -> None:
        view = ViewState.initial(sort=sort, descending=descending, top=top, pids=tuple(pids),
                                 columns=tuple(columns), human=human)
        super().__init__()
        if theme is not None and theme not in self.available_themes:
            raise ValueError(unknown_theme(theme, self.available_themes))
        self.feed = Feed(source)
        self.set_reactive(MemwatchApp.view, view)
        self.set_reactive(MemwatchApp.interval_s, source.interval_s)
        self._requested_theme = theme
        self._pending: Snapshot | None = None
        self._last_arrived: Snapshot | None = None
        self.interval_since: float | None = None
        """When the snapshots' interval last changed (the first snapshot at the new one); None:
        not since the first one seen. A chart whose window reaches further back marks its span."""
        self._quitting = False
        self.events = EventLog()
        """Exits and OOM kills for the events screen: taken from every frame, paused or not."""
        self._gc = GcPacer()
        self.settings_file = settings
        """Where changes of columns, sort, units, interval and theme are kept (None: nowhere)."""
        self._unsaved = Settings()
        self._save_timer: Timer | None = None
        self._remembering = False
        self._told_unsaved = False

    @property
    def source(self) -> SnapshotSource:
        return self.feed.source

    def get_default_screen(self) -> DashboardScreen:
        """The dashboard is the bottom of the stack: the other screens pop back to it, and it
        cannot be popped itself."""
        return DashboardScreen()

    @property
    def dashboard(self) -> DashboardScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, DashboardScreen)
        return screen

    # ----- start and stop -----------------------------------------------------------------------------

    def on_load(self) -> None:
        """SIGTERM (kill, a service manager) and SIGHUP (the terminal went away) leave the way q
        does, so the terminal is restored and the probes detached instead of dying mid-screen.

        Load comes before the terminal enters application mode, and the handlers stay until the
        loop closes, after the terminal is restored: no moment in between dies with it raw. Not in
        headless runs (tests), which would take over the test runner's own signals."""
        if self.is_headless:
            return
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(sig, self._stop_on_signal, sig)

    def _stop_on_signal(self, sig: signal.Signals) -> None:
        # Queued behind whatever runs now (on_mount still opening the source, say), so the source
        # is closed after it has opened; a second signal while on the way out changes nothing.
        if not self._quitting:
            log.info("%s: quitting as q does", sig.name)
            self._quitting = True
            self.call_later(self.action_quit)

    async def on_mount(self) -> None:
        if self._requested_theme:
            self.theme = self._requested_theme
        self._remembering = True  # from here on, a change is the user's
        if self.settings_file is not None and self.settings_file.problem is not None:
            self.notify(f"{escape(self.settings_file.problem)}. Using the defaults; the file is left as it is.",
                        title="Settings", severity="warning", timeout=15)
        try:
            first = await self.source.open()
        except Exception as error:  # a source that cannot start says why; no traceback
            await self.feed.close()
            self.exit(1, message=f"memwatch: cannot start the data source: {error}")
            return
        self._receive(first)
        # Everything alive now (modules, widgets, styles) lives as long as the app: moving it out
        # of the collector's reach keeps full collections short; the pacer keeps them off keys.
        gc.collect()
        gc.freeze()
        self._gc.start()
        self._pace_gc()
        workers.start(self, self.feed.pump(self._arrived, self._ended), name="snapshot-pump", group="source",
                      exclusive=True, description="reading the source")

    def _pace_gc(self) -> None:
        """Run the full collection if it is due, and wake again when the next one may be."""
        self._gc.tick()
        self.set_timer(self._gc.due_in(), self._pace_gc, name="gc-pacer")

    def _arrived(self, snap: Snapshot) -> None:
        self.post_message(SnapshotArrived(snap))

    def _ended(self, reason: str) -> None:
        self.post_message(SourceEnded(reason))

    async def action_quit(self) -> None:
        self._quitting = True
        self._save_settings()
        self.workers.cancel_group(self, "source")
        await self.feed.close()
        if self.return_code is None:  # a quit queued behind a failed start keeps the failure's status
            self.exit(0)

    async def on_unmount(self) -> None:
        self._save_settings()
        self._gc.stop()
        await self.feed.close()  # crash or any other exit path: detach anyway

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)):
            self._gc.note_input()
        await super().on_event(event)

    # ----- frames ---------------------------------------------------------------------------------------

    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        self._receive(message.snapshot)

    def on_source_ended(self, message: SourceEnded) -> None:
        self.source_ended = message.reason

    def _track_interval(self, snap: Snapshot, jumped: bool = False) -> None:
        """Note when the snapshots' interval changed, for the charts' spans (see interval_since)."""
        last = self._last_arrived
        if jumped or last is None or snap.timestamp < last.timestamp:
            self.interval_since = None
        elif snap.interval_s != last.interval_s:
            self.interval_since = snap.timestamp
        self._last_arrived = snap

    def _receive(self, snap: Snapshot) -> None:
        self._track_interval(snap)
        self._take_events(snap)
        if self.view.paused:
            self._pending = snap
        else:
            self.snapshot = snap

    def show_seek(self, snap: Snapshot) -> None:
        """Show the frame a replay was moved to; moving by hand stops playback."""
        if not self.view.paused:
            self.view = replace(self.view, paused=True)
        self._pending = None
        self._track_interval(snap, jumped=True)
        self._take_events(snap)
        self.snapshot = snap

    def _take_events(self, snap: Snapshot) -> None:
        """Keep the frame's exits and OOM kills; a new OOM kill raises a notification, once."""
        for event in self.events.add(snap.events, snap.new_events).ooms:
            rss = fmt.human_kb(event.rss_kb) if event.rss_kb is not None else "?"
            self.notify(
                f"OOM kill: {escape(fmt.printable(event.name))} (pid {event.pid}), RSS {rss}"
                f" at {fmt.utc_time(event.timestamp, with_date=True)}",
                title="Out of memory", severity="error", timeout=10,
            )

    def watch_view(self, old: ViewState, new: ViewState) -> None:
        change = Settings(
            columns=new.columns if new.columns != old.columns else None,
            sort=new.sort if (new.sort, new.descending) != (old.sort, old.descending) else None,
            descending=new.descending if (new.sort, new.descending) != (old.sort, old.descending) else None,
            human=new.human if new.human != old.human else None,
        )
        if change != Settings():
            self.remember(change)
        if new.paused != old.paused:
            self.feed.pause(new.paused)
            pending, self._pending = self._pending, None
            if not new.paused and pending is not None and self.feed.replay is None:
                self.snapshot = pending

    # ----- keys of every main screen (the "shared" room) ------------------------------------------------

    def action_toggle_pause(self) -> None:
        self.view = replace(self.view, paused=not self.view.paused)

    def action_toggle_units(self) -> None:
        self.view = replace(self.view, human=not self.view.human)

    def action_faster(self) -> None:
        self._interval_changed(self.feed.change_interval(True))

    def action_slower(self) -> None:
        self._interval_changed(self.feed.change_interval(False))

    def _interval_changed(self, seconds: float) -> None:
        self.interval_s = seconds
        if self.feed.replay is None:  # on a recording it is the playback's pace, not a sampling interval
            self.remember(Settings(interval=seconds))

    def watch_theme(self, theme: str) -> None:
        self.remember(Settings(theme=theme))

    # ----- settings that stick ----------------------------------------------------------------------

    def remember(self, change: Settings) -> None:
        """Keep a change the user made in the settings file, shortly (changes close together make
        one write; quitting writes what is left)."""
        if self.settings_file is None or not self._remembering:
            return
        self._unsaved = self._unsaved.merged(change)
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.set_timer(SAVE_AFTER_S, self._save_in_background, name="save-settings")

    def _save_in_background(self) -> None:
        """A write (fsync included) takes about 10 ms, more on a busy disk: off the UI thread."""
        self._save_settings(in_thread=True)

    def _save_settings(self, *, in_thread: bool = False) -> None:
        """Write what changed; at exit (``in_thread`` False) before going."""
        settings = self.settings_file
        if settings is None or self._unsaved == Settings():
            return
        change, self._unsaved = self._unsaved, Settings()

        def write() -> None:
            try:
                settings.update(change)
            except SettingsError as error:
                log.warning("%s", error)
                if in_thread:
                    self.call_from_thread(self._tell_unsaved, error)
                else:
                    self._tell_unsaved(error)

        if in_thread:
            self.run_worker(write, name="save-settings", group="settings", thread=True,
                            description="writing the settings file")
        else:
            write()

    def _tell_unsaved(self, error: SettingsError) -> None:
        if not self._told_unsaved:  # once: every later change would say the same
            self._told_unsaved = True
            self.notify(escape(str(error)), title="Settings not saved", severity="warning", timeout=15)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # ----- workers: the one error handler ---------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            title, message, severity = workers.failure_text(event.worker)
            log.error("worker %s failed", event.worker.name, exc_info=event.worker.error)
            self.notify(message, title=title, severity=severity)

    # ----- command palette ------------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's commands (but its key panel: our Help lists every key), then the keys of the
        screen the palette was opened on, then a sort for every sortable field."""
        yield from (c for c in super().get_system_commands(screen) if c.title != TEXTUAL_KEYS_COMMAND)
        rooms: tuple[keys.Room, ...] = getattr(screen, "ROOMS", ())
        if self.feed.replay is None:
            rooms = tuple(r for r in rooms if r != "replay")
        for key in keys.palette_keys(rooms):
            yield SystemCommand(key.title, key.palette or "", partial(self.run_action, key.action, screen))
        if isinstance(screen, DashboardScreen):
            for column in SORT_KEYS:
                label = BY_KEY[column].label
                yield SystemCommand(f"Sort by {label}", f"Rank processes by {label}",
                                    partial(self.run_action, f"sort_by({column!r})", screen))


def run_dashboard(source: SnapshotSource, **kw: Any) -> int:
    """Run the dashboard until the user quits; returns the process exit code."""
    try:
        app = MemwatchApp(source, **kw)
    except ValueError as error:
        print(f"memwatch: {error}", file=sys.stderr)
        return 2
    result = app.run()
    _forget_a_closed_terminal()
    return result if isinstance(result, int) else (app.return_code or 0)


def _forget_a_closed_terminal() -> None:
    """After a hangup (the terminal window closed) output still buffered for the terminal cannot
    be written, and Python would turn a clean exit into status 120 trying at shutdown: send it
    to /dev/null instead, there is no one left to read it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
