"""Training-task figures and the policy's targets: their paths from the baseline year, and on-track flags.

- CO2 per training task: -50% in 5 years, -12.9% a year: target(y) = B x (1 - 0.129)^(y - y0).
- CFE%: a straight line from the baseline year's CFE% to 100% in 2030.
- Training efficiency (kWh per million tokens): 5x and 10x by 2030, geometric:
  target(y) = B / k^((y - y0) / (2030 - y0)), k = 5 or 10.
A figure is on track when it is at or better than the path's value for its year.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from agent.report.data import YearData

TRAINING_PHASES = ("pretraining", "fine-tuning")
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
    """Training tasks (jobs whose phase is pretraining or fine-tuning): count, CO2e per task, per token."""
    tasks = [j for j in data.jobs.values() if j.phase in TRAINING_PHASES]
    kg = [j.location_g / 1000.0 for j in tasks]
    known = [j for j in tasks if j.tokens]
    tokens = sum(j.tokens or 0 for j in known)
    return {
        "count": len(tasks),
        "location_kg_total": sum(kg),
        "location_kg_median": statistics.median(kg) if kg else None,
        "location_kg_p90": percentile(kg, 0.9),
        "market_kg_median": statistics.median([j.market_g / 1000.0 for j in tasks]) if tasks else None,
        "it_kwh_total": sum(j.it_kwh for j in tasks),
        "with_tokens": len(known),
        "tokens": tokens if known else None,
        "location_g_per_million_tokens": sum(j.location_g for j in known) / tokens * 1e6 if tokens else None,
        "kwh_per_million_tokens": sum(j.it_kwh for j in known) / tokens * 1e6 if tokens else None,
    }


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
    co2_base = base_tasks["location_kg_median"] if base_tasks else None
    eff_base = base_tasks["kwh_per_million_tokens"] if base_tasks else None
    co2_actual = tasks["location_kg_median"]
    eff_actual = tasks["kwh_per_million_tokens"]

    co2: dict[str, Any] = {
        "metric": "median kg CO2e (location-based) per training task",
        "goal": "-50% in 5 years (-12.9% a year)",
        "actual": co2_actual,
        "baseline": co2_base,
        "target": None,
        "on_track": None,
        "path": [],
    }
    if by is not None and co2_base is not None:
        co2["target"] = co2_path(co2_base, by, year)
        co2["path"] = [{"year": y, "target": co2_path(co2_base, by, y)} for y in range(by, by + 6)]
        co2["on_track"] = None if co2_actual is None else co2_actual <= co2["target"] * (1 + 1e-9)

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
