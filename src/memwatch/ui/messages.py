"""Messages from the source worker to the app."""

from __future__ import annotations

from textual.message import Message

from memwatch.model import Snapshot


class SnapshotArrived(Message):
    """A new snapshot from the source; a newer one waiting in the queue replaces an older one."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        # A slow UI only ever needs the latest frame: stale snapshots are dropped, not queued.
        return isinstance(message, SnapshotArrived)


class SourceEnded(Message):
    """The source has nothing more to give (a replay reached its end, or it failed)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
