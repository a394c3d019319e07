"""Every figure of an Energy Card (its JSON form), and the energy impact statement made from them.

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
from agent.carbon.model import Emissions, total
from agent.commands.card.select import Selection, Subject
from agent.ledger.job_carbon import JobCarbon, describe
from agent.ledger.provenance import (
    ESTIMATED,
    IMPORT_PREFIX,
    IMPORTED,
    KINDS,
    MEASURED,
    Tally,
    kind_of,
    kinds_sentence,
    method_of,
)
from agent.ledger.summary import JobSummary, iso
from agent.units import (
    DAY_SECONDS,
    ENERGY_UNITS,
    HOUR_SECONDS,
    JOULES_PER_KWH,
    MASS_UNITS,
    range_text,
    share_text,
    sig,
)

TRAINING_TYPES = {"pretraining": "pre-training", "fine-tuning": "fine-tuning"}
"""Hugging Face's `training_type` for the phases that are training; other phases have none."""
NO_PHASE = "phase not recorded"
METER_SHORT = {"nvml": "NVML", "rapl": "RAPL"}
TOOL_SHORT = {"csv": "a CSV file", "codecarbon": "CodeCarbon"}
UNCERTAINTY_DOC = "docs/uncertainty.md"
NOT_RECORDED = "not recorded"

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


def summed(runs: Iterable[JobCarbon]) -> Emissions:
    return total(r.emissions for r in runs)


def tally(runs: Iterable[JobCarbon]) -> Tally:
    """The runs' energy by kind and source, with its range."""
    out = Tally()
    for r in runs:
        out.absorb(r.job.provenance())
    return out


def bounds(runs: Iterable[JobCarbon], figure: Callable[[JobCarbon], float]) -> dict[str, float | None]:
    """{value, low, high} of a figure summed over runs, each run's part scaled by its own energy's range;
    low and high None when no run has energy of a stated accuracy (a range would claim to know it)."""
    value = low = high = 0.0
    known = False
    for r in runs:
        part = figure(r)
        kinds = r.job.provenance()
        lo, hi = kinds.scaled(part)
        value += part
        if lo is None or hi is None:
            lo = hi = part
        elif kinds.unquantified < kinds.total:
            known = True
        low += lo
        high += hi
    return {"value": value, "low": low if known else None, "high": high if known else None}


def by_component(jobs: Iterable[JobSummary]) -> dict[str, float]:
    """kWh per component over the jobs, and `total` (without the components inside others)."""
    out: dict[str, float] = {}
    for job in jobs:
        for component, joules in job.by_component().items():
            out[component] = out.get(component, 0.0) + joules / JOULES_PER_KWH
    return out


def span_seconds(jobs: Sequence[JobSummary]) -> float:
    """Wall-clock time from the first run's start to the last run's end (or last sighting)."""
    return max(j.end if j.end is not None else j.last_seen for j in jobs) - min(j.start for j in jobs)


def gpu_hours(jobs: Iterable[JobSummary]) -> float:
    return sum(j.gpu_seconds for j in jobs) / HOUR_SECONDS


def phases_of(runs: Iterable[JobCarbon]) -> list[str]:
    return list(dict.fromkeys(r.job.info.phase or NO_PHASE for r in runs))


def phase_words(phases: Iterable[str]) -> str:
    """Hugging Face's words for training phases (pre-training), the others as recorded."""
    return ", ".join(TRAINING_TYPES.get(p, p) for p in phases)


def subject_fields(subject: Subject, jobs: Sequence[JobSummary]) -> dict[str, Any]:
    """{kind, name, id}: a job card is named by the job's name (its id when it has none)."""
    if subject.kind == "job":
        job = jobs[0]
        return {"kind": "job", "name": job.info.name or job.ref, "id": job.ref}
    return {"kind": subject.kind, "name": subject.name, "id": None}


def gpu_text(model: str, count: int | None) -> str:
    """`8 x NVIDIA H100 80GB HBM3`; "" when nothing of the GPUs is recorded."""
    if model and count:
        return f"{count} x {model}"
    if model:
        return f"{model} (count not recorded)"
    return f"{count} x GPU (model not recorded)" if count else ""


def hardware(jobs: Sequence[JobSummary]) -> dict[str, Any]:
    """Hardware type and count: {gpus: [{model, count, runs}], cpus: [model], text}; `text` is the GPUs
    (with their runs where they differ), else the CPUs, else `not recorded`."""
    configs: dict[tuple[str, int | None], int] = {}
    for j in jobs:
        if j.info.gpu_model or j.info.gpu_count:
            key = (j.info.gpu_model, j.info.gpu_count)
            configs[key] = configs.get(key, 0) + 1
    cpus = list(dict.fromkeys(j.info.cpu_model for j in jobs if j.info.cpu_model))
    texts = [gpu_text(m, c) for m, c in configs]
    if len(texts) > 1:
        texts = [f"{gpu_text(m, c)} ({n} run{'s' if n != 1 else ''})" for (m, c), n in configs.items()]
    return {
        "gpus": [{"model": m or None, "count": c, "runs": n} for (m, c), n in configs.items()],
        "cpus": cpus,
        "text": ", ".join(texts) or ", ".join(cpus) or NOT_RECORDED,
    }


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


