"""The README is a contract: every command it shows runs as written, here.

Every line of every ```sh block in README.md and docs/*.md is a command. COMMANDS (at the end of
this file) says, for each, how it is run and what is checked against what the README says beside
it; a documented command with no entry fails, and so does an entry whose command the docs no
longer show. A fenced block must name its language, so that a command cannot slip past in an
unmarked block (```text is for anything that is not run).

"As written" means: ``bash -c`` with the command line exactly as documented, PATH starting with
the venv's bin directory (the README: "After set-up the command is `.venv/bin/memwatch`"), in a
temporary directory (so `today.db` lands there), or in the repository for the `.venv/bin/python
bench/...` lines. The commands that run a while run at the same time, each lane of COMMANDS in a
thread of its own; the test of a command waits for its lane to reach it and reports what it saw.
Around a command, and only around it:
- dashboards get a real pseudo-terminal (tests/terminal.py); `q` once the first frame is drawn;
- `memwatch serve --listen 127.0.0.1:9464` runs in a network namespace of its own (as root), so
  that a memwatch serving that port on this machine, or a test run beside this one, is no
  obstacle; its endpoints, and fleet.md's `curl`, are fetched from inside that namespace;
- the bench commands get MEMWATCH_BENCH_SMOKE=1 (bench/smoke.py): one short round of each;
- the commands that read `today.db` at fixed times get a recording built here that covers them;
- `./scripts/run.sh` installs memwatch with pip: it runs in a fresh copy of the repository, so
  that the editable install this test run uses stays as it is;
- `./scripts/test.sh` runs this very suite, so it is not run here: .ci/run runs exactly it, and
  that is checked;
- fleet.md's `sudo cp` and `sudo systemctl ... enable --now` are not run either (they would install
  and start a service on this machine): what they rely on is checked, and their tests say, as a
  skip, that they were not run.
As root (CI runs this with MEMWATCH_REQUIRE_BPF=1) the memwatch commands must trace; without
root they must run on /proc and say so.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import bpf_unavailable
from frames import HOG_PID, SHORT_JOB_PID, make_frames
from memwatch.model import Event, EventKind, Snapshot
from memwatch.recording import Recorder, Recording, RecordingError
from memwatch.serialize import HEADLESS_COLUMNS
from terminal import Terminal
from test_cli import DRAWN, assert_terminal_restored, read_stderr_until

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
AS_ROOT = os.geteuid() == 0


# ----- what the docs show ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    """The line number of the opening fence."""
    language: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Documented:
    where: str
    """file:line, for messages."""
    command: str
    comment: str


def fenced_blocks(path: Path) -> list[Block]:
    """Every ``` block of a Markdown file, with the language its opening fence names ("" if none)."""
    blocks: list[Block] = []
    opened: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.startswith("```"):
            if opened is not None:
                body.append(line)
            continue
        if opened is None:
            opened, body = (number, line[3:].strip()), []
        else:
            blocks.append(Block(path, opened[0], opened[1], tuple(body)))
            opened = None
    assert opened is None, f"{path.name}:{opened[0]}: a ``` block that is never closed"
    return blocks


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment): a ``#`` that starts a word outside quotes starts the comment, as in sh."""
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def documented_commands() -> list[Documented]:
    """Every command of every ```sh block of the docs, in order (a line ending in \\ continues)."""
    found: list[Documented] = []
    for block in (b for path in DOCS for b in fenced_blocks(path) if b.language == "sh"):
        pending = ""
        for offset, line in enumerate(block.lines, 1):
            command, comment = split_comment(pending + line)
            if command.endswith("\\"):
                pending = command[:-1] + " "
                continue
            pending = ""
            if command.strip():
                where = f"{block.path.relative_to(ROOT)}:{block.line + offset}"
                found.append(Documented(where, command.strip(), comment))
    return found


# ----- running a command as written -------------------------------------------------------------------

def memwatch_on_path() -> Path:
    memwatch = VENV_BIN / "memwatch"
    if not os.access(memwatch, os.X_OK):
        pytest.fail(f"{memwatch} is missing: the README's set-up (scripts/test.sh) makes it")
    return memwatch


def shell_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell after set-up: the venv's bin first on PATH. Nothing of this
    test run's own memwatch or Textual settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMWATCH_", "TEXTUAL", "PYTEST", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


def terminal_env(path_first: Path | None = VENV_BIN) -> dict[str, str]:
    """What a terminal emulator gives its shell (see test_cli.terminal_env), PATH as after set-up."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {"PATH": f"{path_first}{os.pathsep}{path}" if path_first else path,
            "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "TERM": "xterm-256color",
            "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"]}  # the run's own (conftest): no user's settings


def run(command: str, cwd: Path, *, timeout: float, env: Mapping[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """``bash -c COMMAND`` to the end; a command that outlives ``timeout`` is killed, its group too."""
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=dict(env or shell_env()), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{command!r} still ran after {timeout} s") from None
    finally:
        stop_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop_group(proc: subprocess.Popen[str]) -> None:
    """Kill what is left of a command started in a session of its own, and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def no_traceback(*texts: str | bytes) -> None:
    for text in texts:
        found = "Traceback" in text if isinstance(text, str) else b"Traceback" in text
        assert not found, text[-3000:]


def must_trace(attached: bool, what: str, said: str) -> None:
    """README: "as root it traces, otherwise it runs on /proc and says why"."""
    if AS_ROOT and not attached:
        bpf_unavailable(f"{what} ran as root without its tracer: {said[-1500:]}")
    if not AS_ROOT:
        assert not attached and said, f"{what} ran without root and did not say that eBPF is off"


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/test.sh installs it (APT_PACKAGES)")
    return path


@dataclass
class Ctx:
    """What the checks share: fresh directories, and the recording the fixed-time commands read."""

    tmp: pytest.TempPathFactory
    _lock: threading.Lock
    _recording: Path | None = None

    def fresh_dir(self, name: str) -> Path:
        with self._lock:
            return self.tmp.mktemp(name)

    def with_recording(self, name: str) -> Path:
        """A fresh directory holding a copy of the test recording as ``today.db``."""
        with self._lock:
            if self._recording is None:
                self._recording = self.tmp.mktemp("recording") / "today.db"
                write_day(self._recording)
            directory = self.tmp.mktemp(name)
        shutil.copyfile(self._recording, directory / "today.db")
        return directory


# ----- the recording that the fixed-time commands read ------------------------------------------------

def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


