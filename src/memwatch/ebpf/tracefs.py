"""tracefs for the per-syscall tracepoints, without touching the machine's mounts.

libbpf needs tracefs only while it attaches a tracepoint program: it reads the tracepoint's id
from ``events/<category>/<name>/id``; the attached program does not need it afterwards. A fresh VM
often boots without tracefs. Rather than mount it on the host (and then either leave it or pull it
from under another memwatch or any other tracer that came to rely on it), memwatch attaches from a
thread of its own that has its own mount namespace, with tracefs mounted there. Nothing outside
that thread ever sees the mount, and it disappears with the thread. Where that is not allowed
(no CAP_SYS_ADMIN, a read-only /sys in a container), the raw ``sys_exit`` mode remains.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("memwatch.ebpf")

MOUNT_POINT = "/sys/kernel/tracing"
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

T = TypeVar("T")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    libc.mount.restype = ctypes.c_int
    libc.unshare.argtypes = [ctypes.c_int]
    libc.unshare.restype = ctypes.c_int
    return libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_privately() -> None:
    """In the calling thread only: a mount namespace of its own, with tracefs at MOUNT_POINT.

    unshare(CLONE_NEWNS) is per thread (it unshares the thread's fs context too); the namespace
    starts as a copy of the process's, so its mounts are made private first: a mount made there
    must not propagate back to the host's namespace.
    """
    if not os.path.isdir(MOUNT_POINT):
        raise OSError(2, f"{MOUNT_POINT} does not exist (tracefs not built in)")
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unsharing the mount namespace")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    if libc.mount(b"nodev", MOUNT_POINT.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        # EBUSY: tracefs is there already (mounted on the host since memwatch looked): use it
        if not (err == errno.EBUSY and os.path.isdir(os.path.join(MOUNT_POINT, "events"))):
            raise OSError(err, f"mounting tracefs at {MOUNT_POINT}: {os.strerror(err)}")


def run_with_private_tracefs(fn: Callable[[], T]) -> T:
    """``fn()`` in a short-lived thread that sees tracefs mounted in a namespace of its own.

    Raises OSError when the mount cannot be made there, and whatever ``fn`` raises.
    """
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            _mount_privately()
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=body, name="memwatch-tracefs", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def private_tracefs_possible() -> bool:
    """Whether :func:`run_with_private_tracefs` can mount tracefs here (logged when not)."""
    try:
        run_with_private_tracefs(lambda: None)
    except OSError as exc:
        log.info("cannot mount tracefs for memwatch's own use: %s", exc)
        return False
    return True
