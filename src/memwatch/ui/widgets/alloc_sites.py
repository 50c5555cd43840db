"""The allocation sites tab: the call stacks of one process's mmap, munmap, brk and mremap calls,
ranked by the bytes they mapped that are still mapped.

Capture costs the traced process a user-stack copy per call, so it runs only while someone looks:
it starts when the tab opens and stops when the tab is left, the screen closed or the process
gone (the source adds and removes the kernel's target; this module never talks to the kernel).
Unwinding and symbols are the source's work, in its threads; the tab asks for a report every
``SITES_REFRESH_S`` and redraws the tree only when it changed, expanded stacks kept expanded.
"""

from __future__ import annotations

import asyncio
import os

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from memwatch.model import ProcessKey
from memwatch.sources.base import InspectingSource, StackReport, StacksUnavailable
from memwatch.stacks.table import AllocationStack, Frame
from memwatch.ui import formatting as fmt
from memwatch.ui import workers
from memwatch.ui.widgets.quiet_update import set_static

SITES_REFRESH_S = 1.0
SITES_SHOWN = 100
BAR_WIDTH = 16
_EIGHTHS = " ▏▎▍▌▋▊▉"
StackId = tuple[str, tuple[tuple[str | None, int], ...], bool]


def bar(value: int, top: int, width: int = BAR_WIDTH) -> str:
    """A bar ``width`` cells long at ``top``, in eighths of a cell."""
    if top <= 0 or value <= 0:
        return " " * width
    eighths = round(min(value, top) / top * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(width)


def stack_id(s: AllocationStack) -> StackId:
    return (s.kind, tuple((f.module, f.offset) for f in s.frames), s.truncated)


def _bytes(n: int, human: bool) -> str:
    return fmt.human_bytes(n) if human else f"{n // 1024} KB"


def frame_text(f: Frame) -> Text:
    """``symbol  module+offset`` (``??`` where the module has no symbol: stripped)."""
    text = Text(fmt.printable(f.symbol) if f.symbol else "??", style="bold" if f.symbol else "yellow")
    where = f"{os.path.basename(f.module)}+{f.offset:#x}" if f.module else f"{f.offset:#x}"
    text.append(f"  {fmt.printable(where)}", style="dim")
    return text


def stack_label(s: AllocationStack, top: int, human: bool) -> Text:
    """One stack's line: a bar of its outstanding bytes against the first's, its figures, the
    innermost functions."""
    text = Text()
    text.append(bar(s.outstanding_bytes, top), style="magenta")
    text.append(f" {_bytes(s.outstanding_bytes, human):>10} outstanding", style="bold")
    text.append(f"  {_bytes(s.bytes, human):>10} mapped  {s.calls:>7} calls  {s.kind:<6} ")
    if not s.frames:
        text.append("(stack not captured)", style="dim")
        return text
    names = [fmt.printable(f.symbol) if f.symbol else "??" for f in s.frames[:3]]
    text.append(" ← ".join(names) + (" ← …" if len(s.frames) > 3 else ""))
    return text


def report_status(report: StackReport) -> Text:
    text = Text(f"capturing since {fmt.utc_time(report.since)} UTC: {len(report.stacks)} stacks; "
                f"{report.captured} calls with their stack", style="")
    if report.throttled:
        text.append(f", {report.throttled} without (over the per-process budget)", style="yellow")
    if report.dropped:
        text.append(f", {report.dropped} lost (the ring was full)", style="yellow")
    text.append(". Ranked by outstanding bytes (mapped by that stack, still mapped); "
                "Enter expands a stack.", style="dim")
    for module, why in sorted(report.unreadable.items()):
        text.append(f"\ncannot read {fmt.printable(module)} ({fmt.printable(why)}): its frames show as "
                    "module+offset", style="yellow")
    return text


class AllocationSites(Vertical):
    """Allocation call stacks of one process, captured while the tab is open."""

    DEFAULT_CSS = """
    AllocationSites { height: 1fr; }
    AllocationSites #sites-status { height: auto; padding: 0 1; }
    AllocationSites #sites-tree { height: 1fr; }
    """

    def __init__(self, key: ProcessKey, source: InspectingSource | None, unavailable: str, *,
                 id: str | None = None) -> None:
        """``source`` None: ``unavailable`` says why (a replay, a source with no process to look at)."""
        super().__init__(id=id)
        self.key = key
        self._source = source
        self.state = unavailable if source is None else "capture starts when this tab opens"
        self.report: StackReport | None = None
        self.human = False
        self.capturing = False
        """The source captures for this tab now (its start has returned, its stop not yet)."""
        self._want = False
        self._gone = False
        self._unavailable = source is None
        self._lock = asyncio.Lock()
        self._fetching = False
        self._shown: tuple[tuple[StackId, int, int, int], ...] | None = None
        self._stacks: dict[StackId, AllocationStack] = {}
        """The stacks on show, by id: their frames are added to the tree when expanded."""

    def compose(self) -> ComposeResult:
        yield Static(self.state, id="sites-status")
        tree: Tree[StackId] = Tree("stacks", id="sites-tree")
        tree.show_root = False
        tree.guide_depth = 3
        yield tree

    def on_mount(self) -> None:
        self._timer = self.set_interval(SITES_REFRESH_S, self._fetch, pause=True)
        self._draw()

    def on_unmount(self) -> None:
        # the screen closed with the tab open: stop the capture all the same (an app worker)
        self.set_active(False)

    @property
    def stack_tree(self) -> Tree[StackId]:
        return self.query_one("#sites-tree", Tree)

    def set_active(self, active: bool) -> None:
        """The tab was opened (capture starts) or left (capture stops, its figures dropped)."""
        want = active and not self._gone and not self._unavailable
        if want == self._want:
            return
        self._want = want
        if active and self.is_attached:
            self.stack_tree.focus()
        if self._source is not None:
            workers.start(self, self._reconcile(self._source), name="allocation-stacks",
                          group=f"allocation-stacks-{id(self)}",
                          description=f"{'starting' if want else 'stopping'} the stack capture of pid {self.key[0]}")

    def process_gone(self) -> None:
        if not self._gone:
            self._gone = True
            self.set_active(False)
            self._set_state("process has exited: capture stopped")

    def set_human(self, human: bool) -> None:
        if human != self.human:
            self.human = human
            self._shown = None
            self._draw()

    async def _reconcile(self, source: InspectingSource) -> None:
        """Bring the capture to what is wanted now; one at a time, so a quick open-and-leave
        always ends stopped."""
        async with self._lock:
            if self._want and not self.capturing:
                self._set_state("starting the capture…")
                try:
                    await source.start_stacks(self.key)
                except StacksUnavailable as error:
                    self._unavailable = True
                    self._want = False
                    self._set_state(str(error))
                    return
                except ProcessLookupError:
                    self._gone = True
                    self._want = False
                    self._set_state("process has exited")
                    return
                self.capturing = True
                self._set_state("capturing: the stacks appear with the process's next calls")
                if self.is_attached:
                    self._timer.resume()
                    self._fetch()
            elif not self._want and self.capturing:
                if self.is_attached:
                    self._timer.pause()
                self.capturing = False
                await source.stop_stacks(self.key[0])
                self.report = None
                if not self._gone and not self._unavailable:
                    self.state = "capture stopped; it starts again (from nothing) when this tab opens"
                self._set_state(self.state)

    def _fetch(self) -> None:
        if self._source is None or not self.capturing or self._fetching:
            return
        self._fetching = True
        workers.start(self, self._read_report(self._source), name="allocation-report",
                      group=f"allocation-report-{id(self)}", description=f"unwinding the stacks of pid {self.key[0]}")

    async def _read_report(self, source: InspectingSource) -> None:
        try:
            report = await source.stack_report(self.key[0])
        finally:
            self._fetching = False
        if not self.is_attached or not self.capturing:
            return
        self.report = report
        if report is not None:
            self.state = ""
        self._draw()

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.is_attached:
            self._draw()

    # -- drawing -----------------------------------------------------------------------------

    def _draw(self) -> None:
        report = self.report if self.capturing and self._want else None
        status = report_status(report) if report is not None else Text(self.state, style="dim")
        set_static(self.query_one("#sites-status", Static), status)
        tree = self.stack_tree
        if tree.display != (report is not None):
            tree.display = report is not None
            if report is not None and self._want:
                tree.focus()   # hidden until now, so the tab's opening could not focus it
        if report is None:
            if self._shown is not None:
                tree.clear()
                self._shown = None
            return
        stacks = report.stacks[:SITES_SHOWN]
        fingerprint = tuple((stack_id(s), s.calls, s.bytes, s.outstanding_bytes) for s in stacks)
        if fingerprint == self._shown:
            return
        before, self._shown = self._shown, fingerprint
        self._stacks = {stack_id(s): s for s in stacks}
        if before is not None and [f[0] for f in fingerprint] == [f[0] for f in before]:
            self._relabel(tree, stacks, before)
        else:
            self._fill(tree, stacks)

    def _relabel(self, tree: Tree[StackId], stacks: tuple[AllocationStack, ...],
                 before: tuple[tuple[StackId, int, int, int], ...]) -> None:
        """The same stacks in the same order (the usual refresh of a process that keeps calling):
        new figures on the lines whose figures changed (all of them when the first one's did,
        since every bar is drawn against it), no line added or removed."""
        top = max((s.outstanding_bytes for s in stacks), default=0)
        all_lines = top != max((f[3] for f in before), default=0)
        for node, s, old in zip(tree.root.children, stacks, before, strict=True):
            if all_lines or old[1:] != (s.calls, s.bytes, s.outstanding_bytes):
                node.set_label(stack_label(s, top, self.human))

    def _fill(self, tree: Tree[StackId], stacks: tuple[AllocationStack, ...]) -> None:
        """The tree anew, expanded stacks expanded again and the cursor on its stack. A stack's
        frames are added when it is expanded (:meth:`on_tree_node_expanded`), not before."""
        expanded = {n.data for n in tree.root.children if n.is_expanded and n.data is not None}
        cursor = tree.cursor_node.data if tree.cursor_node is not None else None
        tree.clear()
        top = max((s.outstanding_bytes for s in stacks), default=0)
        keep: TreeNode[StackId] | None = None
        for s in stacks:
            sid = stack_id(s)
            node = tree.root.add(stack_label(s, top, self.human), data=sid, allow_expand=True)
            if sid in expanded:
                self._add_frames(node, s)
                node.expand()
            if sid == cursor:
                keep = node
        if keep is not None:
            _ = tree.last_line   # lays the new lines out: a node knows its line only then
            tree.move_cursor(keep)
        elif tree.cursor_line < 0:
            tree.cursor_line = 0

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[StackId]) -> None:
        node = event.node
        s = self._stacks.get(node.data) if node.data is not None else None
        if s is not None and not node.children:
            self._add_frames(node, s)

    @staticmethod
    def _add_frames(node: TreeNode[StackId], s: AllocationStack) -> None:
        if not s.frames:
            node.add_leaf(Text("not captured: the process was over its stack budget, or the ring was full",
                               style="dim"))
        for f in s.frames:
            node.add_leaf(frame_text(f))
        if s.truncated:
            node.add_leaf(Text("… the unwinder stopped here (the stack window ended, or code without CFI)",
                               style="dim"))
