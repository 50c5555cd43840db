"""The ``memwatch`` command: dashboard, headless output, recording, replay and the exporter.

    memwatch                                  the dashboard (live)
    memwatch --replay FILE                    the dashboard on a recording
    memwatch --once [--json|--csv] ...        print once and exit
    memwatch record FILE [--duration S]       append snapshots and events to a recording
    memwatch serve [--listen HOST:PORT]       Prometheus /metrics
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import resource
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memwatch import __version__
from memwatch.fields import SORT_KEYS
from memwatch.model import Snapshot
from memwatch.sources.base import SnapshotSource

if TYPE_CHECKING:
    from memwatch.settings import Settings, SettingsFile

log = logging.getLogger("memwatch")


MAX_SECONDS = 365 * 24 * 3600
"""The longest --interval, --duration or --leak-warmup: a year is beyond any real use and far
below where Python's own timers overflow (time.sleep and thread waits give up past about 292
years), so a typo such as 3e9 is refused instead of waiting for ever."""
EVENT_THRESHOLD_MAX = 2**64 - 1
"""The tracer keeps --event-threshold in 64 bits; a larger number would wrap around silently."""
EVENTS_PER_SEC_MAX = 2**32 - 1
"""The tracer keeps --events-per-sec in 32 bits; 2**32 would wrap to 0, which means unlimited."""
BPF_MAP_SIZE_MAX = 2**27
"""The kernel refuses a hash map of more buckets than fit its 32-bit size (E2BIG beyond 2**27)."""


def _seconds(text: str) -> float:
    """A finite, non-negative number of seconds: nan compares false with every bound and inf
    never elapses, so both would pass unnoticed as a wait that never ends or a silent default."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds")
    if v < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    if v > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SECONDS} seconds (365 days), not {text}")
    return v


def _interval(text: str) -> float:
    from memwatch.settings import MIN_INTERVAL_S

    v = _seconds(text)
    if v < MIN_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"the interval must be at least {MIN_INTERVAL_S} s")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return v


