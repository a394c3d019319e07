"""Training-task figures and the policy's targets: their paths from the baseline year, and on-track flags.

- CO2 per training task: -50% in 5 years, -12.9% a year: target(y) = B x (1 - 0.129)^(y - y0), for
  the mean CO2e per task of each training phase apart (`CO2_FIGURE_WHY` says why that figure).
- CFE%: a straight line from the baseline year's CFE% to 100% in 2030.
- Training efficiency (kWh per million tokens): 5x and 10x by 2030, geometric:
  target(y) = B / k^((y - y0) / (2030 - y0)), k = 5 or 10.
A figure is on track when it is at or better than the path's value for its year.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from agent.ledger.provenance import Spread, Tally
from agent.report.data import JobTotals, YearData

TRAINING_PHASES = ("pretraining", "fine-tuning")
CO2_METRIC = "mean kg CO2e (location-based) per training task, each phase apart"
CO2_FIGURE_WHY = (
    "The target tracks the mean CO2e per training task (a phase's total CO2e over its number of tasks), "
    "pretraining and fine-tuning apart. The mean counts every kilogram, so a large run moves it in "
    "proportion to its emissions, where the median (shown too) stays put when a few large runs change; "
    "the phases stay apart because a pretraining run can emit a thousand times a fine-tune, and a figure "
    "over both would follow how many small runs there were rather than what they all emitted. "
    "The headline is the phase with the most CO2e this year; a phase's total and its CO2e per million "
    "tokens (where tokens are annotated) are shown beside it."
)
CO2_CUT_PER_YEAR = 0.129
"""1 - 0.5^(1/5) = 0.1294: five cuts of 12.9% halve the figure."""
CFE_YEAR = 2030
EFFICIENCY_YEAR = 2030
EFFICIENCY_FACTORS = (5, 10)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th quantile (0 to 1), linear between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def task_figures(data: YearData) -> dict[str, Any]:
    """Training tasks (jobs whose phase is pretraining or fine-tuning): count, CO2e per task, per token,
    over all of them and per phase (`by_phase`)."""
    tasks = [j for j in data.jobs.values() if j.phase in TRAINING_PHASES]
    out = _figures(tasks)
    out["by_phase"] = {p: _figures([j for j in tasks if j.phase == p]) for p in TRAINING_PHASES}
    return out


def _figures(tasks: Sequence[JobTotals]) -> dict[str, Any]:
    kg = [j.location_g / 1000.0 for j in tasks]
    known = [j for j in tasks if j.tokens]
    tokens = sum(j.tokens or 0 for j in known)
    counted = [j for j in tasks if j.samples]
    samples = sum(j.samples or 0 for j in counted)
    energy = Tally()
    spread = Spread()
    for j in tasks:
        energy.absorb(j.energy)
        spread.add(j.location_g / 1000.0, j.energy)
    low, high = spread.bounds()
    return {
        "count": len(tasks),
        "location_kg_total": sum(kg),
        "location_kg_low": low,
        "location_kg_high": high,
        "market_kg_total": sum(j.market_g for j in tasks) / 1000.0,
        "location_kg_mean": sum(kg) / len(kg) if kg else None,
        "location_kg_median": statistics.median(kg) if kg else None,
        "location_kg_p90": percentile(kg, 0.9),
        "market_kg_median": statistics.median([j.market_g / 1000.0 for j in tasks]) if tasks else None,
        "it_kwh_total": sum(j.it_kwh for j in tasks),
        "gpu_hours": sum(j.gpu_seconds for j in tasks) / 3600.0,
        "with_tokens": len(known),
        "tokens": tokens if known else None,
        "location_g_per_million_tokens": sum(j.location_g for j in known) / tokens * 1e6 if tokens else None,
        "kwh_per_million_tokens": sum(j.it_kwh for j in known) / tokens * 1e6 if tokens else None,
        "with_samples": len(counted),
        "samples": samples if counted else None,
        "location_g_per_sample": sum(j.location_g for j in counted) / samples if samples else None,
        "kwh_per_sample": sum(j.it_kwh for j in counted) / samples if samples else None,
        "shares": energy.shares(),
    }


def headline_phase(tasks: dict[str, Any], base_tasks: dict[str, Any] | None) -> str:
    """The training phase with the most CO2e this year (else in the baseline year; pretraining first)."""
    for figures in (tasks, base_tasks):
        if figures is None:
            continue
        by = figures["by_phase"]
        most = max(TRAINING_PHASES, key=lambda p: (by[p]["location_kg_total"], -TRAINING_PHASES.index(p)))
        if by[most]["location_kg_total"] > 0:
            return most
    return TRAINING_PHASES[0]


def _co2_target(year: int, by: int | None, actual: float | None, base: float | None) -> dict[str, Any]:
    """One phase's CO2 target: actual, baseline, change (a fraction), this year's path value, the path."""
    out: dict[str, Any] = {
        "actual": actual,
        "baseline": base,
        "change": actual / base - 1.0 if actual is not None and base else None,
        "target": None,
        "on_track": None,
        "path": [],
    }
    if by is not None and base is not None:
        out["target"] = co2_path(base, by, year)
        out["path"] = [{"year": y, "target": co2_path(base, by, y)} for y in range(by, by + 6)]
        out["on_track"] = None if actual is None else actual <= out["target"] * (1 + 1e-9)
    return out


def co2_path(baseline: float, baseline_year: int, year: int) -> float:
    return baseline * (1 - CO2_CUT_PER_YEAR) ** (year - baseline_year)


def cfe_path(baseline_pct: float, baseline_year: int, year: int) -> float:
    if year >= CFE_YEAR or baseline_year >= CFE_YEAR:
        return 100.0
    return baseline_pct + (100.0 - baseline_pct) * (year - baseline_year) / (CFE_YEAR - baseline_year)


def efficiency_path(baseline: float, baseline_year: int, year: int, factor: float) -> float:
    if baseline_year >= EFFICIENCY_YEAR:
        return baseline / factor
    span = EFFICIENCY_YEAR - baseline_year
    return float(baseline / factor ** (min(year - baseline_year, span) / span))


def targets(
    year: int,
    baseline_year: int | None,
    tasks: dict[str, Any],
    base_tasks: dict[str, Any] | None,
    cfe_pct: float | None,
    base_cfe_pct: float | None,
) -> dict[str, Any]:
    """Actual, baseline, this year's target, the path year by year, and on_track (None: cannot tell)."""
    by = baseline_year
    eff_base = base_tasks["kwh_per_million_tokens"] if base_tasks else None
    eff_actual = tasks["kwh_per_million_tokens"]

    phases = {
        p: _co2_target(
            year,
            by,
            tasks["by_phase"][p]["location_kg_mean"],
            base_tasks["by_phase"][p]["location_kg_mean"] if base_tasks else None,
        )
        for p in TRAINING_PHASES
    }
    headline = headline_phase(tasks, base_tasks)
    verdicts = [t["on_track"] for t in phases.values() if t["on_track"] is not None]
    co2: dict[str, Any] = {
        "metric": CO2_METRIC,
        "goal": "-50% in 5 years (-12.9% a year)",
        "figure": "location_kg_mean",
        "why": CO2_FIGURE_WHY,
        "headline_phase": headline,
        **{k: phases[headline][k] for k in ("actual", "baseline", "target", "change", "path")},
        "on_track": all(verdicts) if verdicts else None,
        "by_phase": phases,
    }

    cfe: dict[str, Any] = {
        "metric": "CFE% (carbon-free energy consumed, hour by hour)",
        "goal": "100% by 2030",
        "actual": cfe_pct,
        "baseline": base_cfe_pct,
        "target": None,
        "on_track": None,
        "path": [],
    }
    if by is not None and base_cfe_pct is not None:
        cfe["target"] = cfe_path(base_cfe_pct, by, year)
        cfe["path"] = [
            {"year": y, "target": cfe_path(base_cfe_pct, by, y)} for y in range(by, max(by, CFE_YEAR) + 1)
        ]
        cfe["on_track"] = None if cfe_pct is None else cfe_pct >= cfe["target"] - 1e-9

    eff: dict[str, Any] = {
        "metric": "kWh (IT) per million tokens, training tasks with tokens",
        "goal": "5-10x better by 2030",
        "actual": eff_actual,
        "baseline": eff_base,
        "improvement": eff_base / eff_actual if eff_base and eff_actual else None,
    }
    for k in EFFICIENCY_FACTORS:
        target = None if by is None or eff_base is None else efficiency_path(eff_base, by, year, k)
        eff[f"target_{k}x"] = target
        eff[f"on_track_{k}x"] = (
            None if target is None or eff_actual is None else eff_actual <= target * (1 + 1e-9)
        )
        eff[f"path_{k}x"] = (
            []
            if by is None or eff_base is None
            else [
                {"year": y, "target": efficiency_path(eff_base, by, y, k)}
                for y in range(by, max(by, EFFICIENCY_YEAR) + 1)
            ]
        )
    return {"co2_per_training_task": co2, "cfe": cfe, "efficiency": eff}
