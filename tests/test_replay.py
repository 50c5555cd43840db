"""ReplaySource: seek, seek_time, next and its pacing, rollups, files and growing recordings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from frames import BASE_TIMESTAMP, FRAME_GAP_S, LEAKY_PID, make_frames
from memwatch.model import Snapshot
from memwatch.recording import Recorder, Recording, RecordingError
from memwatch.sources import replay
from memwatch.sources.base import SeekableSource
from memwatch.sources.replay import ReplaySource


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Replace the replay's sleep: records each requested delay and returns at once."""
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(replay, "asyncio", SimpleNamespace(sleep=fake_sleep))
    yield delays


def _plain(s: Snapshot) -> Snapshot:
    return dataclasses.replace(s, replay_position=None)


def test_is_a_seekable_source() -> None:
    assert isinstance(ReplaySource(make_frames(2)), SeekableSource)


async def test_open_and_next_walk_the_frames(sleeps: list[float]) -> None:
    frames = make_frames(5)
    source = ReplaySource(frames)
    first = await source.open()
    assert _plain(first) == frames[0]
    assert first.replay_position == (0, 5)
    for i in range(1, 5):
        s = await source.next()
        assert _plain(s) == frames[i]
        assert s.replay_position == (i, 5)
        assert source.position == i
    assert sleeps == [0, 0, 0, 0]  # non-realtime: yield to the loop, no waiting


async def test_next_at_the_end_waits_an_interval_and_repeats_the_last_frame(sleeps: list[float]) -> None:
    frames = make_frames(3)
    source = ReplaySource(frames)
    await source.open()
    source.seek(2)
    for _ in range(3):
        s = await source.next()
        assert _plain(s) == frames[2]
        assert s.replay_position == (2, 3)
    assert source.position == 2
    assert sleeps == [FRAME_GAP_S] * 3


async def test_realtime_sleeps_the_recorded_gap_over_speed(sleeps: list[float]) -> None:
    frames = make_frames(5)
    # Stretch the last gap to 100 intervals: a paused recorder must not freeze the replay.
    frames[4] = dataclasses.replace(frames[4], timestamp=frames[3].timestamp + 100 * FRAME_GAP_S)
    source = ReplaySource(frames, realtime=True, speed=2.0)
    await source.open()
    for _ in range(4):
        await source.next()
    assert sleeps == [FRAME_GAP_S / 2] * 3 + [5 * FRAME_GAP_S / 2]


async def test_set_interval_changes_the_pace(sleeps: list[float]) -> None:
    source = ReplaySource(make_frames(3), realtime=True)
    assert source.interval_s == FRAME_GAP_S
    assert source.recorded_interval_s == FRAME_GAP_S
    source.set_interval(0.5)
    assert source.interval_s == pytest.approx(0.5)
    assert source.speed == pytest.approx(FRAME_GAP_S / 0.5)
    await source.open()
    await source.next()
    assert sleeps == [pytest.approx(0.5)]
    with pytest.raises(ValueError, match="positive"):
        source.set_interval(0)


def test_interval_is_the_median_gap() -> None:
    frames = make_frames(5)
    stamps = [0.0, 1.0, 2.0, 3.0, 60.0]
    frames = [dataclasses.replace(f, timestamp=t) for f, t in zip(frames, stamps, strict=True)]
    assert ReplaySource(frames).interval_s == 1.0


def test_seek_clamps() -> None:
    frames = make_frames(4)
    source = ReplaySource(frames)
    assert _plain(source.seek(2)) == frames[2]
    assert source.position == 2
    assert source.seek(-3).replay_position == (0, 4)
    assert source.seek(99).replay_position == (3, 4)
    assert source.position == 3
    assert source.frame_count == 4


def test_seek_time_takes_the_last_frame_at_or_before() -> None:
    source = ReplaySource(make_frames(4))
    assert source.seek_time(BASE_TIMESTAMP - 1).replay_position == (0, 4)
    assert source.seek_time(BASE_TIMESTAMP + FRAME_GAP_S).replay_position == (1, 4)
    assert source.seek_time(BASE_TIMESTAMP + FRAME_GAP_S * 2.9).replay_position == (2, 4)
    assert source.seek_time(BASE_TIMESTAMP + 1e9).replay_position == (3, 4)
    assert source.position == 3


async def test_next_continues_from_a_seek(sleeps: list[float]) -> None:
    source = ReplaySource(make_frames(5))
    await source.open()
    source.seek(1)
    assert (await source.next()).replay_position == (2, 5)


async def test_rollup_comes_from_the_current_frame() -> None:
    frames = make_frames(3)
    source = ReplaySource(frames)
    await source.open()
    leaky_key = next(v.key for v in frames[0].processes if v.pid == LEAKY_PID)
    assert await source.rollup(leaky_key) is None  # frame 0 has no rollup for it
    source.seek(2)
    stored = frames[2].by_key[leaky_key].rollup
    assert stored is not None
    assert await source.rollup(leaky_key) == stored
    assert await source.rollup((999_999, 1)) is None


def test_bad_arguments() -> None:
    with pytest.raises(RecordingError, match="no frames"):
        ReplaySource([])
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(make_frames(1), speed=0)


async def test_from_file(tmp_path: Path, sleeps: list[float]) -> None:
    frames = make_frames(4)
    path = tmp_path / "rec.db"
    with Recorder.open(path) as recorder:
        for f in frames:
            recorder.append(f)
    source = ReplaySource.from_file(path, realtime=False)
    assert source.frame_count == 4
    assert _plain(await source.open()) == frames[0]
    assert _plain(source.seek_time(BASE_TIMESTAMP + FRAME_GAP_S)) == frames[1]
    assert _plain(await source.next()) == frames[2]
    await source.close()
    await source.close()


def test_from_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="does not exist"):
        ReplaySource.from_file(tmp_path / "missing.db")


async def test_follows_a_recording_that_is_still_written(tmp_path: Path, sleeps: list[float]) -> None:
    frames = make_frames(4)
    path = tmp_path / "rec.db"
    with Recorder.open(path) as recorder:
        recorder.append(frames[0])
        recorder.append(frames[1])
        with Recording.open(path) as rec:
            source = ReplaySource(rec)
            await source.open()
            assert (await source.next()).replay_position == (1, 2)
            assert (await source.next()).replay_position == (1, 2)  # at the end: waits, repeats
            recorder.append(frames[2])
            recorder.append(frames[3])
            s = await source.next()
            assert _plain(s) == frames[2]
            assert s.replay_position == (2, 4)
            assert source.frame_count == 4


async def test_a_recording_cannot_send_signals() -> None:
    source = ReplaySource(make_frames(2))
    snap = await source.open()
    with pytest.raises(PermissionError, match="recording"):
        await source.send_signal(snap.processes[0].key, 15)
