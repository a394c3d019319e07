"""Slurm jobs from processes' environments, for nodes without job cgroups.

Without job cgroups (Slurm's proctrack/linuxproc), processes whose environment holds
SLURM_JOB_ID=<id> form slurm:<id> with the sum of their CPU time; that fallback is on by default only
while no Slurm cgroup hierarchy is seen (JobDiscovery's `environ_fallback=None`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from collectors.jobs.paths import PathMatch, clean_text
from collectors.smallfiles import read_small
from collectors.workloads import JobInfo, JobKey, JobUsage

NS_PER_S = 1_000_000_000


@dataclass
class _Proc:
    """A process the environ fallback has seen: its start time, its job, its last CPU time and RSS."""

    start: int
    job: JobKey | None
    ticks: int = 0
    rss_pages: int = 0
    uid: int | None = None
    rechecked: bool = False


def stat_fields(data: bytes) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name (field 3, state, is index 0)."""
    return data[data.rindex(b")") + 2 :].split()


class EnvironJobs:
    """Slurm jobs of processes that carry SLURM_JOB_ID; `jobs()` every interval.

    `cgroup_match` says which job cgroup holds a pid (such a process is not counted again here);
    `describe` gives a job's details from its key and owner's uid.
    """

    def __init__(
        self,
        procfs: str,
        cgroup_match: Callable[[int], PathMatch | None],
        describe: Callable[[JobKey, int | None], JobInfo],
    ) -> None:
        self._procfs = procfs
        self._cgroup_match = cgroup_match
        self._describe = describe
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")
        self._page_bytes = os.sysconf("SC_PAGE_SIZE")
        self._procs: dict[int, _Proc] = {}
        self._exited_ticks: dict[JobKey, int] = {}
        self._pids: dict[JobKey, list[int]] = {}
        """The last scan's processes of each job."""

    def proc_stat(self, pid: int) -> tuple[int, int, int] | None:
        """(start time, utime + stime, rss pages) of a process in clock ticks; None when it is gone."""
        try:
            fields = stat_fields(read_small(f"{self._procfs}/{pid}/stat"))
            return int(fields[19]), int(fields[11]) + int(fields[12]), int(fields[21])
        except (OSError, ValueError, IndexError):
            return None

    def environ_job(self, pid: int) -> JobKey | None:
        """slurm:<id> from the process's SLURM_JOB_ID, unless it is in a job cgroup already."""
        try:
            environ = b"\0" + read_small(f"{self._procfs}/{pid}/environ")
        except OSError:
            return None
        at = environ.find(b"\0SLURM_JOB_ID=")
        if at < 0:
            return None
        end = environ.find(b"\0", at + 1)
        value = environ[at + 14 : end if end >= 0 else None]
        job_id = clean_text(value.decode("utf-8", "surrogateescape"))
        if not job_id or self._cgroup_match(pid) is not None:
            return None
        return JobKey("slurm", job_id)

    def pids_of(self, key: JobKey) -> list[int]:
        """The processes of the last scan that carry the job's SLURM_JOB_ID."""
        return list(self._pids.get(key, ()))

    def jobs(self) -> list[JobUsage]:
        """Jobs of processes that carry SLURM_JOB_ID but are in no job cgroup."""
        try:
            names = os.listdir(self._procfs)
        except OSError:
            return []
        live: dict[int, _Proc] = {}
        for name in names:
            if not (name.isascii() and name.isdigit()):
                continue
            pid = int(name)
            proc = self._procs.get(pid)
            if proc is None or (proc.job is None and not proc.rechecked):
                # A new pid's environment is read on the first two scans that see it (the first may
                # catch it between fork and exec, with its parent's environment), then never again.
                proc = _Proc(-1, self.environ_job(pid), rechecked=proc is not None)
            if proc.job is not None:
                stat = self.proc_stat(pid)
                if stat is None:
                    continue
                if proc.start == -1:
                    proc.start = stat[0]
                elif stat[0] != proc.start:  # the pid was reused since the last scan
                    self._exited_ticks[proc.job] = self._exited_ticks.get(proc.job, 0) + proc.ticks
                    proc = _Proc(stat[0], self.environ_job(pid))
                proc.ticks, proc.rss_pages = stat[1], stat[2]
                if proc.uid is None:
                    with contextlib.suppress(OSError):
                        proc.uid = os.stat(f"{self._procfs}/{pid}").st_uid
            live[pid] = proc
        for pid, proc in self._procs.items():
            if pid not in live and proc.job is not None:
                # Keep a job's CPU time cumulative when one of its processes exits.
                self._exited_ticks[proc.job] = self._exited_ticks.get(proc.job, 0) + proc.ticks
        self._procs = live
        by_job: dict[JobKey, list[tuple[int, _Proc]]] = {}
        for pid, proc in live.items():
            if proc.job is not None:
                by_job.setdefault(proc.job, []).append((pid, proc))
        self._exited_ticks = {k: v for k, v in self._exited_ticks.items() if k in by_job}
        self._pids = {key: [pid for pid, _ in members] for key, members in by_job.items()}
        usages = []
        for key, members in by_job.items():
            ticks = self._exited_ticks.get(key, 0) + sum(p.ticks for _, p in members)
            uid = next((p.uid for _, p in members if p.uid is not None), None)
            usages.append(
                JobUsage(
                    key,
                    self._describe(key, uid),
                    cpu_ns=ticks * NS_PER_S // self._ticks_per_s,
                    memory_bytes=sum(p.rss_pages for _, p in members) * self._page_bytes,
                    pids=frozenset(pid for pid, _ in members),
                )
            )
        return usages
