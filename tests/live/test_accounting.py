"""The accountant on generated cgroups and procfs with a fake clock: exact shares, jobs that end,
the grace period, the cap on job series, and the invariant on every interval."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.live.accounting import Accountant
from agent.live.sampler import Sampler
from agent.live.snapshot import JobsSnapshot, Snapshot
from collectors.estimate import EstimateCollector
from collectors.jobs.cgroups import JobDiscovery
from collectors.workloads import JobKey
from tests.support.cgroups import GeneratedCgroups
from tests.support.clock import FakeClock
from tests.support.procfs import FakeProcfs

A, B, C = (JobKey("slurm", str(i)) for i in (1, 2, 3))
CPU_S_PER_S = {A: 2.0, B: 1.0, C: 0.5}  # of the node's 8 CPUs at 50%: 4 CPU-seconds a second


class Node:
    """A generated node: procfs, cgroups, and the real estimate, discovery, sampler and accountant."""

    def __init__(self, root: Path, grace_seconds: float, max_job_series: int) -> None:
        self.clock = FakeClock()
        self.procfs = FakeProcfs(root / "proc", threads=8)
        self.cgroups = GeneratedCgroups(root / "cg")
        self.cpu_ns = dict.fromkeys(CPU_S_PER_S, 0)
        self.running = set(CPU_S_PER_S)
        self._write()
        estimate = EstimateCollector(self.procfs.root, self.clock)
        probe = estimate.probe()
        assert estimate.model is not None
        self.model = estimate.model
        self.sampler = Sampler([estimate], self.clock, probe.devices)
        discovery = JobDiscovery(
            self.procfs.root, self.cgroups.root, "node", self.clock, environ_fallback=False
        )
        self.accountant = Accountant(
            discovery,
            self.clock,
            probe.devices,
            idle_policy="node",
            grace_seconds=grace_seconds,
            max_job_series=max_job_series,
        )

    def _write(self) -> None:
        for key in self.running:
            self.cgroups.v1(f"slurm/uid_0/job_{key.job_id}", cpu_ns=self.cpu_ns[key], memory_bytes=1 << 20)

    def end(self, key: JobKey) -> None:
        self.running.discard(key)
        for hierarchy in ("cpuacct", "memory"):
            shutil.rmtree(self.cgroups.root / hierarchy / "slurm" / "uid_0" / f"job_{key.job_id}")

    def second(self) -> tuple[Snapshot, JobsSnapshot]:
        """One second at 50% utilisation, the jobs using their CPU; then one sample."""
        self.procfs.run(1.0, 0.5)
        for key in self.running:
            self.cpu_ns[key] += int(CPU_S_PER_S[key] * 1e9)
        self._write()
        self.clock.advance(1.0)
        sample = self.sampler.tick()
        jobs = self.accountant.account(sample)
        for component in {row.component for row in sample.energy}:
            charged = sum(s.energy_j.get(component, 0.0) for s in jobs.jobs)
            rest = jobs.unexported_j.get(component, 0.0) + jobs.unattributed_j.get(component, 0.0)
            assert charged + rest == pytest.approx(sample.energy_j(component), rel=1e-9)
        return sample, jobs


def _cpu(jobs: JobsSnapshot) -> dict[JobKey, float]:
    return {s.key: s.energy_j.get("cpu", 0.0) for s in jobs.jobs}


def test_active_cpu_energy_split_exactly_by_cpu_time(tmp_path: Path) -> None:
    node = Node(tmp_path, grace_seconds=300, max_job_series=10)
    node.sampler.tick()  # baselines
    node.accountant.account(node.sampler.snapshot)
    node.second()  # the jobs' first counters are their baseline
    before = _cpu(node.accountant.snapshot)
    for _ in range(5):
        _, jobs = node.second()
    active_w = node.model.cpu_power_w(0.5) - node.model.cpu_idle_w
    got = {key: joules - before.get(key, 0.0) for key, joules in _cpu(jobs).items()}
    for key, cpu_s in CPU_S_PER_S.items():
        assert got[key] == pytest.approx(5 * active_w * cpu_s / 4.0, rel=1e-6)


def test_ended_jobs_leave_after_the_grace_period_and_their_energy_stays_counted(tmp_path: Path) -> None:
    node = Node(tmp_path, grace_seconds=3, max_job_series=10)
    for _ in range(4):
        node.second()
    node.end(B)
    _, jobs = node.second()
    ended = {s.key: s.ended for s in jobs.jobs}
    assert ended[B] == node.clock.now and ended[A] is None
    b_energy = _cpu(jobs)[B]
    for _ in range(3):
        _, jobs = node.second()
        assert B in _cpu(jobs) and _cpu(jobs)[B] == b_energy  # ended: its total no longer moves
    _, jobs = node.second()  # more than 3 s after it ended
    assert B not in _cpu(jobs)
    assert jobs.unexported_j["cpu"] == pytest.approx(b_energy, rel=1e-12)
    assert jobs.running == 2


def test_jobs_beyond_max_job_series_are_summed_not_exported(tmp_path: Path) -> None:
    node = Node(tmp_path, grace_seconds=300, max_job_series=2)
    for _ in range(5):
        _, jobs = node.second()
    assert len(jobs.jobs) == 2
    assert jobs.running == 3
    assert jobs.unexported_j.get("cpu", 0.0) > 0  # the third job's energy, still counted
