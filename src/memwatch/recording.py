"""Recordings: snapshots written to an SQLite file as they come, read back for replay.

Why SQLite: one file, crash-safe transactions and WAL, so a reader can follow a recording that is
still being written and a recorder killed with SIGKILL leaves every committed frame readable.

Layout, format 2 (what this version writes):

- ``meta (key, value)``: ``format_version``, ``created``, ``hostname``.
- ``frames (id, timestamp, data)``: one row per snapshot, committed at once; ``data`` is the
  zlib-compressed JSON of :func:`~memwatch.serialize.snapshot_to_dict` *without* the event log.
- ``events (id, frame, timestamp, kind, pid, tid, name, data)``: every exit and OOM kill once, from
  each snapshot's ``new_events``, in the same transaction as its frame; ``frame`` is the
  ``frames.id`` it arrived with, ``data`` the JSON of the whole event. Query it without decoding
  frames: ``sqlite3 rec.db "select * from events where kind='oom'"``.

Why the events moved out of the frames (format 1 embedded the bounded log, up to 1000 events, in
every frame): a burst of more exits than the log holds lost its oldest before they reached the
file, and every frame carried the same thousand events again. Reading rebuilds what the live
snapshot held: ``new_events`` are the frame's own events, ``events`` the last
:data:`EVENT_LOG_LEN` events of the frames up to it. Format 1 files still read (their frames carry
their log; ``new_events`` are read from the frame, or derived as the events not in the previous
frame's log); this version does not append to them.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import json
import os
import socket
import sqlite3
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from memwatch.model import Event, Snapshot
from memwatch.serialize import (
    SerializationError,
    event_from_dict,
    event_to_dict,
    snapshot_from_dict,
    snapshot_to_dict,
)
from memwatch.sources.base import SnapshotSource

FORMAT_VERSION = 2
"""Version of the file layout; a reader refuses files written with a newer one."""

EVENT_LOG_LEN = 1000
"""How many events a replayed frame's ``events`` holds: the live store's log size (Store's
``events_len`` default), so a replay shows what the dashboard showed."""

_ZLIB_LEVEL = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    timestamp REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    frame INTEGER NOT NULL REFERENCES frames (id),
    timestamp REAL NOT NULL,
    kind TEXT NOT NULL,
    pid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_frame ON events (frame);
CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp);
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, timestamp);
"""
"""No UNIQUE on events (format 1 deduplicated the log it saw in every frame by key): each event
comes once from ``new_events``, and two distinct exits must never be merged into one."""

EventKey = tuple[float, str, int, int]


class RecordingError(Exception):
    """A recording cannot be opened, written or read; the message says why and what to do."""


def _event_key(e: Event) -> EventKey:
    return (e.timestamp, e.kind.value, e.pid, e.tid)


# --- frames and events as stored ------------------------------------------------------------------

def _encode_frame(snapshot: Snapshot) -> bytes:
    # ensure_ascii keeps lone surrogates (names decoded with surrogateescape) representable.
    text = json.dumps(snapshot_to_dict(snapshot, with_events=False), separators=(",", ":"), ensure_ascii=True)
    return zlib.compress(text.encode("ascii"), _ZLIB_LEVEL)


def _encode_event(e: Event) -> str:
    return json.dumps(event_to_dict(e), separators=(",", ":"), ensure_ascii=True)


def _decode_frame(blob: bytes) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(zlib.decompress(blob))
    return d


