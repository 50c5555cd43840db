"""Replay of a recording (or of frames in memory) behind the same interface as a live source.

Pacing: with ``realtime=True`` :meth:`ReplaySource.next` waits the recorded gap between frames
divided by the speed (a gap longer than 5 recorded intervals, e.g. a paused recorder, is shortened
to that); with ``realtime=False`` it returns the next frame at once (tests, stepping, conversion).
At the last frame both modes wait one paced interval and return the last frame again, so a reader
calling ``next()`` in a loop idles instead of spinning; a recording still being written is
re-read at that point, so playback follows it as it grows.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import os
import statistics
from collections.abc import Sequence

from memwatch.model import Event, ProcessKey, SmapsRollup, Snapshot
from memwatch.recording import Recording, RecordingError

_DEFAULT_INTERVAL_S = 1.0
_MAX_GAP_INTERVALS = 5.0


class ReplaySource:
    """A :class:`~memwatch.sources.base.SeekableSource` over recorded frames."""

    def __init__(self, frames: Recording | Sequence[Snapshot], *, realtime: bool = False,
                 speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"replay speed must be positive, got {speed}")
        self._frames = frames
        self._owns_recording = False
        self._realtime = realtime
        self._speed = speed
        self._position = 0
        self._timestamps: list[float] = []
        self._recorded_interval_s = _DEFAULT_INTERVAL_S
        self._reload_timestamps()
        if not self._timestamps:
            where = f" {frames.path}" if isinstance(frames, Recording) else ""
            raise RecordingError(f"the recording{where} has no frames to replay.")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, realtime: bool = True,
                  speed: float = 1.0) -> ReplaySource:
        """Open a recording file for replay, paced in real time by default (the dashboard's use).

        Errors are :class:`RecordingError` with a sentence; :meth:`close` closes the file.
        """
        recording = Recording.open(path)
        try:
            source = cls(recording, realtime=realtime, speed=speed)
        except BaseException:
            recording.close()
            raise
        source._owns_recording = True
        return source

    def _reload_timestamps(self) -> None:
        frames = self._frames
        if isinstance(frames, Recording):
            frames.refresh()
            self._timestamps = frames.timestamps()
        else:
            self._timestamps = [s.timestamp for s in frames]
        gaps = [b - a for a, b in zip(self._timestamps, self._timestamps[1:], strict=False) if b > a]
        self._recorded_interval_s = statistics.median(gaps) if gaps else _DEFAULT_INTERVAL_S

    def _frame(self, index: int) -> Snapshot:
        frames = self._frames
        raw = frames.frame(index) if isinstance(frames, Recording) else frames[index]
        return dataclasses.replace(raw, replay_position=(index, len(self._timestamps)))

    # --- SnapshotSource ---------------------------------------------------------------------------

    @property
    def interval_s(self) -> float:
        """The paced gap between frames: the recording's median gap divided by the speed."""
        return self._recorded_interval_s / self._speed

    @property
    def recorded_interval_s(self) -> float:
        """Median gap between recorded frames (1 s for a one-frame recording)."""
        return self._recorded_interval_s

    @property
    def speed(self) -> float:
        return self._speed

    def set_interval(self, seconds: float) -> None:
        """Pace playback so that a recorded interval takes ``seconds`` (changes the speed)."""
        if seconds <= 0:
            raise ValueError(f"the interval must be positive, got {seconds}")
        self._speed = self._recorded_interval_s / seconds

    async def open(self) -> Snapshot:
        """Frame 0."""
        self._position = 0
        return self._frame(0)

    async def next(self) -> Snapshot:
        """The following frame, paced when realtime; at the end, the last frame after one interval."""
        last = len(self._timestamps) - 1
        if self._position >= last:
            await asyncio.sleep(self.interval_s)
            if isinstance(self._frames, Recording):
                self._reload_timestamps()
                last = len(self._timestamps) - 1
            if self._position >= last:
                return self._frame(last)
        elif self._realtime:
            gap = self._timestamps[self._position + 1] - self._timestamps[self._position]
            gap = min(max(gap, 0.0), self._recorded_interval_s * _MAX_GAP_INTERVALS)
            await asyncio.sleep(gap / self._speed)
        else:
            await asyncio.sleep(0)
        self._position = min(self._position + 1, len(self._timestamps) - 1)
        return self._frame(self._position)

    async def rollup(self, key: ProcessKey) -> SmapsRollup | None:
        """The PSS/USS stored with the current frame, if the recorder had read it."""
        view = self._frame(self._position).by_key.get(key)
        return view.rollup if view is not None else None

    async def send_signal(self, key: ProcessKey, signum: int) -> None:
        raise PermissionError("this is a recording: its processes cannot be signalled from here")

    async def close(self) -> None:
        """Close the recording if this source opened it; safe to call twice."""
        if self._owns_recording and isinstance(self._frames, Recording):
            self._frames.close()
            self._owns_recording = False

    # --- SeekableSource ---------------------------------------------------------------------------

    @property
    def frame_count(self) -> int:
        return len(self._timestamps)

    @property
    def position(self) -> int:
        return self._position

    @property
    def time_span(self) -> tuple[float, float]:
        """Timestamps of the first and the last frame known so far, to tell a time outside the
        recording (which :meth:`seek_time` clamps) from one inside it."""
        return self._timestamps[0], self._timestamps[-1]

    def seek(self, index: int) -> Snapshot:
        """Jump to frame ``index``, clamped to the recording."""
        self._position = min(max(index, 0), len(self._timestamps) - 1)
        return self._frame(self._position)

    def events_between(self, since: float | None, until: float | None) -> list[Event]:
        """Every exit and OOM kill recorded with ``since <= timestamp <= until`` (None: no bound),
        oldest first: from the recording's events table, or from the frames' new events."""
        frames = self._frames
        if isinstance(frames, Recording):
            return frames.events_between(since, until)
        events = sorted((e for f in frames for e in f.new_events), key=lambda e: e.timestamp)
        return [e for e in events if (since is None or e.timestamp >= since)
                and (until is None or e.timestamp <= until)]

    def seek_time(self, timestamp: float) -> Snapshot:
        """Jump to the last frame at or before ``timestamp``; frame 0 if it is before the first."""
        return self.seek(bisect.bisect_right(self._timestamps, timestamp) - 1)
