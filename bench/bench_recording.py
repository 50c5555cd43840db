"""What reading a recording costs: stepping through frames whose event log comes from the events
table, decoding a big frame, and how well real-looking frames compress (the decompression cap).

1. Stepping: a recording of --frames frames of the test processes, each frame with --exits new
   exits (so every frame's log holds the last 1,000 of tens of thousands of events), read with
   Recording.frame forwards, backwards and at random; against the same frames recorded with no
   events at all, which is the frame decode alone.
2. Decode: one frame of --processes processes with full (120-sample) histories, written and read
   back through a recording: ms per frame, JSON and stored sizes.
3. Sizes (--sizes): JSON size and compression ratio of 1,000 and 10,000 processes, varied and
   byte-identical, against memwatch.recording.max_frame_bytes.

    python bench/bench_recording.py [--frames 2000] [--exits 20] [--processes 1000] [--sizes]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from frames import make_frame  # noqa: E402
from memwatch.model import Event, EventKind, KernelCounts, Snapshot  # noqa: E402
from memwatch.recording import EVENT_LOG_LEN, Recorder, Recording, max_frame_bytes  # noqa: E402
from memwatch.serialize import snapshot_to_dict  # noqa: E402


def _exit(n: int, t: float) -> Event:
    return Event(timestamp=t, kind=EventKind.EXIT, pid=10_000 + n % 4_000_000, tid=10_000 + n % 4_000_000,
                 name=f"job-{n % 97}", exit_code=0, peak_rss_kb=4096 + n % 1000,
                 counts=KernelCounts(mmap_count=n % 50, mmap_bytes=8192 * (n % 50)), start_ticks=n)


def _write(path: Path, frames: list[Snapshot]) -> float:
    t0 = time.perf_counter()
    with Recorder.open(path) as recorder:
        for f in frames:
            recorder.append(f)
    return time.perf_counter() - t0


def _per_frame(rec: Recording, order: list[int]) -> list[float]:
    times = []
    for i in order:
        t0 = time.perf_counter()
        rec.frame(i)
        times.append(time.perf_counter() - t0)
    return times


def _ms(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1e3:6.2f} ms, p95 {sorted(times)[int(len(times) * 0.95)] * 1e3:6.2f} ms"


def stepping(n_frames: int, exits: int, tmp: Path) -> None:
    base = make_frame(10, 20)
    frames_with, frames_without, n = [], [], 0
    for k in range(n_frames):
        t = base.timestamp + k
        new = tuple(_exit(n + j, t - 0.5 + j * 1e-5) for j in range(exits))
        n += exits
        frame = dataclasses.replace(base, timestamp=t, new_events=new, events=(), by_key={})
        frames_with.append(frame)
        frames_without.append(dataclasses.replace(frame, new_events=()))
    with_path, without_path = tmp / "with.db", tmp / "without.db"
    written = _write(with_path, frames_with)
    _write(without_path, frames_without)
    size = with_path.stat().st_size
    print(f"stepping: {n_frames} frames x {exits} exits = {n} events ({size / 2**20:.1f} MiB, written in "
          f"{written:.1f} s); each frame's log holds the last {EVENT_LOG_LEN}")
    rnd = random.Random(7)
    orders = {"forward": list(range(n_frames)), "backward": list(range(n_frames - 1, -1, -1)),
              "random": [rnd.randrange(n_frames) for _ in range(min(n_frames, 300))]}
    for label, path in (("with events", with_path), ("no events", without_path)):
        for name, order in orders.items():
            with Recording.open(path) as rec:
                times = _per_frame(rec, order)
                last = rec.frame(order[-1])
            print(f"  {label:11} {name:8}: {_ms(times)}; log {len(last.events)}, new {len(last.new_events)}")


def _big_frame(processes: int, *, identical: bool) -> Snapshot:
    base = make_frame(119, 200)  # 120-sample histories
    rnd = random.Random(processes)
    views = []
    for k in range(processes):
        v = base.processes[0 if identical else k % len(base.processes)]
        rss = 4096 if identical else rnd.randrange(1_000, 500_000)
        sample = dataclasses.replace(v.sample, pid=100_000 + k, rss_kb=rss,
                                     name=v.sample.name if identical else f"{v.sample.name}-{k}")
        history = (rss,) * 120 if identical else tuple(rss + rnd.randrange(-100, 100) for _ in range(120))
        views.append(dataclasses.replace(v, sample=sample, rss_history=history))
    return dataclasses.replace(base, processes=tuple(views), by_key={})


def _best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def decode(processes: int, tmp: Path) -> None:
    frame = _big_frame(processes, identical=False)
    path = tmp / "big.db"
    _write(path, [frame, dataclasses.replace(frame, timestamp=frame.timestamp + 1)])
    text = json.dumps(snapshot_to_dict(frame, with_events=False), separators=(",", ":")).encode()
    stored = len(zlib.compress(text, 6))
    with Recording.open(path) as rec:
        # alternate between the two frames so that the one-frame cache never answers
        i = iter(range(10**9))
        best = _best(lambda: rec.frame(next(i) % 2), 15)
    print(f"decode: {processes} processes, JSON {len(text) / 2**20:.1f} MiB, stored {stored / 2**10:.0f} KiB "
          f"(ratio {len(text) / stored:.1f}): Recording.frame best {best * 1e3:.1f} ms")


def sizes() -> None:
    for n in (1_000, 10_000):
        for identical in (False, True):
            text = json.dumps(snapshot_to_dict(_big_frame(n, identical=identical)), separators=(",", ":")).encode()
            stored = len(zlib.compress(text, 6))
            kind = "identical" if identical else "varied"
            print(f"sizes: {n:6} {kind:9} processes: JSON {len(text) / 2**20:5.1f} MiB, "
                  f"stored {stored / 2**10:6.0f} KiB, ratio {len(text) / stored:5.1f}, cap "
                  f"{max_frame_bytes(stored) / 2**20:.0f} MiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--exits", type=int, default=20)
    ap.add_argument("--processes", type=int, default=1000)
    ap.add_argument("--sizes", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        stepping(args.frames, args.exits, Path(d))
        decode(args.processes, Path(d))
    if args.sizes:
        sizes()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
