"""ProcessTrees on the real /proc: a process and its descendants, found in full every rescan and read
cheaply in between."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from collectors.jobs.trees import PROCESS, ProcessTrees
from collectors.workloads import JobKey
from tests.support.clock import FakeClock

BURN = (
    "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nsys.stdin.read()"
)
"""A child that burns 0.3 s of CPU, then waits for its stdin to close."""


def test_a_tree_counts_its_childrens_cpu_and_finds_new_ones_at_the_next_rescan() -> None:
    clock = FakeClock(0.0)
    trees = ProcessTrees(Path("/proc"), clock, rescan_seconds=5.0)
    me = os.getpid()
    key = JobKey(PROCESS, str(me))
    before = trees.usage(frozenset({me}))[key]
    assert me in before.pids
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE)
    try:
        clock.advance(1.0)  # within the rescan period: only the members found are read
        assert child.pid not in trees.usage(frozenset({me}))[key].pids
        clock.advance(5.0)  # a full pass: the child is found, with the CPU it burnt
        deadline = time.monotonic() + 20
        while True:
            found = trees.usage(frozenset({me}))[key]
            if child.pid in found.pids and found.cpu_ns - before.cpu_ns >= 0.25e9:
                break
            assert time.monotonic() < deadline, "the child's CPU never showed"
            clock.advance(5.0)
    finally:
        child.communicate(b"", timeout=30)
    gone = trees.usage(frozenset({999_999_999}))
    assert gone == {}
