"""Per-job accounting: each interval, find the jobs, attribute the node's energy, keep the totals.

Runs in the sampling loop right after the sampler's tick. It turns cumulative usage counters into
interval figures, calls the pure attribution function, adds the result to the running totals that
/metrics shows, and hands it to the ledger (which only queues it in memory: the database is written
by the ledger's own thread, so a slow or full disk never delays a sample).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol

from agent.live.attribution import (
    Attribution,
    GpuInterval,
    GpuParty,
    Interval,
    JobInterval,
    Key,
    NodeInterval,
    attribute,
    by_component_source,
    gpu_seconds,
    set_apart,
)
from agent.live.snapshot import JobSeries, JobsSnapshot, Snapshot
from agent.live.windows import WindowBook
from agent.live.work import WorkClassifier
from collectors.base import GPU_COMPONENTS, Device, counter_delta
from collectors.jobs.trees import PROCESS
from collectors.workloads import GpuProcess, GpuUsage, JobInfo, JobKey, JobUsage, UsageScan

log = logging.getLogger("greenai.accounting")

SourceEnergy = dict[tuple[str, str], float]
"""One job's joules of one interval by (component, source), as the ledger keeps them."""


class Discovery(Protocol):
    def scan(self) -> UsageScan: ...

    def job_for_pid(self, pid: int) -> JobKey | None: ...


class ProcessTreeSource(Protocol):
    def usage(self, roots: frozenset[int]) -> dict[JobKey, JobUsage]: ...


class GpuUsageSource(Protocol):
    def gpu_usage(self) -> tuple[GpuUsage, ...]: ...

    @property
    def usage_errors(self) -> tuple[str, ...]:
        """Why reads failed in the last gpu_usage() call, one reason per failure."""
        ...


class LedgerSink(Protocol):
    def job_seen(self, key: JobKey, info: JobInfo, t: float) -> None: ...

    def job_ended(self, key: JobKey, t: float) -> None: ...

    def record(
        self,
        interval_end: float,
        jobs: Mapping[JobKey, tuple[JobInfo, Mapping[tuple[str, str], float]]],
        unattributed: Mapping[tuple[str, str], float],
        node: Mapping[tuple[str, str], float],
        gpu_seconds: Mapping[JobKey, float],
        cpu_seconds: Mapping[JobKey, float],
    ) -> None: ...


@dataclass
class _Job:
    found: JobInfo
    """What discovery (and the work rules) say of the job, to tell when that changes."""
    info: JobInfo
    """`found` with the hardware the job ran on: what the ledger and /metrics get."""
    energy_j: dict[str, float]
    exported: bool
    ended: float | None = None
    noted: bool = False
    """Whether the ledger has been told of the job's start and current metadata."""
    gpus: frozenset[str] = frozenset()
    """Every GPU (device label) the job got a share of."""
    gpu_count: int | None = None
    """The most GPUs it got a share of in one interval."""
    series: JobSeries | None = None
    """What /metrics shows of it as of the last sample; None once its energy or metadata changed."""


@dataclass
class Hardware:
    """The node's hardware names, for each job's record: GPU models by device label, the CPU model."""

    gpu_names: Mapping[str, str] = field(default_factory=dict)
    cpu_model: str = ""

    @classmethod
    def of(cls, devices: tuple[Device, ...], cpu_model: str = "") -> Hardware:
        """GPU models from the devices' `name` detail (NVML's nvmlDeviceGetName)."""
        names = {
            d.device: d.details["name"]
            for d in devices
            if d.component in GPU_COMPONENTS and d.details.get("name")
        }
        return cls(names, cpu_model)

    def gpu_model(self, gpus: frozenset[str]) -> str:
        """The models of `gpus`, each once, sorted, '; ' between several; '' when none is known."""
        return "; ".join(sorted({self.gpu_names[g] for g in gpus if g in self.gpu_names}))


