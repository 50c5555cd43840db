"""The committed eBPF object is reproducible on any machine of this kind, whatever its kernel."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_object_builds_from_committed_sources_alone(tmp_path: Path) -> None:
    """A fresh build (in a scratch copy of bpf/) matches the committed object without reading the
    running kernel's BTF or needing bpftool: those differ from machine to machine, and clang
    would carry the difference into prog.bpf.o."""
    if shutil.which("clang") is None:
        pytest.fail("clang is needed to rebuild the object: the README's test command installs it")
    scratch = tmp_path / "bpf"
    shutil.copytree(ROOT / "bpf", scratch, ignore=shutil.ignore_patterns("*.o", "*.tmp"))
    res = subprocess.run(["make", "-s", "-C", str(scratch), "check", "BTF=/nonexistent/vmlinux",
                          "BPFTOOL=/nonexistent/bpftool",
                          f"PKG_OBJ={ROOT / 'src/memwatch/ebpf/prog.bpf.o'}"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "matches its source" in res.stdout
    assert (scratch / "prog.bpf.o").exists(), "it was really rebuilt"
