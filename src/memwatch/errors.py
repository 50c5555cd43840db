"""Which failures a user can meet, and the sentence each one gets instead of a traceback."""

from __future__ import annotations


def user_error_message(exc: BaseException) -> str | None:
    """A message for errors caused by the environment or the input; None for real bugs."""
    from memwatch.ebpf.btf import LayoutMismatch
    from memwatch.exporter import ListenAddressError
    from memwatch.procfs import ProcfsUnavailable
    from memwatch.recording import RecordingError

    if isinstance(exc, RecordingError | ListenAddressError | ProcfsUnavailable | LayoutMismatch):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}; try again with sudo"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename or exc}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return None
