"""Work off the key path, and the one place its failures are shown.

Every worker is started through :func:`start`, which names it, puts it in a group and gives it a
description in words ("sending SIGTERM to pid 42"); none of them stops the app when it fails.
The app's single ``on_worker_state_changed`` then shows what went wrong: a :class:`UIError` as the
sentence it carries, anything else as "<description> failed: <error>" (and the traceback in the
log), so a new worker needs no error handling of its own beyond raising.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Literal

from rich.markup import escape
from textual.dom import DOMNode
from textual.worker import Worker

Severity = Literal["information", "warning", "error"]


class UIError(Exception):
    """A failure with a sentence for the user; a worker raises it, the app's handler shows it."""

    title = "memwatch"

    def __init__(self, message: str, *, severity: Severity = "error", title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.severity: Severity = severity
        if title is not None:
            self.title = title


class SignalNotSent(UIError):
    """The source could not signal a process (gone, not allowed, a recording)."""

    title = "Signal not sent"


def start(node: DOMNode, work: Coroutine[Any, Any, Any], *, name: str, description: str, group: str | None = None,
          exclusive: bool = False) -> Worker[Any]:
    """Run ``work`` in a worker that describes itself, for ``node``; failures reach the app's handler.

    The worker belongs to the app (Worker.StateChanged goes to the worker's node only, so the app
    sees every failure this way); ``exclusive`` cancels the older workers of the same ``group``.
    """
    return node.app.run_worker(work, name=name, group=group or name, description=description, exclusive=exclusive,
                               exit_on_error=False)


def failure_text(worker: Worker[Any]) -> tuple[str, str, Severity]:
    """(title, message, severity) of a failed worker, as the app shows it."""
    error = worker.error
    if isinstance(error, UIError):
        return error.title, error.message, error.severity
    return "memwatch", escape(f"{worker.description or worker.name} failed: {error}"), "error"
