"""report.md and report.html from report.json's document: the same sections, written twice.

The sections are built once as blocks (paragraphs, tables, images); `markdown` and `html` only
format them. The HTML is one self-contained file: CSS inline, charts as data: URIs, no URL outside.
"""

from __future__ import annotations

import base64
import html as html_lib
from collections.abc import Mapping, Sequence
from typing import Any

from agent.report.numbers import energy, mass, num, pct, units

Block = tuple[Any, ...]
"""("p", text) | ("table", headers, rows) | ("img", file name, alt text)."""
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def flag(on_track: bool | None) -> str:
    return "no baseline" if on_track is None else ("on track" if on_track else "off track")


def sections(doc: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """The report's sections in order: (title, blocks)."""
    return [
        ("Summary", _summary(doc)),
        ("Method", _method(doc)),
        ("Energy", _energy(doc)),
        ("Emissions", _emissions(doc)),
        ("CO2 per training task and targets", _targets(doc)),
        ("Top jobs and models", _top(doc)),
        ("Energy Cards", _cards(doc)),
        ("Appendix: data quality", _quality(doc)),
    ]


def _summary(doc: Mapping[str, Any]) -> list[Block]:
    e, c, t = doc["energy"], doc["emissions"], doc["targets"]
    jobs = doc["jobs"]["count"]
    text = (
        f"In {doc['year']}, the AI work measured here used {energy(e['it_kwh'])} of IT energy, "
        f"{energy(e['facility_kwh'])} at the facility (PUE {num(e['pue'], 2)}), over "
        f"{jobs} job{'' if jobs == 1 else 's'} and {num(e['gpu_hours'])} GPU-hours. That is "
        f"{mass(c['location_kg'])} CO2e location-based and {mass(c['market_kg'])} "
        f"market-based, plus {mass(c['embodied_kg'])} embodied in the hardware. "
        f"Carbon-free energy was {num(doc['cfe_pct'])} % of the energy used, hour by hour."
    )
    rows = [
        [name, target["actual_text"], target["target_text"], target["status"]]
        for name, target in _target_rows(t)
    ]
    return [("p", text), ("table", ["Target", f"{doc['year']}", "Path value", "Status"], rows)]


def _target_rows(t: Mapping[str, Any]) -> list[tuple[str, dict[str, str]]]:
    co2, cfe, eff = t["co2_per_training_task"], t["cfe"], t["efficiency"]
    return [
        (
            "CO2 per training task, -50 % in 5 years (median, kg)",
            {
                "actual_text": num(co2["actual"], 2),
                "target_text": num(co2["target"], 2),
                "status": flag(co2["on_track"]),
            },
        ),
        (
            "CFE, 100 % by 2030 (%)",
            {
                "actual_text": num(cfe["actual"]),
                "target_text": num(cfe["target"]),
                "status": flag(cfe["on_track"]),
            },
        ),
        (
            "Efficiency, 5x by 2030 (kWh per million tokens)",
            {
                "actual_text": num(eff["actual"], 3),
                "target_text": num(eff["target_5x"], 3),
                "status": flag(eff["on_track_5x"]),
            },
        ),
        (
            "Efficiency, 10x by 2030 (kWh per million tokens)",
            {
                "actual_text": num(eff["actual"], 3),
                "target_text": num(eff["target_10x"], 3),
                "status": flag(eff["on_track_10x"]),
            },
        ),
    ]


def _method(doc: Mapping[str, Any]) -> list[Block]:
    m = doc["method"]
    rows = [
        [
            s["dataset"],
            s["version"] or "-",
            s["resolution"],
            s["location"],
            s["year"] or "-",
            "yes" if s["fallback"] else "no",
            num(s["facility_kwh"]),
        ]
        for s in m["sources"]
    ]
    blocks: list[Block] = [
        ("p", f"Boundary: {m['boundary']}"),
        (
            "p",
            f"Measured share of IT energy: {pct(m['measured_share'])}; estimated (from a power model, "
            f"not a sensor): {pct(m['estimated_share'])}. Ledgers read: {len(doc['ledgers'])}.",
        ),
        (
            "table",
            ["Intensity data", "Version", "Resolution", "Location", "Year", "Fallback", "Facility kWh"],
            rows,
        ),
    ]
    blocks += [("p", f"Warning: {w}") for w in m["warnings"]]
    return blocks


def _group_table(doc: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], key: str, label: str) -> Block:
    e_div, e_unit, m_div, m_unit = units(doc)
    body = [
        [
            r[key] or "(none)",
            num(r["it_kwh"] / e_div, 3),
            num(r["facility_kwh"] / e_div, 3),
            num(r["location_kg"] / m_div, 3),
            num(r["market_kg"] / m_div, 3),
            num(r["cfe_pct"]),
            num(r.get("gpu_hours")),
        ]
        for r in rows
    ]
    head = [label, f"IT {e_unit}", f"Facility {e_unit}", f"Location {m_unit} CO2e", f"Market {m_unit} CO2e"]
    head += ["CFE %", "GPU-hours"]
    return ("table", head, body)


