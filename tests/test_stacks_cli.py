"""`memwatch --once --json --stacks --maps --pid P`: the headless contract on a real process, and
the sentences for what cannot work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REQUIRE_BPF, Workload

K = 1024
MEMWATCH = [sys.executable, "-m", "memwatch"]


def run_looking(w: Workload, *flags: str, drive: bool = True) -> tuple[int, dict[str, Any], str]:
    """memwatch on ``w`` for 2 s; once it says the stacks are being captured (-v), the workload keeps
    three 64 KiB mappings and maps and unmaps five of 32 KiB."""
    proc = subprocess.Popen([*MEMWATCH, "--once", "--json", *flags, "--pid", str(w.pid), "--duration", "2", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = []
    for line in proc.stderr:
        err.append(line)
        if "allocation stacks of" in line or "eBPF is off" in line:
            break
    if drive:
        assert w(f"keep 3 {64 * K}") == 3
        assert w(f"churn 5 {32 * K}") == 5
    out, rest = proc.communicate(timeout=60)
    return proc.returncode, json.loads(out), "".join(err) + rest


@pytest.mark.bpf
def test_stacks_and_maps_in_headless_json(stacks_bin: Path) -> None:
    if os.geteuid() != 0 and not REQUIRE_BPF:
        pytest.skip("loading the tracer needs root")
    w = Workload(stacks_bin)
    try:
        w("pid")
        code, doc, err = run_looking(w, "--stacks", "--maps")
    finally:
        w.close()
    assert code == 0, err
    (proc,) = doc["processes"]
    stacks = proc["allocation_stacks"]
    first = stacks[0]
    assert [f["symbol"] for f in first["frames"][:5]] == ["__mmap", "keep_inner", "keep_outer", "cmd_keep", "main"]
    assert (first["kind"], first["calls"], first["bytes"], first["outstanding_bytes"]) == ("mmap", 3, 3 * 64 * K,
                                                                                          3 * 64 * K)
    assert first["frames"][1]["module"] == str(stacks_bin)
    assert all(set(f) == {"symbol", "module", "offset"} for f in first["frames"])
    churn = next(s for s in stacks if s["kind"] == "mmap" and "churn_once" in [f["symbol"] for f in s["frames"]])
    assert (churn["calls"], churn["bytes"], churn["outstanding_bytes"]) == (5, 5 * 32 * K, 0)
    assert [s["outstanding_bytes"] for s in stacks] == sorted((s["outstanding_bytes"] for s in stacks), reverse=True)

    maps = proc["mappings"]
    kinds = {g["kind"]: g for g in maps["by_kind"]}
    assert {"stack", "file", "anonymous"} <= set(kinds)
    assert maps["count"] == sum(g["count"] for g in maps["by_kind"])
    assert maps["rss_kb"] == sum(g["rss_kb"] for g in maps["by_kind"])
    assert any(g["path"] == str(stacks_bin) for g in maps["by_path"])
    # the kept mappings are there (the kernel may merge neighbours), made by the workload's thread
    traced = [m for m in maps["largest"] + [] if m["mapped_by"] is not None]
    assert all(m["mapped_by"] == w.pid and m["kind"] == "anonymous" for m in traced)


@pytest.mark.parametrize(("argv", "said"), [
    (["--once", "--stacks"], "--stacks needs --pid"),
    (["--stacks", "--pid", "1"], "--stacks goes with --once"),
    (["--once", "--maps"], "--maps needs --pid"),
    (["--once", "--stacks", "--pid", "1", "--no-bpf"], "--stacks needs the eBPF tracer"),
    (["--once", "--csv", "--maps", "--pid", "1"], "not --csv"),
    (["--once", "--replay", "x.db", "--maps", "--pid", "1"], "does not go with --replay"),
])
def test_bad_input_is_refused_with_a_sentence(argv: list[str], said: str) -> None:
    res = subprocess.run([*MEMWATCH, *argv], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert said in res.stderr


def test_maps_of_a_process_that_is_gone() -> None:
    res = subprocess.run([*MEMWATCH, "--once", "--json", "--no-bpf", "--maps", "--pid", "4000000",
                          "--duration", "0.2"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "memwatch: no process 4000000" in res.stderr
    assert json.loads(res.stdout)["processes"] == []


@pytest.mark.bpf
def test_a_binary_deleted_since_it_started_is_read_through_map_files(stacks_bin: Path, tmp_path: Path) -> None:
    """An upgrade replaces binaries under running processes: their frames still get names."""
    if os.geteuid() != 0 and not REQUIRE_BPF:
        pytest.skip("loading the tracer needs root")
    copy = tmp_path / "gone_workload"
    copy.write_bytes(stacks_bin.read_bytes())
    copy.chmod(0o755)
    w = Workload(copy)
    try:
        w("pid")
        copy.unlink()
        code, doc, err = run_looking(w, "--stacks")
    finally:
        w.close()
    assert code == 0, err
    first = doc["processes"][0]["allocation_stacks"][0]
    assert [f["symbol"] for f in first["frames"][:5]] == ["__mmap", "keep_inner", "keep_outer", "cmd_keep", "main"]
    assert first["frames"][1]["module"] == str(copy), "named by the path it was mapped from"
