"""ctypes bindings to the system's libbpf (``libbpf.so.1``), errno-correct.

libbpf 1.x returns NULL and sets errno from pointer-returning functions and ``-errno`` from
int-returning ones; :func:`check_ptr` and :func:`check_int` turn both into ``OSError``. Every
function used here has its ``restype`` and ``argtypes`` set: the default ``int`` restype would
truncate pointers on 64-bit machines.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_char_p,
    c_int,
    c_size_t,
    c_uint,
    c_uint32,
    c_void_p,
)
from typing import Any

from memwatch.ebpf.errors import BpfUnavailable

log = logging.getLogger("memwatch.libbpf")

LIBBPF_SONAME = "libbpf.so.1"

# enum libbpf_print_level
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

# BTF kinds
BTF_KIND_STRUCT = 4

# int (*libbpf_print_fn_t)(enum libbpf_print_level, const char *, va_list)
PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
# int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size)
SAMPLE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


class BpfMapBatchOpts(ctypes.Structure):
    """struct bpf_map_batch_opts (libbpf/bpf.h)."""

    _fields_ = [("sz", c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class BtfType(ctypes.Structure):
    """struct btf_type: name_off, info (vlen/kind/kflag), size-or-type."""

    _fields_ = [("name_off", c_uint32), ("info", c_uint32), ("size", c_uint32)]


class BtfMember(ctypes.Structure):
    """struct btf_member: name_off, type, offset (bits; bitfield size in the top byte if kflag)."""

    _fields_ = [("name_off", c_uint32), ("type", c_uint32), ("offset", c_uint32)]


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_set_print": (c_void_p, [PRINT_FN]),
    "libbpf_num_possible_cpus": (c_int, []),
    "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
    "bpf_object__open_mem": (c_void_p, [c_void_p, c_size_t, c_void_p]),
    "bpf_object__btf": (c_void_p, [c_void_p]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, POINTER(c_uint32)]),
    "bpf_prog_get_fd_by_id": (c_int, [c_uint32]),
    "bpf_enable_stats": (c_int, [c_int]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
    "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
    "bpf_map__name": (c_char_p, [c_void_p]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint32]),
    "bpf_map__initial_value": (c_void_p, [c_void_p, POINTER(c_size_t)]),
    "bpf_program__name": (c_char_p, [c_void_p]),
    "bpf_program__set_autoload": (c_int, [c_void_p, ctypes.c_bool]),
    "bpf_program__autoload": (ctypes.c_bool, [c_void_p]),
    "bpf_program__attach": (c_void_p, [c_void_p]),
    "bpf_link__destroy": (c_int, [c_void_p]),
    "bpf_link__fd": (c_int, [c_void_p]),
    "bpf_iter_create": (c_int, [c_int]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_lookup_batch": (
        c_int,
        [c_int, c_void_p, c_void_p, c_void_p, c_void_p, POINTER(c_uint32), POINTER(BpfMapBatchOpts)],
    ),
    "bpf_map_delete_batch": (c_int, [c_int, c_void_p, POINTER(c_uint32), POINTER(BpfMapBatchOpts)]),
    "ring_buffer__new": (c_void_p, [c_int, SAMPLE_FN, c_void_p, c_void_p]),
    "ring_buffer__free": (None, [c_void_p]),
    "ring_buffer__consume": (c_int, [c_void_p]),
    "ring_buffer__epoll_fd": (c_int, [c_void_p]),
    "btf__parse_elf": (c_void_p, [c_char_p, c_void_p]),
    "btf__free": (None, [c_void_p]),
    "btf__find_by_name_kind": (c_int, [c_void_p, c_char_p, c_uint]),
    "btf__type_by_id": (POINTER(BtfType), [c_void_p, c_uint32]),
    "btf__name_by_offset": (c_char_p, [c_void_p, c_uint32]),
}


class BpfProgInfo(ctypes.Structure):
    """struct bpf_prog_info (uapi/linux/bpf.h) up to run_cnt: the kernel fills as much as we give.

    The uapi struct only ever grows at its end, so these offsets hold on every kernel that has the
    run-time statistics (5.1+); the members between id and run_time_ns are not read here.
    """

    _fields_ = [("type", c_uint32), ("id", c_uint32), ("_unread", ctypes.c_uint8 * 184),
                ("run_time_ns", ctypes.c_uint64), ("run_cnt", ctypes.c_uint64)]


BPF_STATS_RUN_TIME = 0


class Libbpf:
    """The loaded library with typed functions as attributes, and libbpf's log routed to logging."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._vsnprintf = self._libc.vsnprintf
        self._vsnprintf.restype = c_int
        self._vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
        # Kept referenced for as long as libbpf may call it (the process lifetime).
        self._print_cb = PRINT_FN(self._on_print)
        lib.libbpf_set_print(self._print_cb)

    def __getattr__(self, name: str) -> Any:  # typed attributes are set in __init__
        raise AttributeError(name)

    def _on_print(self, level: int, fmt: bytes | None, va_list: int | None) -> int:
        """libbpf's printf, formatted with the C library and handed to Python logging."""
        if fmt is None:
            return 0
        buf = ctypes.create_string_buffer(2048)
        try:
            self._vsnprintf(buf, len(buf), fmt, va_list)
            text = buf.value.decode("utf-8", "backslashreplace").rstrip()
        except Exception:  # never let an exception cross into C
            text = fmt.decode("utf-8", "backslashreplace").rstrip()
        pylevel = {LIBBPF_WARN: logging.WARNING, LIBBPF_INFO: logging.INFO}.get(level, logging.DEBUG)
        if text:
            log.log(pylevel, "%s", text)
        return 0


_LIBBPF: Libbpf | None = None


def load_libbpf() -> Libbpf:
    """The process-wide libbpf, or :class:`BpfUnavailable` with what to install."""
    global _LIBBPF
    if _LIBBPF is None:
        name = os.environ.get("MEMWATCH_LIBBPF", LIBBPF_SONAME)
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise BpfUnavailable(
                f"{LIBBPF_SONAME} was not found ({exc}); install the libbpf runtime "
                "(Debian/Ubuntu: 'apt install libbpf1', Fedora: 'dnf install libbpf')",
                code="no-libbpf",
            ) from exc
        try:
            _LIBBPF = Libbpf(lib)
        except AttributeError as exc:
            raise BpfUnavailable(
                f"the libbpf found ({name}) is too old: it lacks {exc}; memwatch needs libbpf 1.0 or newer",
                code="old-libbpf",
            ) from exc
    return _LIBBPF


def check_ptr(ptr: int | None, what: str) -> int:
    """A pointer from libbpf, or OSError from errno when it is NULL."""
    if not ptr:
        err = ctypes.get_errno() or errno.EINVAL
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ptr


def check_int(ret: int, what: str) -> int:
    """An int from libbpf, or OSError when it is -errno."""
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret
