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

PUE_DEFINITION = (
    "PUE is the facility's total energy divided by the energy of its IT equipment (ISO/IEC 30134-2, "
    "The Green Grid), so facility energy = IT energy x PUE. On a node whose wall power is read, its IT "
    "energy is the wall figure (the counted CPU, DRAM, GPU and module energy plus 'other', what the "
    "wall meter saw beyond them: fans, power-supply losses, NICs, disks); elsewhere it is the counted "
    "components alone, and the PUE in use should be one worked out for the same boundary."
)
UNCERTAINTY_DOC = "docs/uncertainty.md"
UNCERTAINTY_TEXT = (
    "Each source of energy has a stated relative accuracy: the agent's NVML and RAPL meters +/-5 %, "
    "its power model -60 % to +190 % (the published error of a TDP-based estimate), an imported run "
    "what its file declares; AMD SMI, hwmon sensors and BMCs state none, so theirs is unknown, as is "
    "an imported run's that declares none. A range adds its parts' bounds, so the true figure is inside "
    "it whenever every part is within its stated accuracy; energy of unknown accuracy is counted at its "
    "value at both ends and shown apart as unquantified. A CO2e range scales each job's (or site's) CO2e "
    "by its energy's range; the intensity and PUE data carry no range of their own here."
)


def energy_sources(data: YearData) -> list[dict[str, Any]]:
    """Per ledger source: its kind, how it was obtained, kWh, range and the basis of its accuracy."""
    tallies: dict[str, Tally] = {}
    methods: dict[str, set[str]] = {}
    bases: dict[str, set[str]] = {}

    def book(source: str, kwh: float, declared: float | None, method: str) -> None:
        tallies.setdefault(source, Tally()).add(source, kwh, declared, method)
        methods.setdefault(source, set()).add(method_of(source, method))
        bases.setdefault(source, set()).add(accuracy_of(source, declared).basis)

    for j in data.jobs.values():
        for source, kwh in j.energy.by_source.items():
            book(source, kwh, j.uncertainty_pct, j.method)
    for source, kwh in data.unattributed.by_source.items():
        book(source, kwh, None, "")
    total = sum(t.total for t in tallies.values())
    order = sorted(tallies, key=lambda s: (KINDS.index(kind_of(s)), -tallies[s].total, s))
    return [
        {
            "source": source,
            "kind": kind_of(source),
            "kwh": t.total,
            "low_kwh": t.low,
            "high_kwh": t.high,
            "unquantified_kwh": t.unquantified,
            "share": t.total / total if total else None,
            "method": "; ".join(sorted(methods[source])),
            "accuracy_basis": " ".join(sorted(bases[source])),
        }
        for source, t in ((s, tallies[s]) for s in order)
        if t.total > 0
    ]


def method(data: YearData, model: CarbonModel, hourly: Mapping[str, Any], energy: Tally) -> dict[str, Any]:
    """report.json's `method`: what is counted, the intensity and energy sources, kinds and uncertainty."""
    sources = [
        {**dataclasses.asdict(p), "citation": p.cite(), "facility_kwh": kwh}
        for p, kwh in sorted(hourly["sources"].items(), key=lambda pk: -pk[1])
    ]
    shares = energy.shares()
    return {
        "boundary": "IT energy of the nodes' CPU packages, DRAM, GPUs and superchip modules, and, on "
        "nodes whose wall power is read, the rest of the wall figure ('other'); meters that contain "
        "those (platform, wall, Grace sensors) are not added again. Attributed to jobs per hour, plus the "
        "nodes' unattributed energy; facility energy = IT x PUE; Scope 2 location- and market-based; "
        "embodied emissions (SCI's M) apart.",
        "wall": wall(data),
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


def wall(data: YearData) -> dict[str, Any]:
    """report.json's `method.wall`: which nodes had their wall power read, and PUE's definition."""
    metered = {node: cov for node, cov in sorted(data.coverage.items()) if cov.wall_hours > 0}
    return {
        "nodes": [
            {
                "node": node,
                "sources": sorted(cov.wall_sources),
                "hours": cov.wall_hours,
                "kwh": cov.wall_kwh,
            }
            for node, cov in metered.items()
        ],
        "nodes_without": len(data.coverage) - len(metered),
        "pue_definition": PUE_DEFINITION,
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
                "wall_hours": cov.wall_hours,
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
