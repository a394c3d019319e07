"""The Energy Card in Markdown: Hugging Face metadata as YAML front matter, then the figures.

Each table writes energy in one unit and CO2e in one unit (`agent.units.table_unit`), so that its
rows compare at a glance. Text from jobs (names, models) is escaped for Markdown tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from agent import __version__
from agent.commands.card.figures import UNCERTAINTY_DOC, Range, runs_text
from agent.report.escape import markdown_cell
from agent.units import ENERGY_UNITS, MASS_UNITS, sig, table_unit
from collectors.base import CONTAINS

Unit = tuple[str, float]


def markdown(f: Mapping[str, Any]) -> str:
    """The card: YAML front matter (Hugging Face model card metadata), then the figures in Markdown."""
    head = yaml.safe_dump({"co2_eq_emissions": f["co2_eq_emissions"]}, sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        head.rstrip("\n"),
        "---",
        "",
        f"# Energy Card: {title(f)}",
        "",
        *filters_line(f),
        "## Energy impact statement",
        "",
        md(f["statement"]),
        "",
        "## Figures",
        "",
        "| Figure | Value |",
        "|---|---|",
        *(f"| {name} | {md(value)} |" for name, value in figure_rows(f)),
        "",
        *locations_table(f),
        *group_table(f["by_phase"], "phase", "Phase"),
        *group_table(f["by_year"], "year", "Year"),
        *annex_xi_section(f),
        *hf_scope(f),
        *runs_table(f),
        f"Made by greenai-agent {__version__} (`greenai card`). Fields and method: docs/cards.md; CO2e: "
        f"docs/carbon.md; ranges: {UNCERTAINTY_DOC}; standards: docs/standards.md.",
        "",
    ]
    return "\n".join(lines)


def title(f: Mapping[str, Any]) -> str:
    """`model llm-7b`; a job by its name: `llm-pretrain (job slurm:100)`."""
    s = f["subject"]
    if s["kind"] == "model":
        return f"model {md(s['name'])}"
    return md(s["name"]) + (f" (job {md(s['id'])})" if s["id"] != s["name"] else " (job)")


def filters_line(f: Mapping[str, Any]) -> list[str]:
    chosen = f["filters"]
    parts = []
    if chosen["phases"]:
        parts.append(f"phase {' or '.join(chosen['phases'])}")
    if chosen["year"] is not None:
        parts.append(f"year {chosen['year']}")
    if chosen["since"]:
        parts.append(f"started at or after {chosen['since']}")
    if chosen["until"]:
        parts.append(f"started before {chosen['until']}")
    return [f"Runs: {', '.join(parts)} (filters of `greenai card`).", ""] if parts else []


def in_unit(value: float | None, unit: Unit, low: float | None = None, high: float | None = None) -> str:
    """`4.60 kWh (3.95-5.27)` in the table's unit; `-` for no value."""
    if value is None:
        return "-"
    name, per = unit
    text = f"{sig(value / per)} {name}"
    return (
        text if low is None or high is None or not value else f"{text} ({sig(low / per)}-{sig(high / per)})"
    )


def ranged(r: Range, unit: Unit, suffix: str = "") -> str:
    value = in_unit(r["value"], unit, r["low"], r["high"])
    head, sep, tail = value.partition(" (")
    return f"{head}{suffix}{sep}{tail}"


