"""The ``memwatch`` command end to end, as scripts use it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REQUIRE_BPF, Workload

K = 1024
MEMWATCH = [sys.executable, "-m", "memwatch"]
KERNEL_FIELDS = ("mmap_count", "munmap_count", "brk_count", "mremap_count", "mmap_bytes", "munmap_bytes",
                 "brk_bytes", "outstanding_bytes")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MEMWATCH, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.bpf
def test_once_json_has_exact_counts_of_a_workload(workload: Workload) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to trace") if not REQUIRE_BPF else pytest.fail("needs root")
    pid = workload("pid")
    proc = subprocess.Popen([*MEMWATCH, "--once", "--json", "--pid", str(pid), "--duration", "3", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line or "tracer attached" in line or "eBPF is off" in line:
            break
    assert "tracer attached" in line, f"the tracer did not attach: {line!r}"
    a = workload(f"mmap {64 * K}")
    b = workload(f"mmap {128 * K}")
    assert workload(f"munmap {a} {64 * K}") == 0
    cur = workload("brk 0")
    workload(f"brk {cur + 32 * K}")
    assert workload(f"mremap {b} {128 * K} {256 * K} 1") > 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["bpf"]["enabled"] is True and doc["bpf"]["reason"] is None
    (row,) = doc["processes"]
    assert row["pid"] == pid and row["name"] == "workload"
    assert (row["mmap_count"], row["munmap_count"], row["brk_count"], row["mremap_count"]) == (2, 1, 1, 1)
    assert row["mmap_bytes"] == 192 * K
    assert row["munmap_bytes"] == 64 * K
    assert row["brk_bytes"] == 32 * K
    assert row["outstanding_bytes"] == 256 * K


def test_once_without_bpf_has_nulls_and_a_reason() -> None:
    res = run("--once", "--json", "--no-bpf", "--duration", "0", "--pid", str(os.getpid()))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["bpf"]["enabled"] is False
    assert "--no-bpf" in doc["bpf"]["reason"]
    assert "eBPF is off" in res.stderr
    (row,) = doc["processes"]
    assert row["pid"] == os.getpid()
    assert all(row[f] is None for f in KERNEL_FIELDS)
    assert row["rss_kb"] > 0 and row["pss_kb"] is None


def test_once_top_and_sort_and_csv() -> None:
    res = run("--once", "--csv", "--no-bpf", "--duration", "0", "--top", "3", "--sort", "pid")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("pid,ppid,name,cmdline,user,start_time,rss_kb")
    pids = [int(line.split(",")[0]) for line in lines[1:]]
    assert len(pids) == 3 and pids == sorted(pids, reverse=True)


def test_table_shows_odd_names_literally(tmp_path: Path) -> None:
    odd = tmp_path / "a b\n[red]x[b]"
    os.symlink(shutil.which("sleep") or "/bin/sleep", odd)
    child = subprocess.Popen([str(odd), "30"])
    try:
        time.sleep(0.2)
        res = run("--once", "--no-bpf", "--duration", "0", "--pid", str(child.pid))
    finally:
        child.kill()
        child.wait()
    assert res.returncode == 0, res.stderr
    row = [line for line in res.stdout.splitlines() if line.strip().startswith(str(child.pid))]
    assert len(row) == 1
    assert "a b\\n[red]x[b]" in row[0]  # the newline is escaped, the markup kept literally


@pytest.mark.parametrize(("args", "needle"), [
    (["--interval", "0"], "at least 0.2"),
    (["--json"], "go with --once"),
    (["--once", "--at", "12"], "--at goes with --replay"),
    (["--once", "--replay", "/nonexistent/rec.db"], "/nonexistent/rec.db"),
    (["--once", "--sort", "bogus"], "invalid choice"),
    (["serve", "--listen", "nonsense"], "nonsense"),
])
def test_bad_input_gets_a_sentence_not_a_traceback(args: list[str], needle: str) -> None:
    res = run(*args)
    assert res.returncode in (1, 2)
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_unprivileged_user_gets_proc_figures_and_the_reason(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to drop to nobody) and setpriv")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", *MEMWATCH,
         "--once", "--json", "--duration", "0", "--top", "1"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["bpf"]["enabled"] is False
    assert "needs root" in doc["bpf"]["reason"] and "sudo" in doc["bpf"]["reason"]
    assert "Traceback" not in res.stderr


def test_record_then_replay_once(tmp_path: Path) -> None:
    rec = tmp_path / "rec.db"
    res = run("record", str(rec), "--no-bpf", "--interval", "0.3", "--duration", "1")
    assert res.returncode == 0, res.stderr
    assert "recorded" in res.stderr
    res = run("--once", "--json", "--replay", str(rec), "--top", "5")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert len(doc["processes"]) == 5
    first = run("--once", "--json", "--replay", str(rec), "--at", "0")
    assert json.loads(first.stdout)["timestamp"] <= doc["timestamp"]