def _bounded_count(low: int, high: int, why: str) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high``; ``why`` says where the upper bound comes from."""
    def parse(text: str) -> int:
        v = _count(text)
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        if v > high:
            raise argparse.ArgumentTypeError(f"must be at most {high} ({why}), not {v}")
        return v
    return parse


_event_threshold = _bounded_count(0, EVENT_THRESHOLD_MAX, "the tracer keeps it in 64 bits")
_events_per_sec = _bounded_count(0, EVENTS_PER_SEC_MAX, "the tracer keeps it in 32 bits")
_bpf_map_size = _bounded_count(1, BPF_MAP_SIZE_MAX, "the largest hash map the kernel makes")


def _pid(text: str) -> int:
    v = _count(text)
    if v == 0:
        raise argparse.ArgumentTypeError("a pid is a positive number")
    return v


DEFAULT_INTERVAL_S = 3.0


def _add_source_options(p: argparse.ArgumentParser, *, interval: bool = True,
                        interval_default: float | None = DEFAULT_INTERVAL_S) -> None:
    """``interval_default`` None: the caller decides (the dashboard's settings file may)."""
    if interval:
        p.add_argument("--interval", type=_interval, default=interval_default, metavar="S",
                       help="sampling interval in seconds (default 3, as the original monitor; the "
                            "dashboard keeps the last one chosen with + and -)")
    p.add_argument("--no-bpf", action="store_true", help="do not load the eBPF tracer: /proc figures only")
    g = p.add_argument_group("tracer")
    g.add_argument("--bpf-mode", choices=("auto", "tracepoint", "raw"), default="auto",
                   help="how to attach to syscalls: per-syscall tracepoints (need tracefs), raw "
                        "syscall tracepoints (no tracefs), or pick (default)")
    g.add_argument("--event-threshold", type=_event_threshold, default=1024, metavar="BYTES",
                   help="stream calls of at least this many bytes (default 1024); all calls are counted")
    g.add_argument("--events-per-sec", type=_events_per_sec, default=1000, metavar="N",
                   help="per-process budget of streamed call events per second (0: unlimited)")
    g.add_argument("--events-budget", type=_count, default=None, metavar="N",
                   help="call events memwatch parses per second over all processes (default 5000); beyond "
                        "it the kernel withholds them, counted, and the counts stay exact")
    g.add_argument("--bpf-map-size", type=_bpf_map_size, default=None, metavar="N",
                   help="live mappings the tracer can follow beyond each process's 8 newest (default 131072)")
    g.add_argument("--bpf-map-quota", type=_count, default=None, metavar="N",
                   help="of those, how many one process may hold (default a quarter), so none starves the rest")
    p.add_argument("--leak-warmup", type=_seconds, default=None, metavar="S",
                   help="seconds after a process starts before it can be flagged as a leak suspect "
                        "(default 600, or one whole history window if longer)")
    p.add_argument("--pss-top", type=_count, default=0, metavar="N",
                   help="also read PSS/USS (smaps_rollup, costly) for the N largest processes every tick; "
                        "otherwise only on demand")


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top", type=_count, default=None, metavar="N",
                   help="show the top N processes (default 100; 0: all)")
    p.add_argument("--sort", choices=SORT_KEYS, default=None, metavar="FIELD",
                   help=f"figure to rank by (default rss): {', '.join(SORT_KEYS)}; with --group, the "
                        "groups' sums of rss swap pss outstanding growth mmap munmap brk mremap, or name "
                        "(cgroups rank by the kernel's usage unless told)")
    p.add_argument("--pid", type=_pid, action="append", default=[], metavar="PID",
                   help="always include this process (repeatable); alone, show only these")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="memwatch",
        description="Real-time per-process memory monitor: eBPF-traced mmap/munmap/brk/mremap with "
                    "/proc figures. Without arguments it opens the dashboard.",
        epilog="Subcommands: 'memwatch record FILE' and 'memwatch serve' (see their --help).",
    )
    p.add_argument("--version", action="version", version=f"memwatch {__version__}")
    _add_source_options(p, interval_default=None)
    _add_selection_options(p)
    p.add_argument("--replay", type=Path, metavar="FILE", help="show a recording instead of this machine")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="with --once: JSON")
    fmt.add_argument("--csv", action="store_true", help="with --once: CSV")
    p.add_argument("--group", choices=("tree", "cgroup", "user"), default=None,
                   help="with --once, as a table or CSV: the process tree with subtree sums, memory "
                        "cgroups with the kernel's accounting, or users (JSON always has cgroups and users)")
    p.add_argument("--duration", type=_seconds, default=None, metavar="S",
                   help="with --once: trace this long before printing (default one interval)")
    p.add_argument("--at", metavar="TIME", help="with --once --replay: the frame at this time "
                   "(epoch seconds or ISO 8601; default the last frame)")
    p.add_argument("--since", metavar="TIME", help="with --once --replay: JSON 'events' from this time "
                   "(default the start of the recording) to --at")
    p.add_argument("--stacks", action="store_true",
                   help="with --once --pid: capture the user call stack of every mmap, munmap, brk and mremap of "
                        "those processes (no restart, no frame pointers needed) and report, per stack, the calls, "
                        "bytes and bytes still mapped")
    p.add_argument("--maps", action="store_true",
                   help="with --once --pid: those processes' memory maps (smaps): sums by kind and path, and the "
                        "largest mappings")
    p.add_argument("--theme", default=None, help="dashboard theme (default textual-dark)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="the dashboard's settings file (columns, sort, units, interval, theme; default "
                        "$XDG_CONFIG_HOME/memwatch/config.toml, else ~/.config/memwatch/config.toml); "
                        "flags win over it")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the tracer does to stderr")
    return p


