"""A process and its descendants as one workload: for an energy window of a caller that is in no job.

The tree's CPU time is the sum over its live processes of their own time and of their waited-for
children's (`utime + stime + cutime + cstime` of /proc/<pid>/stat): a child that exits and is reaped
moves its time into its parent's `cutime`, so the sum stays continuous. Memory is the live
processes' resident set. One pass over `<procfs>/*/stat` finds the tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from collectors.jobs.procjobs import NS_PER_S
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
    fields = data[data.rindex(b")") + 2 :].split()
    try:
        ticks = sum(int(f) for f in fields[11:15])
        return int(fields[1]), ticks, int(fields[21])
    except (IndexError, ValueError):
        return None


class ProcessTrees:
    """The usage of process trees rooted at given pids, read from `procfs`."""

    def __init__(self, procfs: Path) -> None:
        self._procfs = str(procfs)
        self._hz = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")

    def usage(self, roots: frozenset[int]) -> dict[JobKey, JobUsage]:
        """Each live root's tree as a workload; a root that is gone is left out."""
        if not roots:
            return {}
        stats: dict[int, tuple[int, int, int]] = {}
        try:
            entries = os.listdir(self._procfs)
        except OSError:
            return {}
        for entry in entries:
            if entry.isdigit():
                stat = _stat(self._procfs, entry)
                if stat is not None:
                    stats[int(entry)] = stat
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        out: dict[JobKey, JobUsage] = {}
        for root in roots:
            if root not in stats:
                continue
            members, todo = set(), [root]
            while todo:
                pid = todo.pop()
                if pid not in members:
                    members.add(pid)
                    todo += children.get(pid, [])
            ticks = sum(stats[p][1] for p in members)
            pages = sum(stats[p][2] for p in members)
            key = JobKey(PROCESS, str(root))
            out[key] = JobUsage(
                key, JobInfo(), ticks * NS_PER_S // self._hz, pages * self._page, None, frozenset(members)
            )
        return out
