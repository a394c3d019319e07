"""Every figure of an Energy Card (its JSON form), and the energy impact statement made from them.

The sums over runs come from `totals`, the Hugging Face and Annex XI blocks from `standards`.
Totals carry their range (each run's part scaled by its own energy's range, docs/uncertainty.md)
and the kinds they are made of; text about the kinds is generated from them, so imported or
estimated energy is never called measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from agent import __version__
from agent.carbon.data import CodecarbonData, place_name
from agent.commands.card.select import Selection, Subject
from agent.commands.card.standards import NOT_RECORDED, annex_xi, gpu_text, hardware, hf_block
from agent.commands.card.totals import (
    TRAINING_TYPES,
    bounds,
    gpu_hours,
    kinds_words,
    locations,
    phase_words,
    phases_of,
    span_seconds,
    summed,
    tally,
)
from agent.ledger.job_carbon import JobCarbon, describe
from agent.ledger.provenance import ESTIMATED, IMPORTED, MEASURED, Tally, kinds_sentence
from agent.ledger.summary import JobSummary, iso
from agent.units import DAY_SECONDS, ENERGY_UNITS, HOUR_SECONDS, JOULES_PER_KWH, MASS_UNITS, range_text, sig

UNCERTAINTY_DOC = "docs/uncertainty.md"

Range = Mapping[str, float | None]
"""{value, low, high}; low and high None when unknown."""


def card_fields(
    subject: Subject,
    runs: Sequence[JobCarbon],
    chosen: Selection | None = None,
    embodied_configured: bool = True,
    data: CodecarbonData | None = None,
) -> dict[str, Any]:
    """Every figure of the card; `runs` are the subject's runs, at least one.

    `embodied_configured`: whether a `carbon.embodied` item covers the runs' nodes; if not, embodied
    CO2e is None (not configured), never 0."""
    e = summed(runs)
    jobs = [r.job for r in runs]
    kinds = tally(runs)
    shares = kinds.shares()
    training = [r for r in runs if r.job.info.phase in TRAINING_TYPES]
    block_runs = training or list(runs)
    embodied = sum(r.embodied_g for r in runs) if embodied_configured else None
    fields: dict[str, Any] = {
        "co2_eq_emissions": hf_block(block_runs, bool(training), data),
        "co2_eq_emissions_scope": {
            "runs": len(block_runs),
            "training": bool(training),
            "phases": phases_of(block_runs),
            "it_kwh": summed(block_runs).it_kwh,
        },
        "subject": subject_fields(subject, jobs),
        "filters": (chosen or Selection()).as_dict(),
        "greenai_version": __version__,
        "runs": len(runs),
        "phases": phases_of(runs),
        "start": iso(min(j.start for j in jobs)),
        "end": None if any(j.running for j in jobs) else iso(max(j.end or j.last_seen for j in jobs)),
        "wall_clock_hours": span_seconds(jobs) / HOUR_SECONDS,
        "wall_clock_days": span_seconds(jobs) / DAY_SECONDS,
        "run_hours": sum(j.duration_seconds for j in jobs) / HOUR_SECONDS,
        "energy_kwh": by_component(jobs),
        "it_kwh": e.it_kwh,
        "energy_kwh_range": bounds(runs, lambda r: r.emissions.it_kwh),
        "facility_kwh": e.facility_kwh,
        "facility_kwh_range": bounds(runs, lambda r: r.emissions.facility_kwh),
        "pue": e.pue,
        "provenance": kinds.as_dict(),
        "provenance_text": kinds_words(kinds),
        "measured_share": shares[MEASURED],
        "estimated_share": shares[ESTIMATED],
        "imported_share": shares[IMPORTED],
        "gpu_hours": gpu_hours(jobs),
        "hardware_days": gpu_hours(jobs) / 24,
        "hardware": hardware(jobs),
        "wall": wall(jobs),
        **useful_work(runs),
        "co2e_grams": {"location": e.location_g, "market": e.market_g},
        "co2e_grams_range": {
            "location": bounds(runs, lambda r: r.emissions.location_g),
            "market": bounds(runs, lambda r: r.emissions.market_g),
        },
        "embodied_g": embodied,
        "embodied_configured": embodied_configured,
        "cfe_pct": e.cfe_pct,
        "intensity_g_per_kwh": e.intensity_g_per_kwh,
        "intensity_source": describe(e.provenance),
        "locations": locations(runs, data),
        "hourly_coverage": e.hourly_coverage,
        "sci_g_per_run": (e.location_g + (embodied or 0.0)) / len(runs),
        "sci_intensity": "location-based",
        "by_phase": groups(runs, lambda r: r.job.info.phase or None, "phase"),
        "by_year": groups(runs, lambda r: datetime.fromtimestamp(r.job.start, timezone.utc).year, "year"),
        "eu_ai_act_annex_xi": annex_xi(training),
        "jobs": [run_fields(r, embodied_configured, data) for r in runs],
    }
    fields["statement"] = statement(fields, kinds)
    return fields


def by_component(jobs: Iterable[JobSummary]) -> dict[str, float]:
    """kWh per component over the jobs, and `total` (without the components inside others)."""
    out: dict[str, float] = {}
    for job in jobs:
        for component, joules in job.by_component().items():
            out[component] = out.get(component, 0.0) + joules / JOULES_PER_KWH
    return out


def wall(jobs: Sequence[JobSummary]) -> dict[str, Any]:
    """Which nodes read the runs' wall power, and the `other` energy it added beyond the counters (kWh)."""
    metered = sorted({j.node for j in jobs if any(c == "other" for c, _ in j.energy_j)})
    nodes = sorted({j.node for j in jobs})
    other_kwh = sum(joules for j in jobs for (c, _), joules in j.energy_j.items() if c == "other")
    return {
        "nodes": metered,
        "nodes_without": [n for n in nodes if n not in metered],
        "other_kwh": other_kwh / JOULES_PER_KWH,
    }


