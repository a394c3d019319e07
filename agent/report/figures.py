"""The annual report's figures, as the JSON document `report.json` (docs/report-schema.md).

Sums are taken over (pricing, hour) figures, so every intensity is energy-weighted: Σ F_h x I_h.
Energy is in kWh (MWh only in rendered tables), CO2e in kg, shares from 0 to 1, CFE in percent.

Every total carries its kinds (measured, estimated, imported) and a range (agent.ledger.provenance):
the energy's range adds its sources' stated accuracies; a CO2e range scales each part's CO2e by its
energy's range (a job's for the job groups, a site's for the sites and the totals) and adds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.carbon.model import CarbonModel
from agent.ledger.provenance import ESTIMATED, IMPORTED, MEASURED, Spread, Tally, kinds_sentence
from agent.ledger.summary import iso
from agent.report.data import JobTotals, YearData
from agent.report.quality import method, quality
from agent.report.targets import TRAINING_PHASES, targets, task_figures
from agent.units import HOUR_SECONDS

SCHEMA = "greenai-report/1"
TOP = 10
_FIELDS = ("it_kwh", "facility_kwh", "location_g", "market_g", "cfe_kwh")


@dataclass
class Part:
    """Energy by source and the range of its CO2e (grams), added up over jobs or sites."""

    energy: Tally = field(default_factory=Tally)
    location_g: Spread = field(default_factory=Spread)
    market_g: Spread = field(default_factory=Spread)

    def add(self, energy: Tally, location_g: float, market_g: float) -> None:
        self.energy.absorb(energy)
        self.location_g.add(location_g, energy)
        self.market_g.add(market_g, energy)

    def fields(self) -> dict[str, Any]:
        """The range and kinds fields of a group row."""
        known = self.energy.quantified  # no range at all when no part has a stated accuracy
        location_low, location_high = self.location_g.bounds(1000.0)
        market_low, market_high = self.market_g.bounds(1000.0)
        return {
            "it_kwh_low": self.energy.low if known else None,
            "it_kwh_high": self.energy.high if known else None,
            "unquantified_kwh": self.energy.unquantified,
            "location_kg_low": location_low,
            "location_kg_high": location_high,
            "market_kg_low": market_low,
            "market_kg_high": market_high,
            "provenance": self.energy.as_dict(),
        }


def _row(sums: Mapping[str, float], part: Part | None = None) -> dict[str, Any]:
    """kWh, kg, PUE, CFE% and intensity of one group's sums; its range and kinds with a `part`."""
    it, fac = sums.get("it_kwh", 0.0), sums.get("facility_kwh", 0.0)
    row = {
        "it_kwh": it,
        "facility_kwh": fac,
        "location_kg": sums.get("location_g", 0.0) / 1000.0,
        "market_kg": sums.get("market_g", 0.0) / 1000.0,
        "cfe_pct": 100.0 * sums.get("cfe_kwh", 0.0) / fac if fac else None,
        "pue": fac / it if it else None,
        "intensity_g_per_kwh": sums.get("location_g", 0.0) / fac if fac else None,
    }
    return row if part is None else {**row, **part.fields()}


def _add(into: dict[str, float], **values: float) -> None:
    for k, v in values.items():
        into[k] = into.get(k, 0.0) + v


