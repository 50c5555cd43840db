"""Which pid and time namespaces memwatch reads /proc in, so kernel figures match /proc's.

The kernel side sees every process by its pid in the initial pid namespace and its start time on
the host's boot clock. memwatch in a container reads a /proc that shows the container's pids (and,
in a time namespace, start times shifted by its boot-time offset). The tracer is told the pid
namespace to translate into, and Python adds the time offset, so that every figure is keyed as
/proc keys it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from memwatch.ebpf.errors import BpfUnavailable

PROC_PID_INIT_INO = 0xEFFFFFFC
"""Inode number of the initial pid namespace (include/linux/proc_ns.h)."""


@dataclass(frozen=True, slots=True)
class PidNamespaces:
    proc_ino: int
    """The pid namespace whose pids /proc shows (that of the /proc mount)."""
    own_ino: int
    """memwatch's own (active) pid namespace, whose tasks its BPF task iterators visit."""

    @property
    def translate_to(self) -> int:
        """What the tracer's ``pidns_ino`` is set to: 0 in the initial namespace (no translation)."""
        return 0 if self.proc_ino == PROC_PID_INIT_INO else self.proc_ino


def pid_namespaces(proc_root: str = "/proc") -> PidNamespaces:
    """Read both namespaces. Pid 1 of a /proc mount always belongs to that mount's namespace."""
    own = os.stat(f"{proc_root}/self/ns/pid").st_ino
    try:
        proc = os.stat(f"{proc_root}/1/ns/pid").st_ino
    except OSError:  # no ptrace access to pid 1: /proc/self names us by the mount's pid
        proc = own if os.readlink(f"{proc_root}/self") == str(os.getpid()) else 0
    return PidNamespaces(proc, own)


def check_pid_namespaces(ns: PidNamespaces) -> None:
    """The tracer needs /proc to be of memwatch's own pid namespace (``unshare --pid --fork``
    without ``--mount-proc`` leaves the parent's /proc in place): its task iterators see only
    memwatch's own namespace, and the counters would be matched to the wrong processes."""
    if ns.proc_ino != ns.own_ino:
        raise BpfUnavailable(
            "eBPF is off: the /proc memwatch reads belongs to another pid namespace than its own "
            "(as after 'unshare --pid' without '--mount-proc'), so kernel counters could not be "
            "matched to its processes; mount a /proc of this namespace ('unshare --pid --fork "
            "--mount-proc', or 'mount -t proc proc /proc' inside it). Showing /proc figures only.",
            code="pid-namespace",
        )


def boottime_offset_ns(proc_root: str = "/proc") -> int:
    """How far this time namespace's boot clock is ahead of the host's (0 outside one)."""
    try:
        with open(f"{proc_root}/self/timens_offsets", "rb") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] in (b"boottime", b"7"):
                    return int(parts[1]) * 1_000_000_000 + int(parts[2])
    except (OSError, ValueError):
        pass
    return 0