DAY_START = utc("2026-11-26T09:55:00")
DAY_FRAMES = 26  # one a minute, 09:55 to 10:20
LATE_JOB_PID, WORKER_PIDS = 5002, (5101, 5102, 5103)


def _exit(when: str, pid: int, name: str, *, code: int | None = None, sig: str | None = None) -> Event:
    return Event(timestamp=utc(when), kind=EventKind.EXIT, pid=pid, tid=pid, name=name, exit_code=code,
                 signal=sig, peak_rss_kb=4096)


DAY_EVENTS = (
    _exit("2026-11-26T09:57:30", SHORT_JOB_PID, "short-job", code=0),  # before --since
    *(_exit(f"2026-11-26T10:09:4{i}", pid, "worker", sig="SIGKILL") for i, pid in enumerate(WORKER_PIDS)),
    Event(timestamp=utc("2026-11-26T10:12:30"), kind=EventKind.OOM, pid=HOG_PID, tid=HOG_PID, name="hog",
          rss_kb=15_000_000, total_vm_kb=60_000_000),
    _exit("2026-11-26T10:12:30.500", HOG_PID, "hog", sig="SIGKILL"),
    _exit("2026-11-26T10:18:00", LATE_JOB_PID, "late-job", code=1),  # after --at
)
"""The exits and the OOM kill of the day: some before the README's --since, some after its --at."""
OOM_AT = utc("2026-11-26T10:12:30")


def day_frames() -> list[Snapshot]:
    """tests/frames.py's processes, a frame a minute from 09:55 to 10:20 UTC, with DAY_EVENTS (hog
    is gone once the OOM killer took it; short-job leaves at frame 3, as frames.py has it)."""
    frames = []
    for i, frame in enumerate(make_frames(DAY_FRAMES)):
        now = DAY_START + 60 * i
        happened = tuple(e for e in DAY_EVENTS if e.timestamp <= now)
        processes = tuple(p for p in frame.processes if not (p.pid == HOG_PID and now >= OOM_AT))
        frames.append(replace(frame, timestamp=now, interval_s=60.0, duration_s=60.0 * i, processes=processes,
                              events=happened, new_events=tuple(e for e in happened if e.timestamp > now - 60),
                              by_key={}))
    return frames


def write_day(path: Path) -> None:
    with Recorder.open(path) as recorder:
        for frame in day_frames():
            recorder.append(frame)


# ----- the checks: each runs its command as written and says what it saw --------------------------------

Check = Callable[[str, Ctx], str]


def dashboard(command: str, cwd: Path, *, env: Mapping[str, str] | None = None, timeout: float = 90,
              wait_for: tuple[bytes, ...] = ()) -> tuple[bytes, float]:
    """Run a dashboard on a pseudo-terminal until its first frame (and ``wait_for``) shows, press q;
    it must exit 0 and leave the terminal as it found it. What it showed, and how long the first
    frame took."""
    started = time.monotonic()
    term = Terminal(["bash", "-c", command], env=env or terminal_env(), cwd=str(cwd))
    try:
        term.wait_for(DRAWN, timeout)
        first = time.monotonic() - started
        for needle in wait_for:
            term.wait_for(needle, 30)
        since = len(term.output)
        assert term.master is not None
        os.write(term.master, b"q")
        assert term.wait(30) == 0, f"exit status {term.returncode}"
        assert_terminal_restored(term.output, since)
        return term.output, first
    finally:
        if term.poll() is None:  # it failed: anything it started (run.sh: pip) goes with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(term.pid, signal.SIGKILL)
        term.close()


STATUS = re.compile(rb"(\d+) of (\d+) processes")


def live_dashboard(command: str, ctx: Ctx, *, interval: str, sort: str) -> str:
    """The live dashboard: the top 100 of every process, ``sort`` descending, a new frame every
    ``interval``; traced as root."""
    cwd = ctx.fresh_dir("dashboard")
    out, first = dashboard(command, cwd)
    shown, total = map(int, STATUS.findall(out)[-1])
    assert shown == min(100, total) and total > 1, (shown, total)
    assert f"sort {sort} ▼".encode() in out, f"not ranked by {sort}"
    assert f"every {interval}s".encode() in out, f"not refreshed every {interval} s"
    attached = re.search(rb"attached \((tracepoint|raw)\)", out) is not None
    must_trace(attached, command, "eBPF OFF" if b"eBPF OFF" in out else "")
    assert listing(cwd) == [], "the dashboard wrote into its working directory"
    return f"first frame after {first:.1f} s"


def check_dashboard(command: str, ctx: Ctx) -> str:
    # "dashboard: top 100 by RSS, refreshed every 3 s"
    return live_dashboard(command, ctx, interval="3", sort="RSS")


def check_dashboard_growth(command: str, ctx: Ctx) -> str:
    # "faster, ranked by growth rate"
    return live_dashboard(command, ctx, interval="1", sort="GROWTH")


def check_dashboard_config(command: str, ctx: Ctx) -> str:
    # "this directory's own settings": a change is written there, and the next run starts with it
    cwd = ctx.fresh_dir("config")
    term = Terminal(["bash", "-c", command], env=terminal_env(), cwd=str(cwd))
    try:
        term.wait_for(DRAWN, 90)
        assert term.master is not None
        os.write(term.master, b"u")
        term.wait_for(b"units KiB/MiB/GiB", 30)
        since = len(term.output)
        os.write(term.master, b"q")
        assert term.wait(30) == 0, f"exit status {term.returncode}"
        assert_terminal_restored(term.output, since)
    finally:
        if term.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(term.pid, signal.SIGKILL)
        term.close()
    written = (cwd / "memwatch.toml").read_text()
    assert tomllib.loads(written) == {"units": "human"}, written
    assert listing(cwd) == ["memwatch.toml"], "more than the settings file in the directory"
    _, first = dashboard(command, cwd, wait_for=(b"units KiB/MiB/GiB",))
    assert (cwd / "memwatch.toml").read_text() == written  # nothing changed: nothing written
    return f"units kept across runs; first frame after {first:.1f} s"


TABLE_HEAD = re.compile(r"memwatch on \S+ at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC, traced ([\d.]+) s; (.*)")


def table_rows(text: str) -> tuple[re.Match[str], list[tuple[int, int]]]:
    """The table's first line, and (pid, RSS) of each row (the columns have fixed widths: a name is
    cut or padded to 20 characters)."""
    lines = text.splitlines()
    head = TABLE_HEAD.fullmatch(lines[0])
    assert head, lines[:2]
    assert lines[3].split()[:3] == ["PID", "NAME", "RSS(KB)"] and lines[3].rstrip().endswith("LEAK"), lines[3]
    return head, [(int(line[:7]), int(line[30:40])) for line in lines[4:]]