def build(
    data: YearData,
    model: CarbonModel,
    baseline: YearData | None = None,
    anonymize_users: bool = False,
    salt: str = "",
    between: Sequence[YearData] = (),
) -> dict[str, Any]:
    """The whole report document for `data.year`, compared with `baseline` and the years `between`."""
    hourly = _hourly(data)
    jobs = sorted(data.jobs.values(), key=lambda j: (-j.location_g, j.scheduler, j.job_id, j.run))
    users = pseudonyms((j.user for j in jobs), salt) if anonymize_users else None
    totals = hourly["total"]
    sites = _sites(data)
    total = Part()
    for part in sites.values():
        _merge(total, part)
    it_kwh = totals.get("it_kwh", 0.0)
    embodied = _embodied(data, model)
    tasks = task_figures(data)
    base_tasks = task_figures(baseline) if baseline is not None else None
    base_cfe = _cfe_pct(baseline.sums.total) if baseline is not None else None
    gpu_hours = sum(j.gpu_seconds for j in jobs) / HOUR_SECONDS
    summary_row = _row(totals, total)
    kinds = total.energy.by_kind
    history = [_year_row(baseline, "baseline")] if baseline is not None and baseline is not data else []
    history += [_year_row(d, "between") for d in between if d.sums.total.get("it_kwh", 0.0) > 0]
    return {
        "schema": SCHEMA,
        "year": data.year,
        "baseline_year": baseline.year if baseline is not None else None,
        "ledgers": list(data.ledgers),
        "energy": {
            "it_kwh": it_kwh,
            "it_kwh_low": summary_row["it_kwh_low"],
            "it_kwh_high": summary_row["it_kwh_high"],
            "unquantified_kwh": summary_row["unquantified_kwh"],
            "facility_kwh": totals.get("facility_kwh", 0.0),
            "unattributed_kwh": totals.get("unattributed_kwh", 0.0),
            "measured_kwh": kinds[MEASURED],
            "estimated_kwh": kinds[ESTIMATED],
            "imported_kwh": kinds[IMPORTED],
            "gpu_hours": gpu_hours,
            "pue": summary_row["pue"],
            "provenance": {**summary_row["provenance"], "sentence": kinds_sentence(total.energy)},
            "unattributed_provenance": data.unattributed.as_dict(),
        },
        "emissions": {
            "location_kg": summary_row["location_kg"],
            "location_kg_low": summary_row["location_kg_low"],
            "location_kg_high": summary_row["location_kg_high"],
            "market_kg": summary_row["market_kg"],
            "market_kg_low": summary_row["market_kg_low"],
            "market_kg_high": summary_row["market_kg_high"],
            "embodied_configured": embodied["configured"],
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
        "by_month": [_month(m, hourly["by_month"].get(m, {})) for m in range(1, 13)],
        "by_site": _site_rows(data, sites),
        "by_project": _grouped(_group(jobs, lambda j: j.project), "project"),
        "by_phase": _grouped(_group(jobs, lambda j: j.phase), "phase"),
        "by_model": _grouped(_group(jobs, lambda j: j.model), "model"),
        "by_user": _grouped(_group(jobs, lambda j: users[j.user] if users else j.user), "user"),
        "energy_cards": _cards(jobs),
        "year_over_year": [*history, _year_row(data, "reporting", tasks)],
        "targets": targets(
            data.year,
            baseline.year if baseline else None,
            tasks,
            base_tasks,
            summary_row["cfe_pct"],
            base_cfe,
        ),
        "method": method(data, model, hourly, total.energy),
        "data_quality": quality(data, hourly, it_kwh, total.energy),
    }


def _merge(into: Part, part: Part) -> None:
    into.energy.absorb(part.energy)
    into.location_g.absorb(part.location_g)
    into.market_g.absorb(part.market_g)


def _sites(data: YearData) -> dict[str, Part]:
    """Site label -> its energy and CO2e range (the site's CO2e scaled by its energy's range)."""
    out = {}
    for label, sums in data.sums.by_site.items():
        part = Part()
        part.add(data.site_energy.get(label, Tally()), sums.get("location_g", 0.0), sums.get("market_g", 0.0))
        out[label] = part
    return out


def _site_rows(data: YearData, sites: Mapping[str, Part]) -> list[dict[str, Any]]:
    rows = [
        {
            "site": label or None,
            **_row(sums, sites[label]),
            "gpu_hours": data.site_gpu_seconds.get(label, 0.0) / HOUR_SECONDS,
        }
        for label, sums in data.sums.by_site.items()
    ]
    return sorted(rows, key=lambda r: (-r["it_kwh"], str(r["site"])))


def _month(month: int, sums: Mapping[str, float]) -> dict[str, Any]:
    est, imp = sums.get("estimated_kwh", 0.0), sums.get("imported_kwh", 0.0)
    kinds = {MEASURED: max(sums.get("it_kwh", 0.0) - est - imp, 0.0), ESTIMATED: est, IMPORTED: imp}
    return {"month": month, **_row(sums), "kwh_by_kind": kinds}


def _year_row(data: YearData, role: str, tasks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One year's headline figures for the year-over-year table."""
    t = tasks if tasks is not None else task_figures(data)
    row = _row(data.sums.total)
    energy = data.energy
    return {
        "year": data.year,
        "role": role,
        **{k: row[k] for k in ("it_kwh", "facility_kwh", "location_kg", "market_kg", "cfe_pct", "pue")},
        "gpu_hours": sum(j.gpu_seconds for j in data.jobs.values()) / HOUR_SECONDS,
        "shares": energy.shares(),
        "training_tasks": t["count"],
        "training_location_kg": t["location_kg_total"],
        "kwh_per_million_tokens": t["kwh_per_million_tokens"],
        "location_g_per_million_tokens": t["location_g_per_million_tokens"],
        "by_phase": {
            p: {k: t["by_phase"][p][k] for k in ("count", "location_kg_total", "location_kg_mean")}
            for p in TRAINING_PHASES
        },
    }


def _hourly(data: YearData) -> dict[str, Any]:
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


def _group(
    jobs: Iterable[JobTotals], key: Callable[[JobTotals], str]
) -> dict[str, tuple[dict[str, float], Part]]:
    out: dict[str, tuple[dict[str, float], Part]] = {}
    for j in jobs:
        into, part = out.setdefault(key(j) or "", ({}, Part()))
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
        part.add(j.energy, j.location_g, j.market_g)
    return out


def _grouped(groups: Mapping[str, tuple[Mapping[str, float], Part]], name: str) -> list[dict[str, Any]]:
    rows = []
    for key, (sums, part) in groups.items():
        row: dict[str, Any] = {name: key or None, **_row(sums, part)}
        row["gpu_hours"] = sums["gpu_hours"]
        row["jobs"] = int(sums["jobs"])
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["it_kwh"], str(r[name])))


