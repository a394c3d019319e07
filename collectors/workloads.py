"""What runs on the node: the types job discovery and GPU process readers hand to attribution.

A job is whatever a scheduler or runtime calls one: a Slurm job, a Kubernetes pod, a Docker or
Podman container, a systemd service. Usage counters are cumulative, like energy counters, so the
same wrap-safe delta helper turns them into per-interval figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class JobKey(NamedTuple):
    """A job's identity on this node: the scheduler and the id that scheduler shows.

    A named tuple rather than a dataclass: it is hashed in every per-job dict on every sample, and a
    tuple's hash is the cheapest there is.
    """

    scheduler: str
    job_id: str

    def __str__(self) -> str:
        return f"{self.scheduler}:{self.job_id}"


@dataclass(frozen=True)
class JobInfo:
    """What is known about a job besides its usage; empty strings where unknown."""

    user: str = ""
    uid: int | None = None
    name: str = ""
    account: str = ""
    """Slurm account, or Kubernetes namespace."""
    partition: str = ""
    project: str = ""
    phase: str = ""
    model: str = ""
    """What the work was (agent.work): from the job's own declaration or the config's rules."""
    gpu_model: str = ""
    """The models of the GPUs the job used, e.g. `NVIDIA H100 80GB HBM3` ('; ' between several)."""
    gpu_count: int | None = None
    """The most GPUs the job used at once; None when unknown."""
    cpu_model: str = ""
    """The node's CPU model, e.g. `AMD EPYC 9654 96-Core Processor`."""


@dataclass(frozen=True)
class JobUsage:
    """One job's resource usage as of one scan."""

    key: JobKey
    info: JobInfo
    cpu_ns: int
    """Cumulative CPU time of the job's cgroup (v2 cpu.stat usage_usec x 1000, v1 cpuacct.usage), or the
    sum over its processes where there is no cgroup counter."""
    memory_bytes: int
    """Memory in use now (v2 memory.current, v1 memory.usage_in_bytes, else the processes' RSS)."""
    cpus_allocated: float | None = None
    """CPUs the job may use (cpuset size or CPU quota); None when the cgroup does not limit it."""
    pids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class NodeUsage:
    """The whole node's counters, taken in the same scan as the jobs'."""

    cpu_busy_ns: int
    """Cumulative busy CPU time of all CPUs (from <procfs>/stat)."""
    cpus: int
    memory_used_bytes: int
    """MemTotal - MemAvailable."""


@dataclass(frozen=True)
class UsageScan:
    """Every job found in one scan, and the node's usage at the same moment."""

    jobs: Mapping[JobKey, JobUsage]
    node: NodeUsage


@dataclass(frozen=True)
class GpuProcess:
    """A process on a GPU: its host pid, SM utilisation in percent and GPU memory in bytes, where known."""

    pid: int
    sm_util: float | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class GpuUsage:
    """The processes on one GPU (by the `device` label its energy counter has, e.g. `gpu0`).

    For a MIG-partitioned GPU, `instances` maps each GPU instance to its share of the GPU's SMs and
    the processes on it.
    """

    device: str
    processes: tuple[GpuProcess, ...] = ()
    instances: Mapping[str, tuple[float, tuple[GpuProcess, ...]]] = field(default_factory=dict)
