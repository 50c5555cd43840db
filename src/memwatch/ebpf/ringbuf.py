"""Drain the ``mem_events`` ring buffer with bounded work per call.

The kernel side wakes the consumer only when a fill threshold is passed, so a reader must also
drain on a timer. libbpf 1.1 has no ``ring_buffer__consume_n`` and ``ring_buffer__consume`` loops
while producers keep writing; the callback here stops it after ``budget`` records by returning an
error, which libbpf propagates after it has advanced past the record just copied.
"""

from __future__ import annotations

import ctypes
import errno

from memwatch.ebpf.layouts import RawEvent, parse_record
from memwatch.ebpf.libbpf import SAMPLE_FN, Libbpf, check_ptr

_STOP = -errno.ECANCELED


def parse_records(raws: list[bytes]) -> list[RawEvent]:
    """Records copied out by :meth:`RingReader.drain_raw`, parsed; unknown kinds are skipped."""
    events = []
    for raw in raws:
        ev = parse_record(raw)
        if ev is not None:
            events.append(ev)
    return events


class RingReader:
    """Copies raw records out in the libbpf callback; parses them in a batch afterwards."""

    def __init__(self, lib: Libbpf, map_fd: int) -> None:
        self._lib = lib
        self._pending: list[bytes] = []
        self._budget = 0
        # Kept referenced as long as the ring buffer exists: libbpf calls it from consume().
        self._callback = SAMPLE_FN(self._on_sample)
        self._rb: int | None = check_ptr(lib.ring_buffer__new(map_fd, self._callback, None, None),
                                         "creating the ring buffer reader")
        self.records = 0

    def _on_sample(self, _ctx: int | None, data: int | None, size: int) -> int:
        if data:
            self._pending.append(ctypes.string_at(data, size))
        return _STOP if len(self._pending) >= self._budget else 0

    @property
    def fileno(self) -> int:
        """The epoll fd: readable when the kernel forced a wakeup."""
        if self._rb is None:
            raise RuntimeError("ring buffer reader is closed")
        return int(self._lib.ring_buffer__epoll_fd(self._rb))

    def drain_raw(self, budget: int = 4096) -> list[bytes]:
        """Up to ``budget`` raw records that are waiting; never blocks."""
        if self._rb is None or budget <= 0:
            return []
        self._pending = []
        self._budget = budget
        ret = self._lib.ring_buffer__consume(self._rb)
        if ret < 0 and ret != _STOP:
            raise OSError(-ret, f"consuming the ring buffer: {ret}")
        out, self._pending = self._pending, []
        self.records += len(out)
        return out

    def discard(self, budget: int = 4096) -> int:
        """Consume up to ``budget`` waiting records unparsed; returns how many."""
        return len(self.drain_raw(budget))

    def drain(self, budget: int = 4096) -> list[RawEvent]:
        """Up to ``budget`` parsed events; unknown kinds are skipped."""
        return parse_records(self.drain_raw(budget))

    def close(self) -> None:
        if self._rb is not None:
            self._lib.ring_buffer__free(self._rb)
            self._rb = None
