"""The writer's job records across many flushes: what one flush prepares for the next (each job's
columns, the metadata of its last report) never keeps news from the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger.read import open_readonly
from agent.ledger.writer import Ledger
from collectors.workloads import JobInfo, JobKey
from tests.support.clock import FakeClock

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
CPU = ("cpu", "rapl")
JOBS = [JobKey("slurm", str(i)) for i in range(50)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    led = Ledger(path, "node1", FakeClock(T0), background=False)
    yield led
    led.close()


def record(ledger: Ledger, t: float, infos: dict[JobKey, JobInfo]) -> None:
    ledger.record(t, {key: (info, {CPU: 1.0}) for key, info in infos.items()}, {}, {CPU: 1.0 * len(infos)})


def stored(path: Path) -> dict[str, dict[str, object]]:
    return {s.job_id: s.as_dict() for s in open_readonly(path).jobs()}


def test_metadata_that_changes_between_flushes_is_written_each_time(ledger: Ledger, path: Path) -> None:
    infos = {key: JobInfo(user="alice", uid=1000, name=f"job{key.job_id}") for key in JOBS}
    t = T0
    for flush in range(3):
        for key in JOBS[:10]:  # news for a few of them: a Slurm look-up, a declaration read
            infos[key] = JobInfo(user="alice", uid=1000, name=f"run{flush}", project=f"p{flush}")
        for _ in range(5):
            t += 1.0
            record(ledger, t, infos)
        assert ledger.flush()
        jobs = stored(path)
        assert {jobs[k.job_id]["name"] for k in JOBS[:10]} == {f"run{flush}"}
        assert {jobs[k.job_id]["project"] for k in JOBS[:10]} == {f"p{flush}"}
        assert {jobs[k.job_id]["name"] for k in JOBS[10:]} == {f"job{k.job_id}" for k in JOBS[10:]}
        assert {jobs[k.job_id]["energy_joules"]["cpu"] for k in JOBS} == {5.0 * (flush + 1)}  # type: ignore[index]
        assert len(jobs) == len(JOBS)


def test_the_same_metadata_reported_anew_or_emptier_keeps_what_was_written(
    ledger: Ledger, path: Path
) -> None:
    key = JOBS[0]
    full = JobInfo(
        user="bob", uid=7, name="train", account="ml", partition="gpu", gpu_model="H100", gpu_count=2
    )
    ledger.job_seen(key, full, T0)
    record(ledger, T0 + 1, {key: full})
    assert ledger.flush()
    record(ledger, T0 + 2, {key: JobInfo(user="bob", uid=7, name="train", account="ml", partition="gpu")})
    record(ledger, T0 + 3, {key: JobInfo()})  # a job the accountant knows nothing of any more
    assert ledger.flush()
    job = stored(path)["0"]
    assert (job["user"], job["name"], job["account"], job["partition"]) == ("bob", "train", "ml", "gpu")
    assert job["hardware"] == {"gpu_model": "H100", "gpu_count": 2, "cpu_model": None}
    assert job["end"] is None and job["energy_joules"]["cpu"] == 3.0  # type: ignore[index]


def test_a_job_id_reused_after_its_end_starts_a_new_run_among_jobs_that_go_on(
    ledger: Ledger, path: Path
) -> None:
    infos = {key: JobInfo(user="alice") for key in JOBS[:5]}
    ledger.job_seen(JOBS[0], infos[JOBS[0]], T0)
    record(ledger, T0 + 1, infos)
    assert ledger.flush()
    ledger.job_ended(JOBS[0], T0 + 2)
    record(ledger, T0 + 2, {k: i for k, i in infos.items() if k != JOBS[0]})
    assert ledger.flush()
    reused = JobInfo(user="carol")
    ledger.job_seen(JOBS[0], reused, T0 + 3600)  # long after its end: another job with the id
    record(ledger, T0 + 3601, {**infos, JOBS[0]: reused})
    assert ledger.flush()
    runs = [s for s in open_readonly(path).jobs() if s.job_id == "0"]
    assert sorted((s.run, s.info.user, s.running) for s in runs) == [(1, "alice", False), (2, "carol", True)]
    others = [s for s in open_readonly(path).jobs() if s.job_id != "0"]
    assert len(others) == 4 and all(s.running and s.run == 1 for s in others)
