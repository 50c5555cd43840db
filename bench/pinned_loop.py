"""What the benches that time a pinned mmap+munmap loop under the tracer share (bench_tracer.py,
bench_stacks.py): the loop's CPU, and a bench process kept off it with tracefs there for the run.

The loop runs pinned to one CPU (the last) and, where there are others, the bench (the consumer,
a peer's parent) on the rest: the figure is the cost a traced call adds, not the consumer's CPU
time, which bench_tick.py and bench_dashboard.py measure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from memwatch.ebpf.errors import tracefs_dir

LOOP_CPU = max(os.sched_getaffinity(0))


def not_root() -> bool:
    """True (and said on stderr) when the bench cannot load eBPF programs."""
    if os.geteuid() == 0:
        return False
    print("this benchmark loads eBPF programs: run it as root", file=sys.stderr)
    return True


@contextmanager
def off_the_loop_cpu() -> Iterator[None]:
    """This process moved off LOOP_CPU (where there is another), and tracefs mounted while the
    bench runs if it was not (tracepoint mode needs it), unmounted after."""
    others = os.sched_getaffinity(0) - {LOOP_CPU}
    if others:
        os.sched_setaffinity(0, others)
    mounted_here = False
    if tracefs_dir() is None:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
        mounted_here = True
    try:
        yield
    finally:
        if mounted_here:
            subprocess.run(["umount", "/sys/kernel/tracing"])
