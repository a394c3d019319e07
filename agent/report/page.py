"""What heads the report and how its page looks: the title, the front block (from report.json's
`report` object, i.e. the config's `report:` section) and the CSS, for the screen and for print
(A4 pages numbered "page N of M", as WeasyPrint lays out report.pdf).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")  # fmt: skip


def title(doc: Mapping[str, Any]) -> str:
    return f"AI Energy Impact Report {doc['year']}"


def organisation(doc: Mapping[str, Any]) -> str | None:
    organisation_name: str | None = (doc.get("report") or {}).get("organisation")
    return organisation_name


def running_title(doc: Mapping[str, Any]) -> str:
    """The line at the top of every printed page but the first."""
    org = organisation(doc)
    return f"{title(doc)} · {org}" if org else title(doc)


def _period(doc: Mapping[str, Any]) -> str:
    period = (doc.get("report") or {}).get("period") or {}
    basis = period.get("basis", "calendar year, UTC")
    return f"1 January {doc['year']} to 31 December {doc['year']} ({basis})"


def _contact(contact: Mapping[str, Any] | None) -> list[str]:
    if not contact:
        return []
    who = contact.get("name") or ""
    if contact.get("email"):
        who = f"{who} <{contact['email']}>".strip()
    return [part for part in (who, contact.get("text")) if part]


def front_rows(doc: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """The front block, (label, lines), in the order read: what the config's `report:` section gives,
    the reporting period and the baseline year always."""
    report = doc.get("report") or {}
    boundary = report.get("reporting_boundary") or {}
    baseline = doc.get("baseline_year")
    rows: list[tuple[str, list[str]]] = [
        ("Organisation", [report["organisation"]] if report.get("organisation") else []),
        ("Reporting period", [_period(doc)]),
        ("Baseline year", [str(baseline) if baseline is not None else "none (no targets path)"]),
        ("Reporting boundary", [boundary["description"]] if boundary.get("description") else []),
        ("Sites", list(boundary.get("sites") or [])),
        ("In scope", list(boundary.get("included") or [])),
        ("Out of scope", list(boundary.get("excluded") or [])),
        ("Contact", _contact(report.get("contact"))),
    ]
    return [(label, lines) for label, lines in rows if lines]


CSS = """
body { font-family: "DejaVu Sans", system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
h1 { color: #1b5e20; margin-bottom: .2em; string-set: running attr(data-running); }
h2 { border-bottom: 2px solid #c8e6c9; padding-bottom: .2em; margin-top: 1.6em; }
p.org { font-size: 1.3em; margin: 0 0 .8em; color: #33691e; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; vertical-align: top; }
th { background: #e8f5e9; } td:first-child, th:first-child { text-align: left; }
table.front th, table.front td { text-align: left; border: none; border-bottom: 1px solid #e0e0e0; }
table.front th { background: none; color: #33691e; white-space: nowrap; padding-right: 1.5em; }
table.front ul { margin: 0; padding-left: 1.1em; }
img { width: 840px; max-width: 100%; display: block; margin: .8em 0; }
p.lead { font-size: 1.08em; background: #f1f8e9; padding: .8em 1em; border-left: 4px solid #2e7d32; }
@page {
  size: A4; margin: 18mm 15mm 18mm 15mm;
  @top-left { content: string(running); font: 8pt "DejaVu Sans", sans-serif; color: #616161; }
  @bottom-right { content: "page " counter(page) " of " counter(pages); font: 8pt "DejaVu Sans", sans-serif;
                  color: #616161; }
}
@page :first { @top-left { content: none; } }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 9.5pt; line-height: 1.35; }
  header.front { break-after: page; padding-top: 45mm; }
  header.front h1 { font-size: 24pt; }
  table.front { width: 100%; font-size: 10pt; margin-top: 12mm; }
  h2 { break-after: avoid; margin-top: 1.2em; font-size: 14pt; }
  p { orphans: 3; widows: 3; }
  img { width: 100%; max-width: 100%; break-inside: avoid; margin: .5em 0; }
  table { width: 100%; font-size: 7.5pt; }
  table.data { break-inside: avoid; }  /* moved whole to the next page; split only when taller than one */
  thead { display: table-header-group; }
  tr, img { break-inside: avoid; }
  th, td { padding: .25em .4em; overflow-wrap: break-word; }  /* not "anywhere": it squeezes columns */
  p.lead { font-size: 10pt; }
}
"""
