"""Sums over an Energy Card's runs: energy and CO2e with their ranges, kinds, time, phases, places.

A range scales each run's part by its own energy's range (docs/uncertainty.md); text about the kinds
is generated from them, so imported or estimated energy is never called measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agent.carbon.data import CodecarbonData, place_name
from agent.carbon.model import Emissions, total
from agent.ledger.job_carbon import JobCarbon, describe
from agent.ledger.provenance import ESTIMATED, IMPORTED, KINDS, MEASURED, Spread, Tally, kind_of, method_of
from agent.ledger.summary import JobSummary
from agent.units import HOUR_SECONDS, share_text

TRAINING_TYPES = {"pretraining": "pre-training", "fine-tuning": "fine-tuning"}
"""Hugging Face's `training_type` for the phases that are training; other phases have none."""
NO_PHASE = "phase not recorded"
METER_SHORT = {"nvml": "NVML", "rapl": "RAPL"}


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
    spread = Spread()
    for r in runs:
        spread.add(figure(r), r.job.provenance())
    low, high = spread.bounds()
    return {"value": spread.value, "low": low, "high": high}


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


def sources_of(t: Tally, kind: str) -> list[str]:
    return sorted(s for s, kwh in t.by_source.items() if kind_of(s) == kind and kwh > 0)


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
