"""What the node simulations in tests/live share: Slurm jobs in generated cgroups, each with one
process using a steady number of CPU-seconds per second, and the JSON a run prints."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.live.snapshot import JobsSnapshot, Snapshot
from tests.support.cgroups import GeneratedCgroups, fake_process

Jobs = Mapping[str, tuple[int, float]]
"""Job id -> its process's pid, and the CPU-seconds it uses per second."""
MEMORY_BYTES = 1 << 30
START = 1_714_521_600.0
"""Where the simulations' fake clock starts."""


def node_arguments(doc: str | None, argv: list[str] | None) -> argparse.Namespace:
    """ROOT (the generated trees), LEDGER and --state (the fake library's state file)."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("root", type=Path)
    parser.add_argument("ledger", type=Path)
    parser.add_argument("--state", type=Path, required=True, help="the fake library's state file")
    return parser.parse_args(argv)


def start_jobs(jobs: Jobs, procfs_root: Path, cgroups: GeneratedCgroups) -> None:
    """A v1 cgroup per job, and its process in the generated procfs."""
    for job_id, (pid, _) in jobs.items():
        cgroups.v1(f"slurm/uid_0/job_{job_id}", cpu_ns=0, memory_bytes=MEMORY_BYTES)
        fake_process(procfs_root, pid, f"4:cpuacct:/slurm/uid_0/job_{job_id}/step_0\n0::/\n".encode())


def run_jobs(jobs: Jobs, cgroups: GeneratedCgroups, second: int) -> None:
    """Each job's CPU time `second` seconds in."""
    for job_id, (_, cpu_s) in jobs.items():
        cgroups.v1(f"slurm/uid_0/job_{job_id}", cpu_ns=round(second * cpu_s * 1e9), memory_bytes=MEMORY_BYTES)


def run_json(sources: Any, snapshot: Snapshot, accounted: JobsSnapshot, **more: Any) -> str:
    """What a run prints: the node's energy rows, each job's energy by component, the unattributed
    energy by component, which collectors were up at the end; and `more`."""
    return json.dumps(
        {
            "sources": sources,
            "energy": [[r.component, r.device, r.source, r.energy_j] for r in snapshot.energy],
            "jobs": {s.key.job_id: dict(s.energy_j) for s in accounted.jobs},
            "unattributed": dict(accounted.unattributed_j),
            "up": dict(snapshot.collectors_up),
            **more,
        }
    )
