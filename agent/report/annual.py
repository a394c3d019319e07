"""The annual AI Energy Impact Report as a document (report.json) and its files (Markdown, HTML, PNG).

ledgers -> data (SQL aggregation per job x hour, priced per node-hour) -> figures (report.json)
-> charts (PNG) -> render (report.md, report.html). From Prometheus: prometheus -> figures -> ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.carbon.model import CarbonModel
from agent.config.checks import ArgumentError
from agent.config.settings import Config
from agent.report import prometheus
from agent.report.data import YearReader
from agent.report.figures import build

FORMATS = ("html", "md", "json")
SALT_ENV = "GREENAI_REPORT_SALT"
"""A secret salt for --anonymize-users; without it the pseudonyms are stable but not secret."""


def parse_formats(text: str) -> tuple[str, ...]:
    """`html,md` -> ('html', 'md'); raises ArgumentError naming a format it does not know."""
    names = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ArgumentError(
            f"--format: unknown {', '.join(unknown) or 'empty list'}; choose from html,md,json"
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
        data = prometheus.read_year(client, reader, year)
        baseline = prometheus.read_year(client, reader, baseline_year) if baseline_year is not None else None
        return build(data, model, baseline, anonymize_users, os.environ.get(SALT_ENV, ""))
    share = 0.5 if baseline_year is not None else 1.0
    tick = (lambda d: progress(d * share)) if progress is not None else None
    data = reader.read(year, ledgers, tick)
    baseline = None
    if baseline_year is not None:
        after = (lambda d: progress(share + d * share)) if progress is not None else None
        baseline = reader.read(baseline_year, ledgers, after)
    salt = os.environ.get(SALT_ENV, "")
    return build(data, model, baseline, anonymize_users, salt)


def write_report(doc: dict[str, Any], out: Path, formats: Sequence[str]) -> list[Path]:
    """Write report.json / report.md (+ PNGs) / report.html under `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "json" in formats:
        path = out / "report.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        written.append(path)
    if "md" in formats or "html" in formats:
        from agent.report.charts import charts
        from agent.report.render import html, markdown

        pngs = charts(doc)
        if "md" in formats:
            for name, data in pngs.items():
                (out / name).write_bytes(data)
                written.append(out / name)
            (out / "report.md").write_text(markdown(doc, list(pngs)), encoding="utf-8")
            written.append(out / "report.md")
        if "html" in formats:
            (out / "report.html").write_text(html(doc, pngs), encoding="utf-8")
            written.append(out / "report.html")
    return written
