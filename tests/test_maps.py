"""/proc/PID/smaps parsed into kinds and sums, and the real smaps of a running process."""

from __future__ import annotations

import os

from memwatch.maps import kind_of, parse_smaps, read_memory_map

SMAPS = b"""\
55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Rss:                  12 kB
Pss:                  12 kB
Swap:                  4 kB
Anonymous:            12 kB
7f0000000000-7f0000100000 rw-s 00000000 00:01 99                         /dev/shm/seg
Rss:                 100 kB
Pss:                  50 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                1024 kB
Pss:                1024 kB
Anonymous:          1024 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  16 kB
7ffc00100000-7ffc00102000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
"""


def test_kinds_and_sums() -> None:
    mm = parse_smaps(1, SMAPS)
    assert [m.kind for m in mm.mappings] == ["heap", "shared memory", "anonymous", "stack", "vdso"]
    heap = mm.mappings[0]
    assert (heap.size_kb, heap.rss_kb, heap.pss_kb, heap.swap_kb, heap.anon_kb) == (132, 12, 12, 4, 12)
    by_kind = {g.kind: g for g in mm.by_kind()}
    assert by_kind["anonymous"].rss_kb == 1024 and by_kind["shared memory"].pss_kb == 50
    assert mm.largest(1)[0].start == 0x7F0000200000
    assert [g.name for g in mm.by_path()][:2] == ["[anonymous]", "/dev/shm/seg"]
    assert kind_of("/memfd:x (deleted)", "rw-s") == "shared memory"
    assert kind_of("/usr/lib/libc.so.6", "r-xp") == "file"


def test_this_process() -> None:
    mm = read_memory_map(os.getpid())
    kinds = {g.kind for g in mm.by_kind()}
    assert {"file", "stack", "anonymous"} <= kinds
    assert sum(g.rss_kb for g in mm.by_kind()) > 0
