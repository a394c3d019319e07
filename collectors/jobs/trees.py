"""A process and its descendants as one workload: for an energy window of a caller that is in no job.

The tree's CPU time is the sum over its live processes of their own time and of their waited-for
children's (`utime + stime + cutime + cstime` of /proc/<pid>/stat): a child that exits and is reaped
moves its time into its parent's `cutime`, so the sum stays continuous. Memory is the live
processes' resident set. A pass over every `<procfs>/*/stat` finds the trees; it runs when a new
root comes and every `rescan_seconds`, and in between only the members found are read again, so a
child started since counts from the next pass (its time until then goes to its parent once reaped).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from collectors.base import Clock
from collectors.jobs.procjobs import NS_PER_S, stat_fields
from collectors.smallfiles import read_small
from collectors.workloads import JobInfo, JobKey, JobUsage

PROCESS = "process"
"""The scheduler label of a process tree: JobKey("process", "<root pid>")."""


def _stat(procfs: str, entry: str) -> tuple[int, int, int] | None:
    """(ppid, CPU ticks of the process and its reaped children, resident pages); None if gone."""
    try:
        data = read_small(f"{procfs}/{entry}/stat")
    except OSError:
        return None
    fields = stat_fields(data)
    try:
        ticks = sum(int(f) for f in fields[11:15])
        return int(fields[1]), ticks, int(fields[21])
    except (IndexError, ValueError):
        return None


class ProcessTrees:
    """The usage of process trees rooted at given pids, read from `procfs`."""

    def __init__(self, procfs: Path, clock: Clock = time.monotonic, rescan_seconds: float = 5.0) -> None:
        self._procfs = str(procfs)
        self._clock = clock
        self._rescan_seconds = rescan_seconds
        self._hz = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._members: dict[int, set[int]] = {}
        self._scanned_at: float | None = None

    def usage(self, roots: frozenset[int]) -> dict[JobKey, JobUsage]:
        """Each live root's tree as a workload; a root that is gone is left out."""
        if not roots:
            self._members = {}
            return {}
        now = self._clock()
        stale = self._scanned_at is None or now - self._scanned_at >= self._rescan_seconds
        if stale or not roots <= self._members.keys():
            stats = self._scan(roots)
            self._scanned_at = now
        else:
            stats = {}
            for root in roots:
                for pid in self._members[root]:
                    stat = _stat(self._procfs, str(pid))
                    if stat is not None:
                        stats[pid] = stat
        out: dict[JobKey, JobUsage] = {}
        for root in roots:
            members = {pid for pid in self._members.get(root, ()) if pid in stats}
            if root not in members:
                continue
            ticks = sum(stats[p][1] for p in members)
            pages = sum(stats[p][2] for p in members)
            key = JobKey(PROCESS, str(root))
            out[key] = JobUsage(
                key, JobInfo(), ticks * NS_PER_S // self._hz, pages * self._page, None, frozenset(members)
            )
        return out

    def _scan(self, roots: frozenset[int]) -> dict[int, tuple[int, int, int]]:
        """Every process's stat, and each root's members from the parent links."""
        stats: dict[int, tuple[int, int, int]] = {}
        try:
            entries = os.listdir(self._procfs)
        except OSError:
            entries = []
        for entry in entries:
            if entry.isdigit():
                stat = _stat(self._procfs, entry)
                if stat is not None:
                    stats[int(entry)] = stat
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        self._members = {}
        for root in roots:
            if root not in stats:
                continue
            members, todo = set(), [root]
            while todo:
                pid = todo.pop()
                if pid not in members:
                    members.add(pid)
                    todo += children.get(pid, [])
            self._members[root] = members
        return stats
