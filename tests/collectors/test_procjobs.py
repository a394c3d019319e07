"""The SLURM_JOB_ID fallback between full passes: known job processes read every sample, new ones
found at the next full pass, on a generated procfs and a fake clock."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from collectors.jobs.procjobs import EnvironJobs
from collectors.workloads import JobInfo, JobKey, JobUsage
from tests.support.cgroups import fake_process
from tests.support.clock import FakeClock

HZ = os.sysconf("SC_CLK_TCK")
JOB, OTHER = JobKey("slurm", "77"), JobKey("slurm", "78")


def environ_jobs(procfs: Path, clock: FakeClock | None) -> EnvironJobs:
    return EnvironJobs(str(procfs), lambda pid: None, lambda key, uid: JobInfo(uid=uid), clock, 5.0)


def process(procfs: Path, pid: int, job: str | None, cpu_ticks: int, start_ticks: int = 1000) -> None:
    environ = (f"SLURM_JOB_ID={job}\0" if job else "") + "HOME=/root\0"
    fake_process(procfs, pid, b"0::/\n", environ.encode(), start_ticks=start_ticks, cpu_ticks=cpu_ticks)


def by_key(usages: list[JobUsage]) -> dict[JobKey, JobUsage]:
    return {usage.key: usage for usage in usages}


def cpu_ns(ticks: int) -> int:
    return ticks * 1_000_000_000 // HZ


def test_a_new_job_process_is_found_at_the_next_full_pass_and_a_known_one_read_every_sample(
    tmp_path: Path,
) -> None:
    procfs, clock = tmp_path / "proc", FakeClock()
    process(procfs, 501, "77", cpu_ticks=100)
    process(procfs, 502, "77", cpu_ticks=50)
    process(procfs, 600, None, cpu_ticks=999)
    found = environ_jobs(procfs, clock)
    first = by_key(found.jobs())
    assert set(first) == {JOB}
    assert first[JOB].cpu_ns == cpu_ns(150) and first[JOB].pids == {501, 502}
    assert first[JOB].memory_bytes == 2 * 25 * os.sysconf("SC_PAGE_SIZE")

    # Between full passes: 501's CPU time is read each sample; 503 (job 77) and 504 (job 78) wait.
    process(procfs, 503, "77", cpu_ticks=40)
    process(procfs, 504, "78", cpu_ticks=7)
    for ticks, step in ((130, 1.0), (170, 3.9)):
        process(procfs, 501, "77", cpu_ticks=ticks)
        clock.advance(step)
        between = by_key(found.jobs())
        assert set(between) == {JOB}
        assert between[JOB].cpu_ns == cpu_ns(ticks + 50) and between[JOB].pids == {501, 502}
        assert sorted(found.pids_of(JOB)) == [501, 502]

    # Five seconds after the last full pass: the next one finds them, with all their CPU time so far.
    clock.advance(0.1)
    full = by_key(found.jobs())
    assert set(full) == {JOB, OTHER}
    assert full[JOB].cpu_ns == cpu_ns(170 + 50 + 40) and full[JOB].pids == {501, 502, 503}
    assert full[OTHER].cpu_ns == cpu_ns(7) and full[OTHER].pids == {504}

    # A known process exits between full passes: gone from the job at once, its time kept.
    shutil.rmtree(procfs / "502")
    clock.advance(1.0)
    after = by_key(found.jobs())
    assert after[JOB].cpu_ns == cpu_ns(170 + 50 + 40) and after[JOB].pids == {501, 503}
    assert sorted(found.pids_of(JOB)) == [501, 503]


def test_a_reused_pid_between_full_passes_keeps_the_old_time_and_takes_its_new_job(tmp_path: Path) -> None:
    procfs, clock = tmp_path / "proc", FakeClock()
    process(procfs, 501, "77", cpu_ticks=100)
    process(procfs, 502, "77", cpu_ticks=10)
    found = environ_jobs(procfs, clock)
    found.jobs()
    process(procfs, 501, "78", cpu_ticks=3, start_ticks=5000)  # exited, and its pid taken by job 78
    clock.advance(1.0)
    jobs = by_key(found.jobs())
    assert jobs[JOB].cpu_ns == cpu_ns(110) and jobs[JOB].pids == {502}
    assert jobs[OTHER].cpu_ns == cpu_ns(3) and jobs[OTHER].pids == {501}


def test_a_process_caught_before_exec_is_read_again_at_the_next_sample(tmp_path: Path) -> None:
    procfs, clock = tmp_path / "proc", FakeClock()
    process(procfs, 501, None, cpu_ticks=0)  # forked, its job's environment not yet there
    found = environ_jobs(procfs, clock)
    assert found.jobs() == []
    process(procfs, 501, "77", cpu_ticks=20)
    clock.advance(1.0)
    assert by_key(found.jobs())[JOB].cpu_ns == cpu_ns(20)


def test_a_process_in_no_job_is_not_read_again_after_its_second_look(tmp_path: Path) -> None:
    procfs, clock = tmp_path / "proc", FakeClock()
    process(procfs, 600, None, cpu_ticks=0)
    found = environ_jobs(procfs, clock)
    found.jobs()
    clock.advance(1.0)
    found.jobs()  # the second look
    process(procfs, 600, "77", cpu_ticks=20)  # an environment that changes later is not looked at again
    for _ in range(7):
        clock.advance(1.0)
        assert found.jobs() == []


def test_without_a_clock_every_scan_is_a_full_pass(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    process(procfs, 501, "77", cpu_ticks=100)
    found = environ_jobs(procfs, None)
    assert set(by_key(found.jobs())) == {JOB}
    process(procfs, 504, "78", cpu_ticks=7)
    assert by_key(found.jobs())[OTHER].cpu_ns == cpu_ns(7)
