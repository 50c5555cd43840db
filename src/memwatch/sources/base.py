"""One interface, several sources: live (eBPF + /proc), /proc only, and replay of a recording.

Readers (dashboard, headless output, recorder, exporter) only ever see this protocol and the
immutable :class:`~memwatch.model.Snapshot` it yields, so each can be fed by any source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from memwatch.maps import MemoryMap
from memwatch.model import Event, ProcessKey, SmapsRollup, Snapshot
from memwatch.stacks.table import AllocationStack


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


class StacksUnavailable(Exception):
    """Allocation stacks cannot be captured here; the message is the sentence for the user."""


@dataclass(frozen=True, slots=True)
class StackReport:
    """What a stack capture has found so far: the stacks ranked by outstanding bytes, and the
    kernel's counts since the capture began (calls sent with their stack, without it because the
    process was over its budget, lost because the ring was full)."""

    pid: int
    since: float
    """Wall-clock time the capture began (what the figures count from)."""
    stacks: tuple[AllocationStack, ...]
    captured: int = 0
    throttled: int = 0
    dropped: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    """Modules whose files could not be read (their frames show as module+offset): path -> why."""


@runtime_checkable
class InspectingSource(SnapshotSource, Protocol):
    """A source that can look inside a running process on demand: its memory map, and its
    allocation call stacks for as long as someone looks (live sources; not a replay)."""

    async def memory_map_of(self, key: ProcessKey, timeout_s: float) -> MemoryMap:
        """The process's mappings, off the event loop, at most ``timeout_s`` (TimeoutError);
        ProcessLookupError when that process is gone, PermissionError when not allowed."""

    async def start_stacks(self, key: ProcessKey) -> None:
        """Capture that process's allocation stacks from now on; StacksUnavailable (with its
        sentence) when this source cannot, ProcessLookupError when the process is gone."""

    async def stop_stacks(self, pid: int) -> None:
        """Stop capturing and forget what was captured; nothing when it was not captured."""

    async def stack_report(self, pid: int) -> StackReport | None:
        """The stacks captured so far (unwound and symbolized off the event loop); None when the
        process is not being captured."""