def build_record_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memwatch record",
                                description="Append snapshots and events to a recording (SQLite, WAL).")
    p.add_argument("file", type=Path)
    _add_source_options(p)
    p.add_argument("--duration", type=_seconds, default=None, metavar="S",
                   help="stop after S seconds (default: until Ctrl+C, SIGTERM or SIGHUP)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def build_serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memwatch serve", description="Serve Prometheus /metrics and /healthz.")
    p.add_argument("--listen", default="127.0.0.1:9464", metavar="HOST:PORT",
                   help="address to bind (default 127.0.0.1:9464; other addresses must be asked for)")
    _add_source_options(p)
    _add_selection_options(p)
    p.add_argument("--top-cgroups", type=_count, default=20, metavar="N",
                   help="per-cgroup series for the N cgroups using the most memory (default 20; 0: only --cgroup)")
    p.add_argument("--cgroup", action="append", default=[], metavar="PATH",
                   help="also export this memory cgroup, as /proc/PID/cgroup names it (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _live_source(args: argparse.Namespace, *, recent_events: bool = True,
                 stacks_on_demand: bool = False) -> SnapshotSource:
    """The live source; ``recent_events=False`` keeps no per-process call events (the exporter
    never shows them, and they are its largest per-process cost with eBPF on).
    ``stacks_on_demand``: the tracer gets its stack ring, so the dashboard's allocation tab can
    capture the stacks of the process it shows (no process is a target until then)."""
    from dataclasses import replace

    from memwatch.ebpf import TracerConfig
    from memwatch.leak import LeakPolicy
    from memwatch.sources.live import DEFAULT_EVENTS_BUDGET, LiveSource
    from memwatch.store import Store

    stacks = bool(getattr(args, "stacks", False))
    maps = bool(getattr(args, "maps", False))
    cfg = TracerConfig(mode=args.bpf_mode, event_threshold=args.event_threshold,
                       events_per_sec=args.events_per_sec, map_quota=args.bpf_map_quota,
                       stacks=stacks or stacks_on_demand)
    if args.bpf_map_size is not None:
        cfg = replace(cfg, max_mappings=args.bpf_map_size)
    budget = DEFAULT_EVENTS_BUDGET if args.events_budget is None else args.events_budget
    policy = LeakPolicy(warmup_s=args.leak_warmup)
    store = Store(leak_policy=policy) if recent_events else Store(leak_policy=policy, recent_len=0)
    interval = DEFAULT_INTERVAL_S if args.interval is None else args.interval
    return LiveSource(interval, use_bpf=not args.no_bpf, tracer_config=cfg, rollup_top=args.pss_top,
                      events_budget=budget, store=store, stack_pids=args.pid if stacks else (),
                      map_pids=args.pid if maps else ())


def _raise_file_limit() -> None:
    """The /proc reader keeps stat files open; a soft limit of 1024 would starve it."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else max(soft, 65536), hard))
    except (ValueError, OSError):
        pass


def _tune_malloc() -> None:
    """Large blocks go back to the kernel when freed (see memwatch.ebpf.malloc): memwatch runs for
    days, and a tick frees megabytes."""
    from memwatch.ebpf.malloc import keep_large_blocks_unmapped

    keep_large_blocks_unmapped()


def _setup_logging(verbose: bool, *, dashboard: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    if os.environ.get("MEMWATCH_DEBUG"):
        level = logging.DEBUG
    if dashboard and not os.environ.get("MEMWATCH_LOG"):
        # stderr would scribble over the terminal UI; reasons show in the dashboard itself
        logging.basicConfig(level=level, handlers=[logging.NullHandler()])
    elif os.environ.get("MEMWATCH_LOG"):
        logging.basicConfig(level=level, filename=os.environ["MEMWATCH_LOG"],
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    else:
        logging.basicConfig(level=level, format="memwatch: %(message)s")


def say_if_tracer_off(snapshot: Snapshot) -> None:
    """Say once, at start, why eBPF is off: a recording or an exporter running on /proc alone
    would otherwise look like one with kernel figures that happen to be missing."""
    if not snapshot.tracer.enabled and snapshot.tracer.reason:
        print(f"memwatch: {snapshot.tracer.reason}", file=sys.stderr, flush=True)


def _fail(message: str, code: int = 1) -> int:
    print(f"memwatch: {message}", file=sys.stderr)
    return code


def _check_theme(parser: argparse.ArgumentParser, theme: str) -> None:
    """Refuse an unknown theme before anything starts: Textual would only fail once it draws."""
    from memwatch.ui.app import theme_names, unknown_theme  # textual: the dashboard loads it anyway

    names = theme_names()
    if theme not in names:
        parser.error(unknown_theme(theme, names))


def _check_group(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--group and the sort keys only groups have, where they can work."""
    from memwatch.headless import group_sort_keys

    if args.group is None:
        return
    if not args.once:
        parser.error("--group goes with --once")
    if args.json:
        parser.error("--group is for the table and CSV; --json always has \"cgroups\" and \"users\"")
    if args.sort is not None and args.sort not in group_sort_keys(args.group):
        parser.error(f"--group {args.group} ranks by one of {', '.join(group_sort_keys(args.group))}, "
                     f"not {args.sort}")


