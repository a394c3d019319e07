"""Job discovery scan after scan: what one scan keeps for the next (directory listings, each job's last
record, its cgroups by job, the environ fallback's processes by job) never hides a change.

Real cgroups with real processes where the kernel's behaviour matters (a cgroup removed and made again
under its name, processes joining a job), generated trees for exact values.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from collectors.workloads import JobInfo, JobKey, JobUsage
from tests.support.cgroups import GeneratedCgroups, RealCgroups, discovery, fake_process, real_cgroups_missing
from tests.support.clock import FakeClock
from tests.support.processes import wait_for
from tests.support.procfs import FakeProcfs

PROC = Path("/proc")
CGROUPFS = Path("/sys/fs/cgroup")

real = pytest.mark.skipif(bool(real_cgroups_missing()), reason=real_cgroups_missing() or "ok")


def slurm(job_id: int | str) -> JobKey:
    return JobKey("slurm", str(job_id))


# ---- real cgroups ----


@real
def test_jobs_that_start_and_end_between_scans_are_seen_even_when_their_number_stays(
    cgroups: RealCgroups,
) -> None:
    for i in range(50):
        cgroups.make(f"slurm/uid_0/job_{i}/step_0", ("cpuacct", "memory"))
    found = discovery(environ_fallback=False)
    for _ in range(2):  # the second scan lists the same names as the first
        assert {slurm(i) for i in range(50)} <= set(found.scan().jobs)
    cgroups.remove("slurm/uid_0/job_7", ("cpuacct", "memory"))
    cgroups.make("slurm/uid_0/job_50/step_0", ("cpuacct", "memory"))  # one out, one in: as many as before
    jobs = set(found.scan().jobs)
    assert slurm(50) in jobs and slurm(7) not in jobs
    assert {slurm(i) for i in range(50) if i != 7} <= jobs
    cgroups.make("slurm/uid_0/job_51/step_0", ("cpuacct", "memory"))
    assert {slurm(50), slurm(51)} <= set(found.scan().jobs)


@real
def test_a_cgroup_removed_and_made_again_under_its_name_is_read_afresh(cgroups: RealCgroups) -> None:
    rel = "slurm/uid_0/job_93"
    burner = cgroups.start(f"{rel}/step_0", "burner")
    found = discovery(environ_fallback=False, collect_pids=True)
    first = found.scan().jobs[slurm(93)]

    def burned() -> JobUsage | None:
        job = found.scan().jobs[slurm(93)]
        return job if job.cpu_ns > first.cpu_ns + 200_000_000 else None

    used = wait_for(burned, 10, "0.2 s of the burner's CPU time in its cgroup", poll=0.02)
    cgroups.stop(burner)
    cgroups.remove(rel)
    assert slurm(93) not in found.scan().jobs
    sleeper = cgroups.start(f"{rel}/step_0", "sleeper")  # a new job with the same id
    again = found.scan().jobs[slurm(93)]
    assert again.cpu_ns < used.cpu_ns  # the new cgroup's counter, from its start, not the old one's
    assert again.pids == frozenset({sleeper.pid})
    memory_file = cgroups.path("memory", rel) / "memory.usage_in_bytes"
    assert again.memory_bytes == int(memory_file.read_text()) > 0  # the new cgroup's memory too
    assert found.job_for_pid(sleeper.pid) == slurm(93)


@real
def test_processes_that_join_a_job_are_found_for_it(cgroups: RealCgroups) -> None:
    first = cgroups.start("slurm/uid_0/job_94/step_0", "sleeper")
    found = discovery(environ_fallback=False, collect_pids=True)
    assert found.scan().jobs[slurm(94)].pids == frozenset({first.pid})
    assert found.job_pids(slurm(94), 8) == [first.pid]
    second = cgroups.start("slurm/uid_0/job_94/step_1", "sleeper")  # a new step: a new cgroup inside
    assert found.scan().jobs[slurm(94)].pids == frozenset({first.pid, second.pid})
    assert sorted(found.job_pids(slurm(94), 8)) == sorted([first.pid, second.pid])
    assert found.job_pids(slurm(94), 1) in ([first.pid], [second.pid])
    cgroups.stop(first)
    assert found.scan().jobs[slurm(94)].pids == frozenset({second.pid})
    assert found.job_pids(slurm(94), 8) == [second.pid]
    cgroups.start("slurm/uid_0/job_95/step_0", "sleeper")  # a job the scan before did not know
    assert found.job_pids(slurm(95), 8) == []  # not until a scan has found it
    found.scan()
    assert len(found.job_pids(slurm(95), 8)) == 1


# ---- generated trees ----


def test_a_job_whose_figures_stay_keeps_its_record_and_any_change_makes_a_new_one(tmp_path: Path) -> None:
    tree = GeneratedCgroups(tmp_path / "cg")
    tree.v1("slurm/uid_0/job_1", cpu_ns=100, memory_bytes=4096, cpuset="0-1")
    tree.v1("slurm/uid_0/job_2", cpu_ns=200, memory_bytes=8192)
    names: dict[JobKey, JobInfo] = {}
    found = discovery(
        tree.root,
        FakeProcfs(tmp_path / "proc").root,
        environ_fallback=False,
        metadata=names.get,
        refresh_seconds=0,
    )
    before = found.scan().jobs
    after = found.scan().jobs
    assert after[slurm(1)] is before[slurm(1)] and after[slurm(2)] is before[slurm(2)]  # idle: the same

    tree.v1("slurm/uid_0/job_1", cpu_ns=100, memory_bytes=6144)  # memory only
    job = found.scan().jobs[slurm(1)]
    assert (job.cpu_ns, job.memory_bytes) == (100, 6144)
    tree.v1("slurm/uid_0/job_1", cpu_ns=150, memory_bytes=6144)  # CPU time only
    assert found.scan().jobs[slurm(1)].cpu_ns == 150
    tree.v1("slurm/uid_0/job_1", cpu_ns=150, memory_bytes=6144, cpuset="0")  # its allocation
    assert found.scan().jobs[slurm(1)].cpus_allocated == 1.0
    names[slurm(2)] = JobInfo(name="train", account="ml")  # a Slurm look-up lands: same figures
    job = found.scan().jobs[slurm(2)]
    assert (job.cpu_ns, job.info.name, job.info.account) == (200, "train", "ml")


def test_processes_that_come_and_go_with_the_same_figures_are_in_the_record(tmp_path: Path) -> None:
    tree = GeneratedCgroups(tmp_path / "cg")
    job = tree.v1("slurm/uid_0/job_1", cpu_ns=100, memory_bytes=4096)
    (job / "cgroup.procs").write_text("11\n")
    found = discovery(
        tree.root, FakeProcfs(tmp_path / "proc").root, environ_fallback=False, collect_pids=True
    )
    assert found.scan().jobs[slurm(1)].pids == frozenset({11})
    (job / "cgroup.procs").write_text("11\n12\n")
    assert found.scan().jobs[slurm(1)].pids == frozenset({11, 12})
    (job / "cgroup.procs").write_text("12\n")
    assert found.scan().jobs[slurm(1)].pids == frozenset({12})


def test_a_job_counted_in_v1_is_counted_from_v2_once_it_leaves_v1_and_not_again_when_back(
    tmp_path: Path,
) -> None:
    tree = GeneratedCgroups(tmp_path / "cg")
    tree.v1("slurm/uid_5/job_1", cpu_ns=7_000)
    for i in (1, 2):
        tree.v2(f"system.slice/slurmstepd.scope/job_{i}", usage_usec=i)
    found = discovery(tree.root, FakeProcfs(tmp_path / "proc").root, environ_fallback=False)
    for _ in range(3):
        jobs = found.scan().jobs
        assert (jobs[slurm(1)].cpu_ns, jobs[slurm(2)].cpu_ns) == (7_000, 2_000)
    shutil.rmtree(tree.root / "cpuacct" / "slurm" / "uid_5" / "job_1")
    for _ in range(3):
        assert found.scan().jobs[slurm(1)].cpu_ns == 1_000  # the v2 cgroup's figure now
    tree.v1("slurm/uid_5/job_1", cpu_ns=8_000)
    for _ in range(3):
        jobs = found.scan().jobs
        assert (jobs[slurm(1)].cpu_ns, jobs[slurm(2)].cpu_ns) == (8_000, 2_000)


def test_a_service_that_comes_to_hold_a_job_stops_being_one(tmp_path: Path) -> None:
    tree = GeneratedCgroups(tmp_path / "cg", pure_v2=True)
    tree.v2("system.slice/slurmd.service", usage_usec=1)
    tree.v2("system.slice/cron.service", usage_usec=3)
    found = discovery(
        tree.root, FakeProcfs(tmp_path / "proc").root, environ_fallback=False, refresh_seconds=0
    )
    for _ in range(2):
        assert set(found.scan().jobs) == {
            JobKey("systemd", "slurmd.service"),
            JobKey("systemd", "cron.service"),
        }
    tree.v2("system.slice/slurmd.service/slurmstepd.scope/job_3", usage_usec=5)
    for _ in range(2):
        assert set(found.scan().jobs) == {slurm(3), JobKey("systemd", "cron.service")}


def test_the_environ_fallback_lists_a_jobs_processes_as_they_come_and_go(tmp_path: Path) -> None:
    procfs = FakeProcfs(tmp_path / "proc")
    tree = GeneratedCgroups(tmp_path / "cg")
    for pid in (501, 502, 503):
        fake_process(procfs.root, pid, b"0::/\n", environ=b"SLURM_JOB_ID=77\0HOME=/root\0")
    fake_process(procfs.root, 504, b"0::/\n", environ=b"SLURM_JOB_ID=78\0")
    clock = FakeClock()
    found = discovery(tree.root, procfs.root, environ_fallback=True, clock=clock)
    found.scan()
    assert sorted(found.job_pids(slurm(77), 8)) == [501, 502, 503]
    assert found.job_pids(slurm(78), 8) == [504]
    shutil.rmtree(procfs.root / "502")  # exited
    fake_process(procfs.root, 505, b"0::/\n", environ=b"SLURM_JOB_ID=78\0")
    clock.advance(5.0)  # new processes are found at the next full pass of /proc
    found.scan()
    assert sorted(found.job_pids(slurm(77), 8)) == [501, 503]
    assert sorted(found.job_pids(slurm(78), 8)) == [504, 505]
    assert found.job_pids(slurm(79), 8) == []


def _held_open(under: Path) -> set[str]:
    """The files under `under` this process holds open, by the name of their directory."""
    held = set()
    for fd in (PROC / "self" / "fd").iterdir():
        try:
            target = Path(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile (the fd that listed the folder)
        if under in target.parents:
            held.add(target.parent.name)
    return held


def test_counter_files_of_cgroups_gone_are_closed_and_new_ones_read(tmp_path: Path) -> None:
    tree = GeneratedCgroups(tmp_path / "cg")
    for i in range(5):
        tree.v1(f"slurm/uid_0/job_{i}", cpu_ns=i, memory_bytes=i + 1)
    found = discovery(
        tree.root, FakeProcfs(tmp_path / "proc").root, environ_fallback=False, max_open_files=64
    )
    found.scan()
    found.scan()
    assert _held_open(tree.root) == {f"job_{i}" for i in range(5)}
    for i in range(3):
        for hierarchy in ("cpuacct", "memory"):
            shutil.rmtree(tree.root / hierarchy / "slurm" / "uid_0" / f"job_{i}")
    tree.v1("slurm/uid_0/job_9", cpu_ns=9, memory_bytes=10)
    jobs = found.scan().jobs
    assert {k.job_id for k in jobs} == {"3", "4", "9"}
    assert (jobs[slurm(9)].cpu_ns, jobs[slurm(9)].memory_bytes) == (9, 10)
    found.scan()  # the counters of the jobs there are now stay open, those of the jobs gone do not
    assert _held_open(tree.root) == {"job_3", "job_4", "job_9"}
    found.close()
    assert _held_open(tree.root) == set()