def _energy(doc: Mapping[str, Any]) -> list[Block]:
    e_div, e_unit, _m_div, _m_unit = units(doc)
    e = doc["energy"]
    months = [
        [
            MONTHS[r["month"] - 1],
            num(r["it_kwh"] / e_div, 3),
            num(r["facility_kwh"] / e_div, 3),
            num(r["pue"], 2),
        ]
        for r in doc["by_month"]
    ]
    return [
        (
            "p",
            f"IT energy {energy(e['it_kwh'])}, of which {energy(e['unattributed_kwh'])} not attributed to "
            f"any job (idle nodes, system work); facility energy {energy(e['facility_kwh'])}; "
            f"GPU-hours {num(e['gpu_hours'])}.",
        ),
        ("img", "energy_by_month.png", "Energy by month"),
        ("table", ["Month", f"IT {e_unit}", f"Facility {e_unit}", "PUE"], months),
        _group_table(doc, doc["by_site"], "site", "Site"),
        _group_table(doc, doc["by_project"], "project", "Project"),
        _group_table(doc, doc["by_phase"], "phase", "Phase"),
    ]


def _emissions(doc: Mapping[str, Any]) -> list[Block]:
    c = doc["emissions"]
    months = [
        [
            MONTHS[r["month"] - 1],
            num(r["location_kg"], 1),
            num(r["market_kg"], 1),
            num(r["cfe_pct"]),
            num(r["intensity_g_per_kwh"]),
        ]
        for r in doc["by_month"]
    ]
    return [
        (
            "p",
            f"Location-based {mass(c['location_kg'])} CO2e (average grid intensity of the energy used "
            f"{num(c['intensity_g_per_kwh'])} g/kWh, weighted by energy); "
            f"market-based {mass(c['market_kg'])}; embodied {mass(c['embodied_kg'])}, reported apart.",
        ),
        ("img", "emissions_by_month.png", "Emissions by month"),
        ("table", ["Month", "Location kg CO2e", "Market kg CO2e", "CFE %", "g/kWh"], months),
        ("img", "intensity_heatmap.png", "Hourly carbon intensity heatmap"),
    ]


def _targets(doc: Mapping[str, Any]) -> list[Block]:
    t = doc["jobs"]["training_tasks"]
    rows = [
        ["Training tasks (pretraining, fine-tuning)", str(t["count"])],
        ["CO2e per task, median (kg, location-based)", num(t["location_kg_median"], 2)],
        ["CO2e per task, p90 (kg)", num(t["location_kg_p90"], 2)],
        ["CO2e per million tokens (g), tasks with tokens", num(t["location_g_per_million_tokens"], 2)],
        ["kWh per million tokens", num(t["kwh_per_million_tokens"], 3)],
    ]
    targets = [[n, r["actual_text"], r["target_text"], r["status"]] for n, r in _target_rows(doc["targets"])]
    base = doc["baseline_year"]
    note = (
        f"Baseline year {base}." if base is not None else "No baseline year given (--baseline-year): no path."
    )
    return [
        ("table", ["Figure", "Value"], rows),
        ("p", note),
        ("table", ["Target", f"{doc['year']}", "Path value", "Status"], targets),
        ("img", "targets.png", "Targets against their paths"),
    ]