def check_once(command: str, ctx: Ctx) -> str:
    # "one readable table after one interval, then exit"
    cwd = ctx.fresh_dir("once")
    started = time.monotonic()
    res = run(command, cwd, timeout=90)
    took = time.monotonic() - started
    assert res.returncode == 0, res.stderr
    no_traceback(res.stderr)
    head, rows = table_rows(res.stdout)
    assert 2.9 <= float(head.group(2)) <= 6, f"traced {head.group(2)} s, not one 3 s interval"
    assert 1 <= len(rows) <= 100
    rss = [kb for _, kb in rows]
    assert rss == sorted(rss, reverse=True), "the table is not ranked by RSS"
    must_trace(re.match(r"eBPF (tracepoint|raw) mode: ", head.group(3)) is not None, command, head.group(3))
    return f"{len(rows)} rows in {took:.1f} s"


def check_once_json_pid_1(command: str, ctx: Ctx) -> str:
    # "trace 1 min, just pid 1 (init), JSON with the window's exits"
    cwd = ctx.fresh_dir("once-json")
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=shell_env(), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    started = time.monotonic()
    markers: list[int] = []
    try:
        for at in (20, 35, 50):  # processes that exit with 7 while it traces (it attaches in seconds)
            time.sleep(max(0.0, started + at - time.monotonic()))
            marker = subprocess.Popen(["sh", "-c", "exit 7"])
            assert marker.wait(30) == 7
            markers.append(marker.pid)
        out, err = proc.communicate(timeout=150)
    finally:
        stop_group(proc)
    took = time.monotonic() - started
    assert proc.returncode == 0, err
    no_traceback(err)
    doc = json.loads(out)
    assert [row["pid"] for row in doc["processes"]] == [1]
    assert 59.5 <= doc["duration_s"] <= 66 and took >= 59.5, (doc["duration_s"], took)
    assert isinstance(doc["events"], list)
    must_trace(doc["bpf"]["enabled"], command, doc["bpf"]["reason"] or "")
    if doc["bpf"]["enabled"]:
        exits = {e["pid"]: e for e in doc["events"] if e["kind"] == "exit"}
        missing = [pid for pid in markers if pid not in exits]
        assert not missing, f"exits of the window missing from 'events': {missing}"
        assert all(exits[pid]["exit_code"] == 7 and exits[pid]["signal"] is None for pid in markers)
        times = [e["time"] for e in doc["events"]]
        assert times == sorted(times), "events are not oldest first"
    return f"{took:.0f} s, {len(doc['events'])} exits and OOM kills in the window"


def check_once_json_stacks_maps(command: str, ctx: Ctx) -> str:
    # "where its memory goes": a Python program maps 1 MiB every 0.25 s for 20 s (outlasting the 5 s window and
    # memwatch's start on a loaded machine) and keeps it all
    cwd = ctx.fresh_dir("once-stacks")
    started = time.monotonic()
    res = run(command, cwd, timeout=90)
    took = time.monotonic() - started
    no_traceback(res.stderr)
    doc = json.loads(res.stdout)
    must_trace(doc["bpf"]["enabled"], command, doc["bpf"]["reason"] or "")
    if not AS_ROOT:   # README: "--stacks with eBPF off: prints what there is, then why eBPF is off, exit 1"
        assert res.returncode == 1 and "--stacks needs the eBPF tracer" in res.stderr, res.stderr
        return "eBPF off, said so"
    assert res.returncode == 0, res.stderr
    (row,) = doc["processes"]
    assert 4.5 <= doc["duration_s"] <= 10, doc["duration_s"]
    stacks = row["allocation_stacks"]
    assert isinstance(stacks, list) and len(stacks) <= 100
    for st in stacks:
        assert set(st) == {"kind", "frames", "calls", "bytes", "unmapped_bytes", "outstanding_bytes", "truncated"}
        assert st["kind"] in ("mmap", "munmap", "brk", "mremap") and st["calls"] >= 1
        assert 0 <= st["outstanding_bytes"] <= st["bytes"]
        assert all(set(f) == {"symbol", "module", "offset"} for f in st["frames"])
    outstanding = [st["outstanding_bytes"] for st in stacks]
    assert outstanding == sorted(outstanding, reverse=True), "not ranked by outstanding bytes"
    # its mmap.mmap calls: through the mmap module and the interpreter, every byte still mapped
    (kept,) = [st for st in stacks if st["kind"] == "mmap" and any(
        "mmap" in os.path.basename(f["module"] or "") and f["module"] != "libc" for f in st["frames"][1:2])]
    symbols = [f["symbol"] for f in kept["frames"]]
    assert "_PyEval_EvalFrameDefault" in symbols and symbols[-1] == "_start", symbols
    assert kept["calls"] >= 10 and kept["bytes"] == kept["outstanding_bytes"] == kept["calls"] << 20, kept
    maps = row["mappings"]
    assert "file" in {g["kind"] for g in maps["by_kind"]}, maps["by_kind"]
    for total in ("count", "size_kb", "rss_kb", "pss_kb", "swap_kb", "anon_kb"):
        assert maps[total] == sum(g[total] for g in maps["by_kind"]), total
    assert maps["largest"] and maps["largest"][0]["rss_kb"] == max(m["rss_kb"] for m in maps["largest"])
    return f"{took:.0f} s, {len(stacks)} stacks, {kept['calls']} MiB kept by mmap.mmap, {maps['count']} mappings"


def proc_pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def check_csv_every_process(command: str, ctx: Ctx) -> str:
    # "every process, CSV"
    cwd = ctx.fresh_dir("csv")
    before = proc_pids()
    res = run(command, cwd, timeout=90)
    lived_through = before & proc_pids()
    assert res.returncode == 0, res.stderr
    no_traceback(res.stderr)
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert tuple(rows[0]) == HEADLESS_COLUMNS
    pids = [int(row[0]) for row in rows[1:]]
    assert len(pids) == len(set(pids))
    missing = lived_through - set(pids)
    assert not missing, f"processes that ran all along are not in the CSV: {sorted(missing)[:20]}"
    traced = [row[HEADLESS_COLUMNS.index("mmap_count")] != "" for row in rows[1:]]
    must_trace(any(traced), command, res.stderr)
    return f"{len(pids)} processes"