def locations(runs: Sequence[JobCarbon], data: CodecarbonData | None) -> list[dict[str, Any]]:
    """Per location the runs used: its plain name, facility kWh, location-based CO2e, intensity, source."""
    by_place: dict[str, list[JobCarbon]] = {}
    for r in runs:
        by_place.setdefault(r.location, []).append(r)
    out = []
    for code, group in by_place.items():
        e = summed(group)
        out.append(
            {
                "location": code,
                "place": place_name(code, data),
                "runs": len(group),
                "facility_kwh": e.facility_kwh,
                "co2e_grams_location": e.location_g,
                "intensity_g_per_kwh": e.intensity_g_per_kwh,
                "intensity_source": describe(e.provenance),
            }
        )
    return out


def groups(runs: Sequence[JobCarbon], key: Callable[[JobCarbon], Any], name: str) -> list[dict[str, Any]]:
    """Runs, IT kWh and location-based CO2e per value of `key` (a phase, a year), first run first."""
    by_key: dict[Any, list[JobCarbon]] = {}
    for r in sorted(runs, key=lambda r: r.job.start):
        by_key.setdefault(key(r), []).append(r)
    return [
        {name: k, "runs": len(g), "it_kwh": summed(g).it_kwh, "co2e_grams_location": summed(g).location_g}
        for k, g in by_key.items()
    ]


def hf_block(runs: Sequence[JobCarbon], training: bool, data: CodecarbonData | None) -> dict[str, Any]:
    """Hugging Face's `co2_eq_emissions`: grams location-based; `training_type` only for training runs."""
    block: dict[str, Any] = {
        "emissions": round(summed(runs).location_g, 3),
        "source": source_text(tally(runs)),
    }
    if training:
        block["training_type"] = phase_words(phases_of(runs))
    block["geographical_location"] = ", ".join(p["place"] for p in locations(runs, data))
    block["hardware_used"] = hardware([r.job for r in runs])["text"]
    return block


def sources_of(t: Tally, kind: str) -> list[str]:
    return sorted(s for s, kwh in t.by_source.items() if kind_of(s) == kind and kwh > 0)


def tools(t: Tally) -> str:
    """The tools imported energy came from: `a CSV file`, `CodeCarbon`."""
    names = (s[len(IMPORT_PREFIX) :] for s in sources_of(t, IMPORTED))
    return ", ".join(sorted({TOOL_SHORT.get(n, n) for n in names}))


def source_text(t: Tally) -> str:
    """`greenai-agent 0.1.0: measured (NVML, RAPL) 92 %, estimated 8 %`, generated from the kinds."""
    shares = t.shares()
    how = {
        MEASURED: f"measured ({', '.join(METER_SHORT.get(s, s) for s in sources_of(t, MEASURED))})",
        ESTIMATED: "estimated",
        IMPORTED: f"imported from {tools(t)}",
    }
    parts = [f"{how[k]} {share_text(shares[k], 0)}" for k in KINDS if t.by_kind[k] > 0]
    return f"greenai-agent {__version__}: " + (", ".join(parts) or "no energy recorded")


def kinds_words(t: Tally) -> str:
    """`86.1 % measured (NVML, RAPL), 13.9 % estimated (power model)`: only the kinds there are."""
    shares = t.shares()
    how = {
        MEASURED: f"measured ({', '.join(METER_SHORT.get(s, s) for s in sources_of(t, MEASURED))})",
        ESTIMATED: "estimated (power model)",
        IMPORTED: "; ".join(method_of(s, t.methods.get(s, "")) for s in sources_of(t, IMPORTED)),
    }
    parts = [f"{share_text(shares[k])} {how[k]}" for k in KINDS if t.by_kind[k] > 0]
    return ", ".join(parts) or "no energy recorded"


def annex_xi(training: Sequence[JobCarbon]) -> dict[str, Any] | None:
    """The EU AI Act Annex XI training figures; None when no run is training."""
    if not training:
        return None
    jobs = [r.job for r in training]
    energy = bounds(training, lambda r: r.emissions.it_kwh)
    return {
        "runs": len(training),
        "phases": phases_of(training),
        "training_energy_mwh": mwh2(energy["value"]),
        "training_energy_mwh_low": mwh2(energy["low"]),
        "training_energy_mwh_high": mwh2(energy["high"]),
        "training_energy_basis": kinds_words(tally(training)),
        "training_time_wall_clock_days": span_seconds(jobs) / DAY_SECONDS,
        "training_run_days": sum(j.duration_seconds for j in jobs) / DAY_SECONDS,
        "training_time_hardware_days": gpu_hours(jobs) / 24,
        "hardware": hardware(jobs)["text"],
        "compute_flops": None,
        "compute": "not reported",
    }


def mwh2(kwh: float | None) -> float | None:
    """kWh as MWh to 2 significant figures (Annex XI's precision)."""
    return None if kwh is None else float(f"{kwh / 1000:.2g}")


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
        f"; {range_text(kinds.unquantified, None, None, ENERGY_UNITS)} imported without a stated accuracy "
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
