"""The report's method and data quality: where its energy came from, how sure it is, what is missing.

`method` (report.json's `method`: boundary, intensity sources, energy sources with their accuracy,
the uncertainty text) and `quality` (`data_quality`: shares by kind, unattributed and fallback
energy, each node's hours with data); docs/report-schema.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from agent.carbon.model import CarbonModel
from agent.ledger.provenance import (
    ESTIMATED,
    IMPORTED,
    KINDS,
    MEASURED,
    Tally,
    accuracy_of,
    kind_of,
    kinds_sentence,
    method_of,
)
from agent.ledger.summary import iso
from agent.report.data import YearData, hours_in_year
from agent.report.targets import CO2_FIGURE_WHY
from agent.units import HOUR_SECONDS

UNCERTAINTY_DOC = "docs/uncertainty.md"
UNCERTAINTY_TEXT = (
    "Each source of energy has a stated relative accuracy: the agent's meters (NVML, RAPL) +/-5 %, "
    "its power model -60 % to +190 % (the published error of a TDP-based estimate), an imported run "
    "what its file declares, else unknown. A range adds its parts' bounds, so the true figure is inside "
    "it whenever every part is within its stated accuracy; energy of unknown accuracy is counted at its "
    "value at both ends and shown apart as unquantified. A CO2e range scales each job's (or site's) CO2e "
    "by its energy's range; the intensity and PUE data carry no range of their own here."
)


def energy_sources(data: YearData) -> list[dict[str, Any]]:
    """Per ledger source: its kind, how it was obtained, kWh, range and the basis of its accuracy."""
    rows: dict[str, dict[str, Any]] = {}

    def book(source: str, kwh: float, declared: float | None, method: str) -> None:
        row = rows.setdefault(
            source,
            {
                "source": source,
                "kind": kind_of(source),
                "kwh": 0.0,
                "low_kwh": 0.0,
                "high_kwh": 0.0,
                "unquantified_kwh": 0.0,
                "methods": set(),
                "bases": set(),
            },
        )
        acc = accuracy_of(source, declared)
        row["kwh"] += kwh
        if acc.minus is None or acc.plus is None:
            row["unquantified_kwh"] += kwh
            row["low_kwh"] += kwh
            row["high_kwh"] += kwh
        else:
            row["low_kwh"] += kwh * (1 - acc.minus)
            row["high_kwh"] += kwh * (1 + acc.plus)
        row["methods"].add(method_of(source, method))
        row["bases"].add(acc.basis)

    for j in data.jobs.values():
        for source, kwh in j.energy.by_source.items():
            book(source, kwh, j.uncertainty_pct, j.method)
    for source, kwh in data.unattributed.by_source.items():
        book(source, kwh, None, "")
    total = sum(r["kwh"] for r in rows.values())
    out = []
    for row in sorted(rows.values(), key=lambda r: (KINDS.index(r["kind"]), -r["kwh"], r["source"])):
        if row["kwh"] <= 0:
            continue
        out.append(
            {
                **{k: v for k, v in row.items() if k not in ("methods", "bases")},
                "share": row["kwh"] / total if total else None,
                "method": "; ".join(sorted(row["methods"])),
                "accuracy_basis": " ".join(sorted(row["bases"])),
            }
        )
    return out


def method(data: YearData, model: CarbonModel, hourly: Mapping[str, Any], energy: Tally) -> dict[str, Any]:
    """report.json's `method`: what is counted, the intensity and energy sources, kinds and uncertainty."""
    sources = [
        {**dataclasses.asdict(p), "citation": p.cite(), "facility_kwh": kwh}
        for p, kwh in sorted(hourly["sources"].items(), key=lambda pk: -pk[1])
    ]
    shares = energy.shares()
    return {
        "boundary": "IT energy of the nodes' CPU packages, DRAM and GPUs (platform sensors excluded, "
        "they overlap), attributed to jobs per hour, plus the nodes' unattributed energy; facility energy "
        "= IT x PUE; Scope 2 location- and market-based; embodied emissions (SCI's M) apart.",
        "sites": [{"site": s.name, "nodes": [p.pattern for p in s.nodes]} for s in model.sites],
        "sources": sources,
        "energy_sources": energy_sources(data),
        "kinds_sentence": kinds_sentence(energy),
        "measured_share": shares[MEASURED],
        "estimated_share": shares[ESTIMATED],
        "imported_share": shares[IMPORTED],
        "uncertainty": {"doc": UNCERTAINTY_DOC, "text": UNCERTAINTY_TEXT},
        "training_figure": CO2_FIGURE_WHY,
        "warnings": list(model.warnings),
    }


def quality(data: YearData, hourly: Mapping[str, Any], it_kwh: float, energy: Tally) -> dict[str, Any]:
    """report.json's `data_quality`: shares by kind, unattributed and fallback energy, node coverage."""
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
    shares = energy.shares()
    return {
        "measured_share": shares[MEASURED],
        "estimated_share": shares[ESTIMATED],
        "imported_share": shares[IMPORTED],
        "unquantified_share": energy.unquantified / energy.total if energy.total else None,
        "unattributed_share": total.get("unattributed_kwh", 0.0) / it_kwh if it_kwh else None,
        "hourly_intensity_share": total.get("hourly_kwh", 0.0) / fac if fac else None,
        "world_average_fallback_share": total.get("fallback_kwh", 0.0) / fac if fac else None,
        "fallback_locations": fallbacks,
        "nodes": nodes,
        "hours_in_year": year_hours,
    }
