"""A program on a real pseudo-terminal, for tests of what it leaves on the screen (no tests here).

The child gets the terminal as its controlling tty (a session of its own, as a login shell
would), so it sees a real window size and a hangup reaches it as the kernel sends one. Output is
read by a thread as it comes: a child whose terminal is not read blocks once the buffer fills.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence

CSI_PRIVATE_MODE = re.compile(rb"\x1b\[\?([0-9;]+)([hl])")


class Terminal:
    """``argv`` running on a pty of ``cols`` x ``rows``; :meth:`close` kills it if still alive."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None = None,
                 cols: int = 120, rows: int = 40) -> None:
        setsid = shutil.which("setsid")
        assert setsid is not None, "setsid (util-linux) is needed to give the child a terminal"
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            # setsid --ctty: a session of its own with this terminal as its controlling tty (same
            # pid: a child of Popen leads no process group, so setsid need not fork)
            self.proc = subprocess.Popen([setsid, "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave,
                                         env=dict(env), cwd=cwd)
        finally:
            os.close(slave)
        self.pid = self.proc.pid
        self.master: int | None = master
        self._stop = threading.Event()
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"pty-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Collect output until the child's side is gone or :meth:`hang_up`; the master is closed
        here, by the only thread that reads it (a read blocked in another thread would keep the
        terminal open, and the child would never see the hangup)."""
        fd = self.master
        assert fd is not None
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([fd], [], [], 0.05)
                if not ready:
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError as exc:  # EIO: every slave end is closed (the child is gone)
                    if exc.errno == errno.EIO:
                        return
                    raise
                if not chunk:
                    return
                with self._lock:
                    self._output += chunk
        finally:
            os.close(fd)

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def wait_for(self, needle: bytes, timeout: float, start: int = 0) -> int:
        """Offset just past the first ``needle`` at or after ``start``; AssertionError on timeout
        (with what was seen) or if the child exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output
            found = out.find(needle, start)
            if found >= 0:
                return found + len(needle)
            if self.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} did not appear within {timeout} s (exit status "
                             f"{self.returncode}); the terminal showed:\n{self.output[-3000:]!r}")

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit status (negative: the signal that killed it); AssertionError if it hangs."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s later; the terminal showed:\n"
                                 f"{self.output[-3000:]!r}") from None
        self._reader.join(5)  # the rest of its output
        return code

    def hang_up(self) -> None:
        """Close the terminal's master side, as a terminal emulator does when its window closes."""
        self._stop.set()
        self._reader.join(5)
        self.master = None

    def close(self) -> None:
        """Kill the child if it is still running, reap it, release the terminal."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.hang_up()


def private_modes(data: bytes) -> list[tuple[int, bool]]:
    """Every DEC private mode set (True) or reset (False) in ``data``, in order."""
    changes: list[tuple[int, bool]] = []
    for match in CSI_PRIVATE_MODE.finditer(data):
        for mode in match.group(1).split(b";"):
            if mode:
                changes.append((int(mode), match.group(2) == b"h"))
    return changes


def final_modes(data: bytes) -> dict[int, bool]:
    """The last state ``data`` leaves each private mode it touches in."""
    return dict(private_modes(data))
