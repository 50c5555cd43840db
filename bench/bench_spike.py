"""memwatch serve's memory across a spike of short-lived processes: bounded, and given back.

Starts ``memwatch serve --interval 1`` (eBPF on as root; ``--no-bpf`` for /proc alone), scrapes
/metrics every 5 s as Prometheus would, lets it settle, then spawns ``--count`` (3,000) ``sleep``
processes that live 15-30 s. Prints serve's VmRSS at the settled baseline, its peak while they
live, and after they are gone (and after a second identical spike: a leak would grow again, a
high-water mark does not), each as a ratio to the baseline of the same run.

memwatch watches every process on the machine: someone else's burst during a run is measured
too. The bench counts the other processes every second and flags a run where they moved by more
than ``--quiet-limit``. For a fully isolated run on /proc alone, use a private pid namespace:
    unshare --pid --fork --mount-proc .venv/bin/python bench/bench_spike.py --no-bpf

Usage (as root): .venv/bin/python bench/bench_spike.py [--no-bpf] [--count 3000] [--after 30]

MEMWATCH_BENCH_SMOKE=1 (see bench/smoke.py: how tests/test_readme.py runs the README's command)
makes it --count 50 --settle 2 --after 2, with processes living 1-2 s: the same report, in seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

from smoke import SMOKE, smoke_defaults

ROOT = Path(__file__).resolve().parent.parent
SLEEP = "/bin/sleep"
LIFE_S = (1.0, 2.0) if SMOKE else (15.0, 30.0)
"""How long each process of a spike lives, from-to."""


def vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def other_processes(mine: set[int]) -> int:
    pids = [n for n in os.listdir("/proc") if n.isdigit()]
    return len(pids) - sum(1 for p in mine if os.path.exists(f"/proc/{p}"))


class Census(threading.Thread):
    """The range of the machine's other processes, sampled every second."""

    def __init__(self, mine: set[int]) -> None:
        super().__init__(daemon=True)
        self.mine, self.low, self.high = mine, 1 << 30, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            n = other_processes(self.mine)
            self.low, self.high = min(self.low, n), max(self.high, n)


def scrape_forever(url: str, stop: threading.Event) -> None:
    while not stop.wait(5.0):
        with suppress(OSError), urllib.request.urlopen(url, timeout=10) as r:
            r.read()


def spike(count: int, mine: set[int], rng: random.Random) -> None:
    """``count`` sleepers living LIFE_S; returns when every one is gone."""
    kids = [os.posix_spawn(SLEEP, [SLEEP, f"{rng.uniform(*LIFE_S):.2f}"], os.environ) for _ in range(count)]
    mine.update(kids)
    for pid in kids:
        with suppress(ChildProcessError):
            os.waitpid(pid, 0)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--no-bpf", action="store_true")
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--settle", type=float, default=20.0)
    p.add_argument("--after", type=float, default=30.0, help="seconds to wait once a spike is gone")
    p.add_argument("--quiet-limit", type=int, default=400)
    smoke_defaults(p, count=50, settle=2.0, after=2.0)
    args = p.parse_args()
    cmd = [sys.executable, "-m", "memwatch", "serve", "--listen", "127.0.0.1:0", "--interval", "1"]
    if args.no_bpf:
        cmd.append("--no-bpf")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    serve = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    stop = threading.Event()
    mine: set[int] = set()
    census = Census(mine)
    try:
        assert serve.stderr is not None
        url = None
        for line in serve.stderr:
            if m := re.search(r"metrics at (http://\S+/metrics)", line):
                url = m.group(1)
                break
        if url is None:
            print("serve did not start", file=sys.stderr)
            return 1
        threading.Thread(target=lambda: [None for _ in serve.stderr or ()], daemon=True).start()
        threading.Thread(target=scrape_forever, args=(url, stop), daemon=True).start()
        census.start()
        time.sleep(args.settle)
        base = vm_rss_kb(serve.pid)
        census.low, census.high = 1 << 30, 0
        rng = random.Random(1)
        peak = [base]

        def watch_peak() -> None:
            while not stop.wait(1.0):
                peak[0] = max(peak[0], vm_rss_kb(serve.pid))

        threading.Thread(target=watch_peak, daemon=True).start()
        spike(args.count, mine, rng)
        time.sleep(args.after)
        after = vm_rss_kb(serve.pid)
        spike(args.count, mine, rng)
        time.sleep(args.after)
        again = vm_rss_kb(serve.pid)
        mode = "/proc only" if args.no_bpf else "eBPF on"
        print(f"memwatch serve ({mode}), {args.count} processes living {LIFE_S[0]:g}-{LIFE_S[1]:g} s, twice:")
        print(f"  baseline  {base / 1024:6.1f} MB")
        print(f"  peak      {peak[0] / 1024:6.1f} MB   {peak[0] / base:.2f}x the baseline")
        print(f"  after     {after / 1024:6.1f} MB   {after / base:.2f}x")
        print(f"  2nd spike {again / 1024:6.1f} MB   {again / base:.2f}x  ({(again - after) / 1024:+.1f} MB: "
              "a leak would add as much again)")
        spread = census.high - census.low
        if spread > args.quiet_limit:
            print(f"  DISTURBED: the machine's other processes ranged over {spread}; do not trust this run")
        return 0
    finally:
        stop.set()
        census.stop.set()
        serve.terminate()
        try:
            serve.wait(20)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()


if __name__ == "__main__":
    sys.exit(main())
