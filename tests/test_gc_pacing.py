"""The garbage-collection pacer: full collections wait for a pause in the input, within bounds."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from frames import make_frames
from memwatch.ui.app import MemwatchApp
from memwatch.ui.gc_pacing import NEVER, GcPacer
from test_ui_support import ScriptedSource


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pacer(clock: FakeClock, collected: list[int]) -> GcPacer:
    def collect(generation: int) -> int:
        collected.append(generation)
        return 0
    return GcPacer(full_every_s=30, full_idle_s=0.5, full_at_most_s=300, clock=clock, collect=collect)


def test_full_collections_wait_for_idle_input_and_the_interval() -> None:
    clock, collected = FakeClock(), []
    pacer = make_pacer(clock, collected)
    before = gc.get_threshold()
    pacer.start()
    try:
        assert gc.get_threshold() == (before[0], before[1], NEVER), "CPython's own full collections are off"
        clock.now += 29
        assert not pacer.tick(), "not before the interval"
        clock.now += 2
        pacer.note_input()
        clock.now += 0.2
        assert not pacer.tick(), "not while keys are coming"
        clock.now += 0.5
        assert pacer.tick(), "once the input paused"
        assert collected == [2]
        clock.now += 1
        assert not pacer.tick(), "the interval starts again"
    finally:
        pacer.stop()
    assert gc.get_threshold() == before


def test_a_user_who_never_pauses_still_gets_a_full_collection() -> None:
    clock, collected = FakeClock(), []
    pacer = make_pacer(clock, collected)
    pacer.start()
    try:
        for _ in range(299 * 10):
            clock.now += 0.1
            pacer.note_input()
            pacer.tick()
        assert collected == []
        clock.now += 1.5
        pacer.note_input()
        assert pacer.tick()
        assert collected == [2]
    finally:
        pacer.stop()


async def test_the_dashboard_paces_collections_and_gives_the_thresholds_back() -> None:
    before = gc.get_threshold()
    app = MemwatchApp(ScriptedSource(make_frames()[1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert gc.get_threshold()[2] == NEVER
        await pilot.press("down")
        assert app._gc._last_input > app._gc._last_full, "a key counts as input"
    assert gc.get_threshold() == before


def test_the_pacer_says_when_to_wake_instead_of_being_polled() -> None:
    clock, collected = FakeClock(), []
    pacer = make_pacer(clock, collected)
    pacer.start()
    try:
        assert pacer.due_in() == 30, "a dashboard sitting still wakes for the next full collection only"
        clock.now += 29.8
        pacer.note_input()
        assert abs(pacer.due_in() - 0.5) < 1e-9, "keys put it off until they pause"
        clock.now += 0.5
        assert pacer.due_in() == 0 and pacer.tick()
        assert pacer.due_in() == 30
        for _ in range(300 * 4):  # keys never pause: due every 0.5 s, collected at the bound
            clock.now += 0.25
            pacer.note_input()
            assert pacer.due_in() <= 300
            pacer.tick()
        assert collected == [2, 2]
    finally:
        pacer.stop()
