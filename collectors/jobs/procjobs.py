"""Slurm jobs from processes' environments, for nodes without job cgroups.

Without job cgroups (Slurm's proctrack/linuxproc), processes whose environment holds
SLURM_JOB_ID=<id> form slurm:<id> with the sum of their CPU time; that fallback is on by default only
while no Slurm cgroup hierarchy is seen (JobDiscovery's `environ_fallback=None`).

A full pass lists every process of `procfs`. Given a clock, it runs every `full_scan_seconds` (5 s),
and in between only the stat of the processes already known to be in a job is read again (and the
environment of a process first seen at the last full pass, which may have been caught between fork
and exec). A process that starts meanwhile is found at the next full pass with all its CPU time so
far (its cumulative stat ticks), which lands in the interval it is found; one that starts and ends
between two full passes is not seen. Without a clock every scan is a full pass.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from collectors.base import Clock
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

    @property
    def to_read(self) -> bool:
        """Whether scans between full passes read it: it is in a job, or its environment is due again."""
        return self.job is not None or not self.rechecked


def stat_fields(data: bytes) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name (field 3, state, is index 0)."""
    return data[data.rindex(b")") + 2 :].split()


class EnvironJobs:
    """Slurm jobs of processes that carry SLURM_JOB_ID; `jobs()` every interval.

    `cgroup_match` says which job cgroup holds a pid (such a process is not counted again here);
    `describe` gives a job's details from its key and owner's uid. Given a `clock`, every process is
    listed once every `full_scan_seconds` and in between only the jobs' known processes are read;
    without one, every scan is a full pass.
    """

    def __init__(
        self,
        procfs: str,
        cgroup_match: Callable[[int], PathMatch | None],
        describe: Callable[[JobKey, int | None], JobInfo],
        clock: Clock | None = None,
        full_scan_seconds: float = 5.0,
    ) -> None:
        self._procfs = procfs
        self._cgroup_match = cgroup_match
        self._describe = describe
        self._clock = clock
        self._full_scan_seconds = full_scan_seconds
        self._scanned_at: float | None = None
        """Clock time of the last full pass; None before the first."""
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")
        self._page_bytes = os.sysconf("SC_PAGE_SIZE")
        self._procs: dict[int, _Proc] = {}
        self._watched: list[int] = []
        """The pids of `_procs` read between full passes: those in a job, and those whose environment
        is to be read again; in `_procs` order."""
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

    def _visit(self, pid: int, proc: _Proc | None) -> _Proc | None:
        """`pid`'s record updated from its stat (and environment when due); None when it is gone."""
        if proc is None or (proc.job is None and not proc.rechecked):
            # A new pid's environment is read on the first two scans that see it (the first may
            # catch it between fork and exec, with its parent's environment), then never again.
            proc = _Proc(-1, self.environ_job(pid), rechecked=proc is not None)
        if proc.job is not None:
            stat = self.proc_stat(pid)
            if stat is None:
                return None
            if proc.start == -1:
                proc.start = stat[0]
            elif stat[0] != proc.start:  # the pid was reused since the last scan
                self._exited_ticks[proc.job] = self._exited_ticks.get(proc.job, 0) + proc.ticks
                proc = _Proc(stat[0], self.environ_job(pid))
            proc.ticks, proc.rss_pages = stat[1], stat[2]
            if proc.uid is None:
                with contextlib.suppress(OSError):
                    proc.uid = os.stat(f"{self._procfs}/{pid}").st_uid
        return proc

    def jobs(self) -> list[JobUsage]:
        """Jobs of processes that carry SLURM_JOB_ID but are in no job cgroup."""
        now = self._clock() if self._clock is not None else None
        last = self._scanned_at
        if now is None or last is None or now - last >= self._full_scan_seconds:
            try:
                names = os.listdir(self._procfs)
            except OSError:
                return []
            self._scanned_at = now
            live: dict[int, _Proc] = {}
            for name in names:
                if not (name.isascii() and name.isdigit()):
                    continue
                pid = int(name)
                seen = self._visit(pid, self._procs.get(pid))
                if seen is not None:
                    live[pid] = seen
            gone = [proc for pid, proc in self._procs.items() if pid not in live]
            watched = [pid for pid, proc in live.items() if proc.to_read]
        else:
            # The processes known to be in no job stay as they are, unread, in their order.
            live, gone = dict(self._procs), []
            for pid in self._watched:
                seen = self._visit(pid, live[pid])
                if seen is None:
                    gone.append(live.pop(pid))
                else:
                    live[pid] = seen
            watched = [pid for pid in self._watched if pid in live and live[pid].to_read]
        for proc in gone:
            if proc.job is not None:
                # Keep a job's CPU time cumulative when one of its processes exits.
                self._exited_ticks[proc.job] = self._exited_ticks.get(proc.job, 0) + proc.ticks
        self._procs, self._watched = live, watched
        by_job: dict[JobKey, list[tuple[int, _Proc]]] = {}
        for pid in watched:
            proc = live[pid]
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
