"""The report's sections as blocks (paragraphs, tables, images), built once from report.json's document;
render writes them as Markdown and as HTML.

Every figure is written with agent.units through report.numbers: prose in the unit that suits it, a
table column (or row) in one unit, ranges as `value (low-high)`. Words about where energy came from
are generated from its kinds, and a kind with no energy is not named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.report.cells import KIND_TITLES, baseline_row, kinds_present, ranged, source_text
from agent.report.numbers import Column, change, energy, energy_range, mass, mass_range, num, pct
from agent.report.trends import Block, targets_table, training, years

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def sections(doc: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """The report's sections in order: (title, blocks)."""
    return [
        ("Summary", _summary(doc)),
        ("Method", _method(doc)),
        ("Energy", _energy(doc)),
        ("Emissions", _emissions(doc)),
        ("Year over year", years(doc)),
        ("CO2 per training task and targets", training(doc)),
        ("Top jobs and models", _top(doc)),
        ("Energy Cards", _cards(doc)),
        ("Appendix: data quality", _quality(doc)),
    ]


def _summary(doc: Mapping[str, Any]) -> list[Block]:
    e, c = doc["energy"], doc["emissions"]
    jobs = doc["jobs"]["count"]
    text = (
        f"In {doc['year']}, the AI work in this report used "
        f"{energy_range(e['it_kwh'], e['it_kwh_low'], e['it_kwh_high'])} of IT energy, "
        f"{energy(e['facility_kwh'])} at the facility (PUE {num(e['pue'], 2)}), over "
        f"{jobs} job{'' if jobs == 1 else 's'} and {num(e['gpu_hours'])} GPU-hours. That is "
        f"{mass_range(c['location_kg'], c['location_kg_low'], c['location_kg_high'])} CO2e location-based "
        f"and {mass_range(c['market_kg'], c['market_kg_low'], c['market_kg_high'])} market-based; "
        f"{_embodied_text(c)}. Carbon-free energy was {_cfe(doc['cfe_pct'])} of the energy used, "
        "hour by hour."
    )
    blocks: list[Block] = [("p", text), ("p", _kinds_text(e))]
    base = baseline_row(doc)
    if base is not None:
        now = doc["year_over_year"][-1]
        blocks.append(
            (
                "p",
                f"Against the baseline year {base['year']}: "
                f"IT energy {change(now['it_kwh'], base['it_kwh'])}, "
                f"location-based CO2e {change(now['location_kg'], base['location_kg'])}, CO2e of training "
                f"tasks {change(now['training_location_kg'], base['training_location_kg'])}.",
            )
        )
    blocks.append(targets_table(doc))
    return blocks


def _embodied_text(c: Mapping[str, Any]) -> str:
    if not c["embodied_configured"]:
        return "embodied emissions are not configured (carbon.embodied), so not reported"
    return f"{mass(c['embodied_kg'])} CO2e embodied in the hardware, reported apart"


def _cfe(cfe_pct: float | None) -> str:
    return "unknown" if cfe_pct is None else pct(cfe_pct / 100.0)


def _kinds_text(e: Mapping[str, Any]) -> str:
    text: str = e["provenance"]["sentence"]
    if e["it_kwh_low"] is None:
        return text + " None of it has a stated accuracy, so no range is given."
    text += " Ranges in brackets follow from each source's stated accuracy (Method)."
    if e["unquantified_kwh"] > 0:
        text += (
            f" {energy(e['unquantified_kwh'])} has no stated accuracy: it is counted at its value at both "
            "ends of the ranges."
        )
    return text


def _wall_text(w: Mapping[str, Any]) -> str:
    """Which nodes had their wall power read, and what PUE multiplies."""
    nodes = w["nodes"]
    if not nodes:
        where = "No node's wall power was read: IT energy is the counted components alone."
    else:
        names = ", ".join(f"{n['node']} ({', '.join(n['sources'])}, {n['hours']} h)" for n in nodes)
        rest = w["nodes_without"]
        others = f"; on the other {rest} node(s) it is the counted components alone" if rest else ""
        where = (
            f"Wall power was read on {len(nodes)} node(s), where IT energy is the wall figure: "
            f"{names}{others}."
        )
    return f"{where} {w['pue_definition']}"


