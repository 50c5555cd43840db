"""Recordings: write/read round trips, crash safety, concurrent reading, clear errors."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from badfiles import (
    deeply_nested,
    foreign_database,
    frame_json,
    set_frame_data,
    state,
    unix_socket,
    write_recording,
    zlib_bomb,
)
from frames import BASE_TIMESTAMP, FRAME_GAP_S, HOSTNAME, make_frames
from memwatch import recording
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


def test_a_settled_process_is_recorded_with_its_whole_history(tmp_path: Path) -> None:
    """The live store hands an idle process's view to every snapshot once it settles, its history
    ending where it settled; a frame keeps the history whole, as of the frame."""
    from memwatch.model import ProcessSample

    store = Store(hostname=HOSTNAME, history_len=20)
    idle = ProcessSample(7, 1, "idle", "", "root", 10, 0.0, 1, 500, 900, 500, 0, 0, 500, "", False)
    snaps = [store.update(BASE_TIMESTAMP + k, 1.0, [idle], None, _SYSTEM, TracerHealth(enabled=False))
             for k in range(15)]
    assert snaps[-1].processes[0] is snaps[10].processes[0], "shared: the store did not look at it"
    assert len(snaps[-1].processes[0].rss_history) < 15
    path = tmp_path / "rec.db"
    _write(path, snaps)
    with Recording.open(path) as rec:
        (view,) = rec.frame(14).processes
        assert view.rss_history == (500,) * 15 and view.event_rate_history == (0.0,) * 15
        assert rec.frame(3).processes[0].rss_history == (500,) * 4
        assert [rec.frame(i) for i in range(15)] == [s.standalone() for s in snaps]


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
    snaps = [s.standalone() for s in snaps]   # each view's histories whole, as a frame keeps them
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
    before = state(path)
    with pytest.raises(RecordingError, match=r"older memwatch \(recording format 1\).*Record into a new file"):
        Recorder.open(path)
    assert state(path) == before
    with Recording.open(path) as rec:
        assert len(rec) == 2


# --- errors a user can meet -----------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="does not exist"):
        Recording.open(tmp_path / "nope.db")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a recording\n" * 50)
    before = state(path)
    with pytest.raises(RecordingError, match="not an SQLite database"):
        Recording.open(path)
    with pytest.raises(RecordingError, match="refusing to overwrite"):
        Recorder.open(path)
    assert state(path) == before


def test_foreign_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    foreign_database(path)
    before = state(path)
    with pytest.raises(RecordingError, match="not a memwatch recording; refusing to write into it"):
        Recorder.open(path)
    with pytest.raises(RecordingError, match="not a memwatch recording"):
        Recording.open(path)
    # Same bytes (still in rollback-journal mode), same mtime, and no -wal, -shm or -journal beside it.
    assert state(path) == before


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


# --- hostile or broken files: one sentence, no hang, bounded memory ---------------------------------

def _not_a_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A path of ``kind`` and how the refusal names it."""
    if kind == "fifo":
        path = tmp_path / "fifo.db"
        os.mkfifo(path)
        return path, r"a FIFO \(named pipe\)"
    if kind == "symlink to a fifo":
        os.mkfifo(tmp_path / "fifo")
        (tmp_path / "link.db").symlink_to(tmp_path / "fifo")
        return tmp_path / "link.db", r"a FIFO \(named pipe\)"
    if kind == "socket":
        unix_socket(tmp_path / "sock.db")
        return tmp_path / "sock.db", "a socket"
    if kind == "device":
        return Path(os.devnull), "a character device"
    return tmp_path, "a directory"


@pytest.mark.timeout(30, method="thread")  # a regression hangs in open(2): fail, don't stall CI
@pytest.mark.parametrize("kind", ["fifo", "symlink to a fifo", "socket", "device", "directory"])
def test_only_a_regular_file_is_opened(tmp_path: Path, kind: str) -> None:
    path, words = _not_a_file(tmp_path, kind)
    mode = os.stat(path).st_mode
    name = re.escape(str(path))
    with pytest.raises(RecordingError, match=f"^cannot read {name}: it is {words}, not a recording file"):
        Recording.open(path)
    with pytest.raises(RecordingError, match=f"it is {words}"):
        ReplaySource.from_file(path)
    with pytest.raises(RecordingError, match=f"^cannot record to {name}: it is {words}, not a recording file"):
        Recorder.open(path)
    assert os.stat(path).st_mode == mode


_RACE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from memwatch.recording import RecordingError, _connect
    fifo, other = Path(sys.argv[1]), sys.argv[2]
    fd = os.open(other, os.O_RDONLY)
    for flags in ("mode=ro", "mode=ro&immutable=1", "mode=rw"):
        try:
            _connect(fifo, fd, flags)
        except RecordingError as exc:
            print(exc)
