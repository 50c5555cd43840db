"""Recordings: write/read round trips, crash safety, concurrent reading, clear errors."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from frames import BASE_TIMESTAMP, FRAME_GAP_S, HOSTNAME, make_frames
from memwatch.model import Event, EventKind, Snapshot, SystemMemory, TracerHealth
from memwatch.recording import EVENT_LOG_LEN, FORMAT_VERSION, Recorder, Recording, RecordingError, record
from memwatch.serialize import event_to_dict, snapshot_to_dict
from memwatch.sources.replay import ReplaySource
from memwatch.store import Store

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
        # Frame k is cycle[k % 5]: the exit arrives with frames 3, 8, ..., the OOM kill with 4, 9, ...
        # Each came with its frame's transaction, so the events match the committed frames exactly.
        kinds = [e.kind for e in rec.events()]
        assert kinds.count(EventKind.EXIT) == sum(1 for k in range(len(rec)) if k % 5 == 3)
        assert kinds.count(EventKind.OOM) == sum(1 for k in range(len(rec)) if k % 5 == 4)


# --- format 2: every exit once, in a table of its own ----------------------------------------------

def _exit(n: int, t: float) -> Event:
    return Event(timestamp=t, kind=EventKind.EXIT, pid=10_000 + n, tid=10_000 + n, name=f"job-{n}",
                 exit_code=n % 256, peak_rss_kb=1000 + n, start_ticks=n)


_SYSTEM = SystemMemory(total_kb=1000, available_kb=500, used_kb=500, free_kb=400, swap_total_kb=0, swap_used_kb=0)


def _live(bursts: list[int]) -> list[Snapshot]:
    """Snapshots as the live Store makes them when ``bursts[k]`` processes exit before tick k."""
    store = Store(hostname=HOSTNAME)
    snaps, n = [], 0
    for k, count in enumerate(bursts):
        store.add_events([_exit(n + j, BASE_TIMESTAMP + k + j * 1e-5) for j in range(count)])
        n += count
        snaps.append(store.update(BASE_TIMESTAMP + k + 0.9, 1.0, [], None, _SYSTEM, TracerHealth(enabled=False)))
    return snaps


def test_a_burst_of_exits_in_one_frame_reaches_the_file_whole(tmp_path: Path) -> None:
    frames = make_frames(3)
    burst = tuple(_exit(n, BASE_TIMESTAMP + 1 + n * 1e-4) for n in range(1500))
    oom = frames[2].new_events
    assert [e.kind for e in oom] == [EventKind.OOM]
    # What the live store hands over: all 1,500 in new_events, its bounded log keeps the last 1,000.
    frames[0] = dataclasses.replace(frames[0], events=(), new_events=())
    frames[1] = dataclasses.replace(frames[1], events=burst[-1000:], new_events=burst)
    frames[2] = dataclasses.replace(frames[2], events=burst[-999:] + oom, new_events=oom)
    path = tmp_path / "rec.db"
    _write(path, frames)
    conn = sqlite3.connect(path)
    try:
        per_frame = conn.execute("SELECT frame, count(*) FROM events GROUP BY frame ORDER BY frame").fetchall()
        frame_ids = [r[0] for r in conn.execute("SELECT id FROM frames ORDER BY id")]
    finally:
        conn.close()
    assert per_frame == [(frame_ids[1], 1500), (frame_ids[2], 1)]
    with Recording.open(path) as rec:
        assert rec.events() == [*burst, *oom]
        assert rec.frame(1).new_events == burst
        assert [rec.frame(i) for i in range(3)] == frames


def test_replay_shows_each_frame_as_the_live_store_made_it(tmp_path: Path) -> None:
    snaps = _live([3, 1500, 0, 10, 700, 1, 2000, 0])
    assert len(snaps[1].new_events) == 1500 and len(snaps[1].events) == 1000  # the log is bounded
    path = tmp_path / "rec.db"
    _write(path, snaps)
    with Recording.open(path) as rec:
        assert [rec.frame(i) for i in range(len(snaps))] == snaps
        # backwards and jumping about give the same frames as stepping forward
        for i in (7, 1, 6, 5, 0, 4, 3, 2, 1, 7):
            got = rec.frame(i)
            assert (got.events, got.new_events) == (snaps[i].events, snaps[i].new_events), i
        assert len(rec.events()) == 4214


def test_frames_do_not_carry_the_event_log(tmp_path: Path) -> None:
    snaps = _live([1000, 0, 0, 0, 0])
    assert all(len(s.events) == 1000 for s in snaps)
    path = tmp_path / "rec.db"
    _write(path, snaps)
    conn = sqlite3.connect(path)
    try:
        blobs = [r[0] for r in conn.execute("SELECT data FROM frames")]
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1000
    finally:
        conn.close()
    for blob in blobs:
        d = json.loads(zlib.decompress(blob))
        assert "events" not in d and "new_events" not in d
    # Five frames together take less than one copy of the log they all show.
    log = zlib.compress(json.dumps([event_to_dict(e) for e in snaps[0].events]).encode())
    assert sum(map(len, blobs)) < len(log)


def test_the_replayed_log_is_as_long_as_the_live_one(tmp_path: Path) -> None:
    assert inspect.signature(Store).parameters["events_len"].default == EVENT_LOG_LEN
    snaps = _live([20, 5])
    path = tmp_path / "rec.db"
    _write(path, snaps)
    with Recording.open(path, log_len=8) as rec:
        assert rec.frame(1).events == snaps[1].events[-8:]
        assert rec.frame(1).new_events == snaps[1].new_events


def test_events_between(tmp_path: Path) -> None:
    frames = make_frames(3)
    late = _exit(1, BASE_TIMESTAMP + 5.0)
    early = _exit(2, BASE_TIMESTAMP + 3.0)  # arrives a frame later than an event it precedes
    frames[0] = dataclasses.replace(frames[0], events=(), new_events=())
    frames[1] = dataclasses.replace(frames[1], events=(late,), new_events=(late,))
    frames[2] = dataclasses.replace(frames[2], events=(late, early), new_events=(early,))
    path = tmp_path / "rec.db"
    _write(path, frames)
    with Recording.open(path) as rec:
        assert rec.events_between(None, None) == [early, late]
        assert rec.events_between(BASE_TIMESTAMP + 3.0, BASE_TIMESTAMP + 5.0) == [early, late]  # inclusive
        assert rec.events_between(BASE_TIMESTAMP + 3.5, None) == [late]
        assert rec.events_between(None, BASE_TIMESTAMP + 4.99) == [early]
        assert rec.events_between(BASE_TIMESTAMP + 6.0, BASE_TIMESTAMP + 2.0) == []


# --- format 1: still read, never appended to ------------------------------------------------------

_FORMAT_1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE frames (id INTEGER PRIMARY KEY, timestamp REAL NOT NULL, data BLOB NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, timestamp REAL NOT NULL, kind TEXT NOT NULL, pid INTEGER NOT NULL,
                     tid INTEGER NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL,
                     UNIQUE (timestamp, kind, pid, tid));
CREATE INDEX events_by_kind ON events (kind, timestamp);
"""


