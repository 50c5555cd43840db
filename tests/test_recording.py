"""Recordings: write/read round trips, crash safety, concurrent reading, clear errors."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from frames import BASE_TIMESTAMP, FRAME_GAP_S, HOSTNAME, make_frames
from memwatch.model import EventKind, Snapshot
from memwatch.recording import FORMAT_VERSION, Recorder, Recording, RecordingError, record
from memwatch.sources.replay import ReplaySource

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, frames: list[Snapshot]) -> None:
    with Recorder.open(path) as recorder:
        for frame in frames:
            recorder.append(frame)


def test_frames_read_back_equal(tmp_path: Path) -> None:
    frames = make_frames(5)
    path = tmp_path / "rec.db"
    _write(path, frames)
    with Recording.open(path) as rec:
        assert len(rec) == 5
        assert [rec.frame(i) for i in range(5)] == frames
        assert rec.frame(-1) == frames[-1]
        assert rec.timestamps() == [f.timestamp for f in frames]
        assert rec.hostname == HOSTNAME
        assert rec.format_version == FORMAT_VERSION


def test_degraded_frames_read_back_equal(tmp_path: Path) -> None:
    frames = make_frames(4, degraded=True)
    path = tmp_path / "rec.db"
    _write(path, frames)
    with Recording.open(path) as rec:
        assert [rec.frame(i) for i in range(len(rec))] == frames


def test_file_uses_wal_and_compressed_frames(tmp_path: Path) -> None:
    path = tmp_path / "rec.db"
    _write(path, make_frames(2))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        blob = conn.execute("SELECT data FROM frames LIMIT 1").fetchone()[0]
        assert blob[:1] == b"\x78"  # zlib header, not JSON text
    finally:
        conn.close()


def test_each_event_is_written_once(tmp_path: Path) -> None:
    frames = make_frames(6)
    path = tmp_path / "rec.db"
    _write(path, frames)
    with Recording.open(path) as rec:
        events = rec.events()
        # The exit shows in the log of frames 3, 4 and 5; the OOM kill in the last frame only.
        assert [e.kind for e in events] == [EventKind.EXIT, EventKind.OOM]
        assert events == sorted({*frames[-1].events}, key=lambda e: e.timestamp)
        assert events[0].counts is not None
        assert [e.kind for e in rec.events("oom")] == [EventKind.OOM]


def test_reopening_a_recorder_appends_without_duplicating_events(tmp_path: Path) -> None:
    frames = make_frames(6)
    path = tmp_path / "rec.db"
    _write(path, frames[:4])
    _write(path, frames[4:])
    with Recording.open(path) as rec:
        assert len(rec) == 6
        assert [e.kind for e in rec.events()] == [EventKind.EXIT, EventKind.OOM]


def test_index_at(tmp_path: Path) -> None:
    path = tmp_path / "rec.db"
    _write(path, make_frames(4))
    with Recording.open(path) as rec:
        assert rec.index_at(BASE_TIMESTAMP - 100) == 0
        assert rec.index_at(BASE_TIMESTAMP) == 0
        assert rec.index_at(BASE_TIMESTAMP + FRAME_GAP_S) == 1
        assert rec.index_at(BASE_TIMESTAMP + FRAME_GAP_S * 2.5) == 2
        assert rec.index_at(BASE_TIMESTAMP + 1e6) == 3


def test_frame_index_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "rec.db"
    _write(path, make_frames(2))
    with Recording.open(path) as rec, pytest.raises(IndexError, match="2 frames"):
        rec.frame(2)


def test_reading_while_a_recorder_writes(tmp_path: Path) -> None:
    frames = make_frames(5)
    path = tmp_path / "rec.db"
    with Recorder.open(path) as recorder:
        recorder.append(frames[0])
        recorder.append(frames[1])
        with Recording.open(path) as rec:
            assert len(rec) == 2
            assert rec.frame(1) == frames[1]
            for frame in frames[2:]:
                recorder.append(frame)
            assert len(rec) == 2  # a reader sees new frames when it asks for them
            assert rec.refresh() == 5
            assert rec.frame(4) == frames[4]
            assert [e.kind for e in rec.events()] == [EventKind.EXIT, EventKind.OOM]


_WRITER = textwrap.dedent("""
    import dataclasses, sys
    from frames import make_frames
    from memwatch.recording import Recorder
    cycle = make_frames(5)
    recorder = Recorder.open(sys.argv[1])
    i = 0
    while True:
        frame = cycle[i % 5]
        recorder.append(dataclasses.replace(frame, timestamp=1_700_000_000.0 + i, by_key={}))
        i += 1
        print(i, flush=True)
