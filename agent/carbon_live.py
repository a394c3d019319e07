"""Live CO2e for /metrics: each interval's node and job energy priced at the current hour's intensity.

One `CarbonModel.emissions()` lookup per interval gives grams per IT kWh (PUE included) for both
bases; every figure of the interval is that factor times its kWh. Job energy per interval is the
change of the job's total in the published `JobsSnapshot`, so CO2e conserves as energy does:

    sum(greenai_job_co2_grams_total) + greenai_jobs_unexported_co2_grams_total
      + greenai_node_unattributed_co2_grams_total == greenai_node_co2_grams_total   (per basis)

A job that leaves /metrics takes its grams to the unexported counter, as its joules go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.accounting import JobsSnapshot
from agent.carbon import CarbonModel
from agent.ledger import hour_of
from agent.ledger_read import JOULES_PER_KWH, NOT_IN_TOTAL
from agent.sampler import Snapshot
from collectors.workloads import JobKey

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


def _kwh(energy_j: Mapping[str, float]) -> float:
    return sum(j for component, j in energy_j.items() if component not in NOT_IN_TOTAL) / JOULES_PER_KWH


class LiveCarbon:
    """Turns each (sample, jobs snapshot) pair into running CO2e totals; call once per interval."""

    def __init__(self, model: CarbonModel, node: str, wall_clock: Callable[[], float]) -> None:
        self._model = model
        self._node = node
        self._wall_clock = wall_clock
        site = model.site_for(node)
        self._site, self._location = site.name, site.annual.provenance.location
        self._jobs_g: dict[JobKey, dict[str, float]] = {}
        self._jobs_kwh: dict[JobKey, float] = {}
        self._node_g = dict.fromkeys(BASES, 0.0)
        self._unexported_g = dict.fromkeys(BASES, 0.0)
        self._unattributed_g = dict.fromkeys(BASES, 0.0)
        self._unexported_kwh = 0.0
        self._unattributed_kwh = 0.0

    def update(self, sample: Snapshot, jobs: JobsSnapshot) -> JobsSnapshot:
        """`jobs` with the CO2e totals after the interval `sample` closed."""
        hour = hour_of(self._wall_clock())
        per_kwh = self._model.emissions(self._node, hour, 1.0)  # the interval's one lookup
        factors = {"location": per_kwh.location_g, "market": per_kwh.market_g}

        def add(target: dict[str, float], kwh: float) -> None:
            for basis in BASES:
                target[basis] += kwh * factors[basis]

        node_kwh = (
            sum(j for (c, _, _), j in sample.interval_j.items() if c not in NOT_IN_TOTAL) / JOULES_PER_KWH
        )
        add(self._node_g, node_kwh)
        current = {series.key: series for series in jobs.jobs}
        moved_kwh = 0.0
        for key in [k for k in self._jobs_g if k not in current]:  # left /metrics: grams go with joules
            for basis, grams in self._jobs_g.pop(key).items():
                self._unexported_g[basis] += grams
            moved_kwh += self._jobs_kwh.pop(key)
        for key, series in current.items():
            total = _kwh(series.energy_j)
            add(self._jobs_g.setdefault(key, dict.fromkeys(BASES, 0.0)), total - self._jobs_kwh.get(key, 0.0))
            self._jobs_kwh[key] = total
        unexported, unattributed = _kwh(jobs.unexported_j), _kwh(jobs.unattributed_j)
        add(self._unexported_g, unexported - self._unexported_kwh - moved_kwh)
        add(self._unattributed_g, unattributed - self._unattributed_kwh)
        self._unexported_kwh, self._unattributed_kwh = unexported, unattributed
        totals = CarbonTotals(
            site=self._site,
            location=self._location,
            intensity_g_per_kwh=per_kwh.location_g / per_kwh.facility_kwh if per_kwh.facility_kwh else 0.0,
            pue=per_kwh.pue,
            cfe_ratio=per_kwh.cfe_pct / 100.0,
            node_g=MappingProxyType(dict(self._node_g)),
            jobs_g=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self._jobs_g.items()}),
            unexported_g=MappingProxyType(dict(self._unexported_g)),
            unattributed_g=MappingProxyType(dict(self._unattributed_g)),
        )
        return replace(jobs, co2=totals)


def co2_families(
    totals: CarbonTotals,
    job_id: Callable[[str], str],
    extra_labels: tuple[str, ...] = (),
    extra_values: Mapping[JobKey, list[str]] | None = None,
) -> Iterator[Metric]:
    """The CO2e families of one published snapshot; `job_id` makes a job id a safe label value.

    `extra_values` gives each job's values of `extra_labels` (jobs.labels), as on its energy series.
    """
    gauge = GaugeMetricFamily(
        "greenai_grid_carbon_intensity_grams_per_kwh",
        "Location-based grid carbon intensity for the current hour at this node's site, gCO2e per kWh "
        "(hourly CSV where it has the hour, else the location's annual figure).",
        labels=["site", "location"],
    )
    gauge.add_metric([totals.site, totals.location], totals.intensity_g_per_kwh)
    yield gauge
    for name, help_text, value in (
        ("greenai_site_pue", "PUE of this node's site for the current hour: facility kWh per IT kWh.",
         totals.pue),
        ("greenai_site_cfe_ratio", "Carbon-free share (0 to 1) of this node's facility energy for the "
         "current hour: the CFE contract plus the grid's carbon-free share where known.", totals.cfe_ratio),
    ):  # fmt: skip
        site = GaugeMetricFamily(name, help_text, labels=["site", "location"])
        site.add_metric([totals.site, totals.location], value)
        yield site
    node = CounterMetricFamily(
        "greenai_node_co2_grams",
        "CO2e of the node's energy since the agent started: facility energy (IT x PUE) x the hour's "
        "intensity, per basis (location, market).",
        labels=["basis"],
    )
    for basis in BASES:
        node.add_metric([basis], totals.node_g.get(basis, 0.0))
    yield node
    jobs = CounterMetricFamily(
        "greenai_job_co2_grams",
        "CO2e of the energy attributed to a job since the agent first saw it, per basis.",
        labels=["job_id", "scheduler", "basis", *extra_labels],
    )
    blank = [""] * len(extra_labels)
    for key, grams in totals.jobs_g.items():
        extra = (extra_values or {}).get(key, blank)
        for basis in BASES:
            jobs.add_metric([job_id(key.job_id), key.scheduler, basis, *extra], grams.get(basis, 0.0))
    yield jobs
    for name, help_text, values in (
        ("greenai_jobs_unexported_co2_grams", "CO2e of jobs that are not on /metrics.", totals.unexported_g),
        ("greenai_node_unattributed_co2_grams", "CO2e of node energy no job was charged for.",
         totals.unattributed_g),
    ):  # fmt: skip
        family = CounterMetricFamily(name, help_text, labels=["basis"])
        for basis in BASES:
            family.add_metric([basis], values.get(basis, 0.0))
        yield family
