"""Every environment a user can meet, checked before we touch the kernel, each with a sentence.

The sentences say what is wrong and what to do; the loader raises :class:`BpfUnavailable` with
them and memwatch carries on from /proc alone, saying why.
"""

from __future__ import annotations

import os
import platform
import stat
from pathlib import Path

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

MIN_KERNEL = (5, 15)
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
BTF_PATH = "/sys/kernel/btf/vmlinux"


class BpfUnavailable(RuntimeError):
    """eBPF cannot be used here; ``str(exc)`` tells the user what to do, ``code`` is for programs."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def effective_caps(status_path: str = "/proc/self/status") -> int:
    """The CapEff bit mask of this process (0 when it cannot be read)."""
    try:
        with open(status_path, "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def check_privileges(caps: int | None = None) -> None:
    """Loading and attaching tracing programs needs CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN."""
    caps = effective_caps() if caps is None else caps

    def has(bit: int) -> bool:
        return bool(caps & (1 << bit))

    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return
    missing = [name for bit, name in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")) if not has(bit)]
    raise BpfUnavailable(
        "eBPF is off: memwatch needs root (or " + " and ".join(missing) + ") to load its tracer; "
        "run it with sudo. (Do not setcap the Python interpreter: every script it runs would get "
        "those rights, which amount to root; see the README for a safe way.) "
        "Showing /proc figures only.",
        code="no-privileges",
    )


def check_btf(path: str = BTF_PATH) -> None:
    """CO-RE relocations need the kernel's own type information."""
    if not os.path.exists(path):
        raise BpfUnavailable(
            f"eBPF is off: this kernel exposes no BTF ({path} is missing); memwatch's tracer needs a "
            "kernel built with CONFIG_DEBUG_INFO_BTF=y (standard on Debian 11+, Ubuntu 20.10+, "
            "Fedora 31+). Showing /proc figures only.",
            code="no-btf",
        )


def parse_kernel_release(release: str) -> tuple[int, int]:
    """(major, minor) of a uname release such as '6.18.44-fc-v657'; (0, 0) if unparsable."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def check_kernel(release: str | None = None) -> None:
    """Task storage in tracepoints, ring buffers and atomic fetch ops need a 5.15+ kernel."""
    rel = release if release is not None else platform.release()
    version = parse_kernel_release(rel)
    if version != (0, 0) and version < MIN_KERNEL:
        raise BpfUnavailable(
            f"eBPF is off: kernel {rel} is too old for memwatch's tracer (needs "
            f"{MIN_KERNEL[0]}.{MIN_KERNEL[1]} or newer). Showing /proc figures only.",
            code="old-kernel",
        )


def _unsafe(path: str, why: str, fix: str) -> BpfUnavailable:
    return BpfUnavailable(
        f"refusing to load the tracer {path}: {why}, so another user could change code that runs in "
        f"the kernel; {fix}. Showing /proc figures only.",
        code="unsafe-object",
    )


def _check_owner_and_mode(path: str, st: os.stat_result, euid: int, *, directory: bool) -> None:
    if st.st_uid not in (0, euid):
        raise _unsafe(path, f"it belongs to uid {st.st_uid}, not to root or to you", f"fix it with 'chown root {path}'")
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    # a sticky directory (like /tmp) lets nobody replace an entry they do not own
    if writable and not (directory and st.st_mode & stat.S_ISVTX):
        raise _unsafe(path, f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
                      f"fix it with 'chmod go-w {path}'")


def _check_directories(path: str, euid: int) -> None:
    """Every directory from / down to ``path``'s own must be safe: whoever may write one of them
    may swap what lies below it."""
    parent = os.path.dirname(os.path.abspath(path))
    chain = []
    while True:
        chain.append(parent)
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    for d in reversed(chain):
        _check_owner_and_mode(d, os.stat(d), euid, directory=True)


def read_object(path: Path, euid: int | None = None) -> bytes:
    """The tracer object's bytes, read once from a file that only root (or you) can change.

    The object runs in the kernel as root. Its directories are checked as well as the file (and,
    for a symlink, those of the file it points to), and the bytes returned are read from the very
    file that was checked, so what is loaded is what was checked.
    """
    euid = os.geteuid() if euid is None else euid
    name = str(path)
    try:
        real = os.path.realpath(name)
        _check_directories(name, euid)
        if real != os.path.abspath(name):
            _check_directories(real, euid)
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise BpfUnavailable(
            f"eBPF is off: the tracer object {path} is missing; reinstall memwatch "
            "(or build it with 'make -C bpf'). Showing /proc figures only.",
            code="no-object",
        ) from None
    except OSError as exc:
        raise BpfUnavailable(
            f"eBPF is off: cannot read the tracer object {path} ({exc.strerror}). Showing /proc figures only.",
            code="no-object",
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BpfUnavailable(f"eBPF is off: the tracer object {path} is not a regular file. "
                                 "Showing /proc figures only.", code="no-object")
        _check_owner_and_mode(name, st, euid, directory=False)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def tracefs_dir() -> str | None:
    """Where tracefs is mounted, or None (then memwatch attaches through raw tracepoints)."""
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def explain_load_error(exc: OSError) -> BpfUnavailable:
    """Turn a failed load or attach into a sentence."""
    err = exc.errno or 0
    if err in (1, 13):  # EPERM, EACCES
        return BpfUnavailable(
            "eBPF is off: the kernel refused to load the tracer (permission denied) although memwatch "
            "has the privileges; kernel lockdown or a security module may forbid BPF. "
            "Showing /proc figures only.",
            code="refused",
        )
    if err in (22, 95, 524):  # EINVAL, EOPNOTSUPP, ENOTSUPP
        return BpfUnavailable(
            f"eBPF is off: this kernel lacks a feature the tracer needs ({exc}); memwatch needs Linux "
            f"{MIN_KERNEL[0]}.{MIN_KERNEL[1]}+ with BTF. Run with MEMWATCH_DEBUG=1 for libbpf's log. "
            "Showing /proc figures only.",
            code="unsupported",
        )
    if err == 12:  # ENOMEM
        return BpfUnavailable(
            "eBPF is off: the kernel could not allocate the tracer's maps (out of memory or a low "
            "memlock limit); try smaller --bpf-map-size or raise 'ulimit -l'. Showing /proc figures only.",
            code="no-memory",
        )
    return BpfUnavailable(f"eBPF is off: loading the tracer failed: {exc}. Showing /proc figures only.",
                          code="load-failed")