def check_once_group_cgroup(command: str, ctx: Ctx) -> str:
    # "memory cgroups: the kernel's usage, limit, OOM kills; their processes' sums"
    cwd = ctx.fresh_dir("once-group")
    res = run(command, cwd, timeout=90)
    assert res.returncode == 0, res.stderr
    no_traceback(res.stderr)
    lines = res.stdout.splitlines()
    head = TABLE_HEAD.fullmatch(lines[0])
    assert head, lines[:2]
    columns = lines[3].split()
    assert columns[:3] == ["USAGE(KB)", "LIMIT(KB)", "ANON(KB)"] and columns[-2:] == ["NAME", "PATH"], lines[3]
    paths = [line.rsplit(" ", 1)[-1] for line in lines[4:]]
    assert paths and paths[0] == "/", "the root first"
    for i, path in enumerate(paths[1:], 1):   # parents before their children
        parent = path.rsplit("/", 1)[0] or "/"
        assert parent in paths[:i], f"{path} before its parent"
    root = lines[4].split()
    assert root[0].isdigit() and int(root[9]) >= 1, "the kernel's usage, and the processes in it"
    must_trace(re.match(r"eBPF (tracepoint|raw) mode: ", head.group(3)) is not None, command, head.group(3))
    return f"{len(paths)} cgroups"


def check_record(command: str, ctx: Ctx) -> str:
    # "append snapshots and events until Ctrl+C (or SIGTERM/SIGHUP)"
    cwd = ctx.fresh_dir("record")
    path = cwd / "today.db"
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=shell_env(), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    started = time.monotonic()
    try:
        frames = 0
        while frames < 2:  # two frames in, 5 s apart
            assert time.monotonic() - started < 90, f"{frames} frames after 90 s"
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.5)
            try:
                with Recording.open(path) as recording:
                    frames = len(recording)
            except (RecordingError, OSError):
                continue
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C: the terminal signals the foreground group
        _, err = proc.communicate(timeout=30)
    finally:
        stop_group(proc)
    assert proc.returncode == 0, err
    no_traceback(err)
    said = re.search(r"memwatch: recorded (\d+) frames to today\.db$", err.rstrip())
    assert said, err
    with Recording.open(path) as recording:
        assert len(recording) == int(said.group(1)) >= 2
        first, last = recording.frame(0), recording.frame(-1)
        gap = last.timestamp - recording.timestamps()[-2]
    assert first.interval_s == last.interval_s == 5.0
    assert 4 <= gap <= 8, f"frames {gap:.1f} s apart, not 5"
    must_trace(last.tracer.enabled, command, err)
    for name in listing(cwd):  # today.db, and any -wal/-shm beside it
        assert name.startswith("today.db")
        assert stat.S_IMODE((cwd / name).stat().st_mode) == 0o600, f"{name} is not private to its owner"
    return f"{said.group(1)} frames"


def check_replay_dashboard(command: str, ctx: Ctx) -> str:
    # "the dashboard on a recording, with time controls"
    cwd = ctx.with_recording("replay-dashboard")
    before = listing(cwd)
    out, first = dashboard(command, cwd, wait_for=(b"REPLAY", f"/{DAY_FRAMES}".encode(), b"2026-11-26",
                                                   b"step", b"go to"))
    assert re.search(rb"frame \d+/26", out), "no frame counter"
    assert listing(cwd) == before, "replaying a closed recording wrote beside it"
    return f"first frame after {first:.1f} s"


