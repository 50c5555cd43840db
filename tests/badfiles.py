"""Broken and hostile files for the recording tests: real files, damaged the way a disk, a bug or
someone handing over a file could damage them (nothing here mocks SQLite)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from frames import make_frames
from memwatch.recording import Recorder
from memwatch.serialize import snapshot_to_dict


def write_recording(path: Path, n: int = 3) -> None:
    with Recorder.open(path) as recorder:
        for frame in make_frames(n):
            recorder.append(frame)


def set_frame_data(path: Path, index: int, data: object) -> None:
    """Replace the stored data of frame ``index`` (0-based) with ``data`` (bytes, or a text value)."""
    conn = sqlite3.connect(path)
    try:
        frame_id = conn.execute("SELECT id FROM frames ORDER BY id LIMIT 1 OFFSET ?", (index,)).fetchone()[0]
        conn.execute("UPDATE frames SET data = ? WHERE id = ?", (data, frame_id))
        conn.commit()
    finally:
        conn.close()


def frame_json(change: Callable[[dict[str, Any]], None]) -> bytes:
    """A frame stored as the recorder stores it, after ``change`` edited its JSON object."""
    d = snapshot_to_dict(make_frames(3)[0], with_events=False)
    change(d)
    return zlib.compress(json.dumps(d).encode())


def deeply_nested(depth: int = 100_000) -> bytes:
    return zlib.compress(b"[" * depth + b"]" * depth)


def zlib_bomb(mib: int = 300) -> bytes:
    """``mib`` MiB of spaces (valid JSON padding) in about a thousandth of that."""
    packer = zlib.compressobj(6)
    chunk = b" " * 2**20
    return b"".join([*(packer.compress(chunk) for _ in range(mib)), packer.flush()])


def foreign_database(path: Path) -> None:
    """Somebody else's SQLite database, in the default rollback-journal mode."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(100)])
        conn.commit()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()


def unix_socket(path: Path) -> None:
    """A socket file left at ``path`` (it outlives the socket that made it)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(os.fspath(path))


def state(path: Path) -> tuple[bytes, int, list[str]]:
    """What must not change when a file is refused: its bytes, its mtime, and its directory."""
    return path.read_bytes(), os.stat(path).st_mtime_ns, sorted(os.listdir(path.parent))
