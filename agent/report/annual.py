"""The annual AI Energy Impact Report as a document (report.json) and its files (Markdown, HTML, PNG, PDF).

ledgers -> data (SQL aggregation per job x hour, priced per node-hour) -> figures (report.json)
-> charts (PNG) -> render (report.md, report.html) -> pdf (report.pdf). From Prometheus:
prometheus -> figures -> ... The config's `report:` section heads the document as its `report` object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.carbon.model import CarbonModel
from agent.config.checks import ArgumentError
from agent.config.settings import Config, ReportConfig
from agent.report import prometheus
from agent.report.data import YearReader, history_years
from agent.report.figures import build
from agent.units import json_text

FORMATS = ("html", "md", "json", "pdf")
SALT_ENV = "GREENAI_REPORT_SALT"
"""A secret salt for --anonymize-users; without it the pseudonyms are stable but not secret."""


def parse_formats(text: str) -> tuple[str, ...]:
    """`html,md` -> ('html', 'md'); raises ArgumentError naming a format it does not know."""
    names = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ArgumentError(
            f"--format: unknown {', '.join(unknown) or 'empty list'}; choose from {','.join(FORMATS)}"
        )
    return names


def make_report(
    cfg: Config,
    year: int,
    ledgers: Sequence[Path],
    baseline_year: int | None = None,
    anonymize_users: bool = False,
    progress: Callable[[float], None] | None = None,
    prometheus_url: str | None = None,
) -> dict[str, Any]:
    """The report document, from `ledgers` or from the Prometheus server at URL `prometheus`;
    raises LedgerError, ConfigError or prometheus.PromError (one line) on bad input."""
    model = CarbonModel.from_config(cfg.carbon, warn=lambda _line: None)
    reader = YearReader(model)
    if prometheus_url is not None:
        client = prometheus.PromClient(prometheus_url)
        years = [prometheus.read_year(client, reader, y) for y in history_years(year, baseline_year)]
    else:  # the baseline year, the years in between and the reporting year, each read once
        years = reader.read_years(history_years(year, baseline_year), ledgers, progress)
    data, baseline = years[-1], (years[0] if baseline_year is not None else None)
    salt = os.environ.get(SALT_ENV, "")
    doc = build(data, model, baseline, anonymize_users, salt, between=years[1:-1])
    return headed(doc, front(cfg.report, year))


def front(report: ReportConfig, year: int) -> dict[str, Any]:
    """report.json's `report` object, from the config's `report:` section: who publishes the report,
    whom to ask, what it covers (null where the config says nothing), and the period (always given)."""
    contact, boundary = report.contact, report.reporting_boundary
    return {
        "organisation": report.organisation,
        "contact": None
        if contact is None
        else {"name": contact.name, "email": contact.email, "text": contact.text},
        "reporting_boundary": None
        if boundary is None
        else {
            "description": boundary.description,
            "sites": list(boundary.sites),
            "included": list(boundary.included),
            "excluded": list(boundary.excluded),
        },
        "period": {
            "start": f"{year}-01-01T00:00:00Z",
            "end": f"{year + 1}-01-01T00:00:00Z",
            "basis": "calendar year, UTC",
        },
    }


def headed(doc: dict[str, Any], front_block: dict[str, Any]) -> dict[str, Any]:
    """`doc` with `front_block` as its `report` object, placed after `schema` so that it reads first."""
    rest = {k: v for k, v in doc.items() if k not in ("schema", "report")}
    return {"schema": doc["schema"], "report": front_block, **rest}


def write_report(doc: dict[str, Any], out: Path, formats: Sequence[str]) -> list[Path]:
    """Write report.json / report.md (+ PNGs) / report.html / report.pdf under `out`; the paths written.
    Raises ArgumentError when a PDF is asked for and WeasyPrint is not installed."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "json" in formats:
        path = out / "report.json"
        path.write_text(json_text(doc, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    if {"md", "html", "pdf"} & set(formats):
        from agent.report.charts import charts
        from agent.report.render import html, markdown

        pngs = charts(doc)
        if "md" in formats:
            for name, data in pngs.items():
                (out / name).write_bytes(data)
                written.append(out / name)
            (out / "report.md").write_text(markdown(doc, list(pngs)), encoding="utf-8")
            written.append(out / "report.md")
        page = html(doc, pngs)
        if "html" in formats:
            (out / "report.html").write_text(page, encoding="utf-8")
            written.append(out / "report.html")
        if "pdf" in formats:
            from agent.report.pdf import pdf

            (out / "report.pdf").write_bytes(pdf(page))
            written.append(out / "report.pdf")
    return written