def check_once_replay_at(command: str, ctx: Ctx) -> str:
    # "a time within the recording (UTC)": the frame at 10:15, when hog was already OOM-killed
    cwd = ctx.with_recording("replay-at")
    before = listing(cwd)
    res = run(command, cwd, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    head, rows = table_rows(res.stdout)
    assert head.group(1) == "2026-11-26 10:15:00"
    pids = {pid for pid, _ in rows}
    assert 1 in pids and HOG_PID not in pids and SHORT_JOB_PID not in pids, sorted(pids)
    assert listing(cwd) == before
    return f"{len(rows)} rows"


def check_once_json_since_at(command: str, ctx: Ctx) -> str:
    # --since 10:00 --at 10:15: the frame at 10:15, the exits and OOM kills from 10:00 to it
    cwd = ctx.with_recording("replay-since")
    before = listing(cwd)
    res = run(command, cwd, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    doc = json.loads(res.stdout)
    assert doc["timestamp"] == utc("2026-11-26T10:15:00")
    window = [e for e in DAY_EVENTS if utc("2026-11-26T10:00:00") <= e.timestamp <= doc["timestamp"]]
    assert [(e["kind"], e["pid"], e["time"]) for e in doc["events"]] == [
        (e.kind.value, e.pid, e.timestamp) for e in window]
    assert [e["signal"] for e in doc["events"] if e["kind"] == "exit"] == ["SIGKILL"] * 4
    assert HOG_PID not in {row["pid"] for row in doc["processes"]}
    assert listing(cwd) == before
    return f"{len(doc['events'])} events in the window"


def check_sqlite_oom(command: str, ctx: Ctx) -> str:
    need_tool("sqlite3")
    cwd = ctx.with_recording("sqlite-oom")
    res = run(command, cwd, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"2026-11-26 10:12:30|{HOG_PID}|hog\n"
    return res.stdout.strip()


def check_sqlite_bursts(command: str, ctx: Ctx) -> str:
    # "bursts": the frames that came with the most events first
    need_tool("sqlite3")
    cwd = ctx.with_recording("sqlite-bursts")
    res = run(command, cwd, timeout=30)
    assert res.returncode == 0, res.stderr
    with sqlite3.connect(f"file:{cwd / 'today.db'}?mode=ro", uri=True) as db:
        ids = dict(db.execute("SELECT timestamp, id FROM frames").fetchall())
    # an event is recorded with the first frame at or after it (frames are a minute apart)
    frame_of = {e.timestamp: ids[DAY_START + 60 * math.ceil((e.timestamp - DAY_START) / 60)] for e in DAY_EVENTS}
    rows = [tuple(map(int, line.split("|"))) for line in res.stdout.splitlines()]
    workers, hog = frame_of[utc("2026-11-26T10:09:40")], frame_of[OOM_AT]
    assert rows[:2] == [(workers, 3), (hog, 2)], rows
    assert sorted(rows[2:]) == sorted({(frame_of[e.timestamp], 1) for e in (DAY_EVENTS[0], DAY_EVENTS[-1])})
    return f"{len(rows)} frames"


# ----- serve, in a network namespace of its own ---------------------------------------------------------

FETCH = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        print(json.dumps([r.status, r.headers.get("Content-Type"), r.read().decode()]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.headers.get("Content-Type"), e.read().decode()]))
"""


class Served:
    """A serve command run as written; as root in a network namespace of its own, so that the port
    is free whatever else runs on this machine (the namespace has a loopback and nothing else)."""

    def __init__(self, command: str, cwd: Path) -> None:
        argv = ["bash", "-c", command]
        if AS_ROOT:
            need_tool("nsenter")
            need_tool("ip")
            argv = [need_tool("unshare"), "--net", "--", "bash", "-c", 'ip link set lo up && exec bash -c "$1"',
                    "bash", command]
        self.proc = subprocess.Popen(argv, cwd=cwd, env=shell_env(), text=True, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.said = ""

    def inside(self, argv: list[str]) -> list[str]:
        """``argv`` run where the server is (its network namespace)."""
        return ["nsenter", f"--target={self.proc.pid}", "--net", "--", *argv] if AS_ROOT else argv

    def get(self, path: str) -> tuple[int, str, str]:
        res = subprocess.run(self.inside([sys.executable, "-c", FETCH, f"http://127.0.0.1:9464{path}"]),
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        status, content_type, body = json.loads(res.stdout)
        return status, content_type, body

    def start(self) -> None:
        """Until it listens and has its first snapshot."""
        self.said = read_stderr_until(self.proc, "metrics at http://127.0.0.1:9464/metrics", 60)
        deadline = time.monotonic() + 60
        while self.get("/healthz")[0] != 200:
            assert time.monotonic() < deadline, "/healthz did not answer 200 within 60 s"
            time.sleep(0.3)

    def stop(self) -> str:
        """SIGTERM: it must exit 0; what it said on stderr."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        _, rest = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, self.said + rest
        return self.said + rest


def check_serve(command: str, ctx: Ctx) -> str:
    # "Prometheus /metrics and /healthz"
    served = Served(command, ctx.fresh_dir("serve"))
    try:
        served.start()
        status, content_type, body = served.get("/metrics")
        assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
        samples = {s.name: s for f in text_string_to_metric_families(body) for s in f.samples}
        rss = [s for f in text_string_to_metric_families(body) for s in f.samples
               if s.name == "memwatch_process_rss_bytes"]
        assert 1 <= len(rss) <= 100 and any(s.value > 0 for s in rss)  # kernel threads have none
        assert samples["memwatch_processes"].value >= len(rss)
        assert "memwatch_build_info" in samples
        status, content_type, text = served.get("/healthz")
        health = json.loads(text)
        assert status == 200 and content_type == "application/json" and health["status"] == "ok", text
        attached = samples["memwatch_tracer_attached"]
        assert bool(attached.value) == health["tracer"]["enabled"]
        said = served.stop()
    finally:
        stop_group(served.proc)
    no_traceback(said)
    must_trace(health["tracer"]["enabled"], command, said)
    if health["tracer"]["enabled"]:
        assert attached.labels["mode"] in ("tracepoint", "raw")
    return f"{len(rss)} processes exported, tracer mode {attached.labels['mode']}"


def check_curl_healthz(command: str, ctx: Ctx) -> str:
    # fleet.md: the check after installing the service, whose ExecStart is the README's serve command
    unit = (ROOT / "deploy" / "memwatch.service").read_text()
    serve = "memwatch serve --listen 127.0.0.1:9464"
    assert f"ExecStart=/usr/local/bin/{serve}\n" in unit
    need_tool("curl")
    served = Served(serve, ctx.fresh_dir("curl"))
    try:
        served.start()
        res = subprocess.run(served.inside(["bash", "-c", command]), env=shell_env(), capture_output=True,
                             text=True, timeout=30)
        served.stop()
    finally:
        stop_group(served.proc)
    assert res.returncode == 0, res.stderr
    health = json.loads(res.stdout)
    assert health["status"] == "ok" and health["processes"] > 0, health
    must_trace(health["tracer"]["enabled"], serve, health["tracer"]["reason"] or "")
    return f"tracer {health['tracer']['mode']}"


def check_systemd_install(command: str, ctx: Ctx) -> str:
    """fleet.md's `sudo cp ...` and `sudo systemctl ... enable --now memwatch` are not run: they
    install and start a service on the machine the tests run on (whose init may not even be
    systemd). What they rely on is checked: the unit they install is deploy/memwatch.service, the
    name they enable is that unit's, and tests/test_exporter.py verifies the unit itself."""
    unit = ROOT / "deploy" / "memwatch.service"
    assert unit.is_file()
    if command.startswith("sudo cp "):
        assert command.split()[2:] == ["deploy/memwatch.service", "/etc/systemd/system/"]
    else:
        assert command.split()[-1] == unit.stem and "enable --now" in command
    exporter_tests = (ROOT / "tests" / "test_exporter.py").read_text()
    assert "def test_systemd_unit_runs_serve_on_loopback_and_verifies(" in exporter_tests
    pytest.skip("not run: it installs and starts a system service on this machine; the unit it installs "
                "is checked by test_exporter.py::test_systemd_unit_runs_serve_on_loopback_and_verifies")


# ----- the set-up scripts -------------------------------------------------------------------------------

def copy_of_repository(target: Path) -> Path:
    """The files git knows (tracked, and new ones not ignored) as they are in this checkout, with
    modes 0755/0644: the eBPF loader refuses an object in a directory others may write."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    target.mkdir(mode=0o755)
    for name in filter(None, names):
        src = ROOT / name
        if not src.is_file():  # deleted in the work tree, not yet in the index
            continue
        dst = target / name
        for parent in reversed(dst.relative_to(target).parents[:-1]):
            (target / parent).mkdir(mode=0o755, exist_ok=True)
        shutil.copyfile(src, dst)
        dst.chmod(0o755 if src.stat().st_mode & stat.S_IXUSR else 0o644)
    return target


def check_run_sh(command: str, ctx: Ctx) -> str:
    # "installs memwatch into .venv (apt: libbpf1) and opens the dashboard"
    if not AS_ROOT:  # it would ask for a password (the README: "as root (prefix sudo otherwise)")
        pytest.skip("./scripts/run.sh runs memwatch with sudo when not root: this check runs as root")
    copy = copy_of_repository(ctx.fresh_dir("run-sh") / "memwatch")
    try:
        started = time.monotonic()
        out, first = dashboard(command, copy, env=terminal_env(path_first=None), timeout=600)
        installed = copy / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        assert (copy / ".venv" / "bin" / "memwatch").is_file()
        assert (installed / "site-packages" / "memwatch" / "ebpf" / "prog.bpf.o").is_file(), \
            "memwatch was not installed into the copy's .venv by pip install ."
        attached = re.search(rb"attached \((tracepoint|raw)\)", out) is not None
        must_trace(attached, command, "" if attached else out[-2000:].decode(errors="replace"))
        return f"pip install and the first frame: {first:.0f} s (all of it {time.monotonic() - started:.0f} s)"
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def check_test_sh(command: str, ctx: Ctx) -> str:
    """scripts/test.sh runs this test suite, so it cannot run inside it: .ci/run runs exactly it,
    with eBPF required. Checked: that .ci/run does, and that test.sh installs what this file needs
    and runs every test file."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert 'cd "$(dirname "$0")/.."' in ci, "the command is relative to the repository"
    assert "export MEMWATCH_REQUIRE_BPF=1" in ci
    assert ci[-1] == f"exec {command}", f".ci/run does not end by running {command}: {ci[-1]!r}"
    script = (ROOT / "scripts" / "test.sh").read_text()
    packages = re.search(r"^APT_PACKAGES=\(([^)]*)\)$", script, re.MULTILINE)
    assert packages, "no APT_PACKAGES in scripts/test.sh"
    needed = {"htop", "sqlite3", "curl", "iproute2", "util-linux", "gcc", "make"}
    assert needed <= set(packages.group(1).split()), needed - set(packages.group(1).split())
    assert re.search(r'^\.venv/bin/python -m pytest -q -p no:cacheprovider "\$@"$', script, re.MULTILINE)
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "test.sh")]).returncode == 0
    return "run by .ci/run"


