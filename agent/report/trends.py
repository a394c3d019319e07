"""The sections that compare: the reporting year against the baseline year and the years between,
training tasks per phase with their trend, and the targets table (with its baseline column).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.report.cells import (
    KIND_TITLES,
    PHASES,
    baseline_row,
    fig,
    flag,
    get,
    kinds_present,
    pct_of,
    ranged,
    share_of,
)
from agent.report.numbers import Column, change, num, pct, points

Block = tuple[Any, ...]
"""("p", text) | ("table", headers, rows) | ("img", file name, alt text)."""


def targets_table(doc: Mapping[str, Any]) -> Block:
    t = doc["targets"]
    co2, cfe, eff = t["co2_per_training_task"], t["cfe"], t["efficiency"]
    rows = []
    for phase in PHASES:
        p = co2["by_phase"][phase]
        col = Column((p["baseline"], p["actual"], p["target"]), mass_kg=True)
        rows.append(
            [
                f"CO2e per {phase} task, mean ({col.unit}), -50 % in 5 years",
                col(p["baseline"]),
                col(p["actual"]),
                col(p["target"]),
                flag(p["on_track"]),
            ]
        )
    rows.append(
        [
            "CFE, 100 % by 2030 (%)",
            num(cfe["baseline"]),
            num(cfe["actual"]),
            num(cfe["target"]),
            flag(cfe["on_track"]),
        ]
    )
    for k in (5, 10):
        rows.append(
            [
                f"Efficiency, {k}x by 2030 (kWh per million tokens)",
                fig(eff["baseline"]),
                fig(eff["actual"]),
                fig(eff[f"target_{k}x"]),
                flag(eff[f"on_track_{k}x"]),
            ]
        )
    base = doc["baseline_year"]
    head = ["Target", f"Baseline {base}" if base is not None else "Baseline", str(doc["year"]), "Path value"]
    return ("table", [*head, "Status"], rows)


def years(doc: Mapping[str, Any]) -> list[Block]:
    rows = doc["year_over_year"]
    base = baseline_row(doc)
    if base is None:
        return [("p", "No baseline year given (--baseline-year): nothing to compare with.")]
    now = rows[-1]

    def line(
        label: str, get: Callable[[Mapping[str, Any]], Any], cell: Callable[[Any], str], share: bool = False
    ) -> list[str]:
        values = [get(r) for r in rows]
        diff = points(values[-1], values[0]) if share else change(values[-1], values[0])
        return [label, *(cell(v) for v in values), diff]

    it = Column(v for r in rows for v in (r["it_kwh"], r["facility_kwh"]))
    co2 = Column(
        (v for r in rows for v in (r["location_kg"], r["market_kg"], r["training_location_kg"])), True
    )
    per = {p: Column((r["by_phase"][p]["location_kg_mean"] for r in rows), True) for p in PHASES}
    body = [
        line(f"IT energy ({it.unit})", lambda r: r["it_kwh"], it),
        line(f"Facility energy ({it.unit})", lambda r: r["facility_kwh"], it),
        line(f"CO2e location-based ({co2.unit})", lambda r: r["location_kg"], co2),
        line(f"CO2e market-based ({co2.unit})", lambda r: r["market_kg"], co2),
        line(
            "CFE (%)", lambda r: share_of(r["cfe_pct"]), lambda v: num(None if v is None else 100 * v), True
        ),
        line("PUE", lambda r: r["pue"], lambda v: num(v, 2)),
        line("GPU-hours", lambda r: r["gpu_hours"], num),
        line("Training tasks", lambda r: r["training_tasks"], str),
        line(f"CO2e of training tasks ({co2.unit})", lambda r: r["training_location_kg"], co2),
    ]
    for p in PHASES:
        body.append(line(f"{p.capitalize()} tasks", get("by_phase", p, "count"), str))
        body.append(
            line(
                f"CO2e per {p} task, mean ({per[p].unit})",
                get("by_phase", p, "location_kg_mean"),
                per[p],
            )
        )
    body.append(line("Efficiency (kWh per million tokens)", lambda r: r["kwh_per_million_tokens"], fig))
    for kind in kinds_present(doc):
        body.append(line(f"{KIND_TITLES[kind]} share of IT energy", get("shares", kind), pct, True))
    head = ["Figure", *(f"{r['year']}{' (baseline)' if r['role'] == 'baseline' else ''}" for r in rows)]
    note = (
        f"The reporting year {now['year']} against the baseline year {base['year']} and every year between "
        "that the ledgers hold energy for; the last column is the change from the baseline (x: times the "
        "baseline; pt: percentage points, for shares)."
    )
    return [("p", note), ("table", [*head, "Change"], body)]


def training(doc: Mapping[str, Any]) -> list[Block]:
    t = doc["jobs"]["training_tasks"]
    co2 = doc["targets"]["co2_per_training_task"]
    groups = [t["by_phase"][p] for p in PHASES] + [t]
    kg = Column((v for g in groups for v in (g["location_kg_total"], g["location_kg_high"])), mass_kg=True)
    each = Column((v for g in groups for v in (g["location_kg_mean"], g["location_kg_p90"])), mass_kg=True)
    kwh = Column(g["it_kwh_total"] for g in groups)

    def row(label: str, cell: Callable[[Mapping[str, Any]], str]) -> list[str]:
        return [label, *(cell(g) for g in groups)]

    rows = [
        row("Tasks", lambda g: str(g["count"])),
        row(
            f"CO2e, total ({kg.unit}, location-based, range)",
            lambda g: ranged(kg, g["location_kg_total"], g["location_kg_low"], g["location_kg_high"]),
        ),
        row(f"CO2e per task, mean ({each.unit})", lambda g: each(g["location_kg_mean"])),
        row(f"CO2e per task, median ({each.unit})", lambda g: each(g["location_kg_median"])),
        row(f"CO2e per task, p90 ({each.unit})", lambda g: each(g["location_kg_p90"])),
        row(f"IT energy ({kwh.unit})", lambda g: kwh(g["it_kwh_total"])),
        row("GPU-hours", lambda g: num(g["gpu_hours"])),
        row("Tasks with tokens", lambda g: str(g["with_tokens"])),
        row("g CO2e per million tokens", lambda g: fig(g["location_g_per_million_tokens"])),
        row("kWh per million tokens", lambda g: fig(g["kwh_per_million_tokens"])),
        row("Tasks with samples", lambda g: str(g["with_samples"])),
        row("g CO2e per sample", lambda g: fig(g["location_g_per_sample"])),
        row("kWh per sample", lambda g: fig(g["kwh_per_sample"])),
    ]
    for kind in kinds_present(doc):
        rows.append(row(f"{KIND_TITLES[kind]} share of energy", pct_of(get("shares", kind))))
    head = ["Figure", *(p.capitalize() for p in PHASES), "All training tasks"]
    blocks: list[Block] = [
        ("table", head, rows),
        ("p", f"Headline phase: {co2['headline_phase']}. {co2['why']}"),
    ]
    base = baseline_row(doc)
    if base is not None:
        blocks.append(_phase_trend(doc, base))
    else:
        blocks.append(("p", "No baseline year given (--baseline-year): no path and no trend."))
    blocks += [targets_table(doc), ("img", "targets.png", "Targets against their paths")]
    return blocks


def _phase_trend(doc: Mapping[str, Any], base: Mapping[str, Any]) -> Block:
    """Each training phase this year against the baseline year: tasks, mean and total CO2e."""
    now = doc["year_over_year"][-1]
    y0, y = base["year"], now["year"]
    pairs = [(base["by_phase"][p], now["by_phase"][p]) for p in PHASES]
    mean = Column((v for pair in pairs for g in pair for v in [g["location_kg_mean"]]), mass_kg=True)
    total = Column((v for pair in pairs for g in pair for v in [g["location_kg_total"]]), mass_kg=True)
    rows = [
        [
            p,
            str(b["count"]),
            str(n["count"]),
            mean(b["location_kg_mean"]),
            mean(n["location_kg_mean"]),
            change(n["location_kg_mean"], b["location_kg_mean"]),
            total(b["location_kg_total"]),
            total(n["location_kg_total"]),
            change(n["location_kg_total"], b["location_kg_total"]),
        ]
        for p, (b, n) in zip(PHASES, pairs, strict=True)
    ]
    head = [
        "Phase",
        f"Tasks {y0}",
        f"Tasks {y}",
        f"Mean {y0} ({mean.unit})",
        f"Mean {y} ({mean.unit})",
        "Change",
        f"Total {y0} ({total.unit})",
        f"Total {y} ({total.unit})",
        "Change",
    ]
    return ("table", head, rows)