""")


def test_a_fifo_swapped_in_after_the_check_neither_hangs_nor_is_read(tmp_path: Path) -> None:
    """SQLite opens by name, so a FIFO can replace the checked file before it does: its blocking
    open must be released and the swap refused. Simulated by handing _connect the descriptor of
    one file and the name of a FIFO; in a child, so that a hang fails the test instead of the run."""
    fifo = tmp_path / "rec.db"
    os.mkfifo(fifo)
    other = tmp_path / "checked.db"
    write_recording(other, 1)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run([sys.executable, "-c", _RACE, str(fifo), str(other)], capture_output=True, text=True,
                         timeout=30, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{fifo} was replaced while it was being opened; try again."] * 3


def _sample_rss(d: dict[str, Any]) -> None:
    d["processes"][0]["sample"]["rss_kb"] = "12"


def _null_hostname(d: dict[str, Any]) -> None:
    d["hostname"] = None


def _processes_object(d: dict[str, Any]) -> None:
    d["processes"] = {"0": d["processes"][0]}


def _history_text(d: dict[str, Any]) -> None:
    d["processes"][1]["rss_history"] = "12288"


_DAMAGE: dict[str, tuple[Callable[[], object], str]] = {
    "string for a number": (lambda: frame_json(_sample_rss),
                            r"processes\[0\]\.sample\.rss_kb should be an integer, not a string \('12'\)"),
    "null for a string": (lambda: frame_json(_null_hostname), "hostname should be a string, not null"),
    "object for a list": (lambda: frame_json(_processes_object), "processes should be a list, not an object"),
    "text for a history": (lambda: frame_json(_history_text), r"processes\[1\]\.rss_history should be a list"),
    "nested 100,000 deep": (deeply_nested, "its JSON is nested too deeply to be a snapshot"),
    "JSON list": (lambda: zlib.compress(b"[1, 2]"), "its JSON is a list, not a snapshot"),
    "not JSON": (lambda: zlib.compress(b"{'timestamp': 1}"), r"it is not valid JSON \(Expecting property name"),
    "a 5000-digit number": (lambda: zlib.compress(b'{"timestamp": 1' + b"1" * 5000 + b"}"),
                            r"it is not valid JSON \(Exceeds the limit"),
    "not zlib": (lambda: b"garbage", r"its data does not decompress \(Error -3"),
    "cut short": (lambda: frame_json(lambda d: None)[:200], "its compressed data is cut short"),
    "text, not bytes": (lambda: "eJzLSM3JyQcABiwCFQ==", "its data is str, not compressed bytes"),
}


@pytest.mark.parametrize("case", list(_DAMAGE))
def test_a_damaged_frame_says_which_and_what(tmp_path: Path, case: str) -> None:
    path = tmp_path / "rec.db"
    write_recording(path, 3)
    data, message = _DAMAGE[case]
    set_frame_data(path, 1, data())
    with Recording.open(path) as rec:
        assert rec.frame(0).timestamp == BASE_TIMESTAMP
        assert rec.frame(2).timestamp == BASE_TIMESTAMP + 2 * FRAME_GAP_S
        with pytest.raises(RecordingError, match=f"^frame 1 of {re.escape(str(path))} is damaged: .*{message}"):
            rec.frame(1)


def test_a_zlib_bomb_is_refused_within_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "rec.db"
    write_recording(path, 2)
    bomb = zlib_bomb(300)
    limit = recording.max_frame_bytes(len(bomb))
    assert len(bomb) < 400_000 and limit < 100 * 2**20  # 300 MiB inside
    set_frame_data(path, 1, bomb)
    with Recording.open(path) as rec:
        tracemalloc.start()
        try:
            with pytest.raises(RecordingError, match=rf"^frame 1 of .* is damaged: it decompresses to more than "
                                                     rf"{limit // 2**20} MiB from {len(bomb)} bytes"):
                rec.frame(1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < limit + 8 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_the_cap_follows_the_stored_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the floor, a frame may inflate 256 times its stored size: real frames (ratios of 7 to
    181 measured) read, a frame padded with megabytes of whitespace (about 1000:1) does not."""
    monkeypatch.setattr(recording, "_MAX_FRAME_FLOOR", 0)
    path = tmp_path / "rec.db"
    write_recording(path, 3)
    padded = zlib.compress(zlib.decompress(frame_json(lambda d: None)) + b" " * 8 * 2**20)
    set_frame_data(path, 1, padded)
    with Recording.open(path) as rec:
        assert rec.frame(0).timestamp == BASE_TIMESTAMP
        limit = f"more than {256 * len(padded) // 2**20} MiB from {len(padded)} bytes"
        with pytest.raises(RecordingError, match=limit):
            rec.frame(1)


def test_a_text_timestamp_in_the_frames_table(tmp_path: Path) -> None:
    path = tmp_path / "rec.db"
    write_recording(path, 3)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE frames SET timestamp = 'yesterday' WHERE id = (SELECT min(id) + 1 FROM frames)")
    conn.commit()
    conn.close()
    expected = f"^frame 1 of {re.escape(str(path))} is damaged: its timestamp is 'yesterday', not a number"
    with pytest.raises(RecordingError, match=expected):
        Recording.open(path)


