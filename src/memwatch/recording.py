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

What is checked, and why: a recording is a file someone can hand you, and it holds every command
line (where secrets get passed), so

- only a regular file is opened (a FIFO given by mistake hung the open, deaf to Ctrl+C); the check
  is made on a descriptor opened with O_NONBLOCK, and the name is checked again once SQLite has it;
- a new recording, its -wal and its -shm are private (0600: SQLite gives those the database's mode);
- a file that is not a memwatch recording is recognised read-only before anything opens it for
  writing, so it is left byte for byte as it was;
- a recording nobody is writing (no -wal beside it) is read as immutable, which leaves no -shm or
  -wal behind; one with a -wal is read normally, so a replay follows a recording still written;
- a frame may not decompress to more than :func:`max_frame_bytes` of its stored size (a zlib bomb),
  and every decoded value is checked against the model (:mod:`memwatch.serialize`), so a damaged
  or hostile frame is one sentence saying which frame and what is wrong, never a traceback.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import json
import os
import socket
import sqlite3
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from memwatch.model import Event, Snapshot
from memwatch.serialize import (
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

_MAX_FRAME_FLOOR = 64 * 2**20
_MAX_FRAME_RATIO = 256
_INFLATE_STEP = 2**20


def max_frame_bytes(stored: int) -> int:
    """The most a frame stored in ``stored`` bytes may decompress to.

    Measured (120-sample histories): a real machine's 93 processes compress 19:1, with 3,000 idle
    ``sleep`` processes 55:1; synthetic frames (bench/bench_recording.py --sizes) 7:1 for varied
    processes and 181:1 for 10,000 processes identical but for their pid, the most compressible
    frame memwatch makes, 45 MiB of JSON (10,000 real processes are 35-46 MB). So the 64 MiB floor
    admits any frame of up to ~14,000 processes whatever its ratio, and 256 times the stored size
    admits bigger ones at any ratio seen; a zlib bomb (~1000:1) is stopped at a quarter of its size
    or 64 MiB, inflated a MiB at a time, instead of taking hundreds of MB.
    """
    return max(_MAX_FRAME_FLOOR, _MAX_FRAME_RATIO * stored)


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

_SQLITE_HEADER = b"SQLite format 3\x00"

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


def _frame_dict(blob: object) -> dict[str, Any]:
    """A stored frame's JSON object; ValueError with the reason when it cannot be one.

    Inflated a MiB at a time and refused as soon as it passes :func:`max_frame_bytes`, so a zlib
    bomb costs that much memory at most (one call with max_length holds the limit twice over: its
    output buffer, then the copy it returns).
    """
    if type(blob) is not bytes:
        raise ValueError(f"its data is {type(blob).__name__}, not compressed bytes")
    limit = max_frame_bytes(len(blob))
    inflater = zlib.decompressobj()
    parts: list[bytes] = []
    size = 0
    data = blob
    try:
        while True:
            part = inflater.decompress(data, _INFLATE_STEP)
            size += len(part)
            if size > limit:
                raise ValueError(f"it decompresses to more than {limit // 2**20} MiB from {len(blob)} bytes, "
                                 "far more than any real frame; it was not read")
            parts.append(part)
            if inflater.eof:
                break
            data = inflater.unconsumed_tail
            if not part and not data:
                raise ValueError("its compressed data is cut short")
    except zlib.error as exc:
        raise ValueError(f"its data does not decompress ({exc})") from None
    return _json_object(b"".join(parts), "a snapshot")


def _json_object(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
    except RecursionError:
        raise ValueError(f"its JSON is nested too deeply to be {what}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, digits over int_max_str_digits
        raise ValueError(f"it is not valid JSON ({exc})") from None
    if type(d) is not dict:
        raise ValueError(f"its JSON is a {type(d).__name__}, not {what}")
    return d


# --- opening files safely -------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_regular(p: Path, mode: int, doing: str) -> RecordingError:
    kind = next((words for test, words in _KINDS if test(mode)), "not a regular file")
    advice = "give a file name" if stat.S_ISDIR(mode) else "give a regular file"
    return RecordingError(f"cannot {doing} {p}: it is {kind}, not a recording file; {advice}.")


def _open_checked(p: Path, doing: str) -> int:
    """A read-only descriptor on ``p``, which must be a regular file.

    stat() first, so a device or FIFO is refused without being opened; O_NONBLOCK so that if the
    name is swapped for a FIFO in between, the open still returns (and fstat refuses it).
    """
    try:
        mode = os.stat(p).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(p, mode, doing)
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RecordingError(f"no recording at {p}: the file does not exist.") from None
    except PermissionError:
        raise RecordingError(f"cannot {doing} {p}: permission denied.") from None
    except OSError as exc:
        raise RecordingError(f"cannot {doing} {p}: {exc.strerror}.") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(p, mode, doing)
    return fd


def _same_file(p: Path, fd: int) -> bool:
    """Whether the name still leads to the file behind ``fd``."""
    try:
        now = os.stat(p)
    except OSError:
        return False
    then = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (then.st_dev, then.st_ino)


@contextmanager
def _unblocking_fifo_opens(p: Path) -> Iterator[None]:
    """While SQLite opens ``p`` by name: if the name now is a FIFO (swapped in after our check),
    open its write end so SQLite's blocking open returns (SQLite retries an open interrupted by a
    signal, so Ctrl+C cannot end it); :func:`_connect` then sees another file and refuses it."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            try:
                if stat.S_ISFIFO(os.stat(p).st_mode):
                    os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            except OSError:
                pass  # no reader blocked on it (ENXIO), or gone: nothing to unblock

    watcher = threading.Thread(target=watch, name="memwatch-open-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _connect(p: Path, fd: int, flags: str) -> sqlite3.Connection:
    """SQLite on the file behind ``fd`` (checked to be regular), opened by name with URI ``flags``.

    SQLite cannot be handed a descriptor; the name is checked to lead to the same file once it is
    open, and a swap is refused before SQLite reads a byte of it.
    """
    uri = f"{p.resolve().as_uri()}?{flags}"
    replaced = RecordingError(f"{p} was replaced while it was being opened; try again.")
    try:
        with _unblocking_fifo_opens(p):
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error:
        if not _same_file(p, fd):
            raise replaced from None
        raise
    if not _same_file(p, fd):
        conn.close()
        raise replaced
    return conn


def _check_header(p: Path, fd: int, doing: str) -> bool:
    """False for an empty file; raise unless it starts like an SQLite database. Read through our own
    descriptor, so SQLite never opens (and never converts) a file that is not a database."""
    head = os.pread(fd, len(_SQLITE_HEADER), 0)
    if not head:
        return False
    if head != _SQLITE_HEADER:
        if doing == "record to":
            raise RecordingError(f"{p} exists and is not a memwatch recording (not an SQLite database); "
                                 "refusing to overwrite it.")
        raise RecordingError(f"{p} is not a memwatch recording: it is not an SQLite database.")
    return True


def _wal(p: Path) -> Path:
    return p.with_name(p.name + "-wal")


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
    meta = {str(k): str(v) for k, v in rows if k is not None and v is not None}
    version_text = meta.get("format_version")
    if version_text is None:
        raise RecordingError(f"{path} is not a memwatch recording (its meta table has no format version).")
    try:
        version = int(version_text)
    except ValueError:
        version = 0
    if version < 1:
        raise RecordingError(f"{path} has an unreadable format version {version_text!r}.")
    if version > FORMAT_VERSION:
        raise RecordingError(
            f"{path} was written by a newer memwatch (recording format {version}; this version reads "
            f"format {FORMAT_VERSION} and older). Upgrade memwatch to read it."
        )
    return meta


def _explain_open_error(path: Path, exc: sqlite3.Error) -> RecordingError:
    return RecordingError(f"cannot open {path}: {exc}.")


# --- writing --------------------------------------------------------------------------------------

def _create_private(p: Path) -> int | None:
    """Create ``p`` 0600 (it will hold every command line), or None if it appeared meanwhile.

    Created here rather than by SQLite, which would use 0644; SQLite then gives -wal and -shm the
    database's mode. O_EXCL: never through a symlink left at that name.
    """
    try:
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return None
    except FileNotFoundError:
        raise RecordingError(f"cannot create {p}: the directory {p.parent} does not exist.") from None
    except PermissionError:
        raise RecordingError(f"cannot create {p}: permission denied.") from None
    except OSError as exc:
        raise RecordingError(f"cannot create {p}: {exc.strerror}.") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    return fd


def _vet_existing(p: Path, fd: int) -> None:
    """Refuse, without writing a byte, a file this recorder must not append to.

    Read-only: the header through our descriptor, then SQLite as immutable (no lock, no -shm) unless
    a -wal says a recorder may be writing or died mid-way (its frames are only in the -wal then).
    An empty file or an empty database is fine: it becomes a recording.
    """
    if not _check_header(p, fd, "record to"):
        return
    flags = "mode=ro" if _wal(p).exists() else "mode=ro&immutable=1"
    try:
        conn = _connect(p, fd, flags)
    except sqlite3.Error as exc:
        raise _explain_open_error(p, exc) from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return
        if "meta" not in tables:
            raise RecordingError(f"{p} is an SQLite database but not a memwatch recording; "
                                 "refusing to write into it.")
        version = int(_check_meta(conn, p)["format_version"])
        if version < FORMAT_VERSION:
            raise RecordingError(
                f"{p} was recorded by an older memwatch (recording format {version}); this version "
                f"records format {FORMAT_VERSION} and cannot append to it. Record into a new file; "
                f"{p.name} still replays."
            )
    except sqlite3.DatabaseError as exc:
        raise RecordingError(f"{p} cannot be checked before recording to it: {exc}.") from None
    finally:
        conn.close()


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
        fd = None
        created = False
        beside = (_wal(p), p.with_name(p.name + "-shm"))
        there_before = [f.exists() for f in beside]
        try:
            if not p.exists():
                if p.is_symlink():
                    raise RecordingError(f"cannot record to {p}: it is a symbolic link to a file that "
                                         "does not exist; give the file's own name.")
                if there_before[0]:
                    raise RecordingError(
                        f"cannot record to {p}: a write-ahead log {beside[0].name} from an earlier file of "
                        "that name is beside it, and SQLite would replay it into the new recording; "
                        "remove it or choose another name.")
                fd = _create_private(p)
                created = fd is not None
            if fd is None:
                fd = _open_checked(p, "record to")
                _vet_existing(p, fd)
            conn = cls._open_for_writing(p, fd, hostname)
        except BaseException:
            if created:  # ours from a moment ago: leave nothing behind
                p.unlink(missing_ok=True)
                for leftover, existed in zip(beside, there_before, strict=True):
                    if not existed:
                        leftover.unlink(missing_ok=True)
            raise
        finally:
            if fd is not None:
                os.close(fd)
        recorder = cls(conn, p)
        recorder._hostname_written = conn.execute("SELECT count(*) FROM frames").fetchone()[0] > 0
        return recorder

    @staticmethod
    def _open_for_writing(p: Path, fd: int, hostname: str | None) -> sqlite3.Connection:
        # mode=rw: the file exists (created above, 0600, or checked); SQLite must never create one.
        try:
            conn = _connect(p, fd, "mode=rw")
        except sqlite3.Error as exc:
            raise _explain_open_error(p, exc) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            # Checked again under the write lock: another recorder may have started meanwhile.
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" in tables:
                if int(_check_meta(conn, p)["format_version"]) != FORMAT_VERSION:
                    raise RecordingError(f"{p} changed to another recording format while it was opened.")
            elif tables:
                raise RecordingError(f"{p} is an SQLite database but not a memwatch recording; "
                                     "refusing to write into it.")
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
            raise _explain_open_error(p, exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

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
        """Open ``path`` for reading; errors are :class:`RecordingError` with a sentence.

        With no -wal beside it nobody is writing it: opened immutable, so that nothing (no -shm, no
        lock) is created beside it. With one, opened normally so that frames still being added are
        seen. A recorder that starts appending after an immutable open is not followed (and pages
        it moves may read as damaged): replay a file being written only once its recorder runs.
        """
        p = Path(path)
        fd = _open_checked(p, "read")
        try:
            if not _check_header(p, fd, "read"):
                raise RecordingError(f"{p} is empty, not a memwatch recording.")
            wal = _wal(p)
            if wal.exists():
                try:
                    return cls._open_connection(p, fd, "mode=ro", log_len)
                except sqlite3.OperationalError as exc:
                    # A WAL needs a writable -shm beside it. With no -wal content to lose (a
                    # recording copied without it) the file can be read as immutable instead.
                    if wal.exists() and wal.stat().st_size > 0:
                        raise RecordingError(
                            f"cannot read {p}: {exc}. Its write-ahead log {wal.name} holds frames that can "
                            f"only be read with write access to {p.parent}; copy the recording with its -wal "
                            "and -shm files to a writable directory."
                        ) from None
            try:
                return cls._open_connection(p, fd, "mode=ro&immutable=1", log_len)
            except sqlite3.Error as exc:
                raise RecordingError(f"cannot read {p}: {exc}.") from None
        finally:
            os.close(fd)

    @classmethod
    def _open_connection(cls, p: Path, fd: int, flags: str, log_len: int) -> Recording:
        conn = _connect(p, fd, flags)
        try:
            return cls(conn, p, _check_meta(conn, p), log_len=log_len)
        except sqlite3.OperationalError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise RecordingError(f"{p} is damaged or unreadable: {exc}.") from None
        except BaseException:
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
            if type(ts) is not float and type(ts) is not int:
                shown = "missing (NULL)" if ts is None else f"{ts!r:.40}"
                raise RecordingError(
                    f"frame {len(self._ids)} of {self.path} is damaged: its timestamp is {shown}, not a "
                    "number; the frames cannot be put in order."
                )
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
            if row is None:
                raise ValueError("it is no longer in the file")
            d = _frame_dict(row[0])
            return d, snapshot_from_dict(d)
        except ValueError as exc:  # SerializationError included
            raise RecordingError(f"frame {i} of {self.path} is damaged: {exc}.") from None

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

    def _decode_event(self, event_id: int, data: object) -> Event:
        try:
            if not isinstance(data, str | bytes):
                raise ValueError(f"its data is {type(data).__name__}, not JSON text")
            return event_from_dict(_json_object(data, "an event"))
        except ValueError as exc:
            raise RecordingError(f"event {event_id} of {self.path} is damaged: {exc}.") from None

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