# ----- the benchmarks, one short round each ---------------------------------------------------------------

def bench(*patterns: tuple[str, int]) -> Check:
    """Run a bench command as written with MEMWATCH_BENCH_SMOKE=1; each (regex, n) must match n
    lines of what it prints: its figures, as ratios against its baseline."""
    def check(command: str, ctx: Ctx) -> str:
        if not AS_ROOT:
            bpf_unavailable("the benchmarks run as root (the README: 'run as root')")
        started = time.monotonic()
        # TMPDIR: the loops some benches build in temporary directories they leave behind go with
        # this test run's own
        scratch = ctx.fresh_dir("bench")
        res = run(command, ROOT, timeout=300, env=shell_env(MEMWATCH_BENCH_SMOKE="1", TMPDIR=str(scratch)))
        took = time.monotonic() - started
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        no_traceback(res.stderr)
        assert "MEMWATCH_BENCH_SMOKE=1: one short round" in res.stderr, "the bench ignored MEMWATCH_BENCH_SMOKE"
        lines = res.stdout.splitlines()
        for pattern, count in patterns:
            found = [line for line in lines if re.search(pattern, line)]
            assert len(found) == count, f"{len(found)} lines match {pattern!r}, not {count}:\n{res.stdout}"
        return f"{took:.0f} s"
    return check


RATIO = r"\d+\.\d+x"
check_bench_tracer = bench(
    (r"^(mmap\+munmap pair|getppid\(\), not traced): .* ratio against the baseline", 2),
    *((rf"^  {name}\s+\d+\s+[+-]\d+\s+\d+\.\d{{3}}\s+\d+\.\d{{3}}-\s*\d+\.\d{{3}}$", 2)
      for name in ("baseline \\(no tracer\\)", "floor: empty handlers", "memwatch default: tracepoints",
                   "memwatch raw \\(if no tracefs\\)")),
)
check_bench_procfs = bench(
    (r"^\+(0|100) idle processes$", 2),
    *((rf"^  {name}\s+\d+\s+[\d.]+\s+[\d.]+\s+{RATIO}$", 2) for name in ("cold ", "exact", "warm ", "psutil")),
    (rf"^  moving\s+\d+\s+[\d.]+\s+[\d.]+\s+{RATIO}$", 1),
    (rf"^  (stat \(kept open, pread\)|statm|status)\s+[\d.]+\s+{RATIO}$", 3),
)
check_bench_memory = bench(
    (rf"^ +full(\+after)? \(tick +\d+\): store \+ snapshot +[\d.]+ MiB, +\d+ B/process, {RATIO} the typed arrays$", 2),
    (r"^flat once full: full\+5 ticks / full = \d+\.\d\d; \d+ ms a tick$", 1),
)
check_bench_memory_live = bench(
    (r"^memwatch --interval 0\.5 \(eBPF on\), private pid namespace, 12 s; RSS by mapping from smaps, MiB$", 1),
    (r"^  (idle modules|no extra proc) +[\d.]+( +[\d.]+){6}", 2),
    (r"^  (1 min|full|end) \(\d+s\) +[\d.]+( +[\d.]+){6}$", 3),
    (rf"^  end/full \d+\.\d\d \(1\.00 is flat\).*; full / idle modules {RATIO}, / no extra process {RATIO}; "
     r"per 1,000 processes -?[\d.]+ MiB$", 1),
)
check_bench_tick = bench(
    (r"^  \+\s+(0|100) extra .* /proc only .*, (\d+\.\d\d)x psutil\); with eBPF .* \(\d+\.\d\dx psutil\)", 2),
    (r"^    per 1,000 processes: tick /proc .* ms, iterator .* ms \(\d+\.\d\dx /proc\); table read /proc .* ms, "
     r"iterator \(table \+ counters\) .* ms \(\d+\.\d\dx /proc; its one pass \d+\.\d\d us/process, \d+% of it\)$", 2),
    (r"^    steady state, 3-tick histories full, per 1,000 processes: tick /proc .* ms, iterator .* ms "
     r"\(\d+\.\d\dx /proc\)$", 2),
    (rf"^store memory, .* {RATIO} one tick's samples$", 1),
    (r"^storm \(2 s, 1 s interval\): consumer CPU .* \(ratio \d+\.\d\d\)", 1),
)
check_bench_exporter = bench(
    (r"^ *(100|all)( +\d+(\.\d+)?){11}$", 2),
    (r"^build/base: build vs generate_latest", 1),
)
check_bench_spike = bench(
    (r"^memwatch serve \(eBPF on\), 50 processes living 1-2 s, twice:$", 1),
    (rf"^  peak .* MB +{RATIO} the baseline$", 1),
    (rf"^  after .* MB +{RATIO}$", 1),
    (rf"^  2nd spike .* MB +{RATIO}  \(", 1),
)
check_bench_dashboard = bench(
    (r"^\(a\) CPU over 6s after a 5s warm-up, \+100 extra processes, interval 1s, live collector, each "
     r"monitor in its own 120x40 pty$", 1),
    (r"^    (memwatch|htop -d 10|btop update_ms 1000): +\d+\.\d\d% of one core, RSS +[\d.]+ MiB$", 3),
    (r"^    memwatch by thread: event loop \(UI, ring drain\) \d+\.\d\d%, workers \(collection\) \d+\.\d\d%$", 1),
    (rf"^    ratio memwatch/htop: +{RATIO}$", 1),
    (rf"^    ratio memwatch/btop: +{RATIO}$", 1),
    (rf"^    ratio memwatch event loop/(htop|btop): +{RATIO}$", 2),
    (rf"^    p50 [\d.]+ ms   p95 [\d.]+ ms   max [\d.]+ ms   \(target p95 <= 50 ms: {RATIO} of it\)$", 1),
)
check_bench_dashboard_ui = bench(
    (r"^\(a\) CPU over 6s, 100 processes \(all of them changing each frame\), interval 1s, synthetic frames "
     r"\(the UI alone\), each monitor in its own 120x40 pty$", 1),
    (r"^    (memwatch UI|htop -d 10|btop update_ms 1000): +\d+\.\d\d% of one core, RSS +[\d.]+ MiB$", 3),
    (r"^    memwatch UI, no new frame for 6s: \d+\.\d\d\d% of one core$", 1),
    (rf"^    ratio memwatch UI/(htop|btop): +{RATIO}$", 2),
    (rf"^    p50 [\d.]+ ms   p95 [\d.]+ ms   max [\d.]+ ms   \(target p95 <= 50 ms: {RATIO} of it\)$", 1),
)
_check_bench_groups = bench(
    (r"^20 cgroups \(v[12]\), 60 processes in them, 100 extra in all", 1),
    (rf"^  /proc only, (wall|CPU): tick without groups .* with groups .*: {RATIO} \(median\)", 2),
    (rf"^  parts: the cgroup reader's pass over \d+ cgroups .* ms made afresh, .* ms kept by the store's tally "
     rf"\({RATIO}\)$", 1),
)


