"""Python's full garbage collections, kept off the path of a key press.

With a thousand processes the dashboard keeps some 70,000 container objects alive and replaces
thousands of them every tick. CPython then runs a full (generation 2) collection every tick or
two, and each one stops the event loop for 40-75 ms: nearly every key press slower than 50 ms in
``bench/bench_dashboard.py --live`` was waiting for one. The pacer leaves the young generations
to CPython (their collections take a millisecond or two) but raises the full collection's
threshold out of reach, and runs full collections itself, once the user has paused for a moment,
at most every ``full_every_s``, and unconditionally after ``full_at_most_s``. What memwatch keeps
is acyclic and freed by reference counting the moment it is dropped; only cyclic garbage
(Textual's messages, asyncio's futures) waits for a full collection.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# CPython runs a full collection when this many young (generation 1) collections have happened.
NEVER = 1_000_000_000


@dataclass
class GcPacer:
    """Call :meth:`start` once, :meth:`tick` when :meth:`due_in` says (or at any time),
    :meth:`note_input` on every key or mouse event, and :meth:`stop` on the way out (it gives
    the thresholds back)."""

    full_every_s: float = 30.0
    full_idle_s: float = 0.5
    full_at_most_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    collect: Callable[[int], int] = gc.collect
    _thresholds: tuple[int, int, int] | None = field(default=None, repr=False)
    _last_full: float = field(default=0.0, repr=False)
    _last_input: float = field(default=0.0, repr=False)

    def start(self) -> None:
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(self._thresholds[0], self._thresholds[1], NEVER)
        self._last_full = self._last_input = self.clock()

    def stop(self) -> None:
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def note_input(self) -> None:
        self._last_input = self.clock()

    def due_in(self) -> float:
        """Seconds until a full collection may be due, as things stand (input meanwhile puts it
        off: :meth:`tick` then finds nothing to do and this says how long to wait again). A
        dashboard sitting still wakes for its collections once every ``full_every_s``, not on
        a polling beat."""
        now = self.clock()
        since_full = now - self._last_full
        wait = max(self.full_every_s - since_full, self.full_idle_s - (now - self._last_input))
        return max(0.0, min(wait, self.full_at_most_s - since_full))

    def tick(self) -> bool:
        """Run a full collection if one is due now; returns whether it ran."""
        now = self.clock()
        since_full = now - self._last_full
        idle = now - self._last_input >= self.full_idle_s
        if since_full >= self.full_at_most_s or (since_full >= self.full_every_s and idle):
            self.collect(2)
            self._last_full = now
            return True
        return False
