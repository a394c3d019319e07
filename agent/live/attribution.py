"""Attribution: one interval's node energy split among the jobs that ran, the rest unattributed.

A pure function of (node energy deltas, usage deltas). Every split hands out fractions that sum to at
most one, and whatever is not handed out is unattributed, so for every (component, device, source)
the jobs' energy plus the unattributed energy equals the node's energy. docs/attribution.md gives
the formulas and the reasons for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from collectors.base import GPU_COMPONENTS, NOT_IN_TOTAL, is_outage
from collectors.jobs.trees import PROCESS
from collectors.workloads import JobKey

Key = tuple[str, str, str]
"""(component, device, source), as in the node's energy."""

IDLE_POLICIES = ("share", "node")
OTHER_POLICIES = ("share", "node")


class JobInterval(NamedTuple):
    """What one job used during the interval.

    A named tuple rather than a frozen dataclass: the accountant makes one per job on every sample.
    """

    cpu_s: float
    """CPU seconds used in the interval."""
    memory_bytes: int
    cpus_allocated: float | None = None


@dataclass(frozen=True)
class NodeInterval:
    """What the whole node used during the interval."""

    seconds: float
    cpu_busy_s: float
    """CPU seconds all processes used, jobs or not."""
    cpus: int
    memory_used_bytes: int


