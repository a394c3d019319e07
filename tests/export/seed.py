"""A small ledger with two jobs, for the tests that start an agent over it."""

from __future__ import annotations

from pathlib import Path

from agent.ledger.writer import Ledger
from agent.units import JOULES_PER_KWH
from collectors.workloads import JobInfo, JobKey

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
NODE = "node1"


def seed_ledger(path: Path) -> None:
    """slurm:4242 (alice, "train", account ml) used 2 kWh and ended; slurm:4243 is running."""
    ledger = Ledger(path, NODE, background=False)
    for key, start in ((JobKey("slurm", "4242"), T0), (JobKey("slurm", "4243"), T0 + 100)):
        info = JobInfo("alice", 1000, "train", "ml")
        ledger.job_seen(key, info, start)
        energy = {("cpu", "rapl"): 1.6 * JOULES_PER_KWH, ("gpu", "nvml"): 0.4 * JOULES_PER_KWH}
        ledger.record(start + 60, {key: (info, energy)}, {}, {})
    ledger.job_ended(JobKey("slurm", "4242"), T0 + 3600)
    ledger.close()


def agent_config(folder: Path, extra: str = "") -> Path:
    """An agent config over a seeded ledger in `folder`; `extra` is more YAML."""
    ledger = folder / "ledger.db"
    seed_ledger(ledger)
    config = folder / "agent.yaml"
    config.write_text(f"node_name: {NODE}\nledger: {{path: {ledger}}}\n{extra}")
    return config