def _check_meta(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    """Read the meta table, or say in a sentence why this file is not a recording we can read."""
    try:
        rows = conn.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            raise RecordingError(
                f"{path} is an SQLite database but not a memwatch recording (it has no meta table)."
            ) from None
        if "not a database" in str(exc):
            raise RecordingError(
                f"{path} is not a memwatch recording: it is not an SQLite database."
            ) from None
        raise  # e.g. a read-only directory: the caller knows what to try next
    meta = dict(rows)
    version_text = meta.get("format_version")
    if version_text is None:
        raise RecordingError(f"{path} is not a memwatch recording (its meta table has no format version).")
    try:
        version = int(version_text)
    except ValueError:
        raise RecordingError(f"{path} has an unreadable format version {version_text!r}.") from None
    if version > FORMAT_VERSION:
        raise RecordingError(
            f"{path} was written by a newer memwatch (recording format {version}; this version reads "
            f"format {FORMAT_VERSION} and older). Upgrade memwatch to read it."
        )
    return meta


def _explain_open_error(path: Path, exc: sqlite3.Error) -> RecordingError:
    if not path.parent.exists():
        return RecordingError(f"cannot create {path}: the directory {path.parent} does not exist.")
    return RecordingError(f"cannot open {path}: {exc}.")


class Recorder:
    """Appends snapshots to a recording file, one committed transaction per frame."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._hostname_written = False
        self.frames_written = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], hostname: str | None = None) -> Recorder:
        """Create the file (or append to an existing format-2 recording).

        The hostname stored in meta is replaced by the first frame's hostname when one arrives.
        """
        p = Path(path)
        if p.is_dir():
            raise RecordingError(f"cannot record to {p}: it is a directory; give a file name.")
        try:
            conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _explain_open_error(p, exc) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone() is not None
            if has_meta:
                version = int(_check_meta(conn, p)["format_version"])
                if version < FORMAT_VERSION:
                    raise RecordingError(
                        f"{p} was recorded by an older memwatch (recording format {version}); this version "
                        f"records format {FORMAT_VERSION} and cannot append to it. Record into a new file; "
                        f"{p.name} still replays."
                    )
            elif conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise RecordingError(
                    f"{p} is an SQLite database but not a memwatch recording; refusing to write into it."
                )
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (repr(time.time()),))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('hostname', ?)",
                         (hostname or socket.gethostname(),))
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc):
                raise RecordingError(
                    f"{p} exists and is not a memwatch recording (not an SQLite database); "
                    "refusing to overwrite it."
                ) from None
            raise _explain_open_error(p, exc) from None
        except RecordingError:
            conn.close()
            raise
        recorder = cls(conn, p)
        recorder.frames_written = 0
        recorder._hostname_written = conn.execute("SELECT count(*) FROM frames").fetchone()[0] > 0
        return recorder

    def append(self, snapshot: Snapshot) -> None:
        """Write one frame and the events that arrived with it, committed before returning."""
        blob = _encode_frame(snapshot)
        events = [(e.timestamp, e.kind.value, e.pid, e.tid, e.name, _encode_event(e)) for e in snapshot.new_events]
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                frame_id = conn.execute("INSERT INTO frames (timestamp, data) VALUES (?, ?)",
                                        (snapshot.timestamp, blob)).lastrowid
                if events:
                    conn.executemany(
                        "INSERT INTO events (frame, timestamp, kind, pid, tid, name, data) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(frame_id, *row) for row in events],
                    )
                if not self._hostname_written:
                    conn.execute("UPDATE meta SET value=? WHERE key='hostname'", (snapshot.hostname,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise RecordingError(f"cannot write to {self.path}: {exc}.") from None
        self._hostname_written = True
        self.frames_written += 1

    def close(self) -> None:
        """Checkpoint and close; safe to call twice."""
        self._conn.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


async def _append_off_loop(recorder: Recorder, snapshot: Snapshot) -> None:
    """Encode and commit in a worker thread (tens of ms for hundreds of processes) so the loop
    stays responsive; on cancellation the write still finishes before the recorder is closed."""
    write = asyncio.get_running_loop().run_in_executor(None, recorder.append, snapshot)
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        await asyncio.wait([write])
        raise


async def record(source: SnapshotSource, path: str | os.PathLike[str], duration_s: float | None,
                 on_frame: Callable[[Snapshot], None] | None = None) -> int:
    """Record ``source`` into ``path`` until ``duration_s`` has elapsed (None: until cancelled).

    The last frame written is the first one taken at or after the deadline (monotonic clock).
    A frame with the same timestamp as the previous one (a replay standing at its end) is skipped.
    Returns the number of frames written; source and file are closed however the loop ends.
    """
    recorder = Recorder.open(path)
    loop = asyncio.get_running_loop()
    try:
        snapshot = await source.open()
        started = loop.time()
        last_ts: float | None = None
        while True:
            if snapshot.timestamp != last_ts:
                await _append_off_loop(recorder, snapshot)
                last_ts = snapshot.timestamp
                if on_frame is not None:
                    on_frame(snapshot)
            if duration_s is not None and loop.time() - started >= duration_s:
                break
            snapshot = await source.next()
    finally:
        try:
            await source.close()
        finally:
            recorder.close()
    return recorder.frames_written


# --- reading --------------------------------------------------------------------------------------

class Recording:
    """A recording opened read-only: frames by index or time, and the events table.

    Works while a recorder is still writing (WAL); call :meth:`refresh` to see frames added since.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, meta: dict[str, str], *,
                 log_len: int = EVENT_LOG_LEN) -> None:
        self._conn = conn
        self.path = path
        self.meta = meta
        self.log_len = log_len
        self._version = int(meta["format_version"])
        self._ids: list[int] = []
        self._timestamps: list[float] = []
        self._cache: tuple[int, Snapshot] | None = None
        self._decoded_events: dict[int, Event] = {}
        """Format 2: the events of the last frame read, by id; a step to a neighbouring frame
        decodes only the events that differ."""
        self._log_keys: dict[int, frozenset[EventKey]] = {}
        """Format 1: the log of the last frames read, to derive new_events when a frame lacks them."""
        self.refresh()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, log_len: int = EVENT_LOG_LEN) -> Recording:
        p = Path(path)
        if not p.exists():
            raise RecordingError(f"no recording at {p}: the file does not exist.")
        if p.is_dir():
            raise RecordingError(f"{p} is a directory, not a recording file.")
        if not os.access(p, os.R_OK):
            raise RecordingError(f"cannot read {p}: permission denied.")
        try:
            return cls._open_connection(p, immutable=False, log_len=log_len)
        except sqlite3.OperationalError as exc:
            # A WAL file needs a writable -shm beside it. With no -wal content to lose (a recording
            # copied without it, or closed cleanly) the file can be read as immutable instead.
            wal = p.with_name(p.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise RecordingError(
                    f"cannot read {p}: {exc}. Its write-ahead log {wal.name} holds frames that can only be "
                    f"read with write access to {p.parent}; copy the recording with its -wal and -shm "
                    "files to a writable directory."
                ) from None
        try:
            return cls._open_connection(p, immutable=True, log_len=log_len)
        except sqlite3.Error as exc:
            raise RecordingError(f"cannot read {p}: {exc}.") from None

    @classmethod
    def _open_connection(cls, p: Path, *, immutable: bool, log_len: int) -> Recording:
        flags = "mode=ro&immutable=1" if immutable else "mode=ro"
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?{flags}", uri=True, check_same_thread=False)
        try:
            return cls(conn, p, _check_meta(conn, p), log_len=log_len)
        except sqlite3.OperationalError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise RecordingError(f"{p} is damaged or unreadable: {exc}.") from None
        except RecordingError:
            conn.close()
            raise

    @property
    def hostname(self) -> str:
        return self.meta.get("hostname", "")

    @property
    def format_version(self) -> int:
        return int(self.meta["format_version"])

    def refresh(self) -> int:
        """Pick up frames committed since the last look (the recorder may still be writing)."""
        last_id = self._ids[-1] if self._ids else 0
        try:
            rows = self._conn.execute(
                "SELECT id, timestamp FROM frames WHERE id > ? ORDER BY id", (last_id,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise RecordingError(f"cannot read frames from {self.path}: {exc}.") from None
        for frame_id, ts in rows:
            self._ids.append(frame_id)
            self._timestamps.append(ts)
        return len(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def frame(self, i: int) -> Snapshot:
        """Frame ``i`` (0-based; negative counts from the end like a list), with the event log and
        the new events it had live."""
        n = len(self._ids)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range: the recording has {n} frames")
        i %= n
        if self._cache is not None and self._cache[0] == i:
            return self._cache[1]
        try:
            snapshot = self._frame_v2(i) if self._version >= 2 else self._frame_v1(i)
        except sqlite3.Error as exc:
            raise RecordingError(f"frame {i} of {self.path} cannot be read: {exc}.") from None
        self._cache = (i, snapshot)
        return snapshot

    def _stored_frame(self, i: int) -> tuple[dict[str, Any], Snapshot]:
        row = self._conn.execute("SELECT data FROM frames WHERE id = ?", (self._ids[i],)).fetchone()
        try:
            d = _decode_frame(row[0])
            return d, snapshot_from_dict(d)
        except (zlib.error, ValueError, SerializationError, TypeError) as exc:
            raise RecordingError(f"frame {i} of {self.path} is damaged: {exc}") from None

    def _frame_v2(self, i: int) -> Snapshot:
        _, snapshot = self._stored_frame(i)
        frame_id = self._ids[i]
        conn = self._conn
        # events_by_frame holds (frame, id): both walks below read the index alone.
        log_ids = [r[0] for r in conn.execute(
            "SELECT id FROM events WHERE frame <= ? ORDER BY frame DESC, id DESC LIMIT ?",
            (frame_id, self.log_len))]
        log_ids.reverse()
        new_ids = [r[0] for r in conn.execute("SELECT id FROM events WHERE frame = ? ORDER BY id", (frame_id,))]
        known = self._decoded_events
        events = {eid: known[eid] for eid in (*log_ids, *new_ids) if eid in known}
        missing = [eid for eid in (*log_ids, *new_ids) if eid not in events]
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            rows = conn.execute(f"SELECT id, data FROM events WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            for eid, data in rows:
                events[eid] = self._decode_event(eid, data)
        self._decoded_events = events
        return dataclasses.replace(snapshot, events=tuple(events[e] for e in log_ids),
                                   new_events=tuple(events[e] for e in new_ids))

    def _frame_v1(self, i: int) -> Snapshot:
        d, snapshot = self._stored_frame(i)
        if "new_events" in d:  # written by a recorder that knew new_events
            return snapshot
        self._log_keys = {j: k for j, k in self._log_keys.items() if abs(j - i) <= 1}
        self._log_keys[i] = frozenset(map(_event_key, snapshot.events))
        if i == 0:
            previous: frozenset[EventKey] = frozenset()
        elif i - 1 in self._log_keys:
            previous = self._log_keys[i - 1]
        else:
            previous = frozenset(map(_event_key, self._stored_frame(i - 1)[1].events))
        return dataclasses.replace(snapshot, new_events=tuple(
            e for e in snapshot.events if _event_key(e) not in previous))

    def _decode_event(self, event_id: int, data: str) -> Event:
        try:
            return event_from_dict(json.loads(data))
        except ValueError as exc:
            raise RecordingError(f"event {event_id} of {self.path} is damaged: {exc}") from None

    def timestamps(self) -> list[float]:
        return list(self._timestamps)

    def index_at(self, timestamp: float) -> int:
        """Index of the last frame at or before ``timestamp``; 0 when it is before the first."""
        return max(bisect.bisect_right(self._timestamps, timestamp) - 1, 0)

    def events(self, kind: str | None = None) -> list[Event]:
        """Exits and OOM kills (every event written), oldest first; ``kind`` filters e.g. 'oom'."""
        if kind is None:
            return self._select_events("", ())
        return self._select_events(" WHERE kind = ?", (kind,))

    def events_between(self, since: float | None, until: float | None) -> list[Event]:
        """Every exit and OOM kill with ``since <= timestamp <= until``, oldest first (None: no bound).

        From the events table, so every event recorded is there, not only those a frame's log kept.
        """
        clauses, args = [], []
        if since is not None:
            clauses.append("timestamp >= ?")
            args.append(since)
        if until is not None:
            clauses.append("timestamp <= ?")
            args.append(until)
        return self._select_events(" WHERE " + " AND ".join(clauses) if clauses else "", tuple(args))

    def _select_events(self, where: str, args: tuple[Any, ...]) -> list[Event]:
        try:
            rows = self._conn.execute(f"SELECT id, data FROM events{where} ORDER BY timestamp, id", args).fetchall()
        except sqlite3.Error as exc:
            raise RecordingError(f"cannot read the events of {self.path}: {exc}.") from None
        return [self._decode_event(eid, data) for eid, data in rows]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