@pytest.mark.parametrize(("data", "message"), [
    ('{"kind": "exit"}', "not a memwatch event: timestamp is missing"),
    ("[" * 100_000 + "]" * 100_000, "its JSON is nested too deeply to be an event"),
    ("{oops", "it is not valid JSON"),
], ids=["missing fields", "nested 100,000 deep", "not JSON"])
def test_a_damaged_event_says_which(tmp_path: Path, data: str, message: str) -> None:
    path = tmp_path / "rec.db"
    write_recording(path, 5)  # the exit arrives with frame 3, the OOM kill with frame 4
    conn = sqlite3.connect(path)
    event_id = conn.execute("SELECT id FROM events WHERE kind = 'oom'").fetchone()[0]
    conn.execute("UPDATE events SET data = ? WHERE id = ?", (data, event_id))
    conn.commit()
    conn.close()
    with Recording.open(path) as rec:
        assert [e.kind for e in rec.frame(3).events] == [EventKind.EXIT]
        with pytest.raises(RecordingError, match=f"^event {event_id} of {re.escape(str(path))} is damaged: {message}"):
            rec.frame(4)
        with pytest.raises(RecordingError, match=f"^event {event_id} of {re.escape(str(path))} is damaged"):
            rec.events_between(None, None)


def _modes(directory: Path, name: str) -> dict[str, int]:
    return {suffix: stat.S_IMODE(os.stat(directory / (name + suffix)).st_mode) for suffix in ("", "-wal", "-shm")}


def test_a_new_recording_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # SQLite alone would make them 0644 under this umask
    try:
        with Recorder.open(tmp_path / "rec.db") as recorder:
            recorder.append(make_frames(1)[0])
            modes = _modes(tmp_path, "rec.db")
    finally:
        os.umask(old_umask)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)  # an empty file someone made for the recording, readable by a group
    with Recorder.open(path) as recorder:
        recorder.append(make_frames(1)[0])
        modes = _modes(tmp_path, "shared.db")
    assert modes == {"": 0o640, "-wal": 0o640, "-shm": 0o640}
    with Recording.open(path) as rec:
        assert len(rec) == 1


def test_a_stale_wal_without_its_database_is_not_replayed_into_a_new_one(tmp_path: Path) -> None:
    write_recording(tmp_path / "old.db", 2)
    (tmp_path / "rec.db-wal").write_bytes(b"\x37\x7f\x06\x82" + bytes(28))
    with pytest.raises(RecordingError, match=r"write-ahead log rec\.db-wal from an earlier file"):
        Recorder.open(tmp_path / "rec.db")
    assert not (tmp_path / "rec.db").exists()


async def test_replaying_a_closed_recording_leaves_the_directory_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "rec.db"
    write_recording(path, 5)
    before = state(path)
    assert before[2] == ["rec.db"]
    with Recording.open(path) as rec:
        assert [rec.frame(i).timestamp for i in range(5)] == rec.timestamps()
        assert len(rec.events_between(None, None)) == 2
    source = ReplaySource.from_file(path, realtime=False)
    await source.open()
    source.seek(4)
    await source.close()
    assert state(path) == before


def _as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to drop to nobody, whom file modes bind) and setpriv")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                           code, *args], capture_output=True, text=True, timeout=60, env=env)


_READ_ALL = textwrap.dedent("""
    import sys
    from memwatch.recording import Recording, RecordingError
    try:
        with Recording.open(sys.argv[1]) as rec:
            print(len(rec), sum(len(rec.frame(i).processes) for i in range(len(rec))))
    except RecordingError as exc:
        print(exc)
""")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody can reach (tmp_path's parents are root's alone); made read-only by tests."""
    path = Path(tempfile.mkdtemp(prefix="memwatch-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        path.chmod(0o755)
        shutil.rmtree(path)


def test_a_recording_in_a_read_only_directory_still_reads(shared_dir: Path) -> None:
    write_recording(shared_dir / "rec.db", 3)
    (shared_dir / "rec.db").chmod(0o444)
    shared_dir.chmod(0o555)
    res = _as_nobody(_READ_ALL, str(shared_dir / "rec.db"))
    assert res.stdout.split() == ["3", str(sum(len(f.processes) for f in make_frames(3)))], res.stderr


def test_a_wal_that_cannot_be_read_in_a_read_only_directory_says_so(shared_dir: Path, tmp_path: Path) -> None:
    """A recording copied while it was written: its frames are in the -wal, which SQLite can read
    only with a -shm it cannot create here."""
    with Recorder.open(tmp_path / "rec.db") as recorder:
        for frame in make_frames(3):
            recorder.append(frame)
        for suffix in ("", "-wal"):
            shutil.copy(tmp_path / ("rec.db" + suffix), shared_dir / ("rec.db" + suffix))
    for f in shared_dir.iterdir():
        f.chmod(0o444)
    shared_dir.chmod(0o555)
    res = _as_nobody(_READ_ALL, str(shared_dir / "rec.db"))
    assert "write-ahead log rec.db-wal holds frames that can only be read with write access" in res.stdout, res


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