@dataclass(frozen=True)
class GpuParty:
    """One claimant of a GPU: a job (None: processes that belong to no job) and its usage."""

    job: JobKey | None
    sm_util: float | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class GpuInterval:
    """Who used one GPU: parties on the whole GPU, or per MIG instance (SM share, parties)."""

    parties: tuple[GpuParty, ...] = ()
    instances: Mapping[str, tuple[float, tuple[GpuParty, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Interval:
    """Everything attribution needs about one sampling interval."""

    energy_j: Mapping[Key, float]
    node: NodeInterval
    jobs: Mapping[JobKey, JobInterval]
    idle_w: Mapping[Key, float] = field(default_factory=dict)
    """Idle power of each CPU counter; the energy above it is the active part."""
    gpus: Mapping[str, GpuInterval] = field(default_factory=dict)
    """By GPU device label (`gpu0`)."""


@dataclass(frozen=True)
class Attribution:
    """Joules per job and key, and the joules per key no job got."""

    jobs: Mapping[JobKey, Mapping[Key, float]]
    unattributed: Mapping[Key, float]


def attribute(interval: Interval, idle_policy: str = "share", other_policy: str = "share") -> Attribution:
    """Split each node energy delta of `interval` among its jobs; see docs/attribution.md."""
    if idle_policy not in IDLE_POLICIES:
        raise ValueError(f"idle_policy must be one of {IDLE_POLICIES}, got {idle_policy!r}")
    if other_policy not in OTHER_POLICIES:
        raise ValueError(f"other_policy must be one of {OTHER_POLICIES}, got {other_policy!r}")
    jobs: dict[JobKey, dict[Key, float]] = {}
    unattributed: dict[Key, float] = {}
    grace = _grace_fraction(interval.energy_j)
    fractions = _Fractions(interval)
    others: list[tuple[Key, float]] = []
    for key, energy in interval.energy_j.items():
        component, device, source = key
        if component == "other":  # split last, by what the counted components gave each job
            others.append((key, energy))
            continue
        parts: list[Part]
        if is_outage(source) or component in NOT_IN_TOTAL:
            # An outage: who used the device then is unknown. A meter that contains counted
            # components (platform, node, grace): charging it too would count them twice.
            parts = []
        elif component == "cpu":
            parts = _cpu_parts(key, energy, interval, idle_policy, fractions)
        elif component == "dram":
            parts = [(energy, fractions.memory, key)]
        elif component == "gpu":
            parts = _gpu_parts(key, energy, interval.gpus.get(device, GpuInterval()))
        elif component == "module":
            cpu_part = energy * grace
            parts = _cpu_parts(key, cpu_part, interval, idle_policy, fractions) + _gpu_parts(
                key, energy - cpu_part, interval.gpus.get(device, GpuInterval())
            )
        else:  # a component this version does not know how to split stays on the node
            parts = []
        _give(jobs, unattributed, key, energy, parts)
    if others:
        counted = _counted_fractions(interval.energy_j, jobs) if other_policy == "share" else {}
        for key, energy in others:
            _give(jobs, unattributed, key, energy, [(energy, counted, key)])
    return Attribution(jobs, unattributed)


Part = tuple[float, Mapping[JobKey, float], Key]
"""Joules split among jobs by fractions that sum to at most one, booked under a key: each job gets
joules x its fraction."""


def _give(
    jobs: dict[JobKey, dict[Key, float]],
    unattributed: dict[Key, float],
    key: Key,
    energy: float,
    parts: Iterable[Part],
) -> None:
    """Book `parts` of `key`'s `energy` to their jobs, and what they leave to `unattributed`."""
    given = 0.0
    for joules_to_split, fractions, share_key in parts:
        for job, fraction in fractions.items():
            joules = joules_to_split * fraction
            if joules > 0:
                slot = jobs.get(job)
                if slot is None:
                    slot = jobs[job] = {}
                slot[share_key] = slot.get(share_key, 0.0) + joules
                given += joules
    unattributed[key] = max(0.0, energy - given)


class _Fractions:
    """Each job's fraction of the node's CPU time, of its CPUs, of its memory: worked out once per
    interval, however many CPU and DRAM counters they split."""

    def __init__(self, interval: Interval) -> None:
        self._interval = interval

    @cached_property
    def cpu(self) -> dict[JobKey, float]:
        """By CPU time: the active part of CPU energy."""
        jobs = self._interval.jobs
        return _scaled(
            {job: j.cpu_s for job, j in jobs.items() if j.cpu_s > 0}, self._interval.node.cpu_busy_s
        )

    @cached_property
    def idle(self) -> dict[JobKey, float]:
        """Each job's claim on the node's CPUs: its allocation, else the CPUs it kept busy on average."""
        node = self._interval.node
        claims = {
            job: j.cpus_allocated if j.cpus_allocated is not None else j.cpu_s / node.seconds
            for job, j in self._interval.jobs.items()
            if node.seconds > 0
        }
        return _normalised(claims, float(node.cpus))

    @cached_property
    def memory(self) -> dict[JobKey, float]:
        """By memory in use: DRAM energy."""
        jobs = self._interval.jobs
        weights = {job: float(j.memory_bytes) for job, j in jobs.items() if j.memory_bytes > 0}
        return _scaled(weights, self._interval.node.memory_used_bytes)


def _grace_fraction(energy_j: Mapping[Key, float]) -> float:
    """The share of the measured superchip modules' energy that their Grace sockets drew, from the
    Grace sensors (`grace`, device `socketN`) when they are read; 0 without them."""
    modules = sum(e for (c, _, s), e in energy_j.items() if c == "module" and not is_outage(s))
    sockets = sum(
        e for (c, d, s), e in energy_j.items() if c == "grace" and "." not in d and not is_outage(s)
    )
    return min(1.0, sockets / modules) if modules > 0 else 0.0


def _counted_fractions(
    energy_j: Mapping[Key, float], jobs: Mapping[JobKey, Mapping[Key, float]]
) -> dict[JobKey, float]:
    """Each job's share of the interval's counted energy (every component in the IT total, `other`
    aside): the weights `other` is split by."""
    counted = sum(e for (c, _, _), e in energy_j.items() if c not in NOT_IN_TOTAL and c != "other")
    weights = {job: sum(j for (c, _, _), j in shares.items() if c != "other") for job, shares in jobs.items()}
    return _normalised(weights, counted)


def _normalised(weights: Mapping[JobKey, float], total: float) -> dict[JobKey, float]:
    """Fractions weight/total, scaled down if they would sum to more than one."""
    return _scaled({job: w for job, w in weights.items() if w > 0}, total)


def _scaled(positive: Mapping[JobKey, float], total: float) -> dict[JobKey, float]:
    """`_normalised` of weights that are all positive already."""
    denominator = max(total, sum(positive.values()))
    if denominator <= 0:
        return {}
    return {job: w / denominator for job, w in positive.items()}


def _cpu_parts(
    key: Key, energy: float, interval: Interval, idle_policy: str, fractions: _Fractions
) -> list[Part]:
    idle = min(energy, max(0.0, interval.idle_w.get(key, 0.0)) * interval.node.seconds)
    active = energy - idle
    parts: list[Part] = [(active, fractions.cpu, key)]
    if idle_policy == "share" and idle > 0:
        parts.append((idle, fractions.idle, key))
    return parts


def _gpu_parts(key: Key, energy: float, gpu: GpuInterval) -> list[Part]:
    if gpu.instances:
        component, device, _ = key
        estimated: Key = (component, device, "estimate")  # the split by SM count is a model, not a reading
        sm_shares = [min(1.0, max(0.0, sm_share)) for sm_share, _ in gpu.instances.values()]
        whole = max(1.0, sum(sm_shares))  # instances that claim more than the GPU are scaled down
        return [
            (energy * sm_share / whole, _party_fractions(parties), estimated)
            for sm_share, (_, parties) in zip(sm_shares, gpu.instances.values(), strict=True)
        ]
    return [(energy, _party_fractions(gpu.parties), key)]


def _party_fractions(parties: Iterable[GpuParty]) -> dict[JobKey, float]:
    """Fractions of a GPU per job: by SM utilisation, else by memory, else equal; processes of no job
    keep theirs unattributed."""
    merged: dict[JobKey | None, list[GpuParty]] = {}
    for party in parties:
        merged.setdefault(party.job, []).append(party)
    if not merged:
        return {}
    for measure in ("sm_util", "memory_bytes"):
        totals: dict[JobKey | None, float] = {}
        for job, group in merged.items():
            values = [getattr(p, measure) for p in group]
            if any(v is None for v in values):
                break
            totals[job] = float(sum(values))
        else:
            whole = sum(totals.values())
            if whole > 0:
                return {job: v / whole for job, v in totals.items() if job is not None and v > 0}
    return {job: 1.0 / len(merged) for job in merged if job is not None}


# ---- an attribution regrouped, for the ledger and the windows ----


def set_apart(
    result: Attribution, owners: frozenset[JobKey]
) -> tuple[Attribution, dict[JobKey, Mapping[Key, float]]]:
    """The process trees' shares (windows of callers in no job; `owners`, the trees followed) taken out
    of the jobs and left unattributed, as they were before: to the node and the ledger they are not jobs."""
    if not owners:  # no window of a caller in no job: nothing to look for among the jobs
        return result, {}
    trees = {key: shares for key, shares in result.jobs.items() if key.scheduler == PROCESS}
    if not trees:
        return result, {}
    unattributed = dict(result.unattributed)
    for shares in trees.values():
        for key, joules in shares.items():
            unattributed[key] = unattributed.get(key, 0.0) + joules
    jobs = {key: shares for key, shares in result.jobs.items() if key.scheduler != PROCESS}
    return Attribution(jobs, unattributed), trees


def by_component_source(energy: Mapping[Key, float]) -> dict[tuple[str, str], float]:
    """Joules by (component, source), the devices summed: how the ledger keeps them."""
    out: dict[tuple[str, str], float] = {}
    for (component, _, source), joules in energy.items():
        out[(component, source)] = out.get((component, source), 0.0) + joules
    return out


def gpu_seconds(result: Attribution, energy_j: Mapping[Key, float], seconds: float) -> dict[JobKey, float]:
    """Each job's GPU time in an interval of `seconds` whose node energy was `energy_j`: the interval's
    length times the job's share of each GPU's energy."""
    out: dict[JobKey, float] = {}
    # Each GPU device's energy this interval, whatever the source label of a job's share of it
    # (a MIG instance's share is an estimate of an nvml reading).
    gpu_j: dict[tuple[str, str], float] = {}
    for (component, device, source), joules in energy_j.items():
        if component in GPU_COMPONENTS and not is_outage(source):
            gpu_j[(component, device)] = gpu_j.get((component, device), 0.0) + joules
    if not gpu_j:
        return out
    for job_key, shares in result.jobs.items():
        for (component, device, _), joules in shares.items():
            if component in GPU_COMPONENTS:
                device_j = gpu_j.get((component, device), 0.0)
                if device_j > 0:
                    out[job_key] = out.get(job_key, 0.0) + seconds * joules / device_j
    return out
