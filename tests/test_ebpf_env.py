"""Every environment a user can meet gets a sentence that says what to do."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Workload
from memwatch.ebpf import BpfUnavailable, Tracer, TracerConfig, tracefs
from memwatch.ebpf import errors as env
from memwatch.ebpf.btf import LayoutMismatch, verify_layouts
from memwatch.ebpf.layouts import (
    COUNTS_TAG,
    MIRRORS,
    TASK_UNIT,
    MwCallEvent,
    MwTaskCounts,
    MwTaskRecord,
    RawStats,
    parse_counts,
)
from memwatch.ebpf.libbpf import load_libbpf
from memwatch.ebpf.loader import PACKAGED_OBJECT

CAP = lambda *bits: sum(1 << b for b in bits)  # noqa: E731


def test_privileges() -> None:
    env.check_privileges(CAP(env.CAP_SYS_ADMIN))
    env.check_privileges(CAP(env.CAP_BPF, env.CAP_PERFMON))
    with pytest.raises(BpfUnavailable, match=r"needs root .*CAP_BPF and CAP_PERFMON.*sudo") as e:
        env.check_privileges(0)
    assert e.value.code == "no-privileges"
    with pytest.raises(BpfUnavailable, match=r"\(or CAP_PERFMON\)"):
        env.check_privileges(CAP(env.CAP_BPF))


def test_missing_libbpf_names_the_package() -> None:
    code = ("import memwatch.ebpf.libbpf as l\n"
            "try:\n    l.load_libbpf()\nexcept Exception as e:\n    print(type(e).__name__, e.code, e)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MEMWATCH_LIBBPF": "libbpf-missing.so.9"})
    assert res.stdout.startswith("BpfUnavailable no-libbpf")
    assert "apt install libbpf1" in res.stdout


def test_no_btf(tmp_path: Path) -> None:
    with pytest.raises(BpfUnavailable, match=r"CONFIG_DEBUG_INFO_BTF") as e:
        env.check_btf(str(tmp_path / "vmlinux"))
    assert e.value.code == "no-btf"


def test_old_kernel() -> None:
    env.check_kernel("6.18.44-fc-v657")
    env.check_kernel("5.15.0-91-generic")
    with pytest.raises(BpfUnavailable, match=r"too old.*5\.15") as e:
        env.check_kernel("4.19.0-21-amd64")
    assert e.value.code == "old-kernel"
    assert env.parse_kernel_release("6.1.0+") == (6, 1)


def test_object_missing_or_writable_by_others(tmp_path: Path) -> None:
    with pytest.raises(BpfUnavailable, match=r"missing.*reinstall") as e:
        env.read_object(tmp_path / "prog.bpf.o")
    assert e.value.code == "no-object"
    obj = tmp_path / "prog.bpf.o"
    shutil.copy(PACKAGED_OBJECT, obj)
    for mode in (0o666, 0o664, 0o646):
        obj.chmod(mode)
        with pytest.raises(BpfUnavailable, match=r"refusing.*writable by group or others.*chmod go-w") as e:
            env.read_object(obj)
        assert e.value.code == "unsafe-object"
    obj.chmod(0o644)
    assert env.read_object(obj, euid=os.stat(obj).st_uid) == PACKAGED_OBJECT.read_bytes()
    if os.geteuid() == 0:
        os.chown(obj, 12345, 12345)  # someone else's file: they could swap it under us
        with pytest.raises(BpfUnavailable, match="belongs to uid 12345"):
            env.read_object(obj, euid=0)


def test_object_in_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    """Whoever may write a directory on the way can swap the file: the whole chain is checked,
    and for a symlink that of the file it points to as well."""
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o755)
    obj = safe / "prog.bpf.o"
    shutil.copy(PACKAGED_OBJECT, obj)
    obj.chmod(0o644)
    env.read_object(obj)
    safe.chmod(0o777)
    with pytest.raises(BpfUnavailable, match=rf"refusing.*{safe}.*writable by group or others") as e:
        env.read_object(obj)
    assert e.value.code == "unsafe-object"
    safe.chmod(0o1777)   # sticky, as /tmp: nobody may replace an entry they do not own
    env.read_object(obj)

    elsewhere = tmp_path / "open"
    elsewhere.mkdir()
    elsewhere.chmod(0o777)
    target = elsewhere / "real.bpf.o"
    shutil.copy(PACKAGED_OBJECT, target)
    target.chmod(0o644)
    link = tmp_path / "link.bpf.o"
    link.symlink_to(target)
    with pytest.raises(BpfUnavailable, match=rf"{elsewhere}.*writable"):
        env.read_object(link)


def test_the_tracer_loads_the_bytes_it_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               open_tracer: Callable[..., Tracer]) -> None:
    """The object is read once and loaded from memory: replacing the file right after the check
    changes nothing (libbpf is never handed the path)."""
    import memwatch.ebpf.loader as loader

    obj = tmp_path / "prog.bpf.o"
    shutil.copy(PACKAGED_OBJECT, obj)
    obj.chmod(0o644)
    checked = env.read_object

    def check_then_swap(path: Path) -> bytes:
        image = checked(path)
        path.write_bytes(b"\x7fELF not a BPF object at all")
        return image

    monkeypatch.setattr(loader, "read_object", check_then_swap)
    tracer = open_tracer(object_path=obj)
    assert tracer.attached and obj.read_bytes().startswith(b"\x7fELF not")


def test_tracer_refuses_a_writable_object_before_loading(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the privilege check comes first for non-root users")
    obj = tmp_path / "prog.bpf.o"
    shutil.copy(PACKAGED_OBJECT, obj)
    obj.chmod(0o666)
    with pytest.raises(BpfUnavailable, match="refusing"):
        Tracer(TracerConfig(object_path=obj)).open()


def test_packaged_object_matches_the_python_layouts() -> None:
    verify_layouts(load_libbpf(), PACKAGED_OBJECT)


def test_counts_parse_every_member_by_name() -> None:
    """The counts parser is derived from the mirror: each RawStats field reads its own member; the
    tgid, start and name are those of the record before the counts."""
    numbers = [f for f in RawStats.__dataclass_fields__ if f not in ("tgid", "comm", "start_boottime_ns")]
    units = b""
    for n in range(3):
        rec = MwTaskRecord(tgid=100 + n, start_boottime_ns=7000 + n, comm=b"[red]x\xff")
        units += bytes(rec)
        if n == 1:
            continue   # a process without counters: no unit follows its record
        counts = MwTaskCounts(tag=COUNTS_TAG, host_tgid=5000 + n)
        for i, name in enumerate(numbers):
            setattr(counts, name, 1000 * (n + 1) + i)
        counts.outstanding_bytes = -1   # its bytes are the tag's, where no unit starts
        units += bytes(counts)
    assert len(units) == 5 * TASK_UNIT
    cache: dict[int, tuple[bytes, RawStats]] = {}
    parsed, hosts = parse_counts(units + b"\0" * 7, cache)   # a torn tail is ignored
    assert sorted(parsed) == [100, 102]
    assert hosts == {5000, 5002}
    for n in (0, 2):
        got = parsed[100 + n]
        expected = [1000 * (n + 1) + i for i in range(len(numbers))]
        expected[numbers.index("outstanding_bytes")] = -1
        assert [getattr(got, name) for name in numbers] == expected
        assert (got.tgid, got.start_boottime_ns) == (100 + n, 7000 + n)
        assert got.comm == "[red]x\\xff"   # markup kept as text, a bad byte shown, never raised
    again, _ = parse_counts(units, cache)
    assert all(again[t] is parsed[t] for t in parsed), "unchanged counts: the same objects"


def test_layout_drift_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    class Drifted(ctypes.Structure):
        _fields_ = [(name, typ) for name, typ in MwCallEvent._fields_[:-1]]  # comm dropped

    monkeypatch.setitem(MIRRORS, "mw_call_event", Drifted)
    with pytest.raises(LayoutMismatch, match="mw_call_event: size 80 in BTF, 64 in Python"):
        verify_layouts(load_libbpf(), PACKAGED_OBJECT)


def test_tracefs_missing_picks_raw_mode_or_says_how(monkeypatch: pytest.MonkeyPatch,
                                                   open_tracer: Callable[..., Tracer]) -> None:
    monkeypatch.setattr("memwatch.ebpf.loader.tracefs_dir", lambda: None)
    with pytest.raises(BpfUnavailable, match="mount -t tracefs") as e:
        Tracer(TracerConfig(mode="tracepoint", mount_tracefs=False)).open()
    if e.value.code == "no-privileges":
        pytest.skip("needs root")
    assert e.value.code == "no-tracefs"
    tracer = open_tracer(mode="auto", mount_tracefs=False)
    assert tracer.mode == "raw"


def _mounts() -> str:
    return Path("/proc/self/mounts").read_text()


def test_without_tracefs_the_tracer_mounts_it_for_itself_alone(
        monkeypatch: pytest.MonkeyPatch, open_tracer: Callable[..., Tracer], workload: Workload) -> None:
    """A fresh machine has no tracefs: auto (and tracepoint) mode mounts it in a mount namespace
    of the attaching thread alone, so the machine's mounts never change and no other tracer
    (another memwatch included) can lose it when this one exits; where even that is refused,
    auto mode attaches raw."""
    if os.geteuid() != 0:
        pytest.skip("mounting tracefs needs root")
    point = tracefs.MOUNT_POINT
    was_mounted = env.tracefs_dir() == point
    if was_mounted and subprocess.run(["umount", point]).returncode != 0:
        pytest.skip("tracefs is in use by another program: cannot show a machine without it")
    try:
        assert env.tracefs_dir() is None
        before = _mounts()
        tracer = open_tracer(mode="auto", events_per_sec=0)
        assert tracer.mode == "tracepoint"
        assert _mounts() == before and env.tracefs_dir() is None, "nothing mounted for the machine"
        workload("pid")
        known = tracer.read_stats().get(workload.pid)
        n0 = known.mmap_count if known else 0
        workload(f"mmap {64 * 1024}")
        stats = tracer.read_stats()[workload.pid]
        assert stats.mmap_count == n0 + 1, "the per-syscall tracepoints work without a global tracefs"
        tracer.close()
        tracer = open_tracer(mode="tracepoint")   # asked for explicitly: mounted the same way
        assert tracer.mode == "tracepoint" and _mounts() == before
        tracer.close()

        monkeypatch.setattr("memwatch.ebpf.tracefs.MOUNT_POINT", "/nonexistent/tracing")
        tracer = open_tracer(mode="auto")
        assert tracer.mode == "raw"
    finally:
        if was_mounted and env.tracefs_dir() is None:
            subprocess.run(["mount", "-t", "tracefs", "nodev", point], check=True)


def test_tracefs_unmounted_between_the_look_and_the_attach(monkeypatch: pytest.MonkeyPatch,
                                                           open_tracer: Callable[..., Tracer]) -> None:
    """Someone unmounts tracefs just after memwatch saw it: the attach fails to find the
    tracepoints and is made again with a tracefs of memwatch's own."""
    if os.geteuid() != 0:
        pytest.skip("mounting tracefs needs root")
    point = tracefs.MOUNT_POINT
    was_mounted = env.tracefs_dir() == point
    if was_mounted and subprocess.run(["umount", point]).returncode != 0:
        pytest.skip("tracefs is in use by another program: cannot show a machine without it")
    try:
        monkeypatch.setattr("memwatch.ebpf.loader.tracefs_dir", lambda: point)   # "it was there"
        tracer = open_tracer(mode="tracepoint")
        assert tracer.mode == "tracepoint" and len(tracer.program_ids) >= 7
    finally:
        if was_mounted and env.tracefs_dir() is None:
            subprocess.run(["mount", "-t", "tracefs", "nodev", point], check=True)