def check_bench_groups(command: str, ctx: Ctx) -> str:
    """bench_groups makes cgroups under the memory hierarchy: none may be left behind."""
    from memwatch.cgroups import find_memory_hierarchy

    said = _check_bench_groups(command, ctx)
    h = find_memory_hierarchy()
    assert h is not None
    left = [d for d in os.listdir(os.fsdecode(h.mount)) if d.startswith("memwatch-bench-")]
    assert not left, f"cgroups left behind: {left}"
    return said


check_bench_group_views = bench(
    (r"^200 processes, \d+ cgroups, 20 users; medians of 3 rounds", 1),
    (rf"^  (process table|tree|cgroups|users)[^:]*.* [\d.]+ ms +{RATIO} the process table$", 6),
)
check_bench_stacks = bench(
    (r"^kernel: mmap\+munmap pairs, .* ratio against the baseline runs", 1),
    *((rf"^  {name}\s+\d+ ns\s+\d+\.\d{{3}}", 1)
      for name in ("baseline \\(no tracer\\)", "tracer, no stack target", "another process a target",
                   "the loop a target, every call", "the loop a target, budget 1000/s")),
    (r"^  another process a target / no target, paired per round: median \d+\.\d{3}$", 1),
    (r"^  warm \(modules and rules cached\) +[\d.]+ us +warm/cold \d+\.\d{3}$", 1),
    (r"^  cold +[\d.]+ ms +warm +[\d.]+ ms +warm/cold \d+\.\d{3}$", 1),
)
check_bench_tabs = bench(
    (r"^memory map tab: filling the table, median of \d+ rounds, ratio against the fixture's$", 1),
    (rf"^  (13|1,000|20,000) mappings.* +[\d.]+ ms +{RATIO}$", 3),
    (r"^allocation sites tab: one refresh, median of \d+ rounds, ratio against the fixture's$", 1),
    (rf"^  (4|100) stacks, .* +[\d.]+ ms +{RATIO}$", 3),
)
check_bench_storm = bench(
    (r"^\(a\) dashboard", 1),
    (r"^\(b\) memwatch serve", 1),
    (rf"^     x no storm +{RATIO} +{RATIO}$", 4),  # CPU, p50, p95 of the dashboard; CPU of serve
    (rf"^     x budget off +{RATIO} +{RATIO} *$", 4),
    # a difference of two CPU figures: under load the storm-free round can cost more (a negative figure)
    (r"^  CPU per parsed event, .*: budget 5000: -?[\d.]+ µs; budget off: -?[\d.]+ µs$", 2),
)


# ----- the table: every documented command, how it runs and what is checked -----------------------------

@dataclass(frozen=True)
class Way:
    check: Check
    lane: str = "main"
    """Commands of one lane run one after another; lanes run at the same time (see LANES_AFTER)."""


