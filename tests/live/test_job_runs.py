"""A Slurm job id used again an hour after its job ended is a new job, from the live path to the CLI:
the real Accountant on generated cgroups and procfs, a real Ledger, a fake clock, `greenai jobs`/`job`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.cli import main
from agent.ledger.writer import Ledger
from agent.live.accounting import Accountant
from agent.live.sampler import Sampler
from collectors.estimate import EstimateCollector
from collectors.jobs.cgroups import JobDiscovery
from tests.support.cgroups import GeneratedCgroups
from tests.support.clock import FakeClock
from tests.support.procfs import FakeProcfs

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
JOB = "slurm/uid_0/job_4242"


class Node:
    """Generated procfs and cgroups, the estimate, discovery, the accountant and a ledger it writes."""

    def __init__(self, root: Path) -> None:
        self.clock = FakeClock(T0)
        self.procfs = FakeProcfs(root / "proc", threads=8)
        self.cgroups = GeneratedCgroups(root / "cg")
        self.cpu_ns = 0
        estimate = EstimateCollector(self.procfs.root, self.clock)
        probe = estimate.probe()
        self.sampler = Sampler([estimate], self.clock, probe.devices)
        discovery = JobDiscovery(
            self.procfs.root, self.cgroups.root, "node1", self.clock, environ_fallback=False
        )
        self.ledger = Ledger(root / "ledger.db", "node1", self.clock, background=False)
        self.accountant = Accountant(
            discovery, self.clock, probe.devices, ledger=self.ledger, grace_seconds=300, cpu_model="Xeon"
        )
        self.accountant.account(self.sampler.tick())  # baselines

    def start_job(self) -> None:
        self.cpu_ns = 0  # a new job's cgroup counts from zero
        self.cgroups.v1(JOB, cpu_ns=0, memory_bytes=1 << 30)

    def end_job(self) -> None:
        for hierarchy in ("cpuacct", "memory"):
            shutil.rmtree(self.cgroups.root / hierarchy / JOB)

    def run(self, seconds: float, step: float = 1.0) -> None:
        """`seconds` at half load, the job (if any) using 2 CPUs; one sample and flush per `step`."""
        for _ in range(round(seconds / step)):
            self.procfs.run(step, 0.5)
            if (self.cgroups.root / "cpuacct" / JOB).exists():
                self.cpu_ns += int(2e9 * step)
                self.cgroups.v1(JOB, cpu_ns=self.cpu_ns, memory_bytes=1 << 30)
            self.clock.advance(step)
            self.accountant.account(self.sampler.tick())
            self.ledger.flush()  # as the ledger's thread would, every few seconds


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_a_job_id_reused_an_hour_later_is_a_second_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = Node(tmp_path)
    node.start_job()
    node.run(10)
    node.end_job()
    node.run(1)
    first_end = node.clock.now
    node.run(3600, step=60)  # an hour without it: the accountant forgets it after the grace period
    node.start_job()
    second_start = node.clock.now
    node.run(20)
    node.ledger.close()
    ledger = str(tmp_path / "ledger.db")

    listed = json.loads(cli(capsys, "jobs", "--ledger", ledger, "--json"))
    assert [(j["ref"], j["run"]) for j in listed] == [("slurm:4242", 1), ("slurm:4242#2", 2)]
    old, new = listed
    assert old["end"] is not None and new["running"] is True
    assert old["energy_kwh"] > 0 and new["energy_kwh"] > 0
    assert new["energy_kwh"] == pytest.approx(2 * old["energy_kwh"], rel=0.15)  # 20 s against 10 s
    table = cli(capsys, "jobs", "--ledger", ledger).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["4242", "4242#2"]

    latest = json.loads(cli(capsys, "job", "4242", "--ledger", ledger, "--json"))
    assert latest["run"] == 2 and latest["other_runs"] == ["slurm:4242#1"]
    assert latest["start"] == new["start"] and latest["end"] is None
    assert latest["hardware"]["cpu_model"] == "Xeon"
    text = cli(capsys, "job", "4242", "--ledger", ledger)
    assert text.startswith("job        slurm:4242#2\n")
    assert (
        "run        2 of 2 jobs with this id, the latest (`slurm:4242` names it); the other: slurm:4242#1"
        in text
    )

    first = json.loads(cli(capsys, "job", "slurm:4242#1", "--ledger", ledger, "--json"))
    assert first["run"] == 1 and first["other_runs"] == ["slurm:4242#2"]
    assert first["energy_kwh"] == old["energy_kwh"] and first["end"] == old["end"]
    assert first["end"] <= listed[1]["start"]
    assert (first_end, second_start) == (T0 + 11, T0 + 11 + 3600)
    assert "1 of 2 jobs with this id; the other: slurm:4242#2" in cli(
        capsys, "job", "slurm:4242#1", "--ledger", ledger
    )
