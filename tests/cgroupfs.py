"""Real memory cgroups for tests: made under the machine's memory hierarchy, removed afterwards.

Whatever a test does, :class:`CgroupFactory.cleanup` kills every process left in the cgroups it
made and removes them, children first. Names may hold anything a cgroup name may (spaces,
newlines, escapes, bytes that are not UTF-8): paths are bytes throughout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from memwatch.cgroups import Hierarchy, find_memory_hierarchy


def memory_hierarchy() -> Hierarchy:
    """The memory hierarchy, or a skip saying why there is none to test on."""
    if os.geteuid() != 0:
        pytest.skip("making cgroups needs root")
    h = find_memory_hierarchy()
    if h is None or not h.memory:
        pytest.skip("no memory cgroup hierarchy (v1 memory controller or v2 with memory) is mounted")
    if h.version == 2:
        control = Path(os.fsdecode(h.mount)) / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            pytest.skip("the v2 root does not delegate the memory controller to its children")
    return h


class RealCgroup:
    """One cgroup this test made."""

    def __init__(self, hierarchy: Hierarchy, raw: bytes) -> None:
        self.hierarchy = hierarchy
        self.raw = raw
        """The path as /proc/PID/cgroup names it."""
        directory = hierarchy.directory(raw)
        assert directory is not None
        self.directory = directory

    @property
    def path(self) -> str:
        """As memwatch shows it (bytes that are not UTF-8 as \\xNN)."""
        return self.raw.decode("utf-8", "backslashreplace")

    @property
    def ino(self) -> int:
        return os.stat(self.directory).st_ino

    def file(self, name: str) -> bytes:
        with open(self.directory + b"/" + name.encode(), "rb") as f:
            return f.read()

    def number(self, name: str) -> int:
        return int(self.file(name).split()[0])

    def write(self, name: str, value: str) -> None:
        with open(self.directory + b"/" + name.encode(), "w") as f:
            f.write(value)

    def limit(self, nbytes: int) -> None:
        self.write("memory.max" if self.hierarchy.version == 2 else "memory.limit_in_bytes", str(nbytes))

    def pids(self) -> list[int]:
        return [int(p) for p in self.file("cgroup.procs").split()]

    def spawn(self, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside this cgroup from its first instruction (v1 does not move what a
        process was charged before it joined)."""
        env = {**os.environb, b"MW_CGROUP_PROCS": self.directory + b"/cgroup.procs"}
        script = 'echo $$ > "$MW_CGROUP_PROCS" && exec "$@"'
        proc: subprocess.Popen[bytes] = subprocess.Popen(["sh", "-c", script, "sh", *argv], env=env, **kw)  # type: ignore[call-overload]
        deadline = time.monotonic() + 10
        while proc.pid not in self.pids():
            assert proc.poll() is None, f"{argv[0]} ended before it joined {self.path!r}"
            assert time.monotonic() < deadline, f"{argv[0]} never joined {self.path!r}"
            time.sleep(0.005)
        return proc

    def hold(self, nbytes: int, shm: Path | None = None, shm_bytes: int = 0) -> subprocess.Popen[bytes]:
        """A Python process in this cgroup holding ``nbytes`` of anonymous memory (every page
        written), and optionally ``shm_bytes`` in a tmpfs file at ``shm`` (charged to the cgroup,
        in no process's RSS); it says "ready" and waits for its stdin to close."""
        code = (
            "import sys\n"
            f"b = b'\\x01' * {nbytes}\n"
            f"if {shm_bytes}:\n"
            f"    open(sys.argv[1], 'wb').write(b'\\x02' * {shm_bytes})\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
        )
        proc = self.spawn([sys.executable, "-c", code, str(shm or "")], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        return proc

    def kill_all(self) -> None:
        for _ in range(100):
            try:
                pids = self.pids()
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill what is left in it and remove it (its children must be gone already)."""
        self.kill_all()
        for _ in range(200):
            try:
                os.rmdir(self.directory)
                return
            except FileNotFoundError:
                return
            except OSError:   # EBUSY: a killed process is not reaped yet
                time.sleep(0.02)
        os.rmdir(self.directory)


class CgroupFactory:
    """Makes cgroups under the hierarchy's top, named after the test run."""

    def __init__(self, hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy
        self.made: list[RealCgroup] = []
        self.prefix = f"memwatch-test-{os.getpid()}".encode()

    def make(self, name: bytes, parent: RealCgroup | None = None) -> RealCgroup:
        base = parent.raw if parent is not None else self.hierarchy.root.rstrip(b"/")
        leaf = name if parent is not None else self.prefix + b"-" + name
        group = RealCgroup(self.hierarchy, base + b"/" + leaf)
        os.mkdir(group.directory)
        self.made.append(group)
        return group

    def cleanup(self) -> None:
        for group in sorted(self.made, key=lambda g: -g.raw.count(b"/")):
            group.remove()
        self.made.clear()


@pytest.fixture
def cgroups() -> Iterator[CgroupFactory]:
    factory = CgroupFactory(memory_hierarchy())
    try:
        yield factory
    finally:
        factory.cleanup()