COMMANDS: dict[str, Way] = {
    # README: Set up
    "./scripts/run.sh": Way(check_run_sh, "install"),
    "./scripts/test.sh": Way(check_test_sh),  # run by .ci/run (checked): it runs this very suite
    # README: Use
    "memwatch": Way(check_dashboard),
    "memwatch --interval 1 --sort growth": Way(check_dashboard_growth),
    "memwatch --once": Way(check_once),
    # README: The dashboard, Settings that stick
    "memwatch --config ./memwatch.toml": Way(check_dashboard_config),
    "memwatch --once --json --duration 60 --pid 1": Way(check_once_json_pid_1, "minute"),
    "python3 -c 'import mmap, time; m = [mmap.mmap(-1, 1 << 20) for _ in range(80) if not time.sleep(0.25)]' & "
    "memwatch --once --json --stacks --maps --duration 5 --pid $!": Way(check_once_json_stacks_maps),
    "memwatch --once --csv --top 0": Way(check_csv_every_process),
    "memwatch --once --group cgroup": Way(check_once_group_cgroup),
    "memwatch record today.db --interval 5": Way(check_record, "record"),
    "memwatch --replay today.db": Way(check_replay_dashboard),
    "memwatch --once --replay today.db --at 2026-11-26T10:15:00": Way(check_once_replay_at),
    "memwatch --once --json --replay today.db --since 2026-11-26T10:00:00 --at 2026-11-26T10:15:00":
        Way(check_once_json_since_at),
    "memwatch serve --listen 127.0.0.1:9464": Way(check_serve, "serve"),
    # README: Recordings
    "sqlite3 today.db \"select datetime(timestamp, 'unixepoch'), pid, name from events where kind='oom'\"":
        Way(check_sqlite_oom),
    'sqlite3 today.db "select frame, count(*) from events group by frame order by 2 desc limit 5"':
        Way(check_sqlite_bursts),
    # README: Development
    ".venv/bin/python bench/bench_tracer.py": Way(check_bench_tracer, "bench"),
    ".venv/bin/python bench/bench_procfs.py": Way(check_bench_procfs, "bench"),
    ".venv/bin/python bench/bench_tick.py": Way(check_bench_tick, "bench"),
    ".venv/bin/python bench/bench_memory.py": Way(check_bench_memory, "bench"),
    ".venv/bin/python bench/bench_memory.py --live": Way(check_bench_memory_live, "bench"),
    ".venv/bin/python bench/bench_exporter.py": Way(check_bench_exporter, "bench"),
    ".venv/bin/python bench/bench_spike.py": Way(check_bench_spike, "bench"),
    ".venv/bin/python bench/bench_dashboard.py --live": Way(check_bench_dashboard, "bench"),
    ".venv/bin/python bench/bench_dashboard.py": Way(check_bench_dashboard_ui, "bench"),
    ".venv/bin/python bench/bench_storm.py": Way(check_bench_storm, "storm"),
    ".venv/bin/python bench/bench_groups.py": Way(check_bench_groups, "bench"),
    ".venv/bin/python bench/bench_group_views.py": Way(check_bench_group_views, "bench"),
    ".venv/bin/python bench/bench_stacks.py": Way(check_bench_stacks, "bench"),
    ".venv/bin/python bench/bench_tabs.py": Way(check_bench_tabs, "bench"),
    # docs/fleet.md: Run it as a service
    "sudo cp deploy/memwatch.service /etc/systemd/system/": Way(check_systemd_install),
    "sudo systemctl daemon-reload && sudo systemctl enable --now memwatch": Way(check_systemd_install),
    "curl -s 127.0.0.1:9464/healthz": Way(check_curl_healthz, "serve"),
}

LANES_AFTER = {"storm": ("main", "record", "serve", "install", "bench")}
"""The storm keeps both CPUs of a small machine busy: it runs once all but the long lanes are done."""


class Lanes:
    """Runs the wanted commands' checks, each lane in a thread; ``result`` waits for one."""

    def __init__(self, ctx: Ctx, wanted: set[str]) -> None:
        self.ctx = ctx
        self.futures: dict[str, Future[str]] = {command: Future() for command in wanted}
        lanes: dict[str, list[str]] = {}
        for command, way in COMMANDS.items():
            if command in wanted:
                lanes.setdefault(way.lane, []).append(command)
        self.threads = {lane: threading.Thread(target=self._run, args=(lane, commands), name=f"readme-{lane}",
                                               daemon=True)
                        for lane, commands in lanes.items()}
        for thread in self.threads.values():
            thread.start()

    def _run(self, lane: str, commands: list[str]) -> None:
        for other in LANES_AFTER.get(lane, ()):
            if other in self.threads:
                self.threads[other].join()
        for command in commands:
            future = self.futures[command]
            future.set_running_or_notify_cancel()
            try:
                future.set_result(COMMANDS[command].check(command, self.ctx))
            except BaseException as exc:  # pytest's skip and fail too: raised again in the test
                future.set_exception(exc)

    def result(self, command: str) -> str:
        return self.futures[command].result(timeout=600)

    def join(self) -> None:
        for thread in self.threads.values():
            thread.join(600)


DOCUMENTED = documented_commands()
COMMAND_IDS = list(dict.fromkeys(d.command for d in DOCUMENTED))


@pytest.fixture(scope="module")
def lanes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lanes]:
    """Only the commands whose tests were selected are run."""
    memwatch_on_path()
    wanted = {str(item.callspec.params["command"]) for item in request.session.items
              if isinstance(item, pytest.Function) and item.module is sys.modules[__name__]
              and hasattr(item, "callspec") and "command" in item.callspec.params}
    running = Lanes(Ctx(tmp_path_factory, threading.Lock()), wanted & set(COMMANDS))
    try:
        yield running
    finally:
        running.join()


# ----- the tests ------------------------------------------------------------------------------------------

def test_every_documented_command_has_an_entry_and_every_entry_a_command() -> None:
    documented = {d.command: d.where for d in DOCUMENTED}
    missing = [f"{where}: {command}" for command, where in documented.items() if command not in COMMANDS]
    stale = [command for command in COMMANDS if command not in documented]
    assert not missing, ("commands the docs show that tests/test_readme.py does not run (add each to "
                         "COMMANDS with how it runs and what it must do):\n" + "\n".join(missing))
    assert not stale, "COMMANDS entries the docs no longer show:\n" + "\n".join(stale)


def test_every_code_block_names_its_language() -> None:
    """An unmarked block could hold a command nobody runs: ```sh for commands, ```text otherwise."""
    unmarked = [f"{b.path.relative_to(ROOT)}:{b.line}" for path in DOCS for b in fenced_blocks(path)
                if not b.language]
    assert not unmarked, "code blocks without a language:\n" + "\n".join(unmarked)


def test_comments_and_quotes_are_read_as_sh_reads_them() -> None:
    assert split_comment("memwatch --once   # one table") == ("memwatch --once", "one table")
    assert split_comment("sqlite3 a.db \"select '#x' # no\"  # yes") == ("sqlite3 a.db \"select '#x' # no\"",
                                                                         "yes")
    assert split_comment("echo a#b") == ("echo a#b", "")


def test_synopses_name_options_the_command_has() -> None:
    """A ```text line that starts with `memwatch` is a synopsis (docs/fleet.md's): not run, but each
    option it names must be one the command takes."""
    memwatch = memwatch_on_path()
    synopses = [line for path in DOCS for b in fenced_blocks(path) if b.language == "text"
                for line in b.lines if line.startswith("memwatch ")]
    assert synopses
    for line in synopses:
        sub = [word for word in line.split()[1:2] if word in ("record", "serve")]
        helped = subprocess.run([str(memwatch), *sub, "--help"], capture_output=True, text=True, timeout=60)
        assert helped.returncode == 0, helped.stderr
        for option in re.findall(r"--[a-z][a-z-]*", line):
            assert f"{option} " in helped.stdout or f"{option}\n" in helped.stdout, f"{line}: {option}"


@pytest.mark.parametrize("command", COMMAND_IDS)
def test_documented_command_runs_as_written(command: str, lanes: Lanes) -> None:
    if command not in COMMANDS:
        pytest.fail(f"no entry in COMMANDS for {command!r}: say how it runs and what it must do")
    print(f"{command}: {lanes.result(command)}")
