"""The CO2e metric families of one published `CarbonTotals`: grid intensity, PUE, CFE, and grams per
basis for the node, each job, unexported jobs and unattributed energy (see agent.live.carbon for
why they add up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.live.snapshot import BASES, CarbonTotals
from collectors.workloads import JobKey


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
