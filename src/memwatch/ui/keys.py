"""Every key memwatch answers, listed once.

Bindings of the app, the screens and the table, the help screen, the command palette and the key
table in README.md all come from :data:`KEY_ROWS` (a test holds README to it), so a key cannot be
bound without being documented, nor documented without being bound.

A key belongs to a *room*, the place where it works:

- ``app``: everywhere, even in a dialog (Ctrl+C);
- ``shared``: on each of the main screens (dashboard, process, events): pause, units, interval, help;
- ``dashboard``: the table's screen; ``replay``: the same, on a recording;
- ``table``, ``prompt``: those widgets, when they have the focus;
- ``detail``, ``events``, ``help``, ``signal``, ``columns``: the screen or dialog of that name;
- ``event_table``: the tables of the events screen.

A key of the dashboard does nothing on the events screen, so ``/`` typed there cannot filter a
table no one sees. Rows of the rooms in :data:`DOCUMENTED` make the help screen and README's table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from textual.binding import Binding, BindingType

Room = Literal["app", "shared", "dashboard", "replay", "table", "prompt", "detail", "events", "event_table", "help",
               "signal", "columns"]
DOCUMENTED: tuple[Room, ...] = ("table", "dashboard", "shared", "replay", "app", "detail", "events", "event_table")
"""The rooms of the help screen and README's table; the others show their keys in their own footer."""
PALETTE_KEY = "ctrl+p"
"""Textual's command palette key (App.COMMAND_PALETTE_BINDING); a test holds them equal."""


