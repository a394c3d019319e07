"""Attribution: one interval's node energy split among the jobs that ran, the rest unattributed.

A pure function of (node energy deltas, usage deltas). Every split hands out fractions that sum to at
most one, and whatever is not handed out is unattributed, so for every (component, device, source)
the jobs' energy plus the unattributed energy equals the node's energy. docs/attribution.md gives
the formulas and the reasons for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from collectors.base import NOT_IN_TOTAL, is_outage
from collectors.workloads import JobKey

Key = tuple[str, str, str]
"""(component, device, source), as in the node's energy."""

IDLE_POLICIES = ("share", "node")
OTHER_POLICIES = ("share", "node")


@dataclass(frozen=True)
class JobInterval:
    """What one job used during the interval."""

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
    others: list[tuple[Key, float]] = []
    for key, energy in interval.energy_j.items():
        component, device, source = key
        if component == "other":  # split last, by what the counted components gave each job
            others.append((key, energy))
            continue
        if is_outage(source) or component in NOT_IN_TOTAL:
            # An outage: who used the device then is unknown. A meter that contains counted
            # components (platform, node, grace): charging it too would count them twice.
            shares = []
        elif component == "cpu":
            shares = _cpu_shares(key, energy, interval, idle_policy)
        elif component == "dram":
            shares = _memory_shares(key, energy, interval)
        elif component == "gpu":
            shares = _gpu_shares(key, energy, interval.gpus.get(device, GpuInterval()))
        elif component == "module":
            cpu_part = energy * grace
            shares = _cpu_shares(key, cpu_part, interval, idle_policy) + _gpu_shares(
                key, energy - cpu_part, interval.gpus.get(device, GpuInterval())
            )
        else:  # a component this version does not know how to split stays on the node
            shares = []
        _give(jobs, unattributed, key, energy, shares)
    if others:
        fractions = _counted_fractions(interval.energy_j, jobs) if other_policy == "share" else {}
        for key, energy in others:
            _give(jobs, unattributed, key, energy, [(job, key, energy * f) for job, f in fractions.items()])
    return Attribution(jobs, unattributed)


def _give(
    jobs: dict[JobKey, dict[Key, float]],
    unattributed: dict[Key, float],
    key: Key,
    energy: float,
    shares: Iterable[Share],
) -> None:
    """Book `shares` of `key`'s `energy` to their jobs, and what they leave to `unattributed`."""
    given = 0.0
    for job, share_key, joules in shares:
        if joules > 0:
            slot = jobs.setdefault(job, {})
            slot[share_key] = slot.get(share_key, 0.0) + joules
            given += joules
    unattributed[key] = max(0.0, energy - given)


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


Share = tuple[JobKey, Key, float]


def _normalised(weights: Mapping[JobKey, float], total: float) -> dict[JobKey, float]:
    """Fractions weight/total, scaled down if they would sum to more than one."""
    positive = {job: w for job, w in weights.items() if w > 0}
    denominator = max(total, sum(positive.values()))
    if denominator <= 0:
        return {}
    return {job: w / denominator for job, w in positive.items()}


def _cpu_shares(key: Key, energy: float, interval: Interval, idle_policy: str) -> list[Share]:
    node = interval.node
    idle = min(energy, max(0.0, interval.idle_w.get(key, 0.0)) * node.seconds)
    active = energy - idle
    usage = _normalised({job: j.cpu_s for job, j in interval.jobs.items()}, node.cpu_busy_s)
    shares = [(job, key, active * f) for job, f in usage.items()]
    if idle_policy == "share" and idle > 0:
        shares += [(job, key, idle * f) for job, f in _idle_fractions(interval).items()]
    return shares


def _idle_fractions(interval: Interval) -> dict[JobKey, float]:
    """Each job's claim on the node's CPUs: its allocation, else the CPUs it kept busy on average."""
    node = interval.node
    claims = {
        job: j.cpus_allocated if j.cpus_allocated is not None else j.cpu_s / node.seconds
        for job, j in interval.jobs.items()
        if node.seconds > 0
    }
    return _normalised(claims, float(node.cpus))


def _memory_shares(key: Key, energy: float, interval: Interval) -> list[Share]:
    weights = {job: float(j.memory_bytes) for job, j in interval.jobs.items()}
    return [
        (job, key, energy * f) for job, f in _normalised(weights, interval.node.memory_used_bytes).items()
    ]


def _gpu_shares(key: Key, energy: float, gpu: GpuInterval) -> list[Share]:
    if gpu.instances:
        component, device, _ = key
        estimated: Key = (component, device, "estimate")  # the split by SM count is a model, not a reading
        shares: list[Share] = []
        sm_shares = [min(1.0, max(0.0, sm_share)) for sm_share, _ in gpu.instances.values()]
        whole = max(1.0, sum(sm_shares))  # instances that claim more than the GPU are scaled down
        for sm_share, (_, parties) in zip(sm_shares, gpu.instances.values(), strict=True):
            part = energy * sm_share / whole
            shares += [(job, estimated, part * f) for job, f in _party_fractions(parties).items()]
        return shares
    return [(job, key, energy * f) for job, f in _party_fractions(gpu.parties).items()]


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
