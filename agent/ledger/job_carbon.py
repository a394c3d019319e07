"""One job's CO2e from its hourly energy in the ledger: location- and market-based, CFE, embodied, SCI.

Every hour of the job is priced at that hour's intensity (`carbon.hour_emissions`) and the hours are
summed, so a job spanning a clean and a dirty hour gets Σ F_h x I_h, never kWh x a mean intensity.
The run's own figures stored by an import override the site's: `location` (priced at that location's
annual figure, without the site's hourly series or contracts), `pue`, and `intensity_g_per_kwh`.

SCI (Green Software Foundation, ISO/IEC 21031): SCI = (E x I + M) per R, with R = one run (the job),
E x I = the location-based grams over facility kWh (IT kWh x PUE, hour by hour: the data centre's
overhead is caused by the run), and M = the embodied grams of the job's node over its duration x its
share of the node (docs/carbon.md). SCI excludes market-based instruments, so it uses location-based I.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from agent.carbon.data import CodecarbonData, LocationIntensity, Provenance
from agent.carbon.model import CarbonModel, Emissions, Site, hour_emissions, total
from agent.config.carbon import MONTHS
from agent.ledger.provenance import MEASURED
from agent.ledger.read import JobHours
from agent.ledger.summary import JobSummary
from agent.units import JOULES_PER_KWH
from collectors.base import NOT_IN_TOTAL

OWN_FIGURE = "the run's own intensity_g_per_kwh"


@dataclass(frozen=True)
class JobCarbon:
    """A job's energy and CO2e (grams), summed over its ledger hours, and its embodied share."""

    job: JobSummary
    site: str
    location: str
    """Where the energy was used, in our location syntax (`world` when unknown)."""
    emissions: Emissions
    embodied_g: float
    embodied_share: float
    """The job's share of its node used for M: GPUs used / GPUs on the node if known, else 1."""
    embodied_configured: bool = True
    """Whether a `carbon.embodied` item covers the job's node; if not, `embodied_g` is 0 but means
    not configured, and outputs say so."""

    @property
    def sci_g_per_run(self) -> float:
        """SCI with R = this one run: location-based grams + embodied grams."""
        return self.emissions.location_g + self.embodied_g

    @property
    def measured_share(self) -> float:
        """Share (0 to 1) of the job's energy that the agent read from meters: neither estimated nor
        imported from another tool (agent.ledger.provenance)."""
        return self.job.provenance().shares()[MEASURED] or 0.0

    @property
    def intensity_source(self) -> str:
        return describe(self.emissions.provenance)

    def as_dict(self) -> dict[str, Any]:
        """The figures `greenai job --json` and /api/v1/jobs/<id> add to the job's summary."""
        e = self.emissions
        return {
            "co2e_grams": {"location": e.location_g, "market": e.market_g},
            "sci_g_per_run": self.sci_g_per_run,
            "intensity_source": self.intensity_source,
            "carbon": {
                "site": self.site,
                "location": self.location,
                "it_kwh": e.it_kwh,
                "facility_kwh": e.facility_kwh,
                "pue": e.pue,
                "intensity_g_per_kwh": e.intensity_g_per_kwh,
                "cfe_pct": e.cfe_pct,
                "hourly_coverage": e.hourly_coverage,
                "embodied_g": self.embodied_g if self.embodied_configured else None,
                "embodied_configured": self.embodied_configured,
                "embodied_share": self.embodied_share,
                "measured_share": self.measured_share,
                "provenance": [asdict(p) for p in e.provenance],
            },
        }


def job_carbon(
    job: JobSummary,
    hours: JobHours,
    model: CarbonModel,
    data: CodecarbonData | None = None,
    gpus_on_node: int | None = None,
) -> JobCarbon:
    """Price `job`'s `hours` at its node's site (or the run's own figures); `data` for a location override."""
    site = job_site(job, hours, model, data)
    emissions = total(
        hour_emissions(site, hour, it_kwh(energy)) for hour, energy in sorted(hours.energy_j.items())
    )
    share = node_share(job, gpus_on_node)
    embodied = model.embodied_g(job.node, job.duration_seconds, share)
    covered = model.embodied_covers(job.node)
    return JobCarbon(job, site.name, site.annual.provenance.location, emissions, embodied, share, covered)


def it_kwh(energy_j: Mapping[tuple[str, str], float]) -> float:
    """kWh of one hour's joules by (component, source), without the components that overlap others."""
    return sum(j for (component, _), j in energy_j.items() if component not in NOT_IN_TOTAL) / JOULES_PER_KWH


def job_site(job: JobSummary, hours: JobHours, model: CarbonModel, data: CodecarbonData | None) -> Site:
    """The job's node's site, with the run's own location, intensity and PUE where it has them."""
    site = model.site_for(job.node)
    if hours.location:
        data = data if data is not None else CodecarbonData()
        found = data.resolve(hours.location) or data.world(f"{hours.location} not found")
        if found.provenance != site.annual.provenance:
            # Elsewhere than the site: its hourly series and its supply contracts do not apply.
            site = replace(site, annual=found, hourly=None, cfe_contract_share=0.0, supplier_g_per_kwh=None)
    if hours.intensity_g_per_kwh is not None:
        where = site.annual.provenance.location
        prov = Provenance(OWN_FIGURE, "", "per run", where, note="given with the imported run")
        site = replace(site, annual=LocationIntensity(hours.intensity_g_per_kwh, None, prov), hourly=None)
    if hours.pue is not None:
        site = replace(site, pue=(hours.pue,) * MONTHS)
    return site


def node_share(job: JobSummary, gpus_on_node: int | None) -> float:
    """GPUs the job used on average / GPUs on the node, at most 1; 1 when either is unknown."""
    if not gpus_on_node or job.gpu_seconds <= 0 or job.duration_seconds <= 0:
        return 1.0
    return min(1.0, job.gpu_seconds / job.duration_seconds / gpus_on_node)


def describe(provenance: Iterable[Provenance]) -> str:
    """One line citing every intensity source (`Provenance.cite`), with the location a published
    dataset's figure is for and, for a fallback, what it stands in for."""
    parts = []
    for p in provenance:
        text = p.cite()
        if p.title:
            text += f" for {p.location}"
        if p.fallback:
            text += f" (fallback: {p.note})" if p.note else " (fallback)"
        parts.append(text)
    return "; ".join(parts) or "none (no energy)"
