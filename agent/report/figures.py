"""The annual report's figures, as the JSON document `report.json` (docs/report-schema.md).

Sums are taken over (pricing, hour) figures, so every intensity is energy-weighted: Σ F_h x I_h.
Energy is in kWh (MWh only in rendered tables), CO2e in kg, shares from 0 to 1, CFE in percent.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from agent.carbon.model import CarbonModel
from agent.ledger.read import iso
from agent.report.data import JobTotals, YearData, hours_in_year
from agent.report.targets import TRAINING_PHASES, targets, task_figures
from agent.units import HOUR_SECONDS

SCHEMA = "greenai-report/1"
TOP = 10
_FIELDS = ("it_kwh", "facility_kwh", "location_g", "market_g", "cfe_kwh")


def _row(sums: Mapping[str, float]) -> dict[str, Any]:
    """kWh, kg, PUE, CFE% and intensity of one group's sums."""
    it, fac = sums.get("it_kwh", 0.0), sums.get("facility_kwh", 0.0)
    return {
        "it_kwh": it,
        "facility_kwh": fac,
        "location_kg": sums.get("location_g", 0.0) / 1000.0,
        "market_kg": sums.get("market_g", 0.0) / 1000.0,
        "cfe_pct": 100.0 * sums.get("cfe_kwh", 0.0) / fac if fac else None,
        "pue": fac / it if it else None,
        "intensity_g_per_kwh": sums.get("location_g", 0.0) / fac if fac else None,
    }


def _add(into: dict[str, float], **values: float) -> None:
    for k, v in values.items():
        into[k] = into.get(k, 0.0) + v


def build(
    data: YearData,
    model: CarbonModel,
    baseline: YearData | None = None,
    anonymize_users: bool = False,
    salt: str = "",
) -> dict[str, Any]:
    """The whole report document for `data.year`, compared with `baseline` where given."""
    hourly = _hourly(data, model)
    jobs = sorted(data.jobs.values(), key=lambda j: (-j.location_g, j.scheduler, j.job_id))
    users = pseudonyms((j.user for j in jobs), salt) if anonymize_users else None
    totals = hourly["total"]
    it_kwh = totals.get("it_kwh", 0.0)
    embodied = _embodied(data, model)
    tasks = task_figures(data)
    base_tasks = task_figures(baseline) if baseline is not None else None
    base_cfe = _cfe_pct(_hourly(baseline, model)["total"]) if baseline is not None else None
    gpu_hours = sum(j.gpu_seconds for j in jobs) / HOUR_SECONDS
    summary_row = _row(totals)
    return {
        "schema": SCHEMA,
        "year": data.year,
        "baseline_year": baseline.year if baseline is not None else None,
        "ledgers": list(data.ledgers),
        "energy": {
            "it_kwh": it_kwh,
            "facility_kwh": totals.get("facility_kwh", 0.0),
            "unattributed_kwh": totals.get("unattributed_kwh", 0.0),
            "estimated_kwh": totals.get("estimated_kwh", 0.0),
            "imported_kwh": data.imported_kwh,
            "gpu_hours": gpu_hours,
            "pue": summary_row["pue"],
        },
        "emissions": {
            "location_kg": summary_row["location_kg"],
            "market_kg": summary_row["market_kg"],
            "embodied_kg": embodied["total_kg"],
            "intensity_g_per_kwh": summary_row["intensity_g_per_kwh"],
            "embodied_by_node": embodied["by_node"],
            "intensity_heatmap": hourly["heatmap"],
        },
        "cfe_pct": summary_row["cfe_pct"],
        "jobs": {
            "count": len(jobs),
            "training_tasks": tasks,
            "top": [_job(j, users) for j in jobs[:TOP]],
        },
        "by_month": [{"month": m, **_row(hourly["by_month"].get(m, {}))} for m in range(1, 13)],
        "by_site": _grouped(hourly["by_site"], "site"),
        "by_project": _grouped(_group(jobs, lambda j: j.project), "project"),
        "by_phase": _grouped(_group(jobs, lambda j: j.phase), "phase"),
        "by_model": _grouped(_group(jobs, lambda j: j.model), "model"),
        "by_user": _grouped(_group(jobs, lambda j: users[j.user] if users else j.user), "user"),
        "energy_cards": _cards(jobs),
        "targets": targets(
            data.year,
            baseline.year if baseline else None,
            tasks,
            base_tasks,
            summary_row["cfe_pct"],
            base_cfe,
        ),
        "method": _method(data, model, hourly),
        "data_quality": _quality(data, hourly, it_kwh),
    }


def _hourly(data: YearData, model: CarbonModel) -> dict[str, Any]:
    """The folded hourly sums, with the heatmap as g/kWh (None where no energy was used)."""
    s = data.sums
    heatmap = [
        [g / k if k else None for g, k in zip(gs, ks, strict=True)]
        for gs, ks in zip(s.heat_g, s.heat_kwh, strict=True)
    ]
    return {
        "total": s.total,
        "by_month": s.by_month,
        "by_site": s.by_site,
        "heatmap": heatmap,
        "sources": s.sources,
    }


def _cfe_pct(sums: Mapping[str, float]) -> float | None:
    fac = sums.get("facility_kwh", 0.0)
    return 100.0 * sums.get("cfe_kwh", 0.0) / fac if fac else None


def _group(jobs: Iterable[JobTotals], key: Any) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for j in jobs:
        into = out.setdefault(key(j) or "", {})
        _add(
            into,
            it_kwh=j.it_kwh,
            facility_kwh=j.facility_kwh,
            location_g=j.location_g,
            market_g=j.market_g,
            cfe_kwh=j.cfe_kwh,
            gpu_hours=j.gpu_seconds / HOUR_SECONDS,
            jobs=1,
        )
    return out


