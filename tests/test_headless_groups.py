"""Headless groups: cgroups and users in --once --json, and --group tree|cgroup|user as a table and
CSV; on fixed frames, then the real command on real cgroups and a real user whose name is not
UTF-8."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgroupfs import CgroupFactory, cgroups  # noqa: F401  (the fixture)
from frames import CONTAINER_CGROUP, CONTAINER_ID, HOG_PID, SESSION_CGROUP, make_frames
from memwatch.headless import TREE_CSV_COLUMNS, render, render_groups
from memwatch.serialize import CGROUP_COLUMNS, USER_COLUMNS, headless_document

MEMWATCH = [sys.executable, "-m", "memwatch"]
MiB = 1 << 20


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MEMWATCH, *args], capture_output=True, text=True, timeout=timeout)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# ---------------------------------------------------------------------------------------------
# On fixed frames.


def test_json_has_cgroups_and_users() -> None:
    snap = make_frames(5)[-1]
    doc = headless_document(snap, list(snap.processes), 12.0, list(snap.new_events))
    assert [tuple(c) for c in doc["cgroups"]] == [CGROUP_COLUMNS] * len(snap.cgroups)
    by_path = {c["path"]: c for c in doc["cgroups"]}
    box = by_path[CONTAINER_CGROUP]
    assert box["name"] == f"docker {CONTAINER_ID[:12]}" and box["kind"] == "container"
    assert (box["memory_current_kb"], box["memory_max_kb"], box["memory_high_kb"]) == (192 * 1024, 512 * 1024,
                                                                                     448 * 1024)
    assert (box["pressure_some_avg10"], box["oom_kills"]) == (2.0, 0)
    assert by_path["/"]["memory_high_kb"] is None and by_path["/"]["pressure_some_avg10"] is None
    assert box["pids"] == 2 and box["rss_kb"] == sum(v.sample.rss_kb for v in snap.processes
                                                     if v.sample.memory_cgroup == CONTAINER_CGROUP)
    assert by_path[SESSION_CGROUP]["oom_kills"] == 1 and by_path[SESSION_CGROUP]["oom_events"] == 1
    ssh = by_path["/system.slice/ssh.service"]
    assert ssh["memory_current_kb"] is None and ssh["pids"] == 1, "not read: null, not 0"
    assert [tuple(u) for u in doc["users"]] == [USER_COLUMNS] * len(snap.users)
    alice = next(u for u in doc["users"] if u["name"] == "alice")
    assert alice["uid"] == 1000 and alice["pids"] == 2     # bash and [red]x: the hog was OOM-killed
    (oom,) = [e for e in doc["events"] if e["kind"] == "oom"]
    assert oom["pid"] == HOG_PID and oom["cgroup"] == SESSION_CGROUP
    assert all(e["cgroup"] is None for e in doc["events"] if e["kind"] == "exit")


def test_tree_table_and_csv() -> None:
    snap = make_frames(5)[1]
    table = render_groups(snap, "tree", "table", top=0, sort=None).splitlines()
    body = table[table.index(next(line for line in table if line.lstrip().startswith("PID"))) + 1:]
    assert body[0].split()[0] == "1" and body[0].endswith(" systemd")
    assert any(line.endswith("    bash") for line in body), "indented two spaces a level"
    got = rows(render_groups(snap, "tree", "csv", top=0, sort="rss"))
    assert tuple(got[0]) == TREE_CSV_COLUMNS
    bash = next(r for r in got if r["pid"] == "1001")
    kids = [v for v in snap.processes if v.sample.ppid == 1001]
    assert bash["depth"] == "2" and int(bash["subtree_pids"]) == 1 + len(kids)
    assert int(bash["subtree_rss_kb"]) == sum(v.sample.rss_kb for v in kids) + int(bash["rss_kb"])
    assert [r["pid"] for r in rows(render_groups(snap, "tree", "csv", top=0, sort=None, pids=[1001]))] \
        == ["1001", *[str(v.pid) for v in sorted(kids, key=lambda v: -v.sample.rss_kb)]]
    assert len(rows(render_groups(snap, "tree", "csv", top=3, sort=None))) == 3


def test_cgroup_table_marks_no_limit_and_unknown() -> None:
    snap = make_frames(5)[-1]
    table = render_groups(snap, "cgroup", "table", top=0, sort=None)
    lines = {line.split()[-1]: line for line in table.splitlines()[4:]}
    assert lines[CONTAINER_CGROUP].split()[:2] == [str(192 * 1024), str(512 * 1024)]
    assert lines[SESSION_CGROUP].split()[1] == "max", "usage known, no limit"
    assert lines["/system.slice/ssh.service"].split()[:2] == ["-", "-"], "not read"
    got = rows(render_groups(snap, "cgroup", "csv", top=0, sort=None))
    assert tuple(got[0]) == CGROUP_COLUMNS
    assert got[0]["path"] == "/", "parents first"
    # only the cgroups of a process, with their ancestors
    mine = rows(render_groups(snap, "cgroup", "csv", top=0, sort="rss", pids=[4567]))
    assert [r["path"] for r in mine] == ["/", "/system.slice", CONTAINER_CGROUP]


def test_user_table_and_csv() -> None:
    snap = make_frames(5)[-1]
    got = rows(render_groups(snap, "user", "csv", top=0, sort="rss"))
    assert tuple(got[0]) == USER_COLUMNS
    assert [int(r["rss_kb"]) for r in got] == sorted((int(r["rss_kb"]) for r in got), reverse=True)
    assert [r["name"] for r in rows(render_groups(snap, "user", "csv", top=0, sort="name"))][:2] == ["alice", "bob"]
    assert "alice" in render(snap, "table", top=0, sort=None, pids=(), group="user")
    with pytest.raises(ValueError, match="cannot be sorted by 'virt'"):
        render_groups(snap, "user", "csv", top=0, sort="virt")


# ---------------------------------------------------------------------------------------------
# The command, on this machine's cgroups.


def test_once_json_and_group_cgroup_on_a_real_cgroup_with_an_odd_name(cgroups: CgroupFactory) -> None:  # noqa: F811
    odd = cgroups.make(b"esc\x1b[2J caf\xe9")
    odd.limit(200 * MiB)
    holders = [odd.hold(32 * MiB), odd.hold(16 * MiB)]
    try:
        res = run("--once", "--json", "--no-bpf", "--duration", "0")
        assert res.returncode == 0, res.stderr
        assert "\x1b" not in res.stdout, "nothing a terminal would act on"
        doc = json.loads(res.stdout)
        (c,) = [c for c in doc["cgroups"] if c["path"] == odd.path]
        assert c["path"].endswith("esc\x1b[2J caf\\xe9")      # data: the escape, the byte as \xe9
        assert c["pids"] == 2 and c["memory_max_kb"] == 200 * 1024
        mine = [p for p in doc["processes"] if p["pid"] in {h.pid for h in holders}]
        assert c["rss_kb"] == sum(p["rss_kb"] for p in mine)
        assert c["memory_current_kb"] >= 48 * 1024 and c["anon_kb"] >= 48 * 1024
        assert c["pressure_some_avg10"] is None and c["memory_high_kb"] is None   # v1 has neither
        table = run("--once", "--group", "cgroup", "--no-bpf", "--duration", "0")
        assert table.returncode == 0, table.stderr
        assert "\x1b" not in table.stdout
        (line,) = [line for line in table.stdout.splitlines() if line.endswith("esc\\x1b[2J caf\\xe9")]
        assert line.split()[1] == str(200 * 1024)
        got = rows(run("--once", "--group", "cgroup", "--csv", "--no-bpf", "--duration", "0").stdout)
        assert any(r["path"].endswith("esc\\x1b[2J caf\\xe9") and r["pids"] == "2" for r in got)
    finally:
        for h in holders:
            h.kill()
            h.wait()


def test_group_tree_csv_sums_a_real_subtree() -> None:
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        res = run("--once", "--group", "tree", "--csv", "--no-bpf", "--duration", "0", "--pid", str(parent.pid))
        assert res.returncode == 0, res.stderr
        got = rows(res.stdout)
        depth = int(got[0]["depth"])
        assert [int(r["depth"]) for r in got] == [depth, depth + 1, depth + 1]
        assert got[0]["pid"] == str(parent.pid) and got[0]["subtree_pids"] == "3"
        assert int(got[0]["subtree_rss_kb"]) == sum(int(r["rss_kb"]) for r in got)
    finally:
        parent.kill()
        parent.wait()


def test_a_user_whose_name_is_not_utf8_is_shown_escaped(tmp_path: Path) -> None:
    """A real process of a real user whose password entry holds an escape and a byte that is not
    UTF-8; /etc/passwd is replaced in a mount namespace of memwatch's own, not on the machine."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        pytest.skip("needs root, unshare and setpriv")
    passwd = tmp_path / "passwd"
    passwd.write_bytes(Path("/etc/passwd").read_bytes() + b"caf\xe9\x1b[31m:x:4242:4242::/:/bin/sh\n")
    sleeper = subprocess.Popen(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups", "sleep", "60"])
    try:
        time.sleep(0.2)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MW_PASSWD": str(passwd)}
        script = 'mount --bind "$MW_PASSWD" /etc/passwd && exec "$@"'
        res = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *MEMWATCH, "--once", "--group",
                              "user", "--no-bpf", "--duration", "0"], capture_output=True, text=True,
                             env=env, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr and "\x1b" not in res.stdout
        (line,) = [line for line in res.stdout.splitlines() if line.split() and line.split()[0] == "4242"]
        assert line.endswith("caf\\xe9\\x1b[31m")
        res = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *MEMWATCH, "--once", "--json",
                              "--no-bpf", "--duration", "0"], capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0, res.stderr
        (user,) = [u for u in json.loads(res.stdout)["users"] if u["uid"] == 4242]
        assert user["name"] == "caf\\xe9\x1b[31m" and user["pids"] == 1
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_recording_keeps_groups_and_a_replay_shows_them(tmp_path: Path,
                                                          cgroups: CgroupFactory) -> None:  # noqa: F811
    group = cgroups.make(b"recorded")
    holder = group.hold(8 * MiB)
    rec = tmp_path / "groups.db"
    try:
        res = run("record", str(rec), "--no-bpf", "--interval", "0.3", "--duration", "0.5")
        assert res.returncode == 0, res.stderr
    finally:
        holder.kill()
        holder.wait()
    doc = json.loads(run("--once", "--json", "--replay", str(rec)).stdout)
    (c,) = [c for c in doc["cgroups"] if c["path"] == group.path]
    assert c["pids"] == 1 and c["memory_current_kb"] >= 8 * 1024
    assert any(u["uid"] == 0 for u in doc["users"])
    table = run("--once", "--group", "cgroup", "--replay", str(rec))
    assert table.returncode == 0 and any(line.endswith(group.path) for line in table.stdout.splitlines())
    tree = rows(run("--once", "--group", "tree", "--csv", "--replay", str(rec), "--pid", str(holder.pid)).stdout)
    assert [r["pid"] for r in tree] == [str(holder.pid)]


@pytest.mark.parametrize(("args", "needle"), [
    (["--group", "tree"], "--group goes with --once"),
    (["--once", "--json", "--group", "user"], "always has"),
    (["--once", "--group", "user", "--sort", "virt"], "ranks by one of"),
    (["--once", "--group", "cgroup", "--sort", "pid"], "ranks by one of"),
    (["--once", "--group", "everything"], "invalid choice"),
])
def test_group_usage_errors(args: list[str], needle: str) -> None:
    res = run(*args)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr
