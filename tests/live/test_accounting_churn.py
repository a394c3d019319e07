"""The accountant as jobs come, go and come back: what it keeps from one sample to the next (each job's
published series, the running and exported counts, the jobs ended, the work classifier's memory) always
says what a recount from scratch would.

Generated cgroups and procfs with a fake clock, the real estimate collector, sampler, discovery,
work classifier and ledger.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.config.work import parse_rules
from agent.ledger.read import open_readonly
from agent.ledger.writer import Ledger
from agent.live.accounting import Accountant
from agent.live.sampler import Sampler
from agent.live.snapshot import JobsSnapshot
from agent.live.work import WorkClassifier
from collectors.estimate import EstimateCollector
from collectors.jobs.cgroups import JobDiscovery
from collectors.workloads import JobKey
from tests.support.cgroups import GeneratedCgroups, fake_process
from tests.support.clock import FakeClock
from tests.support.procfs import FakeProcfs

CPU_S_PER_S = 0.5
MEMORY_BYTES = 1 << 28


def slurm(job_id: int) -> JobKey:
    return JobKey("slurm", str(job_id))


class Node:
    """A node of 8 CPUs at 50% whose Slurm jobs the test starts and ends, each using 0.5 CPU-s a second."""

    def __init__(self, root: Path, grace_seconds: float = 300, max_job_series: int = 100) -> None:
        self.clock = FakeClock()
        self.procfs = FakeProcfs(root / "proc", threads=8)
        self.cgroups = GeneratedCgroups(root / "cg")
        self.cpu_ns: dict[int, int] = {}
        estimate = EstimateCollector(self.procfs.root, self.clock)
        probe = estimate.probe()
        self.sampler = Sampler([estimate], self.clock, probe.devices)
        self.discovery = JobDiscovery(
            self.procfs.root, self.cgroups.root, "node", self.clock, environ_fallback=False
        )
        self.ledger = Ledger(root / "ledger.db", "node", self.clock, background=False)
        rules = parse_rules([{"project": "default"}])
        self.work = WorkClassifier(rules, str(self.procfs.root), self.discovery.job_pids)
        self.accountant = Accountant(
            self.discovery,
            self.clock,
            probe.devices,
            ledger=self.ledger,
            grace_seconds=grace_seconds,
            max_job_series=max_job_series,
            work=self.work,
        )
        self.ended: dict[JobKey, float] = {}
        """The jobs' totals when they ended, as published then."""

    def start(self, job_id: int, project: str = "") -> None:
        self.cpu_ns[job_id] = 0
        path = self.cgroups.v1(f"slurm/uid_0/job_{job_id}", cpu_ns=0, memory_bytes=MEMORY_BYTES)
        pid = 10_000 + job_id
        environ = f"GREENAI_PROJECT={project}\0".encode() if project else b""
        fake_process(self.procfs.root, pid, f"4:cpuacct:/slurm/uid_0/job_{job_id}\n".encode(), environ)
        (path / "cgroup.procs").write_text(f"{pid}\n")

    def end(self, job_id: int) -> None:
        del self.cpu_ns[job_id]
        for hierarchy in ("cpuacct", "memory"):
            shutil.rmtree(self.cgroups.root / hierarchy / "slurm" / "uid_0" / f"job_{job_id}")
        shutil.rmtree(self.procfs.root / str(10_000 + job_id))

    def second(self) -> JobsSnapshot:
        """One second of the running jobs' work, one sample; checks what a recount would say."""
        self.procfs.run(1.0, 0.5)
        for job_id in self.cpu_ns:
            self.cpu_ns[job_id] += int(CPU_S_PER_S * 1e9)
            self.cgroups.v1(
                f"slurm/uid_0/job_{job_id}", cpu_ns=self.cpu_ns[job_id], memory_bytes=MEMORY_BYTES
            )
        self.clock.advance(1.0)
        sample = self.sampler.tick()
        jobs = self.accountant.account(sample)
        running = {slurm(i) for i in self.cpu_ns}
        assert jobs.running == sum(1 for s in jobs.jobs if s.ended is None) + self._unexported_running(jobs)
        assert {s.key for s in jobs.jobs if s.ended is None} <= running
        for series in jobs.jobs:
            if series.ended is not None:  # ended: its total no longer moves
                self.ended.setdefault(series.key, sum(series.energy_j.values()))
                assert sum(series.energy_j.values()) == self.ended[series.key]
            else:
                self.ended.pop(series.key, None)
        for component in {row.component for row in sample.energy}:
            charged = sum(s.energy_j.get(component, 0.0) for s in jobs.jobs)
            rest = jobs.unexported_j.get(component, 0.0) + jobs.unattributed_j.get(component, 0.0)
            assert charged + rest == pytest.approx(sample.energy_j(component), rel=1e-9)
        return jobs

    def _unexported_running(self, jobs: JobsSnapshot) -> int:
        shown = {s.key for s in jobs.jobs}
        return sum(1 for i in self.cpu_ns if slurm(i) not in shown)