def _method(doc: Mapping[str, Any]) -> list[Block]:
    m = doc["method"]
    srcs = m["energy_sources"]
    col = Column(r["kwh"] for r in srcs)
    energy_rows = [
        [
            KIND_TITLES[r["kind"]],
            r["source"],
            r["method"],
            col(r["kwh"]),
            pct(r["share"]),
            "unknown" if r["unquantified_kwh"] >= r["kwh"] else f"{col(r['low_kwh'])}-{col(r['high_kwh'])}",
        ]
        for r in srcs
    ]
    blocks: list[Block] = [
        ("p", f"Boundary: {m['boundary']}"),
        ("p", f"{m['kinds_sentence']} Ledgers read: {len(doc['ledgers'])}."),
        (
            "table",
            ["Kind", "Source", "How it was obtained", f"IT energy ({col.unit})", "Share", "Range"],
            energy_rows,
        ),
        ("p", f"Uncertainty: {m['uncertainty']['text']} The method: {m['uncertainty']['doc']}."),
    ]
    blocks += [("p", f"Accuracy of {r['source']}: {r['accuracy_basis']}") for r in srcs]
    blocks.append(("p", _wall_text(m["wall"])))
    sources = m["sources"]
    fac = Column(s["facility_kwh"] for s in sources)
    rows = [
        [
            s.get("citation") or s["dataset"],
            s["location"],
            "yes" if s["fallback"] else "no",
            fac(s["facility_kwh"]),
        ]
        for s in sources
    ]
    blocks.append(
        (
            "table",
            [
                "Intensity data (publisher, dataset, year, resolution)",
                "Location",
                "Fallback",
                f"Facility energy ({fac.unit})",
            ],
            rows,
        )
    )
    blocks += [("p", f"Warning: {w}") for w in m["warnings"]]
    return blocks


def _group_table(doc: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], key: str, label: str) -> Block:
    """A table of group rows: energy and CO2e with their ranges, one unit per column, kinds' shares."""
    it = Column(v for r in rows for v in (r["it_kwh"], r["it_kwh_high"], r["facility_kwh"]))
    co2 = Column((v for r in rows for v in (r["location_kg"], r["location_kg_high"], r["market_kg"])), True)
    kinds = kinds_present(doc)
    body = [
        [
            r[key] or "(none)",
            ranged(it, r["it_kwh"], r["it_kwh_low"], r["it_kwh_high"]),
            it(r["facility_kwh"]),
            ranged(co2, r["location_kg"], r["location_kg_low"], r["location_kg_high"]),
            co2(r["market_kg"]),
            num(r["cfe_pct"]),
            num(r.get("gpu_hours")),
            *(pct(r["provenance"]["shares"][k]) for k in kinds),
        ]
        for r in rows
    ]
    head = [label, f"IT {it.unit} (range)", f"Facility {it.unit}", f"Location {co2.unit} CO2e (range)"]
    head += [f"Market {co2.unit} CO2e", "CFE %", "GPU-hours", *(f"{KIND_TITLES[k]} %" for k in kinds)]
    return ("table", head, body)


def _energy(doc: Mapping[str, Any]) -> list[Block]:
    e = doc["energy"]
    col = Column(v for r in doc["by_month"] for v in (r["it_kwh"], r["facility_kwh"]))
    months = [
        [MONTHS[r["month"] - 1], col(r["it_kwh"]), col(r["facility_kwh"]), num(r["pue"], 2)]
        for r in doc["by_month"]
    ]
    unattributed = e["unattributed_provenance"]
    how = f"; {source_text(unattributed)}" if e["unattributed_kwh"] > 0 else ""
    return [
        (
            "p",
            f"IT energy {energy_range(e['it_kwh'], e['it_kwh_low'], e['it_kwh_high'])}, of which "
            f"{energy(e['unattributed_kwh'])} not attributed to any job (idle nodes, system work{how}); "
            f"facility energy {energy(e['facility_kwh'])}; GPU-hours {num(e['gpu_hours'])}.",
        ),
        ("img", "energy_by_month.png", "Energy by month"),
        ("table", ["Month", f"IT {col.unit}", f"Facility {col.unit}", "PUE"], months),
        _group_table(doc, doc["by_site"], "site", "Site"),
        _group_table(doc, doc["by_project"], "project", "Project"),
        _group_table(doc, doc["by_phase"], "phase", "Phase"),
    ]


