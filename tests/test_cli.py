"""The ``memwatch`` command end to end, as scripts use it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.theme import BUILTIN_THEMES

from badfiles import deeply_nested, foreign_database, frame_json, set_frame_data, state, write_recording, zlib_bomb
from conftest import REQUIRE_BPF, Workload, bpf_unavailable, loaded_programs
from frames import HOG_PID, SHORT_JOB_PID, make_frames
from memwatch.headless import absent_pids, parse_time
from memwatch.recording import Recorder, Recording
from terminal import Terminal, final_modes, private_modes

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
    assert len(pids) == 3 and pids == sorted(pids), "pid ranks low to high, as in the dashboard"


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
    (["--once", "--at", "12"], "--at and --since go with --replay"),
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
    early = run("--once", "--json", "--replay", str(rec), "--at", "0")
    assert early.returncode == 1 and "--at 0 is before the recording, which spans" in early.stderr
    with Recording.open(rec) as recording:
        started = recording.timestamps()[0]
    first = run("--once", "--json", "--replay", str(rec), "--at", repr(started))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["timestamp"] == started < doc["timestamp"]


# --- broken and hostile recordings: one line, exit 1, no hang, no change -------------------------

def _one_line_error(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memwatch: "), res.stderr
    assert needle in lines[0]


def _string_for_a_number(d: dict[str, object]) -> None:
    d["timestamp"] = "yesterday"


def _bad_recording(path: Path, case: str) -> str:
    """Make ``path`` the ``case`` of broken file; return what the error line must say."""
    if case == "fifo":
        os.mkfifo(path)
        return "it is a FIFO (named pipe), not a recording file"
    if case == "foreign":
        foreign_database(path)
        return "not a memwatch recording"
    if case == "text":
        path.write_text("not a recording\n" * 100)
        return "not an SQLite database"
    write_recording(path, 2)
    damage = {"string": frame_json(_string_for_a_number), "deep": deeply_nested(), "bomb": zlib_bomb(300)}[case]
    set_frame_data(path, 0, damage)  # the first frame: what --once --replay opens
    return {"string": "timestamp should be a number, not a string ('yesterday')",
            "deep": "nested too deeply", "bomb": "far more than any real frame"}[case]


@pytest.mark.parametrize("case", ["fifo", "foreign", "text", "string", "deep", "bomb"])
def test_replaying_a_bad_recording_is_one_line(tmp_path: Path, case: str) -> None:
    path = tmp_path / "bad.db"
    needle = _bad_recording(path, case)
    before = sorted(os.listdir(tmp_path))
    res = run("--once", "--replay", str(path), timeout=30)  # a FIFO used to hang here, deaf to Ctrl+C
    _one_line_error(res, needle)
    assert "Traceback" not in res.stderr
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("case", ["fifo", "foreign", "text"])
def test_recording_into_a_bad_file_is_one_line_and_changes_nothing(tmp_path: Path, case: str) -> None:
    """(A recording with a damaged frame is not refused: new frames append to it as they should.)"""
    path = tmp_path / "bad.db"
    needle = _bad_recording(path, case)
    before = state(path) if case != "fifo" else None
    listing = sorted(os.listdir(tmp_path))
    res = run("record", str(path), "--duration", "1", "--no-bpf", timeout=30)
    _one_line_error(res, needle)
    assert "Traceback" not in res.stderr
    assert sorted(os.listdir(tmp_path)) == listing
    if before is not None:
        assert state(path) == before


# --- bad input: one sentence, a non-zero status, never a wait that does not end ---------------

@pytest.mark.parametrize(("args", "needle"), [
    (["--once", "--interval", "nan"], "argument --interval: 'nan' is not a finite number of seconds"),
    (["--once", "--interval", "inf"], "argument --interval: 'inf' is not a finite number of seconds"),
    (["--once", "--interval", "1e300"], "must be at most 31536000 seconds (365 days)"),
    (["--once", "--duration", "nan"], "argument --duration: 'nan' is not a finite number of seconds"),
    (["--once", "--duration=-inf"], "argument --duration: '-inf' is not a finite number of seconds"),
    (["--once", "--duration", "31536001"], "must be at most 31536000 seconds (365 days)"),
    (["--once", "--leak-warmup", "nan"], "argument --leak-warmup: 'nan' is not a finite number of seconds"),
    (["--once", "--events-per-sec", str(2**32)], "must be at most 4294967295 (the tracer keeps it in 32 bits)"),
    (["--once", "--event-threshold", str(2**64)], "must be at most 18446744073709551615"),
    (["--once", "--bpf-map-size", "0"], "argument --bpf-map-size: must be at least 1"),
    (["--once", "--bpf-map-size", str(2**27 + 1)], "must be at most 134217728"),
    (["record", "rec.db", "--duration", "inf"], "argument --duration: 'inf' is not a finite number"),
    (["record", "rec.db", "--interval", "nan"], "argument --interval: 'nan' is not a finite number"),
    (["serve", "--interval", "inf"], "argument --interval: 'inf' is not a finite number"),
    (["serve", "--events-per-sec", str(2**32)], "must be at most 4294967295"),
])
def test_numbers_that_cannot_work_are_usage_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    res = subprocess.run([*MEMWATCH, *args], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "rec.db").exists()


def test_an_unknown_theme_is_a_usage_error_that_lists_the_themes() -> None:
    res = run("--theme", "nope", "--no-bpf", timeout=30)
    assert res.returncode == 2
    assert "memwatch: error: unknown theme 'nope'; choose one of ansi-dark, " in res.stderr
    assert all(name in res.stderr for name in BUILTIN_THEMES)
    assert "usage:" in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""  # refused before the dashboard touched the terminal


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_the_dashboard_into_a_pipe_or_a_file_says_to_use_once(into: str, tmp_path: Path) -> None:
    """Redirected output would fill with escape codes: one line says what to use instead, exit 2,
    and nothing reaches the output."""
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        res = subprocess.run([*MEMWATCH, "--no-bpf"], stdout=subprocess.PIPE if into == "pipe" else sink,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=30)
    assert res.returncode == 2
    assert (res.stdout if into == "pipe" else out.read_text()) == ""
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("memwatch: ") and "--once" in res.stderr


# --- --pid that is not in the output ------------------------------------------------------------

def no_such_pid(offset: int = 1) -> int:
    """A pid no process can have: above the kernel's pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + offset


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_a_missing_pid_is_named_and_fails_but_the_rest_is_printed(fmt: str) -> None:
    gone, also_gone = no_such_pid(1), no_such_pid(2)
    flags = {"table": [], "json": ["--json"], "csv": ["--csv"]}[fmt]
    res = run("--once", *flags, "--no-bpf", "--duration", "0", "--pid", str(os.getpid()),
              "--pid", str(gone), "--pid", str(also_gone), "--pid", str(gone))
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1] == f"memwatch: no processes {gone} and {also_gone}"
    if fmt == "json":
        assert [row["pid"] for row in json.loads(res.stdout)["processes"]] == [os.getpid()]
    elif fmt == "csv":
        assert [line.split(",")[0] for line in res.stdout.splitlines()] == ["pid", str(os.getpid())]
    else:
        assert any(line.split()[:1] == [str(os.getpid())] for line in res.stdout.splitlines())

    res = run("--once", *flags, "--no-bpf", "--duration", "0", "--pid", str(gone))
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1] == f"memwatch: no process {gone}"
    assert "Traceback" not in res.stderr
    if fmt == "json":
        assert json.loads(res.stdout)["processes"] == []