def wall_sentence(w: Mapping[str, Any]) -> str:
    """The statement's words on wall power: where it was read and what it added; '' where it was not."""
    if not w["nodes"]:
        return ""
    where = ", ".join(w["nodes"])
    rest = f"; on {', '.join(w['nodes_without'])} only the counters were read" if w["nodes_without"] else ""
    return (
        f"The IT energy includes {range_text(w['other_kwh'], None, None, ENERGY_UNITS)} read at the wall "
        f"beyond the CPU, memory and GPU counters (fans, power supplies, network, disks), on {where}{rest}."
    )


def subject_fields(subject: Subject, jobs: Sequence[JobSummary]) -> dict[str, Any]:
    """{kind, name, id}: a job card is named by the job's name (its id when it has none)."""
    if subject.kind == "job":
        job = jobs[0]
        return {"kind": "job", "name": job.info.name or job.ref, "id": job.ref}
    return {"kind": subject.kind, "name": subject.name, "id": None}


def useful_work(runs: Sequence[JobCarbon]) -> dict[str, Any]:
    """Tokens over the annotated runs, and kWh and gCO2e (location-based) per million tokens over
    those runs only."""
    counted = [r for r in runs if r.job.tokens]
    tokens = sum(r.job.tokens or 0 for r in counted)
    per = tokens / 1e6
    return {
        "tokens": tokens or None,
        "tokens_runs": len(counted),
        "kwh_per_million_tokens": summed(counted).it_kwh / per if per else None,
        "g_per_million_tokens": summed(counted).location_g / per if per else None,
    }


def groups(runs: Sequence[JobCarbon], key: Callable[[JobCarbon], Any], name: str) -> list[dict[str, Any]]:
    """Runs, IT kWh and location-based CO2e per value of `key` (a phase, a year), first run first."""
    by_key: dict[Any, list[JobCarbon]] = {}
    for r in sorted(runs, key=lambda r: r.job.start):
        by_key.setdefault(key(r), []).append(r)
    return [
        {name: k, "runs": len(g), "it_kwh": summed(g).it_kwh, "co2e_grams_location": summed(g).location_g}
        for k, g in by_key.items()
    ]


