#!/usr/bin/env python3
"""What energy windows cost, in one run:

- a window's begin/end round trip over the local socket, against a real `greenai agent` (estimate
  mode): the caller's wall time per round trip (agent.client.Monitor) and the agent's CPU time per
  round trip (psutil on the agent's process, less its CPU over as long without requests; the median
  of 5 batches);
- the sampling cost of 1,000 open windows: the accountant's interval with 1,000 windows open over
  100 jobs (10 each), against the same interval with none, in this process on generated cgroups:
  two accountants on the same scans, taking turns to go first.

Floors: a round trip at most 2 ms of the caller's wall time and 0.5 ms of the agent's CPU; 1,000 open
windows at most 1 ms more per sample. Prints JSON; exits 1 when a floor is missed.
Run from anywhere: python3 benchmarks/windows.py [--round-trips N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.client import Monitor  # noqa: E402
from agent.live.accounting import Accountant  # noqa: E402
from agent.live.snapshot import Snapshot  # noqa: E402
from agent.live.windows import WindowBook  # noqa: E402
from collectors.jobs.cgroups import JobDiscovery  # noqa: E402
from collectors.workloads import JobKey  # noqa: E402
from tests.support.cgroups import GeneratedCgroups, fake_process  # noqa: E402
from tests.support.clock import FakeClock  # noqa: E402
from tests.support.processes import AgentProcess, wait_for  # noqa: E402
from tests.support.procfs import FakeProcfs  # noqa: E402

FLOORS = {"caller_wall_ms": 2.0, "agent_cpu_ms": 0.5, "open_windows_extra_ms": 1.0}
"""Per round trip: the caller's median wall time, the agent's CPU; per sample: 1,000 windows' cost."""
JOBS = 100
BATCHES = 5
"""Round trips are measured in batches, each against an equal stretch without requests (the agent
samples meanwhile); the median batch is the figure, so that a burst of other load does not decide it."""
WINDOWS = 1000


def round_trips(count: int) -> dict[str, float]:
    """Begin and end `count` windows against a real agent; the caller's wall and the agent's CPU."""
    with tempfile.TemporaryDirectory(prefix="greenai-bench-") as tmp:
        root = Path(tmp)
        sock = root / "run" / "agent.sock"
        config = root / "agent.yaml"
        config.write_text(f"ledger: {{path: '{root / 'l.db'}'}}\napi: {{socket: '{sock}'}}\n")
        with AgentProcess(["--config", str(config), "--interval", "1"]) as agent:
            agent.wait_ready()
            wait_for(sock.exists, 10, "the local socket")
            proc = psutil.Process(agent.proc.pid)
            monitor = Monitor(str(sock))
            for i in range(20):  # warm up: connections, imports, the first window of the owner
                monitor.begin_window(f"warm-{i}")
                monitor.end_window(f"warm-{i}")
            walls: list[float] = []
            costs: list[float] = []
            for batch in range(BATCHES):  # each batch of round trips against as long a stretch without
                started, cpu0 = time.monotonic(), sum(proc.cpu_times()[:2])
                for i in range(count):
                    t = time.perf_counter()
                    monitor.begin_window(f"w-{batch}-{i}")
                    monitor.end_window(f"w-{batch}-{i}")
                    walls.append(time.perf_counter() - t)
                elapsed, busy = time.monotonic() - started, sum(proc.cpu_times()[:2]) - cpu0
                idle0 = sum(proc.cpu_times()[:2])
                time.sleep(elapsed)
                idle = sum(proc.cpu_times()[:2]) - idle0
                costs.append(max(0.0, busy - idle) / count)
            agent.stop()
    return {
        "round_trips": count * BATCHES,
        "caller_wall_ms_median": statistics.median(walls) * 1000,
        "caller_wall_ms_p90": statistics.quantiles(walls, n=10)[-1] * 1000,
        "agent_cpu_ms_per_round_trip": statistics.median(costs) * 1000,
        "agent_cpu_ms_per_batch": [c * 1000 for c in costs],
    }


def discovery(procfs: Path, cgroupfs: Path, clock: FakeClock) -> JobDiscovery:
    return JobDiscovery(procfs, cgroupfs, "n", clock, environ_fallback=False)


def open_windows_cost(samples: int) -> dict[str, float]:
    """The accountant's CPU per interval with 200 jobs, with and without 1,000 open windows."""
    with tempfile.TemporaryDirectory(prefix="greenai-bench-") as tmp:
        root = Path(tmp)
        clock = FakeClock(1_000.0)
        procfs = FakeProcfs(root / "proc", threads=64)
        cgroups = GeneratedCgroups(root / "cg")
        keys = [JobKey("slurm", str(1000 + i)) for i in range(2 * JOBS)]
        for i, key in enumerate(keys):
            cgroups.v1(f"slurm/uid_0/job_{key.job_id}", cpu_ns=0, memory_bytes=1 << 30)
            fake_process(
                procfs.root, 10_000 + i, f"4:cpuacct:/slurm/uid_0/job_{key.job_id}/step_0\n".encode()
            )
        books = {"none": WindowBook(clock), "open": WindowBook(clock)}
        accountants = {
            label: Accountant(
                JobDiscovery(procfs.root, cgroups.root, "n", clock, environ_fallback=False),
                clock,
                windows=book,
            )
            for label, book in books.items()
        }
        for n in range(WINDOWS):
            books["open"].begin(keys[n % JOBS], f"w{n}")
        cpu = dict.fromkeys(books, 0.0)
        for second in range(samples + 2):  # both accountants on the same scan, alternately first
            clock.advance(1.0)
            procfs.run(1.0, 0.5)
            for i, key in enumerate(keys):
                cgroups.v1(f"slurm/uid_0/job_{key.job_id}", cpu_ns=second * 10**8 * (1 + i % 3))
            energy = {("cpu", "package-0", "rapl"): 200.0, ("dram", "package-0", "rapl"): 20.0}
            sample = Snapshot(time=clock(), samples=second, interval_s=1.0, interval_j=energy)
            for label in sorted(books, reverse=second % 2 == 1):
                t = time.process_time()
                accountants[label].account(sample)
                if second >= 2:
                    cpu[label] += time.process_time() - t
        figures = {label: seconds * 1000 / samples for label, seconds in cpu.items()}
        assert len(books["open"].open_windows(keys[0])) == WINDOWS // JOBS
    return {
        "jobs": 2 * JOBS,
        "open_windows": WINDOWS,
        "sample_ms_without_windows": figures["none"],
        "sample_ms_with_windows": figures["open"],
        "open_windows_extra_ms_per_sample": figures["open"] - figures["none"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=400, help="per batch (default 400)")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    figures: dict[str, object] = {
        "round_trip": round_trips(args.round_trips),
        "open_windows": open_windows_cost(args.samples),
    }
    measured = {
        "caller_wall_ms": figures["round_trip"]["caller_wall_ms_median"],  # type: ignore[index]
        "agent_cpu_ms": figures["round_trip"]["agent_cpu_ms_per_round_trip"],  # type: ignore[index]
        "open_windows_extra_ms": figures["open_windows"]["open_windows_extra_ms_per_sample"],  # type: ignore[index]
    }
    figures["floors"] = FLOORS
    figures["checks"] = {name: measured[name] <= floor for name, floor in FLOORS.items()}
    figures["meets_floors"] = all(figures["checks"].values())  # type: ignore[attr-defined]
    print(json.dumps(figures, indent=2))
    return 0 if figures["meets_floors"] else 1


if __name__ == "__main__":
    sys.exit(main())