def _job(j: JobTotals, users: Mapping[str, str] | None) -> dict[str, Any]:
    part = Part()
    part.add(j.energy, j.location_g, j.market_g)
    return {
        "job": j.label,
        "run": j.run,
        "name": j.name or None,
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
        **_row({f: getattr(j, f) for f in _FIELDS}, part),
    }


def _cards(jobs: Iterable[JobTotals]) -> list[dict[str, Any]]:
    """One short card per model trained this year: training kWh, CO2e, GPU-hours, tasks, tokens."""
    trained = [j for j in jobs if j.model and j.phase in TRAINING_PHASES]
    out = []
    for model, (sums, part) in _group(trained, lambda j: j.model).items():
        tokens = [j.tokens for j in trained if j.model == model and j.tokens]
        out.append(
            {
                "model": model,
                **_row(sums, part),
                "gpu_hours": sums["gpu_hours"],
                "tasks": int(sums["jobs"]),
                "tokens": sum(tokens) if tokens else None,
            }
        )
    return sorted(out, key=lambda c: (-c["it_kwh"], c["model"]))


def _embodied(data: YearData, model: CarbonModel) -> dict[str, Any]:
    """SCI's M per node over the hours it has data (reserved whole); None when none is configured."""
    if not model.embodied:
        return {"configured": False, "total_kg": None, "by_node": {}}
    by_node = {
        node: model.embodied_g(node, cov.hours_with_data * HOUR_SECONDS) / 1000.0
        for node, cov in sorted(data.coverage.items())
    }
    by_node = {n: kg for n, kg in by_node.items() if kg}
    return {"configured": True, "total_kg": sum(by_node.values()), "by_node": by_node}


def pseudonyms(users: Iterable[str], salt: str) -> dict[str, str]:
    """Stable pseudonyms user-1, user-2 ... in the order of salted SHA-256 hashes; '' stays ''."""
    names = sorted({u for u in users if u}, key=lambda u: hashlib.sha256(f"{salt}\0{u}".encode()).digest())
    out = {u: f"user-{i}" for i, u in enumerate(names, 1)}
    out[""] = ""
    return out