def test_two_tracers_one_exits_the_other_keeps_counting(open_tracer: Callable[..., Tracer],
                                                        workload: Workload) -> None:
    """A 'serve' and a dashboard on one host: the first to exit takes nothing from the other."""
    first = open_tracer(events_per_sec=0)
    workload("pid")
    before = first.read_stats().get(workload.pid)
    second = open_tracer(events_per_sec=0)
    workload(f"mmap {64 * 1024}")
    assert second.read_stats()[workload.pid].mmap_count >= 1
    second.close()
    workload(f"mmap {64 * 1024}")
    after = first.read_stats()[workload.pid]
    assert after.mmap_count == (before.mmap_count if before else 0) + 2
    assert first.counters().events >= 0 and first.attached


def test_load_errors_become_sentences() -> None:
    assert "lockdown" in str(env.explain_load_error(PermissionError(1, "Operation not permitted")))
    assert "lacks a feature" in str(env.explain_load_error(OSError(22, "Invalid argument")))
    assert "ulimit -l" in str(env.explain_load_error(OSError(12, "Cannot allocate memory")))


def test_libbpf_log_goes_to_logging_not_the_terminal(caplog: pytest.LogCaptureFixture,
                                                     capfd: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    lib = load_libbpf()
    bogus = tmp_path / "not-an-object.o"
    bogus.write_bytes(b"not an ELF file")
    with caplog.at_level("DEBUG", logger="memwatch.libbpf"):
        assert not lib.bpf_object__open_file(str(bogus).encode(), None)
    assert any("elf" in r.getMessage().lower() for r in caplog.records)
    assert capfd.readouterr().err == ""