class Accountant:
    """Attributes each interval's node energy to jobs and keeps the per-job totals."""

    def __init__(
        self,
        discovery: Discovery,
        wall_clock: Callable[[], float],
        devices: tuple[Device, ...] = (),
        gpus: GpuUsageSource | None = None,
        ledger: LedgerSink | None = None,
        idle_policy: str = "share",
        other_policy: str = "share",
        grace_seconds: float = 300.0,
        max_job_series: int = 1000,
        previously_running: Mapping[JobKey, float] | None = None,
        work: WorkClassifier | None = None,
        cpu_model: str = "",
        windows: WindowBook | None = None,
        trees: ProcessTreeSource | None = None,
    ) -> None:
        """`previously_running`: jobs the ledger says were running when the agent last stopped, with
        when they were last seen; those the first scan does not find ended while the agent was down.
        `work` adds each job's project, phase and model to its metadata. Each job's record also gets
        the models of the GPUs it used (from `devices`), how many at once, and the node's `cpu_model`."""
        self._discovery = discovery
        self._wall_clock = wall_clock
        self._gpus = gpus
        self._ledger = ledger
        self._idle_policy = idle_policy
        self._other_policy = other_policy
        self._grace_seconds = grace_seconds
        self._max_series = max_job_series
        self._idle_w: dict[Key, float] = {
            (d.component, d.device, d.source): float(d.details["idle_watts"])
            for d in devices
            if d.source == "estimate" and "idle_watts" in d.details
        }
        self._estimated_idle = frozenset(self._idle_w)
        self._scan: UsageScan | None = None
        self._jobs: dict[JobKey, _Job] = {}
        self._exported = 0
        """How many of `_jobs` are on /metrics."""
        self._ended: dict[JobKey, float] = {}
        """The jobs of `_jobs` that ended, and when: those the grace period is counted for."""
        self._seen: AbstractSet[JobKey] = frozenset()
        """The jobs the last scan found."""
        self._unattributed: dict[str, float] = {}
        self._unexported: dict[str, float] = {}
        self._errors: dict[str, int] = {}
        self._stale = dict(previously_running or {})
        self._work = work
        self._hardware = Hardware.of(devices, cpu_model)
        self._windows = windows
        """Energy windows of jobs (and of process trees outside jobs), fed each interval."""
        self._trees = trees
        self._tree_pids: dict[int, JobKey] = {}
        """pid -> the process tree with a window that it belongs to, as of the last scan."""
        self._tree_owners: frozenset[JobKey] = frozenset()
        self.snapshot = JobsSnapshot()

    def account(self, sample: Snapshot) -> JobsSnapshot:
        """Attribute the interval that `sample` closed, and publish the new totals."""
        now = self._wall_clock()
        try:
            scan = self._discovery.scan()
        except Exception:  # discovery must never stop the node's measurement
            log.exception("job discovery failed")
            self._errors["discovery"] = self._errors.get("discovery", 0) + 1
            scan = None
        seen = self._with_trees(scan) if scan is not None else None
        previous, self._scan = self._scan, seen if seen is not None else self._scan
        self._track_idle(sample)
        interval = None
        if seen is not None and previous is not None:
            interval = self._interval(sample, previous, seen)
            result = attribute(interval, self._idle_policy, self._other_policy)
        else:  # nothing to compare with yet: this interval's energy stays unattributed
            result = Attribution({}, dict(sample.interval_j))
        result, trees = set_apart(result, self._tree_owners)
        if self._windows is not None:
            shares = {**result.jobs, **trees} if trees else result.jobs
            self._windows.close_interval(
                now, shares, sample.interval_j, result.unattributed, self._running(scan)
            )
        by_source = self._add(result, scan)
        if scan is not None:
            self._seen_and_ended(scan, now)
        if self._ledger is not None:
            self._record(result, sample, by_source, interval, now)
        self.snapshot = self._publish(now)
        return self.snapshot

    def _with_trees(self, scan: UsageScan) -> UsageScan:
        """`scan` plus the process trees that hold windows and are in no job, as workloads of their own."""
        roots = self._windows.process_roots() if self._windows is not None else frozenset()
        if self._trees is None or not roots:
            self._tree_pids, self._tree_owners = {}, frozenset()
            return scan
        trees = {
            key: usage
            for key, usage in self._trees.usage(roots).items()
            if self._discovery.job_for_pid(int(key.job_id)) is None
        }
        self._tree_pids = {pid: key for key, usage in trees.items() for pid in usage.pids}
        self._tree_owners = frozenset(trees)
        return replace(scan, jobs={**scan.jobs, **trees}) if trees else scan

    def _running(self, scan: UsageScan | None) -> Callable[[JobKey], bool]:
        """Whether a window's owner still runs: a job the scan found, a process tree whose root lives."""

        def running(key: JobKey) -> bool:
            if key.scheduler == PROCESS:  # its root is alive while the last scan found it in its tree
                return self._tree_pids.get(int(key.job_id)) == key
            return scan is None or key in scan.jobs

        return running

    def _track_idle(self, sample: Snapshot) -> None:
        """A measured CPU counter's idle power is the lowest mean power seen on it so far."""
        for row in sample.energy:
            key = (row.component, row.device, row.source)
            if row.component != "cpu" or row.power_w is None or key in self._estimated_idle:
                continue
            self._idle_w[key] = min(self._idle_w.get(key, row.power_w), row.power_w)

    def _interval(self, sample: Snapshot, previous: UsageScan, scan: UsageScan) -> Interval:
        busy_ns = counter_delta(previous.node.cpu_busy_ns, scan.node.cpu_busy_ns, None)
        node = NodeInterval(sample.interval_s, busy_ns / 1e9, scan.node.cpus, scan.node.memory_used_bytes)
        jobs: dict[JobKey, JobInterval] = {}
        before = previous.jobs
        for key, usage in scan.jobs.items():
            last = before.get(key)
            if last is None:
                continue  # a job's first counters are its baseline
            # An idle job's usage is the very record of the last scan: no CPU time to difference.
            cpu_ns = 0 if last is usage else counter_delta(last.cpu_ns, usage.cpu_ns, None)
            jobs[key] = JobInterval(cpu_ns / 1e9, usage.memory_bytes, usage.cpus_allocated)
        trees = (key for key in self._tree_owners if key in scan.jobs and key not in previous.jobs)
        for key in trees:  # a process tree read when its first window began
            usage = scan.jobs[key]
            if self._windows is not None:
                start = self._windows.baseline(key)
                if start is not None:
                    cpu_s = counter_delta(start.cpu_ns, usage.cpu_ns, None) / 1e9
                    jobs[key] = JobInterval(cpu_s, usage.memory_bytes, usage.cpus_allocated)
        return Interval(sample.interval_j, node, jobs, dict(self._idle_w), self._gpu_intervals())

    def _gpu_intervals(self) -> dict[str, GpuInterval]:
        if self._gpus is None:
            return {}
        try:
            usage = self._gpus.gpu_usage()
        except Exception:
            log.exception("reading GPU processes failed")
            self._errors["gpu_processes"] = self._errors.get("gpu_processes", 0) + 1
            return {}
        for reason in self._gpus.usage_errors:
            stage = f"gpu_processes_{reason}"
            self._errors[stage] = self._errors.get(stage, 0) + 1
        return {
            gpu.device: GpuInterval(
                parties=self._parties(gpu.processes),
                instances={
                    name: (share, self._parties(processes))
                    for name, (share, processes) in gpu.instances.items()
                },
            )
            for gpu in usage
        }

    def _parties(self, processes: tuple[GpuProcess, ...]) -> tuple[GpuParty, ...]:
        return tuple(
            GpuParty(
                self._tree_pids.get(p.pid) or self._discovery.job_for_pid(p.pid), p.sm_util, p.memory_bytes
            )
            for p in processes
        )

    def _add(self, result: Attribution, scan: UsageScan | None) -> list[tuple[JobKey, SourceEnergy]]:
        """Add each job's shares to its totals; returns them by (component, source) for the ledger."""
        for key, joules in result.unattributed.items():
            self._unattributed[key[0]] = self._unattributed.get(key[0], 0.0) + joules
        ledger = self._ledger is not None
        by_source: list[tuple[JobKey, SourceEnergy]] = []
        # One pass per job over its shares, every sample: what /metrics and the ledger need from them.
        # The same few keys recur in every job's shares: what each means is worked out once.
        meanings: dict[Key, tuple[str, tuple[str, str], bool]] = {}
        for job_key, shares in result.jobs.items():
            job = self._jobs.get(job_key)
            if job is None:
                info = scan.jobs[job_key].info if scan is not None and job_key in scan.jobs else JobInfo()
                job = self._new_job(job_key, info)
            job.series = None
            target = job.energy_j if job.exported else self._unexported
            sums: SourceEnergy = {}
            gpus: set[str] | None = None  # made only for a job on GPUs
            for key, joules in shares.items():
                meaning = meanings.get(key)
                if meaning is None:
                    meaning = meanings[key] = (key[0], (key[0], key[2]), key[0] in GPU_COMPONENTS)
                component, component_source, on_gpu = meaning
                target[component] = target.get(component, 0.0) + joules
                if ledger:
                    sums[component_source] = sums.get(component_source, 0.0) + joules
                if on_gpu:  # attribution hands out positive shares only
                    gpus = gpus if gpus is not None else set()
                    gpus.add(key[1])
            if gpus and (len(gpus) > (job.gpu_count or 0) or not gpus <= job.gpus):
                self._note_gpus(job, gpus)
            if ledger:
                by_source.append((job_key, sums))
        return by_source

    def _note_gpus(self, job: _Job, gpus: set[str]) -> None:
        """The job got a share of `gpus` this interval: add them to its hardware (rare: only on news)."""
        job.gpus = job.gpus | gpus
        job.gpu_count = max(job.gpu_count or 0, len(gpus))
        job.info = self._with_hardware(job, job.found)
        job.series = None

    def _with_hardware(self, job: _Job, found: JobInfo) -> JobInfo:
        hw = self._hardware
        return replace(
            found, gpu_model=hw.gpu_model(job.gpus), gpu_count=job.gpu_count, cpu_model=hw.cpu_model
        )

    def _new_job(self, key: JobKey, info: JobInfo) -> _Job:
        exported = self._exported < self._max_series
        self._exported += exported
        job = self._jobs[key] = _Job(info, info, {}, exported)
        job.info = self._with_hardware(job, info)
        return job

    def _seen_and_ended(self, scan: UsageScan, now: float) -> None:
        if self._ledger is not None:
            for key, last_seen in self._stale.items():
                if key not in scan.jobs:  # ended while the agent was down: last seen is all we know
                    self._ledger.job_ended(key, last_seen)
        self._stale = {}
        if self._work is not None and not self._seen <= scan.jobs.keys():
            self._work.forget(scan.jobs)  # only once a job has left: nothing to forget before
        for key, usage in scan.jobs.items():
            info = usage.info if self._work is None else self._work.enrich(key, usage.info)
            job = self._jobs.get(key)
            if job is None:
                job = self._new_job(key, info)
            elif job.ended is None and job.noted and (job.found is info or job.found == info):
                job.found = info  # the same news: kept as the very object, told apart at once next time
                continue  # the ledger hears of it through record() each interval
            elif job.ended is not None:  # back after its end: maybe another job with the id, on other GPUs
                job.gpus, job.gpu_count = frozenset(), None
                del self._ended[key]
            job.found, job.info = info, self._with_hardware(job, info)
            job.ended, job.noted, job.series = None, True, None
            if self._ledger is not None:
                self._ledger.job_seen(key, job.info, now)
        if len(self._jobs) - len(self._ended) > len(scan.jobs):  # every job the scan found runs
            self._end_missing(scan, now)
        self._seen = scan.jobs.keys()
        expired = {key for key, ended in self._ended.items() if now - ended > self._grace_seconds}
        # In the order the jobs came: the unexported sums then add up as they always have.
        for key in [k for k in self._jobs if k in expired] if expired else ():
            gone = self._jobs.pop(key)
            del self._ended[key]
            self._exported -= gone.exported
            if gone.exported:
                for component, joules in gone.energy_j.items():
                    self._unexported[component] = self._unexported.get(component, 0.0) + joules

    def _end_missing(self, scan: UsageScan, now: float) -> None:
        """End the running jobs the scan did not find."""
        for key, job in self._jobs.items():
            if key not in scan.jobs and job.ended is None:
                job.ended, job.series = now, None
                self._ended[key] = now
                if self._ledger is not None:
                    self._ledger.job_ended(key, now)

    def _record(
        self,
        result: Attribution,
        sample: Snapshot,
        by_source: list[tuple[JobKey, SourceEnergy]],
        interval: Interval | None,
        now: float,
    ) -> None:
        assert self._ledger is not None
        cpu_seconds: dict[JobKey, float] = {}
        if interval is not None:  # process trees are no jobs to the ledger (none without their windows)
            usage = interval.jobs.items()
            cpu_seconds = (
                {key: j.cpu_s for key, j in usage if key.scheduler != PROCESS}
                if self._tree_owners
                else {key: j.cpu_s for key, j in usage}
            )
        jobs: dict[JobKey, tuple[JobInfo, SourceEnergy]] = {}
        for job_key, sums in by_source:
            job = self._jobs.get(job_key)
            jobs[job_key] = (job.info if job is not None else JobInfo(), sums)
        self._ledger.record(
            now,
            jobs,
            by_component_source(result.unattributed),
            by_component_source(sample.interval_j),
            gpu_seconds(result, sample.interval_j, sample.interval_s),
            cpu_seconds,
        )

    def _publish(self, now: float) -> JobsSnapshot:
        # A job's series is made again only when it changed: a running job's on every sample, an ended
        # one's once. Nothing mutates a series once published.
        series = []
        for key, job in self._jobs.items():
            if job.exported:
                if job.series is None:
                    job.series = JobSeries(key, job.info, dict(job.energy_j), job.ended)
                series.append(job.series)
        return JobsSnapshot(
            jobs=tuple(series),
            unattributed_j=MappingProxyType(dict(self._unattributed)),
            unexported_j=MappingProxyType(dict(self._unexported)),
            running=len(self._jobs) - len(self._ended),
            errors=MappingProxyType(dict(self._errors)),
        )