def _grouped(groups: Mapping[str, Mapping[str, float]], name: str) -> list[dict[str, Any]]:
    rows = []
    for key, sums in groups.items():
        row: dict[str, Any] = {name: key or None, **_row(sums)}
        for extra in ("gpu_hours", "jobs"):
            if extra in sums:
                row[extra] = int(sums[extra]) if extra == "jobs" else sums[extra]
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["it_kwh"], str(r[name])))


def _job(j: JobTotals, users: Mapping[str, str] | None) -> dict[str, Any]:
    return {
        "job": f"{j.scheduler}:{j.job_id}",
        "name": j.name,
        "user": users[j.user] if users else j.user,
        "nodes": sorted(j.nodes),
        "project": j.project or None,
        "phase": j.phase or None,
        "model": j.model or None,
        "origin": j.origin,
        "start": iso(j.start),
        "end": iso(j.end),
        "gpu_hours": j.gpu_seconds / HOUR_SECONDS,
        "tokens": j.tokens,
        **_row({f: getattr(j, f) for f in _FIELDS}),
    }


def _cards(jobs: Iterable[JobTotals]) -> list[dict[str, Any]]:
    """One short card per model trained this year: training kWh, CO2e, GPU-hours, tasks, tokens."""
    trained = [j for j in jobs if j.model and j.phase in TRAINING_PHASES]
    out = []
    for model, sums in _group(trained, lambda j: j.model).items():
        tokens = [j.tokens for j in trained if j.model == model and j.tokens]
        out.append(
            {
                "model": model,
                **_row(sums),
                "gpu_hours": sums["gpu_hours"],
                "tasks": int(sums["jobs"]),
                "tokens": sum(tokens) if tokens else None,
            }
        )
    return sorted(out, key=lambda c: (-c["it_kwh"], c["model"]))


def _embodied(data: YearData, model: CarbonModel) -> dict[str, Any]:
    """SCI's M per node over the hours it has data (reserved whole); jobs' nodes without any, none."""
    by_node = {
        node: model.embodied_g(node, cov.hours_with_data * HOUR_SECONDS) / 1000.0
        for node, cov in sorted(data.coverage.items())
    }
    by_node = {n: kg for n, kg in by_node.items() if kg}
    return {"total_kg": sum(by_node.values()), "by_node": by_node}


def _method(data: YearData, model: CarbonModel, hourly: Mapping[str, Any]) -> dict[str, Any]:
    total = hourly["total"]
    it = total.get("it_kwh", 0.0)
    sources = [
        {**dataclasses.asdict(p), "facility_kwh": kwh}
        for p, kwh in sorted(hourly["sources"].items(), key=lambda pk: -pk[1])
    ]
    return {
        "boundary": "IT energy of the nodes' CPU packages, DRAM and GPUs (platform sensors excluded, "
        "they overlap), attributed to jobs per hour, plus the nodes' unattributed energy; facility energy "
        "= IT x PUE; Scope 2 location- and market-based; embodied emissions (SCI's M) apart.",
        "sites": [{"site": s.name, "nodes": [p.pattern for p in s.nodes]} for s in model.sites],
        "sources": sources,
        # Imported runs were measured (or estimated) by another tool: neither share claims them.
        "measured_share": (it - total.get("estimated_kwh", 0.0) - data.imported_kwh) / it if it else None,
        "estimated_share": total.get("estimated_kwh", 0.0) / it if it else None,
        "warnings": list(model.warnings),
    }


def _quality(data: YearData, hourly: Mapping[str, Any], it_kwh: float) -> dict[str, Any]:
    total = hourly["total"]
    fac = total.get("facility_kwh", 0.0)
    year_hours = hours_in_year(data.year)
    nodes = []
    for node, cov in sorted(data.coverage.items()):
        assert cov.first_hour is not None and cov.last_hour is not None
        span = (cov.last_hour - cov.first_hour) // HOUR_SECONDS + 1
        nodes.append(
            {
                "node": node,
                "first_hour": iso(cov.first_hour),
                "last_hour": iso(cov.last_hour),
                "hours_with_data": cov.hours_with_data,
                "hours_missing_in_span": span - cov.hours_with_data,
                "hours_without_data": year_hours - cov.hours_with_data,
            }
        )
    fallbacks = sorted({p.location for p in hourly["sources"] if p.fallback})
    return {
        "estimated_share": total.get("estimated_kwh", 0.0) / it_kwh if it_kwh else None,
        "unattributed_share": total.get("unattributed_kwh", 0.0) / it_kwh if it_kwh else None,
        "imported_share": data.imported_kwh / it_kwh if it_kwh else None,
        "hourly_intensity_share": total.get("hourly_kwh", 0.0) / fac if fac else None,
        "world_average_fallback_share": total.get("fallback_kwh", 0.0) / fac if fac else None,
        "fallback_locations": fallbacks,
        "nodes": nodes,
        "hours_in_year": year_hours,
    }


def pseudonyms(users: Iterable[str], salt: str) -> dict[str, str]:
    """Stable pseudonyms user-1, user-2 ... in the order of salted SHA-256 hashes; '' stays ''."""
    names = sorted({u for u in users if u}, key=lambda u: hashlib.sha256(f"{salt}\0{u}".encode()).digest())
    out = {u: f"user-{i}" for i, u in enumerate(names, 1)}
    out[""] = ""
    return out
