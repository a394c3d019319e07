"""`greenai card`: an Energy Card for a model (all its jobs) or one job, in Markdown or JSON.

The Markdown's YAML front matter carries Hugging Face's `co2_eq_emissions` block, so the card's head
can be pasted into a model card; the body has the figures and a one-paragraph energy impact
statement for a paper. The JSON form has the same fields, `co2_eq_emissions` a top-level key.
Layout and field meanings: docs/cards.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from agent import __version__
from agent.carbon.data import CodecarbonData
from agent.carbon.model import CarbonModel, total
from agent.commands.failures import EXIT_OK
from agent.commands.text import escape
from agent.ledger.job_carbon import JobCarbon, describe, job_carbon
from agent.ledger.read import JobSummary, LedgerReader, find_job, iso
from agent.ledger.schema import JobNotFound
from agent.units import HOUR_SECONDS, JOULES_PER_KWH
from collectors.base import NOT_IN_TOTAL

TRAINING_TYPES = {"pretraining": "pre-training", "fine-tuning": "fine-tuning"}
SOURCE_NAMES = {"nvml": "NVML", "rapl": "RAPL", "csv": "imported CSV", "codecarbon": "CodeCarbon"}


@dataclass(frozen=True)
class Subject:
    """What the card is about: `model` NAME or `job` ID."""

    kind: str
    name: str


def sig(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant figures, thousands separated, no exponent: 433,000 / 0.0123."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    return f"{rounded:,.0f}" if decimals <= 0 else f"{rounded:,.{decimals}f}"


def energy_text(kwh: float) -> str:
    return f"{sig(kwh / 1000)} MWh" if kwh >= 1000 else f"{sig(kwh)} kWh"


def mass_text(grams: float) -> str:
    if grams >= 1e6:
        return f"{sig(grams / 1e6)} t CO2e"
    return f"{sig(grams / 1000)} kg CO2e" if grams >= 1000 else f"{sig(grams)} g CO2e"


def card_fields(subject: Subject, runs: Sequence[JobCarbon]) -> dict[str, Any]:
    """Every figure of the card (the JSON form); `runs` are the subject's jobs, at least one."""
    e = total(r.emissions for r in runs)
    jobs = [r.job for r in runs]
    by_component: dict[str, float] = {}
    for job in jobs:
        for component, joules in job.by_component().items():
            by_component[component] = by_component.get(component, 0.0) + joules / JOULES_PER_KWH
    total_j = sum(j.total_j for j in jobs)
    estimated_j = sum(j.by_source().get("estimate", 0.0) for j in jobs)
    estimated_share = estimated_j / total_j if total_j > 0 else 0.0
    embodied = sum(r.embodied_g for r in runs)
    gpu_hours = sum(j.gpu_seconds for j in jobs) / HOUR_SECONDS
    block = {
        "emissions": round(e.location_g, 3),
        "source": source_text(jobs, estimated_share),
        "training_type": training_type(jobs),
        "geographical_location": ", ".join(dict.fromkeys(r.location for r in runs)),
        "hardware_used": ", ".join(sorted({j.node for j in jobs})),
    }
    fields: dict[str, Any] = {
        "co2_eq_emissions": block,
        "subject": {"kind": subject.kind, "name": subject.name},
        "greenai_version": __version__,
        "runs": len(runs),
        "start": iso(min(j.start for j in jobs)),
        "end": None if any(j.running for j in jobs) else iso(max(j.end or j.last_seen for j in jobs)),
        "energy_kwh": by_component,
        "it_kwh": e.it_kwh,
        "facility_kwh": e.facility_kwh,
        "pue": e.pue,
        "gpu_hours": gpu_hours,
        "co2e_grams": {"location": e.location_g, "market": e.market_g},
        "embodied_g": embodied,
        "cfe_pct": e.cfe_pct,
        "intensity_g_per_kwh": e.intensity_g_per_kwh,
        "intensity_source": describe(e.provenance),
        "hourly_coverage": e.hourly_coverage,
        "measured_share": 1.0 - estimated_share if total_j > 0 else 0.0,
        "estimated_share": estimated_share,
        "sci_g_per_run": (e.location_g + embodied) / len(runs),
        "jobs": [run_fields(r) for r in runs],
    }
    fields["statement"] = statement(fields)
    return fields


def run_fields(r: JobCarbon) -> dict[str, Any]:
    j = r.job
    return {
        "job": str(j.key),
        "node": j.node,
        "name": j.info.name,
        "phase": j.info.phase or None,
        "model": j.info.model or None,
        "start": iso(j.start),
        "end": iso(j.end),
        "it_kwh": r.emissions.it_kwh,
        "co2e_grams": {"location": r.emissions.location_g, "market": r.emissions.market_g},
        "sci_g_per_run": r.sci_g_per_run,
    }


def source_text(jobs: Sequence[JobSummary], estimated_share: float) -> str:
    """greenai-agent 0.1.0: measured (NVML, RAPL) / estimated share 12%."""
    measured = sorted(
        {
            SOURCE_NAMES.get(source, source)
            for j in jobs
            for (component, source), joules in j.energy_j.items()
            if source != "estimate" and component not in NOT_IN_TOTAL and joules > 0
        }
    )
    head = f"greenai-agent {__version__}: "
    est = f"estimated share {estimated_share * 100:.0f}%"
    return head + (f"measured ({', '.join(measured)}) / {est}" if measured else est)


def training_type(jobs: Sequence[JobSummary]) -> str:
    """Hugging Face's wording for the jobs' phases (pre-training, fine-tuning), else the phases; `unknown`."""
    phases = dict.fromkeys(TRAINING_TYPES.get(j.info.phase, j.info.phase) for j in jobs if j.info.phase)
    return ", ".join(phases) or "unknown"


