"""Node: power and energy by component and device, measured vs estimated, and facility power (PUE)."""

from common import (
    NODES,
    dashboard,
    increase,
    instance_variable,
    instant_table,
    kwh,
    per_day,
    power_by,
    queries,
    rate,
    row,
    series,
    stat,
    timeseries,
)

ENERGY = f'greenai_node_energy_joules_total{{{NODES},component!~"grace|node|platform"}}'
MEASURED = f'greenai_node_energy_joules_total{{{NODES},component!~"grace|node|platform",source!="estimate"}}'
ALL_ENERGY = f"greenai_node_energy_joules_total{{{NODES}}}"
WALL = f'greenai_node_energy_joules_total{{{NODES},component="node"}}'
OTHER = f'greenai_node_energy_joules_total{{{NODES},component="other"}}'
IT_POWER = rate(ENERGY, "instance")
FACILITY_POWER = f"{IT_POWER} * on (instance) group_left () max by (instance) (greenai_site_pue{{{NODES}}})"

dashboard = dashboard(
    title="greenai / Node",
    uid="greenai-node",
    description="Power and energy of the nodes by component and device, as the greenai agent measures or "
    "estimates them. IT power leaves out the meters that contain other components: `platform` (psys), "
    "`node` (the wall meter, whose unexplained part is `other`) and `grace` (inside a `module`).",
    variables=[instance_variable()],
    panels=[
        stat(
            "IT power",
            f"sum({IT_POWER})",
            "watt",
            (0, 0, 6, 4),
            "CPU, DRAM, GPU and superchip-module power of the nodes now, plus `other` (wall power no "
            "counter explains) on nodes with a wall meter.",
        ),
        stat(
            "Facility power (PUE)",
            f"sum({FACILITY_POWER})",
            "watt",
            (6, 0, 6, 4),
            "IT power x each site's PUE for this hour (greenai_site_pue, from the carbon config).",
        ),
        stat("IT energy in range", kwh(increase(ENERGY)), "kwatth", (12, 0, 6, 4)),
        stat(
            "Measured share",
            f"({rate(MEASURED)} or vector(0)) / {rate(ENERGY)}",
            "percentunit",
            (18, 0, 6, 4),
            "Share of the IT power measured (RAPL, NVML, AMD SMI, hwmon, the BMC) rather than estimated "
            "from TDP and utilisation.",
        ),
        row("Power", 4),
        power_by(
            "Power by component",
            ALL_ENERGY,
            "component",
            (0, 5, 12, 9),
            "platform (psys) overlaps cpu and dram; node is the wall meter, which contains every other "
            "component; grace is the Grace CPU's own sensors, inside the module.",
        ),
        power_by(
            "Power by source",
            ENERGY,
            "source",
            (12, 5, 12, 9),
            "rapl, nvml, amdsmi, hwmon, redfish and ipmi are measured; estimate is modelled "
            "(docs/estimate.md).",
            stacked=True,
        ),
        series(
            "Power by device",
            rate(ALL_ENERGY, "instance, component, device, source"),
            "{{instance}} {{component}} {{device}} ({{source}})",
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
            "Wall power and what the counters explain",
            queries(
                (rate(WALL, "instance"), "{{instance}} wall"),
                (rate(OTHER, "instance"), "{{instance}} other (wall - counters)"),
            ),
            "watt",
            (0, 31, 24, 8),
            "On nodes whose wall power is read (a BMC over Redfish, an ACPI power meter): the wall, and "
            "`other`, the part of it no CPU, DRAM or GPU counter explains (fans, power supplies, NICs, "
            "disks).",
        ),
        series(
            "PUE by site", f"max by (site) (greenai_site_pue{{{NODES}}})", "{{site}}", "none", (16, 23, 8, 8)
        ),
        row("Energy", 39),
        per_day(
            "IT energy per day by component",
            kwh(increase(ENERGY, "$__interval", "component")),
            "{{component}}",
            "kwatth",
            (0, 40, 12, 8),
            stacked=True,
        ),
        instant_table(
            "Devices",
            f"max by (instance, component, device, source, method, model) (greenai_device_info{{{NODES}}})",
            (12, 40, 12, 8),
            "The devices each agent measures, and how: counter, power, tdp-utilisation or watts-per-gb.",
        ),
    ],
)
