"""The walk of the cgroup hierarchies that finds job cgroups, each directory's listing remembered.

A directory must be listed on every scan, since a job may start or end anywhere, but what its names
are need not be worked out again: in cgroupfs a name is either a control file (fixed by the
controllers) or a child cgroup, so a directory listing the same names as at the last scan has the
same subdirectories, and what the last walk made of them holds. A directory holding nothing but job
cgroups (`slurm/uid_0` with 2,000 jobs, a QoS slice full of pods) then adds its jobs in one dict
update instead of a step per job.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from collectors.jobs.paths import ROOT_CONTEXT, PathContext, PathMatch, classify_dir
from collectors.workloads import JobInfo, JobKey, JobUsage

MAX_DEPTH = 16
MAX_DIRS_PER_SCAN = 50_000
MAX_STEPS = 100_000


@dataclass
class JobCgroup:
    """A job's cgroup, with what is read once and refreshed every `refresh_seconds`."""

    path: str
    rel: str
    v2: bool
    match: PathMatch
    cpu_file: str = field(init=False)
    """The CPU counter: v2 cpu.stat, v1 cpuacct.usage (kept open and re-read)."""
    checked_at: float = -math.inf
    cpus_allocated: float | None = None
    memory_file: str | None = None
    """None: sum the processes' RSS."""
    uid: int | None = None
    info_inputs: tuple[object, ...] = ()
    info: JobInfo = field(default_factory=JobInfo)
    usage: JobUsage | None = None
    """What the last scan read: handed out again while nothing in it changes."""

    def __post_init__(self) -> None:
        self.cpu_file = f"{self.path}/{'cpu.stat' if self.v2 else 'cpuacct.usage'}"


Entry = tuple[str, PathContext, PathMatch | None]
"""A subdirectory: its path, its context, the job it is (None: none, look inside)."""


@dataclass
class _Listing:
    """A directory's names at its last listing, and its subdirectories classified."""

    ctx: PathContext
    names: list[str]
    entries: list[Entry]
    saw_slurm: bool
    """Whether a subdirectory is a Slurm hierarchy (for the environ fallback's default)."""
    keys: frozenset[JobKey]
    jobs_only: bool
    """Every subdirectory is a job cgroup, and none a systemd service (which may be looked into)."""
    cgroups: dict[str, JobCgroup] | None = None
    """With `jobs_only`: what the last walk added from here, when it added every entry."""


class CgroupWalk:
    """Finds the job cgroups under hierarchy roots; `walk()` once per scan."""

    def __init__(self, refresh_seconds: float) -> None:
        self._refresh_seconds = refresh_seconds
        self.known: dict[str, JobCgroup] = {}
        """What the last walk found, by path."""
        self.saw_slurm = False
        """Whether the last walk passed a Slurm hierarchy."""
        self._listings: dict[str, _Listing] = {}
        self._leaf_services: dict[str, float] = {}
        self._steps: dict[tuple[PathContext, str], tuple[PathContext, PathMatch | None]] = {}

    def walk(
        self, hierarchies: list[tuple[str, bool]], now: float
    ) -> tuple[dict[str, JobCgroup], set[JobKey]]:
        """Every job cgroup by path, and the systemd services found to hold jobs (not jobs themselves)."""
        found: dict[str, JobCgroup] = {}
        listed: dict[str, _Listing] = {}
        nesting: set[JobKey] = set()
        self.saw_slurm = False
        for root, v2 in hierarchies:
            # A job seen in the v1 hierarchy is not counted again from the unified one.
            skip = {c.match.key for c in found.values()}
            nesting |= self._walk(root, v2, found, skip, now, listed)
        self._listings = listed  # directories not walked this time are listed afresh when they come back
        self.known = found
        for path in [p for p in self._leaf_services if p not in found]:
            del self._leaf_services[path]
        return found, nesting

    def _step(self, ctx: PathContext, name: str) -> tuple[PathContext, PathMatch | None]:
        """classify_dir, remembered: the same few hundred names are classified every scan."""
        result = self._steps.get((ctx, name))
        if result is None:
            if len(self._steps) > MAX_STEPS:
                self._steps.clear()
            result = self._steps[(ctx, name)] = classify_dir(ctx, name)
        return result

    def _listing(self, path: str, ctx: PathContext) -> _Listing | None:
        """The directory's subdirectories, classified; None when it is gone."""
        try:
            names = os.listdir(path)
        except OSError:
            return None  # removed since its parent was listed
        last = self._listings.get(path)
        if last is not None and last.names == names and last.ctx == ctx:
            return last
        try:
            with os.scandir(path) as it:
                subdirs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return None
        entries: list[Entry] = []
        saw_slurm, jobs_only = False, True
        for name in subdirs:
            child_ctx, match = self._step(ctx, name)
            saw_slurm = saw_slurm or child_ctx[0] in ("slurm", "stepd")
            jobs_only = jobs_only and match is not None and match.key.scheduler != "systemd"
            entries.append((f"{path}/{name}", child_ctx, match))
        keys = frozenset(m.key for _, _, m in entries if m is not None)
        return _Listing(ctx, names, entries, saw_slurm, keys, jobs_only)

    def _walk(
        self,
        root: str,
        v2: bool,
        found: dict[str, JobCgroup],
        skip: set[JobKey],
        now: float,
        listed: dict[str, _Listing],
    ) -> set[JobKey]:
        """Record in `found` every job cgroup under `root`, not descending below a job's cgroup.

        Returns the systemd services found to hold jobs, which are therefore not jobs themselves.
        """
        # Each entry: directory, its context, depth, and the candidate systemd service above it.
        stack: list[tuple[str, PathContext, int, str | None]] = [(root, ROOT_CONTEXT, 0, None)]
        visited = 0
        nesting: set[str] = set()
        while stack and visited < MAX_DIRS_PER_SCAN:
            path, ctx, depth, service = stack.pop()
            visited += 1
            listing = self._listing(path, ctx)
            if listing is None:
                continue
            listed[path] = listing
            self.saw_slurm = self.saw_slurm or listing.saw_slurm
            if listing.jobs_only and listing.cgroups is not None and skip.isdisjoint(listing.keys):
                # The same jobs as at the last scan, every one added then: add them again at once.
                if listing.cgroups and service is not None:
                    nesting.add(service)
                found.update(listing.cgroups)
                continue
            added: dict[str, JobCgroup] = {}
            for child, child_ctx, match in listing.entries:
                if match is None:
                    if depth < MAX_DEPTH:
                        stack.append((child, child_ctx, depth + 1, service))
                    continue
                if match.key in skip:
                    continue
                if service is not None:
                    nesting.add(service)
                if match.key.scheduler == "systemd":
                    checked = self._leaf_services.get(child)
                    if checked is None or now - checked >= self._refresh_seconds:
                        self._leaf_services[child] = now
                        stack.append((child, child_ctx, depth + 1, child))
                cgroup = self.known.get(child)
                if cgroup is None or cgroup.match != match:
                    cgroup = JobCgroup(child, child[len(root) + 1 :], v2, match)
                found[child] = added[child] = cgroup
            complete = listing.jobs_only and len(added) == len(listing.entries)
            listing.cgroups = added if complete else None
        nesting_keys = set()
        for path in nesting:
            # A service with a job inside is infrastructure (slurmd, containerd ...): only the job counts.
            cgroup = found.pop(path, None)
            self._leaf_services.pop(path, None)
            if cgroup is not None:
                nesting_keys.add(cgroup.match.key)
        return nesting_keys
