"""Carbon: kWh and CO2e per day, grid intensity, carbon-free share, by project and phase."""

from common import (
    NODES,
    basis_variable,
    dashboard,
    increase,
    instance_variable,
    kwh,
    per_day,
    queries,
    row,
    series,
    stat,
    table,
)
from grafanalib.core import TimeSeries

IT_ENERGY = f'greenai_node_energy_joules_total{{{NODES},component!~"grace|node|platform"}}'
ALL_CO2 = f"greenai_node_co2_grams_total{{{NODES}}}"
NODE_CO2 = f'greenai_node_co2_grams_total{{{NODES},basis="$basis"}}'
IT_POWER = f"instance:greenai_node_power_watts:rate5m{{{NODES}}}"
CFE = (
    f"sum({IT_POWER} * on (instance, job) group_left ()"
    f" max by (instance, job) (greenai_site_cfe_ratio{{{NODES}}}))"
    f" / sum({IT_POWER})"
)
PROJECT_NOTE = (
    "From the recording rules in dashboards/greenai.rules.yml; needs `jobs.labels: [project, phase]` in the "
    "agent config (one empty series otherwise)."
)


def by_job_label(label: str, y: int) -> list[TimeSeries]:
    """Power and CO2e rate by a job label (project or phase) at height y, from the recording rules."""
    return [
        series(
            f"Power by {label}",
            f"{label}:greenai_job_power_watts:rate5m",
            "{{" + label + "}}",
            "watt",
            (0, y, 12, 8),
            PROJECT_NOTE,
            stacked=True,
        ),
        series(
            f"CO2e rate by {label}",
            f'{label}_basis:greenai_job_co2_grams:rate5m{{basis="$basis"}} * 3600',
            "{{" + label + "}}",
            "massg",
            (12, y, 12, 8),
            "Grams of CO2e per hour. " + PROJECT_NOTE,
            stacked=True,
        ),
    ]


dashboard = dashboard(
    title="greenai / Carbon",
    uid="greenai-carbon",
    description="Energy and CO2e of the nodes: facility energy (IT x PUE) x the hour's grid intensity, "
    "per basis (location, market); by project and phase through the recording rules.",
    variables=[instance_variable(), basis_variable()],
    panels=[
        stat("IT energy in range", kwh(increase(IT_ENERGY)), "kwatth", (0, 0, 6, 4)),
        stat("CO2e in range", f"{increase(NODE_CO2)} / 1000", "masskg", (6, 0, 6, 4)),
        stat(
            "Carbon-free energy now",
            CFE,
            "percentunit",
            (12, 0, 6, 4),
            "Energy-weighted carbon-free share of the facility energy this hour (CFE contract plus the "
            "grid's carbon-free share where the carbon config has it).",
        ),
        stat(
            "Grid intensity now",
            f"avg(greenai_grid_carbon_intensity_grams_per_kwh{{{NODES}}})",
            "none",
            (18, 0, 6, 4),
            "gCO2e per kWh, location-based, averaged over the nodes' sites.",
        ),
        row("Per day", 4),
        per_day("IT energy per day", kwh(increase(IT_ENERGY, "$__interval")), "kWh", "kwatth", (0, 5, 12, 8)),
        per_day(
            "CO2e per day",
            f"{increase(ALL_CO2, '$__interval', 'basis')} / 1000",
            "{{basis}}",
            "masskg",
            (12, 5, 12, 8),
        ),
        row("Grid", 13),
        series(
            "Grid carbon intensity",
            f"max by (site, location) (greenai_grid_carbon_intensity_grams_per_kwh{{{NODES}}})",
            "{{site}} ({{location}})",
            "none",
            (0, 14, 12, 8),
            "gCO2e per kWh at each site, hour by hour.",
        ),
        series(
            "Carbon-free energy",
            f"max by (site, location) (greenai_site_cfe_ratio{{{NODES}}})",
            "{{site}} ({{location}})",
            "percentunit",
            (12, 14, 12, 8),
        ),
        row("By project and phase", 22),
        *by_job_label("project", 23),
        *by_job_label("phase", 31),
        table(
            "Energy and CO2e by project and phase in range",
            queries(
                (
                    kwh("avg_over_time(project_phase:greenai_job_power_watts:rate5m[$__range]) * $__range_s"),
                    "kWh",
                ),
                (
                    'avg_over_time(project_phase_basis:greenai_job_co2_grams:rate5m{basis="$basis"}[$__range])'
                    " * $__range_s",
                    "g CO2e",
                ),
                instant=True,
            ),
            (0, 39, 24, 8),
            "kWh (A) and grams of CO2e (B): the recorded rates' mean over the range x its length. "
            + PROJECT_NOTE,
        ),
    ],
)
