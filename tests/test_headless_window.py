"""`--once` over a window: every exit of the window in JSON, the leak signal judged on samples
taken along the way, and the window as long as asked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REQUIRE_BPF

MEMWATCH = [sys.executable, "-m", "memwatch"]
BURST = 1_500

LEAKER = textwrap.dedent("""
    import sys, time
    hold = []
    print("ready", flush=True)
    while True:
        hold.append(bytearray(b"\\x01") * (64 * 1024))   # 64 KiB touched every 0.25 s: 256 KB/s
        time.sleep(0.25)
""")

BURSTER = textwrap.dedent(f"""
    import os, signal, sys
    kinds = {{}}
    for i in range({BURST}):
        pid = os.fork()
        if pid == 0:
            if i % 100 == 99:
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(i % 200)
        kinds[pid] = i
    for _ in range({BURST}):
        os.wait()
    print(" ".join(f"{{p}}:{{i}}" for p, i in kinds.items()))
""")


def _start(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*MEMWATCH, *args, "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line or "tracer attached" in line or "eBPF is off" in line:
            break
    if "tracer attached" not in line:
        proc.kill()
        pytest.fail(f"the tracer did not attach: {line!r}")
    return proc


@pytest.mark.bpf
def test_a_window_holds_every_exit_and_judges_leaks_on_its_samples(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to trace") if not REQUIRE_BPF else pytest.fail("needs root")
    leaker = subprocess.Popen([sys.executable, "-c", LEAKER], stdout=subprocess.PIPE, text=True)
    try:
        assert leaker.stdout is not None and leaker.stdout.readline().strip() == "ready"
        pid = str(leaker.pid)
        window = ["--once", "--json", "--duration", "66", "--interval", "1", "--pid", pid, "--top", "0"]
        judged = _start(*window, "--leak-warmup", "0")
        default = _start(*window)                       # the leaker is young: still warming up
        started = time.monotonic()
        time.sleep(3)
        burst = subprocess.run([sys.executable, "-c", BURSTER], capture_output=True, text=True, timeout=60)
        assert burst.returncode == 0, burst.stderr
        children = dict(map(int, item.split(":")) for item in burst.stdout.split())
        out, err = judged.communicate(timeout=120)
        elapsed = time.monotonic() - started
        default_out, default_err = default.communicate(timeout=120)
    finally:
        leaker.kill()
        leaker.wait()
    assert judged.returncode == 0, err
    assert default.returncode == 0, default_err
    doc = json.loads(out)

    assert 65.5 <= doc["duration_s"] <= 70, "--duration is the window, not one interval"
    assert elapsed >= 62

    exits = {e["pid"]: e for e in doc["events"] if e["kind"] == "exit"}
    assert len(children) == BURST
    missing = [p for p in children if p not in exits]
    assert not missing, f"{len(missing)} of {BURST} exits never reached the document"
    assert doc["bpf"]["exits_dropped"] == 0
    for child, i in children.items():
        e = exits[child]
        if i % 100 == 99:
            assert (e["exit_code"], e["signal"]) == (None, "SIGKILL"), e
        else:
            assert (e["exit_code"], e["signal"]) == (i % 200, None), e
        assert e["start_time"] is not None and e["peak_rss_kb"] > 0
    assert [e["time"] for e in doc["events"]] == sorted(e["time"] for e in doc["events"])

    (row,) = [r for r in doc["processes"] if r["pid"] == leaker.pid]
    assert row["growth_kb_s"] > 100
    assert row["leak_suspect"] is True, "66 s of samples: a steady 256 KB/s leak is flagged"
    (young,) = [r for r in json.loads(default_out)["processes"] if r["pid"] == leaker.pid]
    assert young["growth_kb_s"] > 100 and young["leak_suspect"] is False, "not during its warm-up"


def test_window_without_bpf_samples_every_interval() -> None:
    """Also on /proc alone: three one-second intervals make a four-point history."""
    res = subprocess.run([*MEMWATCH, "--once", "--json", "--no-bpf", "--duration", "3", "--interval", "1",
                          "--pid", str(os.getpid())], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert 2.9 <= doc["duration_s"] < 5
    assert doc["events"] == [] or all(e["kind"] in ("exit", "oom") for e in doc["events"])
    (row,) = doc["processes"]
    assert row["growth_kb_s"] is not None, "a rate needs at least two samples"
    assert row["outstanding_complete"] is None


def test_signal_names_are_reported() -> None:
    from memwatch.model import decode_wait_status

    assert decode_wait_status(3 << 8) == (3, None)
    assert decode_wait_status(9) == (None, "SIGKILL")
    assert decode_wait_status(0x80 | signal.SIGSEGV) == (None, "SIGSEGV")   # core dumped
    assert decode_wait_status(int(signal.SIGRTMIN) + 2) == (None, "SIGRTMIN+2")


def test_replay_events_between_since_and_at(tmp_path: Path) -> None:
    """With --replay, 'events' are every exit and OOM kill recorded from --since (default: the
    start) to the frame at --at."""
    from frames import BASE_TIMESTAMP, FRAME_GAP_S, make_frames
    from memwatch.recording import Recorder

    frames = make_frames(6)
    rec = tmp_path / "rec.db"
    with Recorder.open(rec) as recorder:
        for frame in frames:
            recorder.append(frame)
    recorded = [e for f in frames for e in f.new_events]
    assert len(recorded) == 2   # the short job's exit, the hog's OOM kill (last frame)

    def events(*args: str) -> list[dict[str, object]]:
        res = subprocess.run([*MEMWATCH, "--once", "--json", "--replay", str(rec), *args],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return list(json.loads(res.stdout)["events"])

    assert [e["kind"] for e in events()] == ["exit", "oom"]
    exit_time = float(recorded[0].timestamp)
    before_oom = str(BASE_TIMESTAMP + FRAME_GAP_S * 4)
    assert [e["kind"] for e in events("--at", before_oom)] == ["exit"]
    assert [e["kind"] for e in events("--since", str(exit_time + 0.001))] == ["oom"]
    only = events("--since", str(exit_time), "--at", before_oom)
    assert [(e["kind"], e["time"], e["exit_code"], e["signal"]) for e in only] == [("exit", exit_time, 0, None)]


def test_terminal_escapes_in_names_and_command_lines_never_reach_the_terminal() -> None:
    """Any local user picks their own process name and command line: an OSC title, a screen clear
    and an OSC 52 clipboard write must come out as text in the table, CSV and JSON."""
    hostile_comm = b"\x1b]0;pwn\x07\x1b[2J"            # 15 bytes: fits the kernel's comm
    hostile_arg = "\x1b]52;c;aGVsbG8=\x07\x9b31mred"
    script = ("import sys\n"
              f"open('/proc/self/comm', 'wb').write({hostile_comm!r})\n"
              "print('ready', flush=True)\n"
              "sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", script, hostile_arg], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        outputs = {}
        for fmt in ("table", "csv", "json"):
            extra = [] if fmt == "table" else [f"--{fmt}"]
            res = subprocess.run([*MEMWATCH, "--once", "--no-bpf", "--duration", "0", "--pid", str(child.pid),
                                  *extra], capture_output=True, timeout=60)
            assert res.returncode == 0, res.stderr
            outputs[fmt] = res.stdout
    finally:
        child.kill()
        child.wait()
    for fmt, out in outputs.items():
        assert b"\x1b" not in out and b"\x07" not in out and "\x9b".encode() not in out, fmt
    assert b"\\x1b]0;pwn\\x07\\x1b[2" in outputs["table"]   # the NAME column is 20 wide
    assert b"\\x1b]52;c;aGVsbG8=\\x07\\x9b31mred" in outputs["csv"]
    (row,) = json.loads(outputs["json"])["processes"]
    assert row["name"] == hostile_comm.decode() and hostile_arg in row["cmdline"], "JSON keeps the data, escaped"
