"""Node: power and energy by component and device, measured vs estimated, and facility power (PUE)."""

from common import (
    JOULES_PER_KWH,
    NODES,
    dashboard,
    instance_variable,
    q,
    queries,
    row,
    stat,
    table,
    timeseries,
)

ENERGY = f'greenai_node_energy_joules_total{{{NODES},component!="platform"}}'
MEASURED = f'greenai_node_energy_joules_total{{{NODES},component!="platform",source!="estimate"}}'
ALL_ENERGY = f"greenai_node_energy_joules_total{{{NODES}}}"
IT_POWER = f"sum by (instance) (rate({ENERGY}[$__rate_interval]))"
FACILITY_POWER = f"{IT_POWER} * on (instance) group_left () max by (instance) (greenai_site_pue{{{NODES}}})"

dashboard = dashboard(
    title="greenai / Node",
    uid="greenai-node",
    description="Power and energy of the nodes by component and device, as the greenai agent measures or "
    "estimates them. IT power leaves out `platform` (psys), which overlaps cpu and dram.",
    variables=[instance_variable()],
    panels=[
        stat(
            "IT power", f"sum({IT_POWER})", "watt", (0, 0, 6, 4), "CPU, DRAM and GPU power of the nodes now."
        ),
        stat(
            "Facility power (PUE)",
            f"sum({FACILITY_POWER})",
            "watt",
            (6, 0, 6, 4),
            "IT power x each site's PUE for this hour (greenai_site_pue, from the carbon config).",
        ),
        stat(
            "IT energy in range",
            f"sum(increase({ENERGY}[$__range])) / {JOULES_PER_KWH:g}",
            "kwatth",
            (12, 0, 6, 4),
        ),
        stat(
            "Measured share",
            f"(sum(rate({MEASURED}[$__rate_interval])) or vector(0)) / sum(rate({ENERGY}[$__rate_interval]))",
            "percentunit",
            (18, 0, 6, 4),
            "Share of the IT power measured by RAPL or NVML rather than estimated from TDP and utilisation.",
        ),
        row("Power", 4),
        timeseries(
            "Power by component",
            [q(f"sum by (component) (rate({ALL_ENERGY}[$__rate_interval]))", "{{component}}")],
            "watt",
            (0, 5, 12, 9),
            "platform (psys) is the whole package as the CPU sees it, so it overlaps cpu and dram.",
        ),
        timeseries(
            "Power by source",
            [q(f"sum by (source) (rate({ENERGY}[$__rate_interval]))", "{{source}}")],
            "watt",
            (12, 5, 12, 9),
            "rapl and nvml are measured; estimate is modelled (docs/estimate.md).",
            stacked=True,
        ),
        timeseries(
            "Power by device",
            [
                q(
                    f"sum by (instance, component, device, source) (rate({ALL_ENERGY}[$__rate_interval]))",
                    "{{instance}} {{component}} {{device}} ({{source}})",
                )
            ],
            "watt",
            (0, 14, 24, 9),
        ),
        timeseries(
            "IT and facility power",
            queries((f"sum({IT_POWER})", "IT"), (f"sum({FACILITY_POWER})", "facility (x PUE)")),
            "watt",
            (0, 23, 16, 8),
        ),
        timeseries(
            "PUE by site",
            [q(f"max by (site) (greenai_site_pue{{{NODES}}})", "{{site}}")],
            "none",
            (16, 23, 8, 8),
        ),
        row("Energy", 31),
        timeseries(
            "IT energy per day by component",
            [
                q(
                    f"sum by (component) (increase({ENERGY}[$__interval])) / {JOULES_PER_KWH:g}",
                    "{{component}}",
                )
            ],
            "kwatth",
            (0, 32, 12, 8),
            stacked=True,
            bars=True,
            interval="1d",
        ),
        table(
            "Devices",
            [
                q(
                    f"max by (instance, component, device, source, method, model)"
                    f" (greenai_device_info{{{NODES}}})",
                    instant=True,
                )
            ],
            (12, 32, 12, 8),
            "The devices each agent measures, and how: counter, power, tdp-utilisation or watts-per-gb.",
        ),
    ],
)
