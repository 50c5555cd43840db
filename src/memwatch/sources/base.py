"""One interface, several sources: live (eBPF + /proc), /proc only, and replay of a recording.

Readers (dashboard, headless output, recorder, exporter) only ever see this protocol and the
immutable :class:`~memwatch.model.Snapshot` it yields, so each can be fed by any source.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from memwatch.model import Event, ProcessKey, SmapsRollup, Snapshot


@runtime_checkable
class SnapshotSource(Protocol):
    """Produces snapshots, one per interval (live) or one per recorded frame (replay)."""

    @property
    def interval_s(self) -> float: ...

    def set_interval(self, seconds: float) -> None:
        """Change the sampling interval; takes effect at the next wait."""

    async def open(self) -> Snapshot:
        """Start (attach probes, open the file) and return a first snapshot at once."""

    async def next(self) -> Snapshot:
        """Wait until the next snapshot is due and return it."""

    async def rollup(self, key: ProcessKey) -> SmapsRollup | None:
        """PSS/USS/SwapPss of one process, read off the event loop with a time cap; None if gone
        (or not read in time), PermissionError when not allowed to read them."""

    async def send_signal(self, key: ProcessKey, signum: int) -> None:
        """Signal that process and no other: ProcessLookupError when it is gone (even if its pid
        now belongs to another process), PermissionError when not allowed or not possible (replay)."""

    async def close(self) -> None:
        """Detach everything; safe to call twice."""


@runtime_checkable
class SeekableSource(SnapshotSource, Protocol):
    """A replay: the same snapshots, plus time controls."""

    @property
    def frame_count(self) -> int: ...

    @property
    def position(self) -> int: ...

    def seek(self, index: int) -> Snapshot:
        """Jump to frame ``index`` (clamped) and return it."""

    def seek_time(self, timestamp: float) -> Snapshot:
        """Jump to the last frame at or before ``timestamp`` (wall-clock seconds)."""

    def events_between(self, since: float | None, until: float | None) -> list[Event]:
        """Every exit and OOM kill recorded with ``since <= timestamp <= until`` (None: no bound)."""