def _write_format_1(path: Path, frames: list[Snapshot], *, with_new_events: bool) -> None:
    """A file as the format-1 recorder wrote it: every frame embeds the log, events deduplicated by key.
    Recorders before new_events existed wrote frames without that key."""
    conn = sqlite3.connect(path)
    conn.executescript(_FORMAT_1_SCHEMA)
    conn.executemany("INSERT INTO meta VALUES (?, ?)",
                     [("format_version", "1"), ("created", "1700000000.0"), ("hostname", HOSTNAME)])
    for frame in frames:
        d = snapshot_to_dict(frame)
        if not with_new_events:
            del d["new_events"]
        conn.execute("INSERT INTO frames (timestamp, data) VALUES (?, ?)",
                     (frame.timestamp, zlib.compress(json.dumps(d).encode())))
        conn.executemany("INSERT OR IGNORE INTO events (timestamp, kind, pid, tid, name, data) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [(e.timestamp, e.kind.value, e.pid, e.tid, e.name, json.dumps(event_to_dict(e)))
                          for e in frame.events])
    conn.commit()
    conn.close()


@pytest.mark.parametrize("with_new_events", [True, False])
def test_format_1_still_reads(tmp_path: Path, with_new_events: bool) -> None:
    frames = make_frames(6)
    path = tmp_path / "old.db"
    _write_format_1(path, frames, with_new_events=with_new_events)
    with Recording.open(path) as rec:
        assert rec.format_version == 1
        # Without the key, new_events are the events not in the previous frame's log: the same.
        assert [rec.frame(i) for i in range(6)] == frames
        for i in (5, 3, 4, 0, 2):
            assert rec.frame(i).new_events == frames[i].new_events, i
        assert [e.kind for e in rec.events()] == [EventKind.EXIT, EventKind.OOM]
        assert rec.events_between(None, frames[4].timestamp) == [frames[3].events[0]]


def test_a_format_1_file_is_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _write_format_1(path, make_frames(2), with_new_events=True)
    with pytest.raises(RecordingError, match=r"older memwatch \(recording format 1\).*Record into a new file"):
        Recorder.open(path)
    with Recording.open(path) as rec:
        assert len(rec) == 2


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