def test_a_job_back_before_its_grace_ends_runs_again_and_its_record_is_open_again(tmp_path: Path) -> None:
    node = Node(tmp_path, grace_seconds=10)
    for i in (1, 2, 3):
        node.start(i)
    for _ in range(3):
        jobs = node.second()
    assert jobs.running == 3
    node.end(2)
    for _ in range(3):
        jobs = node.second()
    series = {s.key: s for s in jobs.jobs}
    assert series[slurm(2)].ended is not None and jobs.running == 2
    node.ledger.flush()
    assert {j.job_id: j.running for j in open_readonly(node.ledger.path).jobs()}["2"] is False

    node.start(2)  # back, as discovery missing it for a few scans would look
    total = sum(series[slurm(2)].energy_j.values())
    for _ in range(3):
        jobs = node.second()
    again = {s.key: s for s in jobs.jobs}[slurm(2)]
    assert again.ended is None and jobs.running == 3
    assert sum(again.energy_j.values()) > total  # charged again
    node.ledger.flush()
    assert {j.job_id: j.running for j in open_readonly(node.ledger.path).jobs()}["2"] is True


def test_a_series_freed_by_a_job_past_its_grace_goes_to_the_next_new_job(tmp_path: Path) -> None:
    node = Node(tmp_path, grace_seconds=2, max_job_series=2)
    for i in (1, 2, 3):
        node.start(i)
        jobs = node.second()  # one at a time: 1 and 2 get the series, 3 does not
    assert {s.key for s in jobs.jobs} == {slurm(1), slurm(2)} and jobs.running == 3
    node.end(1)
    for _ in range(4):  # past the grace period: job 1 leaves /metrics
        jobs = node.second()
    assert {s.key for s in jobs.jobs} == {slurm(2)} and jobs.running == 2
    node.start(4)
    for _ in range(2):
        jobs = node.second()
    assert {s.key for s in jobs.jobs} == {slurm(2), slurm(4)}  # the freed series; 3 still not shown
    assert jobs.running == 3
    assert jobs.unexported_j.get("cpu", 0.0) > 0  # job 3's energy and job 1's, still counted


def test_many_jobs_coming_and_going_keep_every_count_right(tmp_path: Path) -> None:
    node = Node(tmp_path, grace_seconds=3, max_job_series=6)
    started = 0
    for second in range(24):
        if second % 2 == 0:
            node.start(started)
            started += 1
        if second % 3 == 2:
            node.end(min(node.cpu_ns))
        if second == 15:  # one ends and one starts in the same second: as many jobs as before
            node.end(max(node.cpu_ns))
            node.start(started)
            started += 1
        jobs = node.second()  # each second checks the counts and totals against a recount
        assert jobs.running == len(node.cpu_ns)
    assert any(s.ended is not None for s in jobs.jobs)


def test_a_job_that_leaves_and_comes_back_is_classified_afresh(tmp_path: Path) -> None:
    node = Node(tmp_path, grace_seconds=60)
    node.start(1, project="vision")
    node.start(2)
    for _ in range(3):
        jobs = node.second()
    projects = {s.key: s.info.project for s in jobs.jobs}
    assert projects == {slurm(1): "vision", slurm(2): "default"}
    node.end(1)
    jobs = node.second()  # the job is gone: what the classifier knew of it goes too
    node.start(1, project="speech")  # the id again, with another declaration
    for _ in range(2):
        jobs = node.second()
    assert {s.key: s.info.project for s in jobs.jobs}[slurm(1)] == "speech"
