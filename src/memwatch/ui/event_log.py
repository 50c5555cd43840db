"""Exits and OOM kills as the dashboard keeps them for the events screen: bounded, OOMs apart.

Every snapshot carries the store's bounded log of exits and OOM kills (``Snapshot.events``, the
newest ones). Appending it to a table forever made the events screen grow without end during a
storm of exits. The log here keeps a window of the newest ``window`` exits, and every OOM kill of
the run on its own (an exit storm cannot push them out; they are rare, and still capped), and
remembers only as many event identities as it needs to tell a new event from one seen before.
Nothing here imports Textual: it is plain data, tested without an app.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from memwatch.model import Event, EventKind

EXIT_WINDOW = 1000
"""Exits the events screen keeps (the newest); older ones are counted, not kept."""
OOM_CAP = 10_000
"""OOM kills kept for the run: all of them in any sane run; past this the oldest go, counted."""

SORTS: tuple[str, ...] = ("time", "pid", "name", "peak")
"""What the events screen sorts by, in the order ``s`` cycles through them."""


def event_key(event: Event) -> str:
    """Identity of an exit/OOM event across snapshots."""
    return f"{event.kind.value}:{event.pid}:{event.start_ticks}:{event.timestamp!r}"


def peak_kb(event: Event) -> int | None:
    """The memory figure an event row shows: an exit's peak RSS, an OOM victim's RSS."""
    return event.rss_kb if event.kind is EventKind.OOM else event.peak_rss_kb


def matches(event: Event, needle: str) -> bool:
    """Filter on name (substring), pid (exact), kind ("exit", "oom") or the signal that ended it."""
    if not needle:
        return True
    lowered = needle.lower()
    return (lowered in event.name.lower() or needle == str(event.pid) or lowered == event.kind.value
            or (event.signal is not None and lowered in event.signal.lower()))


_SORT_KEYS: dict[str, Callable[[Event], tuple[object, ...]]] = {
    "time": lambda e: (e.timestamp, e.pid),
    "pid": lambda e: (e.pid, e.timestamp),
    "name": lambda e: (e.name.lower(), e.timestamp),
    "peak": lambda e: (peak_kb(e) if peak_kb(e) is not None else -1, e.timestamp),
}


def arrange(events: Iterable[Event], sort: str, descending: bool, needle: str) -> list[Event]:
    """The events that pass the filter, in the order asked for."""
    return sorted((e for e in events if matches(e, needle)), key=_SORT_KEYS[sort], reverse=descending)


@dataclass
class Added:
    """What one :meth:`EventLog.add` brought: the new exits and the new OOM kills."""

    exits: list[Event]
    ooms: list[Event]


class EventLog:
    """The newest ``window`` exits and (up to ``oom_cap``) every OOM kill seen."""

    def __init__(self, window: int = EXIT_WINDOW, oom_cap: int = OOM_CAP) -> None:
        self.exits: deque[Event] = deque(maxlen=window)
        self.ooms: deque[Event] = deque(maxlen=oom_cap)
        self.exits_seen = 0
        self.ooms_seen = 0
        self.version = 0
        """Changes whenever an event is added: a screen redraws only when it moved."""
        self._known: OrderedDict[str, None] = OrderedDict()
        """Identities of the last exits taken (OOM kills have their own: a storm of exits must
        not make an OOM kill still in a snapshot's log look new, and notify twice)."""
        self._known_cap = 2 * window
        self._oom_known: OrderedDict[str, None] = OrderedDict()
        self._oom_known_cap = 2 * oom_cap

    @property
    def exits_dropped(self) -> int:
        """Exits seen that left the window."""
        return self.exits_seen - len(self.exits)

    def add(self, events: Sequence[Event], new_events: Sequence[Event] = ()) -> Added:
        """Take a snapshot's log (``events``, the newest, oldest first) and what arrived since the
        previous snapshot (``new_events``); returns what was not seen before.

        The log a snapshot carries holds the newest events, so an event seen before is among the
        last ones taken: remembering the identities of twice as many as the longest log (and the
        window) is enough to never take one twice. In a storm more exits arrive between two
        snapshots than the log holds: those are counted (they are older than the window anyway),
        and an OOM kill among them is still kept."""
        added = Added([], [])
        seen_before = self.exits_seen
        self._known_cap = max(self._known_cap, 2 * len(events))
        for event in events:
            self._take(event, added)
        for event in new_events:
            if event.kind is EventKind.OOM:
                self._take(event, added)
        arrived = sum(1 for e in new_events if e.kind is EventKind.EXIT)
        self.exits_seen += max(0, arrived - len(added.exits))
        while len(self._known) > self._known_cap:
            self._known.popitem(last=False)
        while len(self._oom_known) > self._oom_known_cap:
            self._oom_known.popitem(last=False)
        if self.exits_seen != seen_before or added.ooms:
            self.version += 1
        return added

    def exit_of(self, key: tuple[int, int]) -> Event | None:
        """The exit record of the process (pid, start ticks), if it is in the window."""
        pid, start = key
        for event in reversed(self.exits):
            if event.pid == pid and event.start_ticks in (start, None):
                return event
        return None

    def _take(self, event: Event, added: Added) -> None:
        if event.kind not in (EventKind.EXIT, EventKind.OOM):
            return
        key = event_key(event)
        known = self._oom_known if event.kind is EventKind.OOM else self._known
        if key in known:
            return
        known[key] = None
        if event.kind is EventKind.OOM:
            self.ooms.append(event)
            self.ooms_seen += 1
            added.ooms.append(event)
        else:
            self.exits.append(event)
            self.exits_seen += 1
            added.exits.append(event)