def figure_rows(f: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows: energy in one unit, CO2e in one unit."""
    components = {c: kwh for c, kwh in f["energy_kwh"].items() if c != "total" and kwh > 0}
    energy = table_unit([f["it_kwh"], f["facility_kwh"], *components.values()], ENERGY_UNITS)
    co2 = f["co2e_grams"]
    embodied = f["embodied_g"]
    mass = table_unit([co2["location"], co2["market"], embodied or 0.0, f["sci_g_per_run"]], MASS_UNITS)
    rows = [
        ("IT energy", ranged(f["energy_kwh_range"], energy)),
        *(
            (
                f"  {c}",
                in_unit(kwh, energy) + (f" (not in the total: {CONTAINS[c]})" if c in CONTAINS else ""),
            )
            for c, kwh in components.items()
        ),
        ("Facility energy", ranged(f["facility_kwh_range"], energy)),
        ("PUE", f"{f['pue']:.2f}"),
        ("Energy by kind", f["provenance_text"]),
    ]
    unquantified = f["provenance"]["unquantified_kwh"]
    if unquantified > 0:
        rows.append(
            ("Energy of unknown accuracy (in both bounds at its value)", in_unit(unquantified, energy))
        )
    rows += [
        ("Wall-clock time", f"{sig(f['wall_clock_hours'])} hours ({sig(f['wall_clock_days'])} days)"),
        ("Run time (sum over runs)", f"{sig(f['run_hours'])} hours"),
        ("GPU-hours", sig(f["gpu_hours"])),
        ("Hardware-days (GPU-days)", sig(f["hardware_days"])),
        ("Hardware", f["hardware"]["text"]),
        ("CPU", ", ".join(f["hardware"]["cpus"]) or "not recorded"),
        *token_rows(f),
        ("CO2e, location-based", ranged(f["co2e_grams_range"]["location"], mass, " CO2e")),
        ("CO2e, market-based", ranged(f["co2e_grams_range"]["market"], mass, " CO2e")),
        ("Embodied CO2e", in_unit(embodied, mass) + " CO2e" if embodied is not None else "not configured"),
        ("Carbon-free energy", f"{f['cfe_pct']:.1f} %"),
        ("Grid intensity (energy-weighted)", f"{sig(f['intensity_g_per_kwh'])} gCO2e/kWh"),
        ("Location", ", ".join(p["place"] for p in f["locations"])),
        ("Intensity source", f["intensity_source"]),
        ("Hourly intensity coverage", f"{f['hourly_coverage'] * 100:.0f} % of the energy"),
        (
            "SCI per run (location-based intensity only)",
            in_unit(f["sci_g_per_run"], mass)
            + " CO2e"
            + ("" if embodied is not None else " (operational only: embodied not configured)"),
        ),
    ]
    return rows


def token_rows(f: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not f["tokens"]:
        return [("Tokens", "not annotated (`greenai annotate --tokens`)")]
    of = f"{f['tokens_runs']} of {f['runs']} runs annotated"
    return [
        ("Tokens", f"{f['tokens']:,} ({of})"),
        (
            "Energy per million tokens",
            f"{sig(f['kwh_per_million_tokens'])} kWh (IT, over the annotated runs)",
        ),
        ("CO2e per million tokens", f"{sig(f['g_per_million_tokens'])} g CO2e (location-based)"),
    ]


def locations_table(f: Mapping[str, Any]) -> list[str]:
    """Per-location intensity: a table when the runs used several places."""
    places = f["locations"]
    if len(places) < 2:
        return []
    energy = table_unit([p["facility_kwh"] for p in places], ENERGY_UNITS)
    mass = table_unit([p["co2e_grams_location"] for p in places], MASS_UNITS)
    return [
        "## Where the energy was used",
        "",
        f"| Place | Location | Runs | Facility energy ({energy[0]}) | CO2e, location-based ({mass[0]}) | "
        "Intensity (gCO2e/kWh) | Intensity source |",
        "|---|---|---:|---:|---:|---:|---|",
        *(
            f"| {md(p['place'])} | {md(p['location'])} | {p['runs']} | "
            f"{sig(p['facility_kwh'] / energy[1])} | "
            f"{sig(p['co2e_grams_location'] / mass[1])} | {sig(p['intensity_g_per_kwh'])} | "
            f"{md(p['intensity_source'])} |"
            for p in places
        ),
        "",
    ]


def group_table(rows: Sequence[Mapping[str, Any]], key: str, heading: str) -> list[str]:
    """Runs, IT energy and CO2e per phase or per year, when there are several."""
    if len(rows) < 2:
        return []
    energy = table_unit([r["it_kwh"] for r in rows], ENERGY_UNITS)
    mass = table_unit([r["co2e_grams_location"] for r in rows], MASS_UNITS)
    return [
        f"## By {heading.lower()}",
        "",
        f"| {heading} | Runs | IT energy ({energy[0]}) | CO2e, location-based ({mass[0]}) |",
        "|---|---:|---:|---:|",
        *(
            f"| {md(str(r[key] or 'not recorded'))} | {r['runs']} | {sig(r['it_kwh'] / energy[1])} | "
            f"{sig(r['co2e_grams_location'] / mass[1])} |"
            for r in rows
        ),
        "",
    ]


def annex_xi_section(f: Mapping[str, Any]) -> list[str]:
    """The EU AI Act Annex XI training figures, or why there are none."""
    lines = ["## EU AI Act, Annex XI (training)", ""]
    block = f["eu_ai_act_annex_xi"]
    if block is None:
        phases = ", ".join(f["phases"])
        return [
            *lines,
            f"No run of this card is training ({md(phases)}): Annex XI's training figures do not apply.",
            "",
        ]
    low, high = block["training_energy_mwh_low"], block["training_energy_mwh_high"]
    energy = f"{sig(block['training_energy_mwh'], 2)} MWh" + (
        f" ({sig(low, 2)}-{sig(high, 2)})" if low is not None and high is not None else ""
    )
    rows = [
        ("Training runs", f"{block['runs']} ({', '.join(block['phases'])})"),
        ("Energy consumption, known or estimated (IT)", f"{energy}: {block['training_energy_basis']}"),
        ("Training time, wall-clock", f"{sig(block['training_time_wall_clock_days'])} days"),
        ("Training time, hardware-days (GPU-days)", sig(block["training_time_hardware_days"])),
        ("Hardware type and count", block["hardware"]),
        ("Computational resources (FLOPs)", block["compute"]),
    ]
    return [*lines, "| Item | Value |", "|---|---|", *(f"| {a} | {md(b)} |" for a, b in rows), ""]


def hf_scope(f: Mapping[str, Any]) -> list[str]:
    """What the front matter's co2_eq_emissions covers, when it is not every run of the card."""
    scope = f["co2_eq_emissions_scope"]
    if scope["runs"] == f["runs"]:
        return []
    return [
        f"The front matter's `co2_eq_emissions` covers the training: {runs_text(scope['runs'])} "
        f"({md(', '.join(scope['phases']))}) of the card's {f['runs']}.",
        "",
    ]


def runs_table(f: Mapping[str, Any]) -> list[str]:
    runs = f["jobs"]
    energy = table_unit([r["it_kwh"] for r in runs], ENERGY_UNITS)
    mass = table_unit(
        [x for r in runs for x in (r["co2e_grams"]["location"], r["sci_g_per_run"])], MASS_UNITS
    )
    return [
        "## Runs",
        "",
        "| Job | Name | Node | Phase | Kind | Hardware | Place | Start | End | Hours "
        f"| IT energy ({energy[0]}) | CO2e, location ({mass[0]}) | SCI ({mass[0]}) |",
        "|---|---|---|---|---|---|---|---|---|---:|---:|---:|---:|",
        *(
            f"| {md(r['job'])} | {md(r['name'])} | {md(r['node'])} | {md(r['phase'] or '')} | "
            f"{md(kind_cell(r['kinds']))} | {md(r['hardware'] or '')} | {md(r['place'])} | {r['start']} | "
            f"{r['end'] or 'running'} | {sig(r['wall_clock_hours'])} | {sig(r['it_kwh'] / energy[1])} | "
            f"{sig(r['co2e_grams']['location'] / mass[1])} | {sig(r['sci_g_per_run'] / mass[1])} |"
            for r in runs
        ),
        "",
    ]


def kind_cell(kinds: Mapping[str, float]) -> str:
    """`measured` for one kind, `86 % measured, 14 % estimated` for several."""
    if len(kinds) == 1:
        return next(iter(kinds))
    return ", ".join(f"{share * 100:.0f} % {kind}" for kind, share in kinds.items())


def md(text: str) -> str:
    """Text from jobs, users or files, safe in Markdown (a table cell, a heading, running text)."""
    return markdown_cell(text)