def statement(f: dict[str, Any]) -> str:
    """The energy impact statement: one paragraph for a paper, numbers to 3 significant figures."""
    subject = f["subject"]
    who = f"Model {subject['name']}" if subject["kind"] == "model" else f"Job {subject['name']}"
    runs = f"{f['runs']} run" + ("s" if f["runs"] != 1 else "")
    block = f["co2_eq_emissions"]
    when = f"{(f['start'] or '')[:10]} to {(f['end'] or 'now')[:10]}"
    co2 = f["co2e_grams"]
    return (
        f"{who} ({block['training_type']}, {runs}, {when}) used {energy_text(f['it_kwh'])} of electricity "
        f"in IT equipment ({sig(f['gpu_hours'])} GPU-hours), {energy_text(f['facility_kwh'])} with data "
        f"centre overhead (PUE {f['pue']:.2f}), in {block['geographical_location']}. This emitted "
        f"{mass_text(co2['location'])} location-based ({mass_text(co2['market'])} market-based; "
        f"{f['cfe_pct']:.0f}% carbon-free energy), plus {mass_text(f['embodied_g'])} embodied in the "
        f"hardware. Energy was metered per job by greenai-agent {__version__} and CO2e is the sum, "
        f"hour by hour, of each hour's energy times that hour's grid carbon intensity "
        f"({f['intensity_source']}); {f['estimated_share'] * 100:.0f}% of the energy was estimated "
        f"rather than measured."
    )


def markdown(f: dict[str, Any]) -> str:
    """The card: YAML front matter (Hugging Face model card metadata), then the figures in Markdown."""
    head = yaml.safe_dump({"co2_eq_emissions": f["co2_eq_emissions"]}, sort_keys=False, allow_unicode=True)
    subject = f["subject"]
    co2 = f["co2e_grams"]
    rows = [
        ("IT energy", energy_text(f["it_kwh"])),
        *(
            (
                f"  {c}",
                energy_text(kwh)
                + (" (not in the total: includes cpu and dram)" if c in NOT_IN_TOTAL else ""),
            )
            for c, kwh in f["energy_kwh"].items()
            if c != "total"
        ),
        ("Facility energy", energy_text(f["facility_kwh"])),
        ("PUE", f"{f['pue']:.2f}"),
        ("GPU-hours", sig(f["gpu_hours"])),
        ("CO2e, location-based", mass_text(co2["location"])),
        ("CO2e, market-based", mass_text(co2["market"])),
        ("Embodied CO2e", mass_text(f["embodied_g"])),
        ("Carbon-free energy", f"{f['cfe_pct']:.1f}%"),
        ("Grid intensity (energy-weighted)", f"{sig(f['intensity_g_per_kwh'])} gCO2e/kWh"),
        ("Intensity source", f["intensity_source"]),
        ("Hourly intensity coverage", f"{f['hourly_coverage'] * 100:.0f}% of the energy"),
        ("Measured share", f"{f['measured_share'] * 100:.1f}%"),
        ("SCI per run", f"{sig(f['sci_g_per_run'])} gCO2e"),
    ]
    lines = [
        "---",
        head.rstrip("\n"),
        "---",
        "",
        f"# Energy Card: {subject['kind']} {_md(subject['name'])}",
        "",
        "## Energy impact statement",
        "",
        _md(f["statement"]),
        "",
        "## Figures",
        "",
        "| Figure | Value |",
        "|---|---|",
        *(f"| {name} | {_md(value)} |" for name, value in rows),
        "",
        "## Runs",
        "",
        "| Job | Node | Phase | Start | End | IT kWh | CO2e g (location) | SCI g |",
        "|---|---|---|---|---|---:|---:|---:|",
        *(
            f"| {_md(r['job'])} | {_md(r['node'])} | {_md(r['phase'] or '')} | {r['start']} | "
            f"{r['end'] or 'running'} | {sig(r['it_kwh'])} | {sig(r['co2e_grams']['location'])} | "
            f"{sig(r['sci_g_per_run'])} |"
            for r in f["jobs"]
        ),
        "",
        f"Made by greenai-agent {__version__} (`greenai card`); method: docs/cards.md and docs/carbon.md.",
        "",
    ]
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text from jobs, safe in a Markdown table cell: control characters escaped, pipes and newlines too."""
    return escape(text).replace("|", "\\|")


def run(
    paths: Sequence[Path],
    subject: Subject,
    fmt: str,
    model: CarbonModel,
    out: TextIO,
    data: CodecarbonData | None = None,
) -> int:
    """`greenai card`: writes the card to `out`; raises LedgerError (JobNotFound, AmbiguousJob...)."""
    fields = card_fields(subject, _runs(paths, subject, model, data))
    out.write(json.dumps(fields, indent=2) + "\n" if fmt == "json" else markdown(fields))
    return EXIT_OK


def _runs(
    paths: Sequence[Path], subject: Subject, model: CarbonModel, data: CodecarbonData | None
) -> list[JobCarbon]:
    """The subject's jobs over every ledger, priced; raises JobNotFound when there are none."""
    readers = [LedgerReader(Path(p).absolute()) for p in paths]
    try:
        found = [(reader, job) for reader in readers for job in reader.jobs()]
        if subject.kind == "job":
            one = find_job((job for _, job in found), subject.name)
            found = [(reader, job) for reader, job in found if job is one]
        else:
            found = [(reader, job) for reader, job in found if job.info.model == subject.name]
            if not found:
                raise JobNotFound(
                    f"no job of model {subject.name!r} in the ledger; "
                    "`greenai jobs --json` shows each job's model"
                )
        return [job_carbon(job, reader.job_hours(job), model, data) for reader, job in found]
    finally:
        for reader in readers:
            reader.close()