def _emissions(doc: Mapping[str, Any]) -> list[Block]:
    c = doc["emissions"]
    col = Column((v for r in doc["by_month"] for v in (r["location_kg"], r["market_kg"])), mass_kg=True)
    months = [
        [
            MONTHS[r["month"] - 1],
            col(r["location_kg"]),
            col(r["market_kg"]),
            num(r["cfe_pct"]),
            num(r["intensity_g_per_kwh"]),
        ]
        for r in doc["by_month"]
    ]
    embodied = (
        f"embodied {mass(c['embodied_kg'])}, reported apart"
        if c["embodied_configured"]
        else "embodied emissions not configured (carbon.embodied)"
    )
    return [
        (
            "p",
            "Location-based "
            f"{mass_range(c['location_kg'], c['location_kg_low'], c['location_kg_high'])} CO2e "
            f"(average grid intensity of the energy used {num(c['intensity_g_per_kwh'])} g/kWh, weighted by "
            f"energy); market-based {mass_range(c['market_kg'], c['market_kg_low'], c['market_kg_high'])}; "
            f"{embodied}.",
        ),
        ("img", "emissions_by_month.png", "Emissions by month"),
        (
            "table",
            ["Month", f"Location {col.unit} CO2e", f"Market {col.unit} CO2e", "CFE %", "g/kWh"],
            months,
        ),
        ("img", "intensity_heatmap.png", "Hourly carbon intensity heatmap"),
    ]


def _top(doc: Mapping[str, Any]) -> list[Block]:
    top = doc["jobs"]["top"]
    it = Column(v for j in top for v in (j["it_kwh"], j["it_kwh_high"]))
    co2 = Column((v for j in top for v in (j["location_kg"], j["location_kg_high"])), mass_kg=True)
    named = any(j["name"] for j in top)
    rows = [
        [
            j["job"],
            *([j["name"] or "-"] if named else []),
            j["user"] or "-",
            j["model"] or "-",
            j["phase"] or "-",
            source_text(j["provenance"]),
            ranged(it, j["it_kwh"], j["it_kwh_low"], j["it_kwh_high"]),
            ranged(co2, j["location_kg"], j["location_kg_low"], j["location_kg_high"]),
            num(j["gpu_hours"]),
        ]
        for j in top
    ]
    head = [
        "Job",
        *(["Name"] if named else []),
        "User",
        "Model",
        "Phase",
        "Energy source",
        f"IT {it.unit} (range)",
        f"{co2.unit} CO2e (range)",
        "GPU-hours",
    ]
    return [("table", head, rows), _group_table(doc, doc["by_model"], "model", "Model")]


def _cards(doc: Mapping[str, Any]) -> list[Block]:
    cards = doc["energy_cards"]
    it = Column(c["it_kwh"] for c in cards)
    co2 = Column((v for c in cards for v in (c["location_kg"], c["market_kg"])), mass_kg=True)
    rows = [
        [
            c["model"],
            it(c["it_kwh"]),
            co2(c["location_kg"]),
            co2(c["market_kg"]),
            num(c["gpu_hours"]),
            str(c["tasks"]),
            source_text(c["provenance"]),
        ]
        for c in cards
    ]
    head = [
        "Model",
        f"IT {it.unit}",
        f"Location {co2.unit} CO2e",
        f"Market {co2.unit} CO2e",
        "GPU-hours",
        "Tasks",
        "Energy source",
    ]
    return [
        ("p", "Training energy per model this year (greenai card --model NAME: the full card)."),
        ("table", head, rows),
    ]


def _quality(doc: Mapping[str, Any]) -> list[Block]:
    q = doc["data_quality"]
    rows = [[f"{KIND_TITLES[k]} share of IT energy", pct(q[f"{k}_share"])] for k in kinds_present(doc)]
    if q["unquantified_share"]:
        rows.append(["Share of IT energy with no stated accuracy", pct(q["unquantified_share"])])
    rows += [
        ["Unattributed share of IT energy", pct(q["unattributed_share"])],
        ["Facility energy priced with hourly intensity", pct(q["hourly_intensity_share"])],
        [
            "Facility energy priced at a fallback (world or country average)",
            pct(q["world_average_fallback_share"]),
        ],
        ["Fallback locations", ", ".join(q["fallback_locations"]) or "none"],
    ]
    nodes = [
        [
            n["node"],
            n["first_hour"],
            n["last_hour"],
            str(n["hours_with_data"]),
            str(n["hours_missing_in_span"]),
            str(n["hours_without_data"]),
        ]
        for n in q["nodes"]
    ]
    head = ["Node", "First hour", "Last hour", "Hours with data", "Gaps inside", "Hours of the year without"]
    return [("table", ["Figure", "Value"], rows), ("table", head, nodes)]
