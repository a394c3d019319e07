"""The CO2e metric families of one published `CarbonTotals`: grid intensity, PUE, CFE, and grams per
basis for the node, each job, unexported jobs and unattributed energy (see agent.live.carbon for
why they add up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from agent.export.exposition import Family, counter, gauge
from agent.live.snapshot import BASES, CarbonTotals
from collectors.workloads import JobKey


class KindLabels(Protocol):
    """A job's label values with a component or basis third (agent.export.job_metrics.JobLabels)."""

    def with_kind(self, kind: str) -> tuple[str, ...]: ...


def co2_families(
    totals: CarbonTotals,
    job_id: Callable[[str], str],
    extra_labels: tuple[str, ...] = (),
    job_labels: Mapping[JobKey, KindLabels] | None = None,
) -> Iterator[Family]:
    """The CO2e families of one published snapshot; `job_id` makes a job id a safe label value.

    `job_labels` gives, per job, its label values as on its energy series with a basis in the
    component's place (`with_kind(basis)`: job_id, scheduler, basis, then `extra_labels`, the
    jobs.labels); a job not in it gets `job_id` of its id and blank extra labels.
    """
    intensity = gauge(
        "greenai_grid_carbon_intensity_grams_per_kwh",
        "Location-based grid carbon intensity for the current hour at this node's site, gCO2e per kWh "
        "(hourly CSV where it has the hour, else the location's annual figure).",
        ["site", "location"],
    )
    intensity.add([totals.site, totals.location], totals.intensity_g_per_kwh)
    yield intensity
    for name, help_text, value in (
        ("greenai_site_pue", "PUE of this node's site for the current hour: facility kWh per IT kWh.",
         totals.pue),
        ("greenai_site_cfe_ratio", "Carbon-free share (0 to 1) of this node's facility energy for the "
         "current hour: the CFE contract plus the grid's carbon-free share where known.", totals.cfe_ratio),
    ):  # fmt: skip
        site = gauge(name, help_text, ["site", "location"])
        site.add([totals.site, totals.location], value)
        yield site
    node = counter(
        "greenai_node_co2_grams",
        "CO2e of the node's energy since the agent started: facility energy (IT x PUE) x the hour's "
        "intensity, per basis (location, market).",
        ["basis"],
    )
    for basis in BASES:
        node.add([basis], totals.node_g.get(basis, 0.0))
    yield node
    jobs = counter(
        "greenai_job_co2_grams",
        "CO2e of the energy attributed to a job since the agent first saw it, per basis.",
        ["job_id", "scheduler", "basis", *extra_labels],
    )
    blank = ("",) * len(extra_labels)
    known = job_labels or {}
    for key, grams in totals.jobs_g.items():
        of = known.get(key)
        for basis in BASES:
            labels = (
                of.with_kind(basis) if of is not None else (job_id(key.job_id), key.scheduler, basis, *blank)
            )
            jobs.labels.append(labels)
            jobs.values.append(grams.get(basis, 0.0))
    yield jobs
    for name, help_text, values in (
        ("greenai_jobs_unexported_co2_grams", "CO2e of jobs that are not on /metrics.", totals.unexported_g),
        ("greenai_node_unattributed_co2_grams", "CO2e of node energy no job was charged for.",
         totals.unattributed_g),
    ):  # fmt: skip
        family = counter(name, help_text, ["basis"])
        for basis in BASES:
            family.add([basis], values.get(basis, 0.0))
        yield family