def _top(doc: Mapping[str, Any]) -> list[Block]:
    jobs = [
        [
            j["job"],
            j["name"],
            j["user"] or "-",
            j["model"] or "-",
            j["phase"] or "-",
            num(j["it_kwh"]),
            num(j["location_kg"], 2),
            num(j["gpu_hours"]),
        ]
        for j in doc["jobs"]["top"]
    ]
    return [
        ("table", ["Job", "Name", "User", "Model", "Phase", "IT kWh", "kg CO2e", "GPU-hours"], jobs),
        _group_table(doc, doc["by_model"], "model", "Model"),
    ]


def _cards(doc: Mapping[str, Any]) -> list[Block]:
    rows = [
        [
            c["model"],
            num(c["it_kwh"]),
            num(c["location_kg"], 2),
            num(c["market_kg"], 2),
            num(c["gpu_hours"]),
            str(c["tasks"]),
        ]
        for c in doc["energy_cards"]
    ]
    return [
        ("p", "Training energy per model this year (greenai card --model NAME: the full card)."),
        ("table", ["Model", "IT kWh", "Location kg CO2e", "Market kg CO2e", "GPU-hours", "Tasks"], rows),
    ]


def _quality(doc: Mapping[str, Any]) -> list[Block]:
    q = doc["data_quality"]
    rows = [
        ["Estimated share of IT energy", pct(q["estimated_share"])],
        ["Unattributed share of IT energy", pct(q["unattributed_share"])],
        ["Imported share of IT energy", pct(q["imported_share"])],
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


def markdown(doc: Mapping[str, Any], images: Sequence[str]) -> str:
    """report.md; images are the PNG file names written beside it."""
    lines = [f"# AI Energy Impact Report {doc['year']}", ""]
    for title, blocks in sections(doc):
        lines += [f"## {title}", ""]
        for block in blocks:
            if block[0] == "p":
                lines += [block[1], ""]
            elif block[0] == "img" and block[1] in images:
                lines += [f"![{block[2]}]({block[1]})", ""]
            elif block[0] == "table":
                lines += [_md_row(block[1]), _md_row(["---"] * len(block[1]))]
                lines += [_md_row(r) for r in block[2]] or [_md_row(["(none)"] + [""] * (len(block[1]) - 1))]
                lines.append("")
    return "\n".join(lines)


def _md_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
h1 { color: #1b5e20; } h2 { border-bottom: 2px solid #c8e6c9; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; }
th { background: #e8f5e9; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: .8em 0; }
p.lead { font-size: 1.08em; background: #f1f8e9; padding: .8em 1em; border-left: 4px solid #2e7d32; }
"""
# Sets data-images-ok on <body> once every chart decoded, so a headless browser can check them.
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images-ok", ok ? "yes" : "no");
  document.body.setAttribute("data-images", String(imgs.length));
});
"""


def html(doc: Mapping[str, Any], pngs: Mapping[str, bytes]) -> str:
    """report.html: one file, charts embedded as data: URIs."""
    esc = html_lib.escape
    title = f"AI Energy Impact Report {doc['year']}"
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
        f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for title_text, blocks in sections(doc):
        out.append(f"<h2>{esc(title_text)}</h2>")
        for n, block in enumerate(blocks):
            if block[0] == "p":
                cls = " class='lead'" if title_text == "Summary" and n == 0 else ""
                out.append(f"<p{cls}>{esc(block[1])}</p>")
            elif block[0] == "img" and block[1] in pngs:
                data = base64.b64encode(pngs[block[1]]).decode("ascii")
                out.append(f"<img alt='{esc(block[2])}' src='data:image/png;base64,{data}'>")
            elif block[0] == "table":
                out.append("<table><tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in block[1]) + "</tr>")
                for row in block[2]:
                    out.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>")
                out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)
