"""bench/bench_groups.py, as the README gives it: it runs, says what it measured, and leaves no
cgroup or process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memwatch.cgroups import find_memory_hierarchy

ROOT = Path(__file__).resolve().parent.parent


def test_bench_groups_runs_and_cleans_up() -> None:
    h = find_memory_hierarchy()
    if os.geteuid() != 0 or h is None or not h.memory:
        pytest.skip("needs root and a memory cgroup hierarchy")
    res = subprocess.run([sys.executable, "bench/bench_groups.py"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^200 cgroups \(v[12]\), 600 processes in them, 1000 extra in all", res.stdout, re.M)
    ratios = [float(r) for r in re.findall(r"([0-9.]+)x \(median\)", res.stdout)]
    assert len(ratios) == 2 and all(r > 0.5 for r in ratios), res.stdout
    mount = os.fsdecode(h.mount)
    assert not [d for d in os.listdir(mount) if d.startswith("memwatch-bench-")], "every cgroup it made is gone"
