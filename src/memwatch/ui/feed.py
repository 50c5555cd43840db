"""The source as the dashboard drives it: one pump that drains it, pause, and replay seeks.

Kept apart from the widgets so the one subtle rule is in one place and testable without an app:
a position the user chose (a step, a jump, a time) wins over a frame the pump was fetching
meanwhile, and a paused replay does not move on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from memwatch.model import Snapshot
from memwatch.sources.base import InspectingSource, SeekableSource, SnapshotSource

INTERVAL_STEPS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


def next_interval(current: float, faster: bool) -> float:
    """The next step of :data:`INTERVAL_STEPS` below (faster) or above the current interval."""
    if faster:
        smaller = [s for s in INTERVAL_STEPS if s < current - 1e-9]
        return smaller[-1] if smaller else INTERVAL_STEPS[0]
    larger = [s for s in INTERVAL_STEPS if s > current + 1e-9]
    return larger[0] if larger else INTERVAL_STEPS[-1]


class Feed:
    """A SnapshotSource with the dashboard's pause and seek rules; :meth:`pump` runs in a worker."""

    def __init__(self, source: SnapshotSource) -> None:
        self.source = source
        self.replay: SeekableSource | None = source if isinstance(source, SeekableSource) else None
        self.paused = False
        self._resume = asyncio.Event()
        self._resume.set()
        self._seeks = 0
        """Steps and jumps made by the user, so that a frame the replay was fetching meanwhile
        cannot move the position they chose."""
        self._seek_position = 0
        self._closed = False

    async def pump(self, deliver: Callable[[Snapshot], object], ended: Callable[[str], object]) -> None:
        """Drain the source until it ends: each frame to ``deliver``, then why it ended to ``ended``."""
        source, replay = self.source, self.replay
        while True:
            if replay is not None:
                await self._resume.wait()  # a paused replay does not need to move on
            seeks = self._seeks
            before = replay.position if replay is not None else 0
            try:
                snap = await source.next()
            except asyncio.CancelledError:
                raise
            except (EOFError, StopAsyncIteration):
                ended("end of recording")
                return
            except Exception as error:  # the source failed: say so in the status line, keep the UI
                ended(f"source stopped: {error}")
                return
            if replay is not None and (self.paused or seeks != self._seeks):
                # the user paused or stepped while this frame was on its way: their position wins
                replay.seek(self._seek_position if seeks != self._seeks else before)
                continue
            deliver(snap)

    def pause(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            self._resume.clear()
        else:
            self._resume.set()

    def seek(self, where: Callable[[SeekableSource], Snapshot]) -> Snapshot | None:
        """Move a replay with ``where`` (e.g. ``lambda r: r.seek(0)``) and return the frame there;
        None when the source is not a recording."""
        if self.replay is None:
            return None
        snap = where(self.replay)
        self._seeks += 1
        self._seek_position = snap.replay_position[0] if snap.replay_position else self.replay.position
        return snap

    def change_interval(self, faster: bool) -> float:
        """One step faster or slower; returns the new interval."""
        new = next_interval(self.source.interval_s, faster)
        self.source.set_interval(new)
        return new

    def inspecting(self) -> tuple[InspectingSource | None, str]:
        """The source, if it can look inside running processes (memory maps, allocation stacks);
        else None and why not, in a sentence for the tab that would have shown it."""
        if self.replay is not None:
            return None, "not available in a replay: this looks at a running process, now"
        if isinstance(self.source, InspectingSource):
            return self.source, ""
        return None, "not available from this source"

    async def close(self) -> None:
        """Close the source once, whichever way out calls it first."""
        if not self._closed:
            self._closed = True
            await self.source.close()