def run_fields(r: JobCarbon, embodied_configured: bool, data: CodecarbonData | None) -> dict[str, Any]:
    j = r.job
    kinds = j.provenance()
    return {
        "job": j.ref,
        "node": j.node,
        "name": j.info.name,
        "phase": j.info.phase or None,
        "model": j.info.model or None,
        "start": iso(j.start),
        "end": iso(j.end),
        "wall_clock_hours": j.duration_seconds / HOUR_SECONDS,
        "gpu_hours": j.gpu_seconds / HOUR_SECONDS,
        "hardware": gpu_text(j.info.gpu_model, j.info.gpu_count) or j.info.cpu_model or None,
        "location": r.location,
        "place": place_name(r.location, data),
        "tokens": j.tokens,
        "it_kwh": r.emissions.it_kwh,
        "energy_kwh_range": kinds.range_dict(r.emissions.it_kwh),
        "kinds": {k: share for k, share in kinds.shares().items() if share},
        "co2e_grams": {"location": r.emissions.location_g, "market": r.emissions.market_g},
        "embodied_g": r.embodied_g if embodied_configured else None,
        "sci_g_per_run": r.sci_g_per_run,
    }


# ---- text ----


def energy_range(r: Range) -> str:
    """`101 MWh (95.0-108)`."""
    return range_text(r["value"] or 0.0, r["low"], r["high"], ENERGY_UNITS)


def mass_range(r: Range) -> str:
    """`2.19 kg CO2e (1.90-2.50)`."""
    head, sep, tail = range_text(r["value"] or 0.0, r["low"], r["high"], MASS_UNITS).partition(" (")
    return f"{head} CO2e{sep}{tail}"


def mass(grams: float) -> str:
    return mass_range({"value": grams, "low": None, "high": None})


def runs_text(count: int) -> str:
    return f"{count} run" + ("s" if count != 1 else "")


def statement(f: Mapping[str, Any], kinds: Tally) -> str:
    """The energy impact statement: one paragraph for a paper, from the figures and their kinds."""
    subject = f["subject"]
    if subject["kind"] == "model":
        who = f"Model {subject['name']}"
    else:
        who = f"Job {subject['name']}" + (f" ({subject['id']})" if subject["id"] != subject["name"] else "")
    runs = runs_text(f["runs"])
    when = f"{(f['start'] or '')[:10]} to {(f['end'] or 'now')[:10]}"
    hw = f["hardware"]["text"]
    on = f", on {hw}" if hw != NOT_RECORDED else ""
    places = ", ".join(p["place"] for p in f["locations"])
    embodied = (
        f", plus {mass(f['embodied_g'])} embodied in the hardware."
        if f["embodied_g"] is not None
        else "; embodied emissions of the hardware are not included (not configured)."
    )
    unquantified = (
        f"; {range_text(kinds.unquantified, None, None, ENERGY_UNITS)} {kinds.unquantified_words()} "
        "is counted at its value"
        if kinds.unquantified > 0
        else ""
    )
    parts = [
        f"{who} ({phase_words(f['phases'])}, {runs}, {when}, {sig(f['wall_clock_hours'])} hours wall-clock"
        f"{on}) used {energy_range(f['energy_kwh_range'])} of electricity in IT equipment "
        f"({sig(f['gpu_hours'])} GPU-hours), {energy_range(f['facility_kwh_range'])} with data centre "
        f"overhead (PUE {f['pue']:.2f}), in {places}.",
        f"This emitted {mass_range(f['co2e_grams_range']['location'])} location-based "
        f"({mass(f['co2e_grams']['market'])} market-based; {f['cfe_pct']:.0f} % carbon-free energy)"
        + embodied,
        kinds_sentence(kinds),
        *([w] if (w := wall_sentence(f["wall"])) else []),
        "CO2e is the sum, hour by hour, of each hour's energy times that hour's grid carbon intensity "
        f"({f['intensity_source']}).",
        f"Ranges follow from the stated accuracy of each kind of energy ({UNCERTAINTY_DOC}){unquantified}."
        if f["energy_kwh_range"]["low"] is not None
        else f"No range is given: the energy has no stated accuracy ({UNCERTAINTY_DOC}).",
    ]
    scope = f["co2_eq_emissions_scope"]
    if scope["training"] and scope["runs"] != f["runs"]:
        parts.append(
            f"The training ({phase_words(scope['phases'])}, {runs_text(scope['runs'])}) accounts for "
            f"{range_text(scope['it_kwh'], None, None, ENERGY_UNITS)} of the IT energy and "
            f"{mass(f['co2_eq_emissions']['emissions'])} location-based: the co2_eq_emissions figure."
        )
    if not scope["training"]:
        parts.append(
            f"No run here is training ({phase_words(f['phases'])}): these are not training emissions, "
            "and the card has no Annex XI training figures."
        )
    return " ".join(parts)