@pytest.mark.bpf
def test_a_pid_that_exits_during_the_window_is_said_to_have_exited() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to trace") if not REQUIRE_BPF else pytest.fail("needs root")
    child = subprocess.Popen(["sleep", "30"])
    proc = subprocess.Popen([*MEMWATCH, "--once", "--json", "--pid", str(child.pid), "--duration", "3", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line or "tracer attached" in line or "eBPF is off" in line:
                break
        assert "tracer attached" in line, f"the tracer did not attach: {line!r}"
        child.kill()
        child.wait()  # reaped: no zombie left in /proc to be listed
        out, err = proc.communicate(timeout=30)
    finally:
        child.kill()
        proc.kill()
        proc.wait()
    assert proc.returncode == 1, err
    assert json.loads(out)["processes"] == []
    message = err.splitlines()[-1]
    assert message.startswith(f"memwatch: process {child.pid} (sleep) exited during the ")
    assert "s traced window, at " in message


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """Five frames from tests/frames.py: 22:13:20 to 22:13:32 UTC on 2023-11-14, 3 s apart."""
    path = tmp_path / "rec.db"
    with Recorder.open(path) as recorder:
        for frame in make_frames(5):
            recorder.append(frame)
    return path


def test_a_pid_gone_from_a_recording_says_how_it_ended(recording: Path) -> None:
    res = run("--once", "--replay", str(recording), "--pid", str(SHORT_JOB_PID), "--pid", str(HOG_PID),
              "--pid", "1")
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"memwatch: process {SHORT_JOB_PID} (short-job) exited before this frame of the recording, "
        "at 2023-11-14 22:13:27 UTC",
        f"memwatch: process {HOG_PID} (hog) was killed by the OOM killer before this frame of the "
        "recording, at 2023-11-14 22:13:31 UTC",
    ]
    assert [line.split()[0] for line in res.stdout.splitlines()[4:]] == ["1"]  # after the header


def test_absent_pids_of_a_live_snapshot_say_when_in_the_window_they_exited() -> None:
    last = make_frames(5)[-1]  # a live-like frame: no replay position, traced 12 s
    gone = no_such_pid()
    assert absent_pids(last, [1, SHORT_JOB_PID, gone, HOG_PID, SHORT_JOB_PID]) == [
        f"process {SHORT_JOB_PID} (short-job) exited during the 12.0 s traced window, at 2023-11-14 22:13:27 UTC",
        f"process {HOG_PID} (hog) was killed by the OOM killer during the 12.0 s traced window, at "
        "2023-11-14 22:13:31 UTC",
        f"no process {gone}",
    ]
    assert absent_pids(last, [1, 812]) == []


# --- --at outside the recording -------------------------------------------------------------------

SPAN = "which spans 2023-11-14T22:13:20 to 2023-11-14T22:13:32 (UTC)"


@pytest.mark.parametrize(("at", "where"), [
    ("2020-01-01T00:00:00", "before"),
    ("1699999999.9", "before"),
    ("2023-11-14T22:13:33", "after"),
    ("2023-11-14T23:13:32+01:00", None),  # the last frame, in another zone
    ("2023-11-14T22:13:20", None),  # the ends as the message shows them are inside
    ("2023-11-14T22:13:32", None),
    ("1700000004.5", None),  # between frames: the one before
])
def test_at_outside_the_recording_says_so(recording: Path, at: str, where: str | None) -> None:
    res = run("--once", "--json", "--replay", str(recording), "--at", at, "--top", "1")
    assert "Traceback" not in res.stderr
    if where is None:
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["timestamp"] <= parse_time(at)
        return
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr == f"memwatch: --at {at} is {where} the recording, {SPAN}\n"


@pytest.mark.parametrize("at", ["nan", "inf", "-inf", "yesterday"])
def test_at_that_is_no_time_is_a_usage_error(recording: Path, at: str) -> None:
    res = run("--once", "--replay", str(recording), f"--at={at}")
    assert res.returncode == 2
    assert res.stderr.startswith(f"memwatch: cannot read {at!r} as a time")


# --- record and serve say that eBPF is off, and stop on SIGHUP as on SIGTERM ----------------------

def read_stderr_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """stderr up to and including the first line holding ``needle``; AssertionError on timeout."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if not ready:
            continue
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not on stderr within {timeout} s; it said:\n{seen}")


UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]


@pytest.fixture
def nobodys_dir() -> Iterator[Path]:
    """A directory uid 65534 can write in (pytest's own tmp_path is root's alone)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to drop to nobody) and setpriv")
    path = Path(tempfile.mkdtemp(prefix="memwatch-nobody-"))
    os.chown(path, 65534, 65534)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_record_says_at_start_that_ebpf_is_off(nobodys_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rec = nobodys_dir / "rec.db"
    res = subprocess.run([*UNPRIVILEGED, *MEMWATCH, "record", str(rec), "--interval", "0.3", "--duration", "1"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=nobodys_dir)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    off = [line for line in lines if "eBPF is off" in line]
    assert len(off) == 1, res.stderr  # once, not every frame
    assert off[0].startswith("memwatch: eBPF is off: memwatch needs root") and "sudo" in off[0]
    assert lines.index(off[0]) < len(lines) - 1 and lines[-1].startswith("memwatch: recorded ")
    with Recording.open(rec) as recording:
        assert len(recording) >= 2 and recording.frame(0).tracer.enabled is False


def test_serve_says_at_start_that_ebpf_is_off_and_stops_on_sighup(nobodys_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([*UNPRIVILEGED, *MEMWATCH, "serve", "--listen", "127.0.0.1:0", "--interval", "0.5"],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=nobodys_dir)
    try:
        said = read_stderr_until(proc, "eBPF is off", 60)
        assert "metrics at http://127.0.0.1:" in said
        assert said.splitlines()[-1].startswith("memwatch: eBPF is off: memwatch needs root")
        time.sleep(1.2)  # a few snapshots more: the reason is said once, not per snapshot
        proc.send_signal(signal.SIGHUP)
        _, rest = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, rest
    assert "eBPF is off" not in rest and "Traceback" not in rest


def test_record_stops_on_sighup_with_a_readable_recording(tmp_path: Path) -> None:
    rec = tmp_path / "rec.db"
    proc = subprocess.Popen([*MEMWATCH, "record", str(rec), "--no-bpf", "--interval", "0.3"],
                            stderr=subprocess.PIPE, text=True)
    try:
        read_stderr_until(proc, "eBPF is off (--no-bpf)", 30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # a few frames in
            time.sleep(0.3)
            with Recording.open(rec) as recording:
                if len(recording) >= 3:
                    break
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    match = re.search(r"memwatch: recorded (\d+) frames to ", err)
    assert match, err
    with Recording.open(rec) as recording:
        assert len(recording) == int(match.group(1)) >= 3
        recording.frame(-1)  # the last one written is whole


# --- the dashboard on a real terminal: SIGTERM and SIGHUP leave it as q does ----------------------

ALT_SCREEN, CURSOR, AUTOWRAP = 1049, 25, 7
MOUSE_MODES = (1000, 1003, 1015, 1006)
DRAWN = b" processes"  # the status line ("12 of 12 processes"), drawn once a snapshot is shown


def terminal_env() -> dict[str, str]:
    """What a terminal emulator gives its shell; nothing of the test runner's own TEXTUAL_* or size."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8", "TERM": "xterm-256color", "PYTHONPATH": os.pathsep.join(sys.path),
            "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"]}  # the run's own (conftest): no user's settings


def stop(term: Terminal, how: str) -> None:
    if how == "q":
        assert term.master is not None
        os.write(term.master, b"q")
    else:
        for name in how.split("+"):
            term.signal(signal.Signals[name])


def assert_terminal_restored(output: bytes, since: int) -> None:
    """Every mode the dashboard switched on is off again, switched off after ``since`` (the stop),
    and the cursor shows; no traceback anywhere."""
    assert b"Traceback" not in output, output[-3000:]
    switched_on = {mode for mode, on in private_modes(output) if on} - {CURSOR, AUTOWRAP}
    assert {ALT_SCREEN, *MOUSE_MODES} <= switched_on  # what the checks below rely on
    after = final_modes(output[since:])
    assert {mode: after.get(mode) for mode in switched_on} == dict.fromkeys(switched_on, False)
    assert after.get(CURSOR) is True
    tail = output[since:]
    for sequence in (b"\x1b[?1049l", b"\x1b[?25h", *(f"\x1b[?{m}l".encode() for m in MOUSE_MODES)):
        assert sequence in tail
    if b"\x1b[>" in output[:since]:  # the kitty keyboard protocol, pushed at start: popped
        assert b"\x1b[<u" in tail


@pytest.mark.parametrize("how", ["q", "SIGTERM", "SIGHUP", "SIGTERM+SIGTERM", "SIGHUP+SIGTERM"])
def test_replay_dashboard_stops_on_signals_as_on_q(recording: Path, how: str) -> None:
    term = Terminal([*MEMWATCH, "--replay", str(recording)], env=terminal_env())
    try:
        term.wait_for(DRAWN, 60)
        since = len(term.output)
        stop(term, how)
        assert term.wait(30) == 0
        assert_terminal_restored(term.output, since)
    finally:
        term.close()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP"])
def test_a_signal_while_the_dashboard_starts_still_restores_the_terminal(recording: Path, how: str) -> None:
    term = Terminal([*MEMWATCH, "--replay", str(recording)], env=terminal_env())
    try:
        since = term.wait_for(b"\x1b[?1049h", 60)  # the alternate screen, before any frame is drawn
        stop(term, how)
        assert term.wait(30) == 0
        assert_terminal_restored(term.output, since)
    finally:
        term.close()


def programs_held_by(pid: int) -> set[int]:
    """Ids of the BPF programs a process holds open (program and link fds both name theirs)."""
    ids: set[int] = set()
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            ids.update(int(line.split()[1]) for line in fdinfo.read_text().splitlines()
                       if line.startswith("prog_id:"))
    return ids


def assert_unloaded(ids: set[int]) -> None:
    """None of ``ids`` is still loaded; the kernel frees a program once its last fd is gone, which
    may lag its owner's exit by a moment."""
    left = loaded_programs(tuple(ids))
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = loaded_programs(tuple(left))
    assert not left, f"programs still loaded after memwatch exited: {sorted(left)}"


@pytest.mark.bpf
@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "hangup"])
def test_live_dashboard_on_signal_restores_the_terminal_and_detaches(how: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to trace") if not REQUIRE_BPF else pytest.fail("needs root")
    log = tmp_path / "memwatch.log"
    term = Terminal([*MEMWATCH, "--interval", "1", "-v"], env={**terminal_env(), "MEMWATCH_LOG": str(log)})
    try:
        term.wait_for(DRAWN, 90)
        held = programs_held_by(term.pid)
        if not held:
            bpf_unavailable("the dashboard ran without its tracer: " + term.output[-2000:].decode(errors="replace"))
        since = len(term.output)
        if how == "hangup":  # the terminal window closed: the kernel sends SIGHUP, nothing can be drawn
            term.hang_up()
        else:
            stop(term, how)
        assert term.wait(30) == 0
        if how != "hangup":
            assert_terminal_restored(term.output, since)
        # The kernel would unload the programs of a killed process too: the log shows that
        # memwatch detached them itself, on the way out that q takes.
        said = [line.split(" INFO ", 1)[-1] for line in log.read_text().splitlines()]
        signal_name = "SIGHUP" if how == "hangup" else how
        assert f"{signal_name}: quitting as q does" in said
        assert said.index("tracer detached") > said.index(f"{signal_name}: quitting as q does")
        assert_unloaded(held)
    finally:
        term.close()


def test_serve_keeps_no_recent_call_events() -> None:
    """The exporter never shows per-process call events: its store keeps none (see Store)."""
    from memwatch.cli import _live_source, build_parser, build_serve_parser

    serve = _live_source(build_serve_parser().parse_args(["--no-bpf"]), recent_events=False)
    dashboard = _live_source(build_parser().parse_args(["--no-bpf"]))
    assert serve.store.recent_len == 0  # type: ignore[attr-defined]
    assert dashboard.store.recent_len > 0  # type: ignore[attr-defined]


def test_the_dashboard_opens_its_tracer_ready_for_stack_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process screen's allocation tab starts a capture at any moment: the dashboard's tracer
    has its stack ring from the start; --once without --stacks does not pay for one."""
    import memwatch.cli as cli
    import memwatch.ui.app as ui_app

    seen: list[object] = []
    monkeypatch.setattr(ui_app, "run_dashboard", lambda source, **kw: seen.append(source) or 0)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli.run_dashboard(cli.build_parser().parse_args([])) == 0
    assert seen[0].tracer_config.stacks  # type: ignore[attr-defined]
    assert not cli._live_source(cli.build_parser().parse_args(["--once"])).tracer_config.stacks  # type: ignore[attr-defined]