def _check_looking(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--stacks and --maps look at chosen processes of this machine, now."""
    for flag in ("stacks", "maps"):
        if not getattr(args, flag):
            continue
        if not args.once:
            parser.error(f"--{flag} goes with --once (e.g. memwatch --once --json --{flag} --pid PID)")
        if not args.pid:
            parser.error(f"--{flag} needs --pid: the processes to look at (e.g. --{flag} --pid 1234)")
        if args.replay:
            parser.error(f"--{flag} looks at running processes: it does not go with --replay")
        if args.csv:
            parser.error(f"--{flag} goes with --json or the table, not --csv")
    if args.stacks and args.no_bpf:
        parser.error("--stacks needs the eBPF tracer: it does not go with --no-bpf")


def run_once(args: argparse.Namespace) -> int:
    from memwatch.headless import absent_pids, collect_once, parse_time, render

    at = since = None
    try:
        if args.at is not None:
            at = parse_time(args.at)
        if args.since is not None:
            since = parse_time(args.since)
    except ValueError as exc:
        return _fail(str(exc), 2)
    source = _replay_source(args.replay) if args.replay else _live_source(args)
    if at is not None and (outside := _outside_replay(source, args.at, at)) is not None:
        asyncio.run(source.close())
        return _fail(outside)
    collected = asyncio.run(collect_once(source, args.duration, at, since,
                                         stacks_for=args.pid if args.stacks else (),
                                         maps_for=args.pid if args.maps else ()))
    snap = collected.snapshot
    if not args.replay:
        say_if_tracer_off(snap)
    fmt = "json" if args.json else "csv" if args.csv else "table"
    top = args.top if args.top is not None else (-1 if args.pid and not args.group else 100)
    sys.stdout.write(render(snap, fmt, top=top, sort=args.sort, pids=args.pid, events=collected.events,
                            group=args.group, looked=collected.looked))
    sys.stdout.flush()
    missing = absent_pids(snap, args.pid, collected.events)
    for line in (*collected.looked.problems, *missing):
        print(f"memwatch: {line}", file=sys.stderr)
    stacks_off = args.stacks and not snap.tracer.enabled
    return 1 if missing or stacks_off or collected.looked.missing else 0


def _outside_replay(source: SnapshotSource, text: str, at: float) -> str | None:
    """Why --at names no frame of the replayed recording, or None when it names one."""
    from memwatch.headless import outside_recording
    from memwatch.sources.replay import ReplaySource

    if not isinstance(source, ReplaySource):
        return None
    first, last = source.time_span
    return outside_recording(text, at, first, last)


def _replay_source(path: Path) -> SnapshotSource:
    from memwatch.sources.replay import ReplaySource

    return ReplaySource.from_file(path)


NOT_A_TERMINAL = ("the dashboard draws on a terminal and standard output is not one; to write to a file or a "
                  "pipe use --once (with --json or --csv)")


def run_dashboard(args: argparse.Namespace) -> int:
    if not sys.stdout.isatty():
        # checked before the source opens: nothing is traced, no escape codes land in the file
        return _fail(NOT_A_TERMINAL, 2)
    from memwatch.ui.app import run_dashboard as run_app

    settings = _settings_file(args.config)
    kw = dashboard_options(args, settings.settings)
    source = _replay_source(args.replay) if args.replay else _live_source(args, stacks_on_demand=True)
    return run_app(source, settings=settings, **kw)


def _settings_file(path: Path | None) -> SettingsFile:
    """The dashboard's settings file; one that cannot be used is said on stderr (it stays there
    after the dashboard leaves the screen) and again in the dashboard."""
    from memwatch.settings import SettingsFile, default_path
    from memwatch.ui.app import theme_names

    settings = SettingsFile(path if path is not None else default_path(), themes=theme_names())
    if settings.problem is not None:
        print(f"memwatch: {settings.problem}; using the defaults, and the file is left as it is", file=sys.stderr)
    return settings


def dashboard_options(args: argparse.Namespace, saved: Settings) -> dict[str, Any]:
    """What the dashboard starts with: a flag when given, else the settings file, else the default.
    The file's direction goes with the file's sort only (``--sort pid`` takes PID's own direction,
    not the direction saved for another column). Sets ``args.interval`` for the live source."""
    from memwatch.fields import DEFAULT_COLUMNS

    if args.interval is None:
        args.interval = saved.interval if saved.interval is not None else DEFAULT_INTERVAL_S
    kw: dict[str, Any] = {
        "top": args.top, "pids": tuple(args.pid),
        "sort": args.sort or saved.sort or "rss",
        # None: the sort field's own direction (--sort pid opens low to high, as --once ranks)
        "descending": saved.descending if args.sort is None else None,
        "columns": saved.columns or DEFAULT_COLUMNS,
        "human": bool(saved.human),
    }
    theme = args.theme if args.theme is not None else saved.theme
    if theme is not None:
        kw["theme"] = theme
    return kw


def run_record(argv: Sequence[str]) -> int:
    from memwatch.recording import record

    args = build_record_parser().parse_args(argv)
    _setup_logging(args.verbose, dashboard=False)
    source = _live_source(args)
    before = _frames_in(args.file)
    written = 0

    def on_frame(snapshot: Snapshot) -> None:
        nonlocal written
        written += 1
        if written == 1:
            say_if_tracer_off(snapshot)

    async def main() -> int:
        task = asyncio.ensure_future(record(source, args.file, args.duration, on_frame=on_frame))
        _stop_on_signals(task)
        try:
            return await task
        except asyncio.CancelledError:
            # a frame whose write was under way still got written, but never reached on_frame
            after = _frames_in(args.file)
            return written if before is None or after is None else after - before

    frames = asyncio.run(main())
    print(f"memwatch: recorded {frames} frames to {args.file}", file=sys.stderr)
    return 0


def _frames_in(path: Path) -> int | None:
    """Frames a recording holds (0 before it exists), to count what one run added; None when
    it cannot be read, which the recorder then explains."""
    from memwatch.recording import Recording, RecordingError

    if not path.exists():
        return 0
    try:
        with Recording.open(path) as recording:
            return len(recording)
    except (RecordingError, OSError):
        return None


def _stop_on_signals(task: asyncio.Future[int]) -> None:
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)


def run_serve(argv: Sequence[str]) -> int:
    from memwatch.exporter import serve

    args = build_serve_parser().parse_args(argv)
    _setup_logging(args.verbose, dashboard=False)
    source = _live_source(args, recent_events=False)
    top = args.top if args.top is not None else 100
    return asyncio.run(serve(source, listen=args.listen, top=top, pids=tuple(args.pid), sort=args.sort or "rss",
                             top_cgroups=args.top_cgroups, cgroups=tuple(args.cgroup), on_first=say_if_tracer_off))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _raise_file_limit()
    _tune_malloc()
    try:
        if argv and argv[0] == "record":
            return run_record(argv[1:])
        if argv and argv[0] == "serve":
            return run_serve(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.once and (args.json or args.csv or args.at or args.duration is not None):
            parser.error("--json, --csv, --duration and --at go with --once")
        if (args.at or args.since) and not args.replay:
            parser.error("--at and --since go with --replay")
        if args.since and not args.once:
            parser.error("--since goes with --once")
        _check_group(parser, args)
        _check_looking(parser, args)
        if args.theme is not None and not args.once:
            _check_theme(parser, args.theme)
        _setup_logging(args.verbose, dashboard=not args.once)
        if args.once:
            if args.config is not None:
                parser.error("--config is the dashboard's settings file; --once does not read it")
            if args.interval is None:
                args.interval = DEFAULT_INTERVAL_S
            return run_once(args)
        return run_dashboard(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # conditions a user can meet get a sentence, not a traceback
        from memwatch.errors import user_error_message

        message = user_error_message(exc)
        if message is None:
            raise
        return _fail(message)