""")


def _start_writer(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, env=env)


def _wait_for_commits(writer: subprocess.Popen[str], count: int) -> int:
    assert writer.stdout is not None
    for line in writer.stdout:
        if int(line) >= count:
            return int(line)
    raise AssertionError(f"the writer exited with {writer.wait()} before committing {count} frames")


def _check_all_frames(path: Path) -> int:
    with Recording.open(path) as rec:
        frames = [rec.frame(i) for i in range(len(rec))]
        stamps = [f.timestamp for f in frames]
        assert stamps == rec.timestamps()
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert all(f.hostname == HOSTNAME for f in frames)
        return len(frames)


def test_recording_survives_sigkill_and_is_readable_during_writes(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    writer = _start_writer(path)
    try:
        committed_before_read = _wait_for_commits(writer, 20)
        # The writer keeps going while we read every frame it has committed so far.
        assert _check_all_frames(path) >= committed_before_read
        committed_before_kill = _wait_for_commits(writer, committed_before_read + 20)
        writer.send_signal(signal.SIGKILL)
        assert writer.wait() == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    # Every frame the writer reported as committed is there, and every frame parses.
    assert _check_all_frames(path) >= committed_before_kill > 0
    with Recording.open(path) as rec:
        assert [e.kind for e in rec.events()][:2] == [EventKind.EXIT, EventKind.OOM]


# --- errors a user can meet -----------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="does not exist"):
        Recording.open(tmp_path / "nope.db")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a recording\n" * 50)
    with pytest.raises(RecordingError, match="not an SQLite database"):
        Recording.open(path)
    with pytest.raises(RecordingError, match="refusing to overwrite"):
        Recorder.open(path)
    assert path.read_text().startswith("these are my notes")


def test_foreign_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(RecordingError, match="not a memwatch recording"):
        Recording.open(path)
    with pytest.raises(RecordingError, match="not a memwatch recording"):
        Recorder.open(path)


def test_newer_format_version(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    _write(path, make_frames(1))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(RecordingError, match=r"newer memwatch .*Upgrade memwatch"):
        Recording.open(path)
    with pytest.raises(RecordingError, match="newer memwatch"):
        Recorder.open(path)


def test_directory_and_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="is a directory"):
        Recording.open(tmp_path)
    with pytest.raises(RecordingError, match="is a directory"):
        Recorder.open(tmp_path)
    with pytest.raises(RecordingError, match="does not exist"):
        Recorder.open(tmp_path / "no" / "such" / "dir" / "rec.db")


def test_damaged_frame_says_which(tmp_path: Path) -> None:
    path = tmp_path / "rec.db"
    _write(path, make_frames(3))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE frames SET data = ? WHERE id = (SELECT min(id) + 1 FROM frames)", (b"garbage",))
    conn.commit()
    conn.close()
    with Recording.open(path) as rec:
        assert rec.frame(0).timestamp == BASE_TIMESTAMP
        with pytest.raises(RecordingError, match=r"frame 1 of .* is damaged"):
            rec.frame(1)


# --- the record() loop ----------------------------------------------------------------------------

class _Spy(ReplaySource):
    """A replay that counts close() and next() calls."""

    closed = 0
    nexts = 0

    async def next(self) -> Snapshot:
        self.nexts += 1
        return await super().next()

    async def close(self) -> None:
        self.closed += 1
        await super().close()


async def test_record_until_cancelled(tmp_path: Path) -> None:
    frames = make_frames(5)
    source = _Spy(frames, speed=1000.0)
    path = tmp_path / "rec.db"
    seen: list[Snapshot] = []

    def on_frame(snapshot: Snapshot) -> None:
        seen.append(snapshot)
        if len(seen) == len(frames):
            task.cancel()

    task = asyncio.ensure_future(record(source, path, None, on_frame))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed == 1
    with Recording.open(path) as rec:
        assert len(rec) == 5
        # Recorded frames carry what the source handed over, replay position included.
        assert [rec.frame(i) for i in range(5)] == seen
        assert [rec.frame(i).timestamp for i in range(5)] == [f.timestamp for f in frames]


async def test_record_skips_a_repeated_last_frame(tmp_path: Path) -> None:
    frames = make_frames(3)
    # At its end a replay hands out its last frame again every interval (3 ms here).
    source = _Spy(frames, speed=1000.0)
    path = tmp_path / "rec.db"
    task = asyncio.ensure_future(record(source, path, None))
    while not task.done():
        if source.nexts >= 8:
            task.cancel()
        await asyncio.sleep(0.001)
    with pytest.raises(asyncio.CancelledError):
        await task
    with Recording.open(path) as rec:
        assert len(rec) == 3


async def test_record_with_zero_duration_writes_the_first_frame_only(tmp_path: Path) -> None:
    source = _Spy(make_frames(3), speed=1000.0)
    path = tmp_path / "rec.db"
    assert await record(source, path, duration_s=0.0) == 1
    assert source.closed == 1
    assert source.nexts == 0
    with Recording.open(path) as rec:
        assert len(rec) == 1
