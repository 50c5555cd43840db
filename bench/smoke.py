"""MEMWATCH_BENCH_SMOKE=1: a bench does one short round of its usual work and prints its usual lines.

The README shows each bench as a command, and the README is a contract: tests/test_readme.py runs
every command it shows as written. A real run takes minutes; with this variable set, the benches
the README lists swap their defaults for small ones (options given on the command line still
win), so the test can check in seconds that each one still runs and still prints its ratios.
The figures of a smoke round are not measurements.
"""

from __future__ import annotations

import argparse
import os
import sys

SMOKE = os.environ.get("MEMWATCH_BENCH_SMOKE") == "1"


def smoke_defaults(parser: argparse.ArgumentParser, **defaults: object) -> None:
    """Under MEMWATCH_BENCH_SMOKE=1, ``defaults`` replace the parser's own; say so on stderr."""
    unknown = set(defaults) - {action.dest for action in parser._actions}
    if unknown:  # a misspelt name would leave the long default in place without a word
        raise ValueError(f"smoke defaults for options the bench does not have: {sorted(unknown)}")
    if not SMOKE:
        return
    parser.set_defaults(**defaults)
    print("MEMWATCH_BENCH_SMOKE=1: one short round; these figures are not measurements", file=sys.stderr)
