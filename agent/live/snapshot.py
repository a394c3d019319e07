"""What one sample publishes: immutable values that /metrics and the API read, never a half-built one.

`Snapshot` is the node's energy (the sampler's), `JobsSnapshot` the per-job totals (the
accountant's), `CarbonTotals` the CO2e that goes with them (live carbon's), and `Published` the
three together as of one sample: the daemon replaces it whole after each sample, and a scrape reads
it once, so node, job and CO2e figures always come from the same sample and add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from collectors.base import Device
from collectors.workloads import JobInfo, JobKey

Key = tuple[str, str, str]
"""(component, device, source)"""


@dataclass(frozen=True)
class EnergyRow:
    """Node energy of one device since the agent started, and its mean power over the last interval."""

    component: str
    device: str
    source: str
    energy_j: float
    power_w: float | None


@dataclass(frozen=True)
class Snapshot:
    """The node's energy as of one sample: totals and power per device, collector health."""

    time: float
    samples: int
    energy: tuple[EnergyRow, ...] = ()
    collectors_up: Mapping[str, bool] = field(default_factory=dict)
    errors: Mapping[tuple[str, str], int] = field(default_factory=dict)
    devices: tuple[Device, ...] = ()
    sample_duration_s: float = 0.0
    interval_s: float = 0.0
    interval_j: Mapping[Key, float] = field(default_factory=dict)
    """Energy per key used during the last interval, the part that this sample added."""
    devices_up: Mapping[tuple[str, str], bool] = field(default_factory=dict)
    """Per (component, device): whether its last reading was read and plausible."""

    def energy_j(
        self, component: str | None = None, device: str | None = None, source: str | None = None
    ) -> float:
        """Sum of node energy in joules over the rows that match every given label."""
        return sum(
            row.energy_j
            for row in self.energy
            if (component is None or row.component == component)
            and (device is None or row.device == device)
            and (source is None or row.source == source)
        )


JOB_COMPONENTS = ("cpu", "dram", "gpu")
"""The components every job's series show, charged or not. A job is also charged for `module` (a
superchip) and `other` (wall energy beyond the counters) on nodes that measure them; meters that
contain other components (platform, node, grace) stay on the node."""


class JobSeries(NamedTuple):
    """One job as /metrics shows it: energy per component since the agent first saw it.

    A named tuple rather than a frozen dataclass: the accountant makes one per running job every sample.
    """

    key: JobKey
    info: JobInfo
    energy_j: Mapping[str, float]
    ended: float | None
    """Wall-clock time the job was last seen, once it has ended."""


@dataclass(frozen=True)
class JobsSnapshot:
    """Job totals as of one sample; jobs + unexported + unattributed = node, per component."""

    jobs: tuple[JobSeries, ...] = ()
    unattributed_j: Mapping[str, float] = field(default_factory=dict)
    unexported_j: Mapping[str, float] = field(default_factory=dict)
    """Energy of jobs not (or no longer) on /metrics: past the grace period or over max_job_series."""
    running: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)


BASES = ("location", "market")


@dataclass(frozen=True)
class CarbonTotals:
    """CO2e grams per basis since the agent started, as of one sample, and the hour's grid intensity."""

    site: str
    location: str
    intensity_g_per_kwh: float
    """Location-based grid intensity of the current hour at the node's site (before PUE)."""
    pue: float = 1.0
    """The site's PUE this hour: facility kWh per IT kWh."""
    cfe_ratio: float = 0.0
    """Carbon-free share (0 to 1) of the facility energy this hour: contract plus the grid's own."""
    node_g: Mapping[str, float] = field(default_factory=dict)
    jobs_g: Mapping[JobKey, Mapping[str, float]] = field(default_factory=dict)
    unexported_g: Mapping[str, float] = field(default_factory=dict)
    unattributed_g: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    """Node energy, and where jobs are accounted the job totals and their CO2e, as of one sample."""

    node: Snapshot
    jobs: JobsSnapshot | None = None
    co2: CarbonTotals | None = None
