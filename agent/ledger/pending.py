"""The sums the writer holds in memory until a flush commits them, keyed like the ledger's tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from collectors.workloads import JobInfo, JobKey


@dataclass
class JobState:
    """A job's metadata as last reported; `ended` is None (unchanged), False (running) or True."""

    info: JobInfo
    start: float
    last_seen: float
    ended: bool | None = None
    end: float | None = None

    def absorb(self, newer: JobState) -> None:
        """Take a later report's news, keeping the earliest start and the latest sighting."""
        self.info = merge_info(self.info, newer.info)
        self.start = min(self.start, newer.start)
        self.last_seen = max(self.last_seen, newer.last_seen)
        if newer.ended is not None:
            self.ended, self.end = newer.ended, newer.end


def merge_info(old: JobInfo, new: JobInfo) -> JobInfo:
    """`new`, with what it leaves empty taken from `old`; `new` itself when that adds nothing, so that
    the next report of the same metadata is recognised as the same object."""
    if old is new:
        return new
    merged = JobInfo(
        user=new.user or old.user,
        uid=new.uid if new.uid is not None else old.uid,
        name=new.name or old.name,
        account=new.account or old.account,
        partition=new.partition or old.partition,
        project=new.project or old.project,
        phase=new.phase or old.phase,
        model=new.model or old.model,
        gpu_model=new.gpu_model or old.gpu_model,
        gpu_count=max_count(old.gpu_count, new.gpu_count),
        cpu_model=new.cpu_model or old.cpu_model,
    )
    return new if merged == new else merged


def max_count(a: int | None, b: int | None) -> int | None:
    """The larger of two counts where None means unknown."""
    if a is None:
        return b
    return a if b is None else max(a, b)


REUSE_GAP_SECONDS = 60.0
"""A job seen again within this long of its recorded end is the same job (discovery missed it for a
scan or two); later, its id was reused (slurmctld state reset, several clusters): a new run."""


def new_run(stored_end: float | None, state: JobState) -> bool:
    """Whether news of a job is a new run of its id: the stored record ended before the news began.

    A note that only says the job ended (`ended` True, no sighting) never starts a run.
    """
    return stored_end is not None and state.start > stored_end + REUSE_GAP_SECONDS and state.ended is not True


EnergyKey = tuple[JobKey, int, str, str]
NodeKey = tuple[int, str, str]


@dataclass
class Pending:
    """Sums not yet committed: joules per (job, hour, component, source), usage, node side, metadata."""

    jobs: dict[JobKey, JobState] = field(default_factory=dict)
    energy: dict[EnergyKey, float] = field(default_factory=dict)
    usage: dict[tuple[JobKey, int], tuple[float, float]] = field(default_factory=dict)
    """(job, hour) -> (cpu_seconds, gpu_seconds)."""
    node: dict[NodeKey, float] = field(default_factory=dict)
    unattributed: dict[NodeKey, float] = field(default_factory=dict)
    useful: dict[JobKey, tuple[int | None, int | None]] = field(default_factory=dict)
    """job -> (tokens, samples) annotated since the last flush; None where that count was not given."""

    @property
    def rows(self) -> int:
        return len(self.energy) + len(self.usage) + len(self.node) + len(self.unattributed) + len(self.useful)

    def __bool__(self) -> bool:
        return bool(self.jobs) or self.rows > 0

    def absorb(self, newer: Pending) -> None:
        """Add a later batch to this one."""
        for key, state in newer.jobs.items():
            if key in self.jobs:
                self.jobs[key].absorb(state)
            else:
                self.jobs[key] = replace(state)
        for target, source in (
            (self.energy, newer.energy),
            (self.node, newer.node),
            (self.unattributed, newer.unattributed),
        ):
            add_all(target, source)
        for ukey, (cpu, gpu) in newer.usage.items():
            old_cpu, old_gpu = self.usage.get(ukey, (0.0, 0.0))
            self.usage[ukey] = (old_cpu + cpu, old_gpu + gpu)
        for key, (tokens, samples) in newer.useful.items():
            old_tokens, old_samples = self.useful.get(key, (None, None))
            self.useful[key] = (add_counts(old_tokens, tokens), add_counts(old_samples, samples))

    def copy(self) -> Pending:
        out = Pending()
        out.absorb(self)
        return out


def add_all(target: dict[Any, float], source: Mapping[Any, float]) -> None:
    for key, value in source.items():
        target[key] = target.get(key, 0.0) + value


def add_counts(a: int | None, b: int | None) -> int | None:
    """The sum of two counts where None means "never given" (and stays None only if both are)."""
    if a is None:
        return b
    return a if b is None else a + b
