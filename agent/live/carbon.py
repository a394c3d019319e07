"""Live CO2e: each interval's node and job energy priced at the current hour's intensity.

One `CarbonModel.emissions()` lookup per interval gives grams per IT kWh (PUE included) for both
bases; every figure of the interval is that factor times its kWh. Job energy per interval is the
change of the job's total in the published `JobsSnapshot`, so CO2e conserves as energy does:

    sum(greenai_job_co2_grams_total) + greenai_jobs_unexported_co2_grams_total
      + greenai_node_unattributed_co2_grams_total == greenai_node_co2_grams_total   (per basis)

A job that leaves /metrics takes its grams to the unexported counter, as its joules go.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from agent.carbon.model import CarbonModel
from agent.live.snapshot import BASES, CarbonTotals, JobSeries, JobsSnapshot, Snapshot
from agent.units import JOULES_PER_KWH, hour_of
from collectors.base import NOT_IN_TOTAL
from collectors.workloads import JobKey


def _kwh(energy_j: Mapping[str, float]) -> float:
    return sum(j for component, j in energy_j.items() if component not in NOT_IN_TOTAL) / JOULES_PER_KWH


_NO_GRAMS: Mapping[str, float] = MappingProxyType(dict.fromkeys(BASES, 0.0))


class LiveCarbon:
    """Turns each (sample, jobs snapshot) pair into running CO2e totals; call once per interval."""

    def __init__(self, model: CarbonModel, node: str, wall_clock: Callable[[], float]) -> None:
        self._model = model
        self._node = node
        self._wall_clock = wall_clock
        site = model.site_for(node)
        self._site, self._location = site.name, site.annual.provenance.location
        # Each job's grams are published as they are kept: a read-only mapping replaced, never changed,
        # when the job's total moves, so an unchanged job costs nothing to publish again.
        self._jobs_g: dict[JobKey, Mapping[str, float]] = {}
        self._jobs_kwh: dict[JobKey, float] = {}
        self._jobs_series: dict[JobKey, JobSeries] = {}
        self._published_jobs_g: Mapping[JobKey, Mapping[str, float]] = MappingProxyType({})
        self._node_g = dict.fromkeys(BASES, 0.0)
        self._unexported_g = dict.fromkeys(BASES, 0.0)
        self._unattributed_g = dict.fromkeys(BASES, 0.0)
        self._unexported_kwh = 0.0
        self._unattributed_kwh = 0.0

    def update(self, sample: Snapshot, jobs: JobsSnapshot) -> CarbonTotals:
        """The CO2e totals after the interval that `sample` closed, `jobs` being its job totals."""
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
        jobs_g, jobs_kwh, last_series = self._jobs_g, self._jobs_kwh, self._jobs_series
        current = {series.key: series for series in jobs.jobs}
        moved_kwh = 0.0
        changed = False
        for key in [k for k in jobs_g if k not in current]:  # left /metrics: grams go with joules
            for basis, grams in jobs_g.pop(key).items():
                self._unexported_g[basis] += grams
            moved_kwh += jobs_kwh.pop(key)
            del last_series[key]
            changed = True
        for key, series in current.items():
            # The accountant hands over the very series of an unchanged job: its kWh are those already
            # priced, and their zero difference times the (finite) factors would add nothing.
            if last_series.get(key) is series:
                continue
            last_series[key] = series
            total = _kwh(series.energy_j)
            kwh = total - jobs_kwh.get(key, 0.0)
            before = jobs_g.get(key, _NO_GRAMS)
            jobs_g[key] = MappingProxyType({basis: before[basis] + kwh * factors[basis] for basis in BASES})
            jobs_kwh[key] = total
            changed = True
        if changed:
            self._published_jobs_g = MappingProxyType(dict(jobs_g))
        unexported, unattributed = _kwh(jobs.unexported_j), _kwh(jobs.unattributed_j)
        add(self._unexported_g, unexported - self._unexported_kwh - moved_kwh)
        add(self._unattributed_g, unattributed - self._unattributed_kwh)
        self._unexported_kwh, self._unattributed_kwh = unexported, unattributed
        return CarbonTotals(
            site=self._site,
            location=self._location,
            intensity_g_per_kwh=per_kwh.location_g / per_kwh.facility_kwh if per_kwh.facility_kwh else 0.0,
            pue=per_kwh.pue,
            cfe_ratio=per_kwh.cfe_pct / 100.0,
            node_g=MappingProxyType(dict(self._node_g)),
            jobs_g=self._published_jobs_g,
            unexported_g=MappingProxyType(dict(self._unexported_g)),
            unattributed_g=MappingProxyType(dict(self._unattributed_g)),
        )
