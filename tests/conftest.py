"""Shared fixtures: a real tracer on the real kernel, and a workload whose calls are exactly known.

Tests that need eBPF skip with the reason where it cannot load; under MEMWATCH_REQUIRE_BPF=1 (as
in CI) that skip is a failure, so a green run means the kernel side was tested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memwatch.ebpf import BpfUnavailable, Tracer, TracerConfig

HERE = Path(__file__).parent
REQUIRE_BPF = os.environ.get("MEMWATCH_REQUIRE_BPF") == "1"


@pytest.fixture(autouse=True, scope="session")
def _own_config_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the dashboard settings of whoever runs the tests, nor do the commands
    they start (terminal_env passes it on): the whole run has an XDG_CONFIG_HOME of its own, set
    before any fixture starts a command (test_readme's lanes run in threads all along)."""
    before = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))
    yield
    if before is None:
        del os.environ["XDG_CONFIG_HOME"]
    else:
        os.environ["XDG_CONFIG_HOME"] = before


def bpf_unavailable(reason: str) -> None:
    """Skip, or fail when eBPF is required."""
    if REQUIRE_BPF:
        pytest.fail(f"eBPF required (MEMWATCH_REQUIRE_BPF=1) but unavailable: {reason}")
    pytest.skip(reason)


def loaded_programs(ids: tuple[int, ...]) -> set[int]:
    """Which of these BPF program ids are still loaded in the kernel."""
    from memwatch.ebpf.libbpf import load_libbpf

    lib = load_libbpf()
    alive = set()
    for prog_id in ids:
        fd = lib.bpf_prog_get_fd_by_id(prog_id)
        if fd >= 0:
            os.close(fd)
            alive.add(prog_id)
    return alive


@pytest.fixture
def open_tracer() -> Iterator[Callable[..., Tracer]]:
    """Open a real tracer with a given config; skip (or fail under REQUIRE_BPF) where it cannot load."""
    opened: list[Tracer] = []

    def _open(**config: Any) -> Tracer:
        try:
            tracer = Tracer(TracerConfig(**config)).open()
        except BpfUnavailable as exc:
            bpf_unavailable(str(exc))
        opened.append(tracer)
        return tracer

    yield _open
    for t in opened:
        t.close()


@pytest.fixture(scope="session")
def tracefs() -> Iterator[str]:
    """A mounted tracefs for tracepoint mode (a fresh machine may not have one); unmounted after."""
    from memwatch.ebpf.errors import tracefs_dir

    found = tracefs_dir()
    if found:
        yield found
        return
    if os.geteuid() != 0:
        bpf_unavailable("tracefs is not mounted and mounting it needs root")
    target = "/sys/kernel/tracing"
    res = subprocess.run(["mount", "-t", "tracefs", "nodev", target], capture_output=True, text=True)
    if res.returncode != 0:
        bpf_unavailable(f"cannot mount tracefs: {res.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", target], capture_output=True)


@pytest.fixture(scope="session")
def workload_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/workload.c, compiled once per session."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler: the README's test command installs gcc")
    out = tmp_path_factory.mktemp("workload") / "workload"
    subprocess.run([cc, "-O2", "-Wall", "-o", str(out), str(HERE / "workload.c")], check=True)
    return out


@pytest.fixture(scope="session")
def stacks_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/stacks_workload.c built as a distribution builds: -O2, no frame pointers."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler: the README's test command installs gcc")
    out = tmp_path_factory.mktemp("stacks") / "stacks_workload"
    subprocess.run([cc, "-O2", "-fomit-frame-pointer", "-Wall", "-o", str(out), str(HERE / "stacks_workload.c")],
                   check=True)
    return out


@pytest.fixture(scope="session")
def stripped_bin(stacks_bin: Path) -> Path:
    out = stacks_bin.with_name("stacks_workload_stripped")
    shutil.copy(stacks_bin, out)
    subprocess.run(["strip", "--strip-all", str(out)], check=True)
    return out


class Workload:
    """A running tests/workload.c, driven one command at a time."""

    def __init__(self, binary: Path) -> None:
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.proc.pid

    def __call__(self, command: str) -> int:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"workload died on {command!r}")
        return int(line)

    def close(self) -> int:
        if self.proc.stdin:
            self.proc.stdin.close()
        return self.proc.wait(timeout=10)


def _running(binary: Path) -> Iterator[Workload]:
    w = Workload(binary)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def stacks_workload(stacks_bin: Path) -> Iterator[Workload]:
    """A running tests/stacks_workload.c."""
    yield from _running(stacks_bin)


@pytest.fixture
def workload(workload_bin: Path) -> Iterator[Workload]:
    yield from _running(workload_bin)
