"""Carbon: kWh and CO2e per day, grid intensity, carbon-free share, by project and phase."""

from common import (
    JOULES_PER_KWH,
    NODES,
    basis_variable,
    dashboard,
    instance_variable,
    q,
    row,
    stat,
    table,
    timeseries,
)

IT_ENERGY = f'greenai_node_energy_joules_total{{{NODES},component!="platform"}}'
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

dashboard = dashboard(
    title="greenai / Carbon",
    uid="greenai-carbon",
    description="Energy and CO2e of the nodes: facility energy (IT x PUE) x the hour's grid intensity, "
    "per basis (location, market); by project and phase through the recording rules.",
    variables=[instance_variable(), basis_variable()],
    panels=[
        stat(
            "IT energy in range",
            f"sum(increase({IT_ENERGY}[$__range])) / {JOULES_PER_KWH:g}",
            "kwatth",
            (0, 0, 6, 4),
        ),
        stat("CO2e in range", f"sum(increase({NODE_CO2}[$__range])) / 1000", "masskg", (6, 0, 6, 4)),
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
        timeseries(
            "IT energy per day",
            [q(f"sum(increase({IT_ENERGY}[$__interval])) / {JOULES_PER_KWH:g}", "kWh")],
            "kwatth",
            (0, 5, 12, 8),
            bars=True,
            interval="1d",
        ),
        timeseries(
            "CO2e per day",
            [
                q(
                    f"sum by (basis) (increase(greenai_node_co2_grams_total{{{NODES}}}[$__interval])) / 1000",
                    "{{basis}}",
                )
            ],
            "masskg",
            (12, 5, 12, 8),
            bars=True,
            interval="1d",
        ),
        row("Grid", 13),
        timeseries(
            "Grid carbon intensity",
            [
                q(
                    f"max by (site, location) (greenai_grid_carbon_intensity_grams_per_kwh{{{NODES}}})",
                    "{{site}} ({{location}})",
                )
            ],
            "none",
            (0, 14, 12, 8),
            "gCO2e per kWh at each site, hour by hour.",
        ),
        timeseries(
            "Carbon-free energy",
            [q(f"max by (site, location) (greenai_site_cfe_ratio{{{NODES}}})", "{{site}} ({{location}})")],
            "percentunit",
            (12, 14, 12, 8),
        ),
        row("By project and phase", 22),
        timeseries(
            "Power by project",
            [q("project:greenai_job_power_watts:rate5m", "{{project}}")],
            "watt",
            (0, 23, 12, 8),
            PROJECT_NOTE,
            stacked=True,
        ),
        timeseries(
            "CO2e rate by project",
            [q('project_basis:greenai_job_co2_grams:rate5m{basis="$basis"} * 3600', "{{project}}")],
            "massg",
            (12, 23, 12, 8),
            "Grams of CO2e per hour. " + PROJECT_NOTE,
            stacked=True,
        ),
        timeseries(
            "Power by phase",
            [q("phase:greenai_job_power_watts:rate5m", "{{phase}}")],
            "watt",
            (0, 31, 12, 8),
            PROJECT_NOTE,
            stacked=True,
        ),
        timeseries(
            "CO2e rate by phase",
            [q('phase_basis:greenai_job_co2_grams:rate5m{basis="$basis"} * 3600', "{{phase}}")],
            "massg",
            (12, 31, 12, 8),
            "Grams of CO2e per hour. " + PROJECT_NOTE,
            stacked=True,
        ),
        table(
            "Energy and CO2e by project and phase in range",
            [
                q(
                    f"avg_over_time(project_phase:greenai_job_power_watts:rate5m[$__range]) * $__range_s / "
                    f"{JOULES_PER_KWH:g}",
                    "kWh",
                    "A",
                    instant=True,
                ),
                q(
                    'avg_over_time(project_phase_basis:greenai_job_co2_grams:rate5m{basis="$basis"}[$__range])'
                    " * $__range_s",
                    "g CO2e",
                    "B",
                    instant=True,
                ),
            ],
            (0, 39, 24, 8),
            "kWh (A) and grams of CO2e (B): the recorded rates' mean over the range x its length. "
            + PROJECT_NOTE,
        ),
    ],
)