@dataclass(frozen=True, slots=True)
class Key:
    """One binding: Textual key names (comma-separated alternatives) and the action they run."""

    keys: str
    action: str
    title: str
    """Footer and palette title."""
    show: bool = False
    """In the footer."""
    priority: bool = False
    palette: str | None = None
    """The palette's line for it; None: not offered there."""

    def binding(self) -> Binding:
        return Binding(self.keys, self.action, self.title, show=self.show, priority=self.priority)


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One line of help: the keys of one room that do one thing, and what it is."""

    room: Room
    what: str
    keys: tuple[Key, ...] = ()
    also: str = ""
    """Ways in that are not keys of ours (the mouse, Textual's own palette key)."""


def _row(room: Room, what: str, *keys: Key, also: str = "") -> KeyRow:
    return KeyRow(room, what, keys, also)


KEY_ROWS: tuple[KeyRow, ...] = (
    # the table (its widget's own keys)
    _row("table", "move; the cursor stays on its process across refreshes and sorts",
         Key("up", "cursor_up", "Up"), Key("down", "cursor_down", "Down"), Key("pageup", "page_up", "Page up"),
         Key("pagedown", "page_down", "Page down"), Key("home,ctrl+home", "first", "First"),
         Key("end,ctrl+end", "last", "Last"), also="mouse"),
    _row("table", "the highlighted process full screen; on a cgroup or a user, its processes (Escape returns)",
         Key("enter", "select_cursor", "Select")),
    # the dashboard; this order is the footer's
    _row("dashboard", "quit: probes detached, terminal restored (SIGTERM and SIGHUP do the same)",
         Key("q", "app.quit", "Quit", show=True)),
    _row("shared", "pause: the table keeps its frame",
         Key("p", "app.toggle_pause", "Pause", show=True, palette="Stop or restart applying new snapshots")),
    _row("dashboard", "filter: processes by name, command line or pid; cgroups by name or path; users by name or uid",
         Key("slash", "start_filter", "Filter", show=True, palette="By name, command line or pid")),
    _row("dashboard", "clear the filter; then, from a group's processes, back to the groups",
         Key("escape", "clear_filter", "Clear filter", palette="Show every process (or go back to the groups)")),
    _row("dashboard", "cycle the sort column / reverse the order; a click on a header sorts by it, another reverses",
         Key("s", "cycle_sort", "Sort", show=True, palette="The next column"),
         Key("r", "reverse_sort", "Reverse", palette="Flip the sort direction"), also="click a header"),
    _row("dashboard", "sort by RSS, PID, name, growth, outstanding bytes (in the tree, cgroups, users: their sums)",
         Key("M", "sort_by('rss')", "Sort RSS"), Key("P", "sort_by('pid')", "Sort PID"),
         Key("N", "sort_by('name')", "Sort name"), Key("G", "sort_by('growth')", "Sort growth"),
         Key("O", "sort_by('outstanding')", "Sort outstanding")),
    _row("dashboard", "views in turn: processes, process tree, memory cgroups, users",
         Key("v", "cycle_view", "View", show=True, palette="Processes, tree, cgroups and users in turn")),
    _row("dashboard", "a view: processes / tree (by parent, with subtree sums) / memory cgroups / users",
         Key("1", "view('processes')", "Processes", palette="The process table"),
         Key("2", "view('tree')", "Tree", palette="Processes under their parents, with subtree sums"),
         Key("3", "view('cgroups')", "Cgroups", palette="Memory cgroups: usage and limit, OOM kills, pressure"),
         Key("4", "view('users')", "Users", palette="Sums per user")),
    _row("dashboard", "tree: hide a process's children (on a hidden or childless one: go to its parent) / show them",
         Key("left", "collapse", "Collapse"), Key("right", "expand", "Expand")),
    _row("shared", "units: KB (like the original monitor) or KiB/MiB/GiB",
         Key("u", "app.toggle_units", "Units", show=True, palette="KB or KiB/MiB/GiB")),
    _row("shared", "sample more / less often (the header shows the interval)",
         Key("plus,equals_sign", "app.faster", "Faster", palette="Shorter interval"),
         Key("minus", "app.slower", "Slower", palette="Longer interval")),
    _row("dashboard", "tag / untag the highlighted process (a * marks it; it stays tagged across sorts until it exits)",
         Key("space", "toggle_tag", "Tag", palette="Tag or untag the highlighted process")),
    _row("dashboard", "untag every process", Key("U", "clear_tags", "Untag all", palette="Clear every tag")),
    _row("dashboard", "send a signal to the tagged processes, or else the highlighted one (asks which first; not in"
         " a replay)",
         Key("k", "kill", "Signal", show=True, palette="Send a signal to the tagged or highlighted processes")),
    _row("dashboard", "exits with their final figures, and OOM kills (which also raise a notification)",
         Key("e", "events", "Events", show=True, palette="Exited processes and OOM kills")),
    _row("dashboard", "choose the table's columns and their order (every figure of the registry)",
         Key("c,f2", "columns", "Columns", palette="Show, hide and order the table's columns")),
    _row("shared", "this help", Key("question_mark", "app.help", "Help", show=True, palette="What every key does")),
    _row("replay", "replay: one frame back / forward",
         Key("comma", "step(-1)", "Back", palette="One frame back"),
         Key("full_stop", "step(1)", "Forward", palette="One frame forward")),
    _row("replay", "replay: jump to the start / the end",
         Key("left_square_bracket", "jump('start')", "Start", palette="Jump to the first frame"),
         Key("right_square_bracket", "jump('end')", "End", palette="Jump to the last frame")),
    _row("replay", "replay: go to a time (HH:MM[:SS] UTC, a date and time, or epoch seconds)",
         Key("g", "goto", "Go to", palette="Type a time")),
    _row("app", "command palette", also=PALETTE_KEY),
    _row("app", "quit, from anywhere", Key("ctrl+c", "app.quit", "Quit", priority=True)),
    # the prompt (filter or time); Enter is the Input's own
    _row("prompt", "close the line; a filter is cleared", Key("escape", "cancel", "Cancel")),
    # the other screens
    _row("detail", "process screen: back to the table", Key("escape", "app.pop_screen", "Back", show=True),
         Key("q", "app.pop_screen", "Back")),
    _row("detail", "process screen tabs: figures, memory map (smaps, read while open), allocation sites "
         "(call stacks, captured while open)",
         Key("f", "show_tab('figures')", "Figures", show=True), Key("m", "show_tab('map')", "Memory map", show=True),
         Key("a", "show_tab('sites')", "Allocation sites", show=True), also="click a tab"),
    _row("detail", "memory map: cycle the sort column / reverse / group by path or kind; a click on a header sorts",
         Key("s", "map_sort", "Sort"), Key("r", "map_reverse", "Reverse"), Key("g", "map_group", "Group"),
         also="click a header"),
    _row("events", "events screen: back to the table", Key("escape", "app.pop_screen", "Back", show=True),
         Key("e", "app.pop_screen", "Back"), Key("q", "app.pop_screen", "Back")),
    _row("events", "events screen: filter by name, pid, kind (exit, oom) or signal",
         Key("slash", "start_filter", "Filter", show=True, palette="Events by name, pid, kind or signal")),
    _row("events", "events screen: cycle the sort (time, pid, name, peak) / reverse it",
         Key("s", "cycle_sort", "Sort", show=True, palette="Events by the next column"),
         Key("r", "reverse_sort", "Reverse", palette="Flip the events' order")),
    _row("events", "events screen: sort by time, pid, name, peak RSS",
         Key("T", "sort_by('time')", "Sort time"), Key("P", "sort_by('pid')", "Sort PID"),
         Key("N", "sort_by('name')", "Sort name"), Key("M", "sort_by('peak')", "Sort peak")),
    _row("event_table", "events screen: move",
         Key("up", "cursor_up", "Up"), Key("down", "cursor_down", "Down"), Key("pageup", "page_up", "Page up"),
         Key("pagedown", "page_down", "Page down"), also="mouse"),
    _row("event_table", "events screen: the newest exit, then follow new ones (moving up stops it) / the oldest",
         Key("end,ctrl+end", "last", "Last"), Key("home,ctrl+home", "first", "First")),
    _row("help", "close", Key("escape", "dismiss", "Close", show=True), Key("q", "dismiss", "Close"),
         Key("question_mark", "dismiss", "Close")),
    _row("columns", "show / hide the highlighted column", Key("space", "toggle_column", "Show/hide"),
         also="Enter, click"),
    _row("columns", "move it up / down the list: left / right in the table",
         Key("shift+up", "move(-1)", "Move up"), Key("shift+down", "move(1)", "Move down"),
         Key("left_square_bracket", "move(-1)", "Move up"), Key("right_square_bracket", "move(1)", "Move down"),
         also="the buttons"),
    _row("columns", "back to the default columns", Key("d", "defaults", "Defaults")),
    _row("columns", "close (every change is applied at once)", Key("escape", "dismiss", "Close"),
         Key("q", "dismiss", "Close"), Key("c", "dismiss", "Close"), Key("f2", "dismiss", "Close")),
    _row("signal", "cancel / send the highlighted signal (Enter too)", Key("escape", "cancel", "Cancel", show=True),
         Key("n", "cancel", "Cancel"), Key("y", "send", "Send")),
    _row("signal", "choose a signal", also="↑ ↓, 1-9, a signal's initial"),
)


def keys_of(*rooms: Room) -> list[Key]:
    """The keys of ``rooms``, in the list's order (the footer's order)."""
    return [key for row in KEY_ROWS if row.room in rooms for key in row.keys]


def bindings(*rooms: Room) -> list[BindingType]:
    """The BINDINGS of a screen or widget that holds ``rooms``."""
    return [key.binding() for key in keys_of(*rooms)]


_NAMES = {
    "slash": "/", "question_mark": "?", "plus": "+", "equals_sign": "=", "minus": "-", "comma": ",",
    "full_stop": ".", "left_square_bracket": "[", "right_square_bracket": "]", "space": "space",
    "escape": "Escape", "enter": "Enter", "up": "↑", "down": "↓", "pageup": "PgUp", "pagedown": "PgDn",
    "home": "Home", "end": "End", "left": "←", "right": "→", "f2": "F2",
}


def key_name(key: str) -> str:
    """How a Textual key name is written for people: ``/`` for slash, ``Ctrl+C`` for ctrl+c."""
    if key in _NAMES:
        return _NAMES[key]
    if "+" in key:
        *mods, last = key.split("+")
        return "+".join([*(m.capitalize() for m in mods), key_name(last).upper() if len(last) == 1 else
                         key_name(last)])
    return key


def row_keys(row: KeyRow) -> list[str]:
    """Every key of a row as written for people, alternatives included (Textual's palette key too)."""
    names = [key_name(k) for key in row.keys for k in key.keys.split(",")]
    return [*names, key_name(row.also)] if row.also == PALETTE_KEY else names


def documented(rooms: Sequence[Room] = DOCUMENTED) -> list[KeyRow]:
    """The rows of ``rooms``, in the list's order."""
    return [row for row in KEY_ROWS if row.room in rooms]


def row_label(row: KeyRow, quote: str = "") -> str:
    """The keys of a row, then its other ways in: ``s r, click a header``."""
    label = " ".join(f"{quote}{k}{quote}" for k in row_keys(row))
    if row.also and row.also != PALETTE_KEY:
        label += f", {row.also}"
    return label


def help_rows(rooms: Sequence[Room] = DOCUMENTED) -> list[tuple[str, str]]:
    """(keys, what they do) for the help screen."""
    return [(row_label(row), row.what) for row in documented(rooms)]


def markdown_table(rooms: Sequence[Room] = DOCUMENTED) -> str:
    """README.md's key table (``python -m memwatch.ui.keys`` prints it)."""
    lines = ["| keys | |", "| --- | --- |"]
    lines += [f"| {row_label(row, '`')} | {row.what} |" for row in documented(rooms)]
    return "\n".join(lines) + "\n"


def palette_keys(rooms: Iterable[Room]) -> list[Key]:
    """The keys of ``rooms`` that the command palette offers."""
    return [key for key in keys_of(*rooms) if key.palette is not None]


if __name__ == "__main__":
    print(markdown_table(), end="")
