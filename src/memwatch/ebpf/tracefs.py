"""Mounting tracefs for a session, so the cheaper per-syscall tracepoints can be used.

Without tracefs the tracer falls back to a raw ``sys_exit`` program, which runs for
every syscall on the machine. A fresh VM often boots without tracefs mounted; as root, memwatch
mounts it where the kernel expects it, uses the per-syscall tracepoints, and unmounts it again
on close. Where that is not allowed (a read-only /sys in a container), the raw mode remains.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("memwatch.ebpf")

MOUNT_POINT = "/sys/kernel/tracing"


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    libc.mount.restype = ctypes.c_int
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.umount2.restype = ctypes.c_int
    return libc


def mount_tracefs() -> bool:
    """Mount tracefs at its usual place; False (logged) where the kernel or the sandbox refuses."""
    if not os.path.isdir(MOUNT_POINT):
        log.info("cannot mount tracefs: %s does not exist (tracefs not built in)", MOUNT_POINT)
        return False
    if _libc().mount(b"nodev", MOUNT_POINT.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        log.info("cannot mount tracefs at %s: %s", MOUNT_POINT, os.strerror(err))
        return False
    log.info("mounted tracefs at %s for the per-syscall tracepoints; it is unmounted on exit", MOUNT_POINT)
    return True


def unmount_tracefs() -> None:
    """Undo :func:`mount_tracefs`; a failure (someone else is using it now) only leaves it mounted."""
    if _libc().umount2(MOUNT_POINT.encode(), 0) != 0:
        log.info("left tracefs mounted at %s: %s", MOUNT_POINT, os.strerror(ctypes.get_errno()))
