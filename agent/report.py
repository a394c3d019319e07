"""`greenai report --year YYYY`: the annual AI Energy Impact Report as JSON, Markdown and HTML.

ledgers -> report_data (SQL aggregation per job x hour, priced per node-hour) -> report_figures
(report.json) -> report_charts (PNG) -> report_render (report.md, report.html).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from agent import prom_source
from agent.carbon import CarbonModel
from agent.config import Config, ConfigError
from agent.ledger_schema import LedgerError
from agent.report_data import YearReader
from agent.report_figures import build

FORMATS = ("html", "md", "json")
SALT_ENV = "GREENAI_REPORT_SALT"
"""A secret salt for --anonymize-users; without it the pseudonyms are stable but not secret."""
PROGRESS_AFTER_S = 1.0


def parse_formats(text: str) -> tuple[str, ...]:
    """`html,md` -> ('html', 'md'); raises ValueError naming a format it does not know."""
    names = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ValueError(f"--format: unknown {', '.join(unknown) or 'empty list'}; choose from html,md,json")
    return names


class ProgressLine:
    """A `\\r` progress bar on a terminal, shown only once the work has taken over a second."""

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._shown = False
        self._tty = stream.isatty()

    def __call__(self, done: float) -> None:
        if not self._tty or self._clock() - self._start < PROGRESS_AFTER_S:
            return
        width = 30
        filled = int(width * min(max(done, 0.0), 1.0))
        self._stream.write(f"\rreading ledgers [{'#' * filled}{'.' * (width - filled)}] {done:4.0%}")
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self._stream.write("\r" + " " * 60 + "\r")
            self._stream.flush()


def make_report(
    cfg: Config,
    year: int,
    ledgers: Sequence[Path],
    baseline_year: int | None = None,
    anonymize_users: bool = False,
    progress: Callable[[float], None] | None = None,
    prometheus: str | None = None,
) -> dict[str, Any]:
    """The report document, from `ledgers` or from the Prometheus server at URL `prometheus`;
    raises LedgerError, ConfigError or prom_source.PromError (one line) on bad input."""
    model = CarbonModel.from_config(cfg.carbon, warn=lambda _line: None)
    reader = YearReader(model)
    if prometheus is not None:
        client = prom_source.PromClient(prometheus)
        data = prom_source.read_year(client, reader, year)
        baseline = prom_source.read_year(client, reader, baseline_year) if baseline_year is not None else None
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
        from agent.report_charts import charts
        from agent.report_render import html, markdown

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


def run(
    cfg: Config,
    year: int,
    ledgers: Sequence[Path],
    out: Path,
    formats: Sequence[str],
    baseline_year: int | None,
    anonymize_users: bool,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    prometheus: str | None = None,
) -> int:
    """The CLI command: 0 written, 1 a ledger (or Prometheus) cannot be read, 2 bad input."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    bar = ProgressLine(stderr)
    try:
        doc = make_report(cfg, year, ledgers, baseline_year, anonymize_users, bar, prometheus)
    except prom_source.PromError as e:
        bar.finish()
        print(f"greenai: {e}", file=stderr)
        return e.code
    except ConfigError as e:
        bar.finish()
        print(f"greenai: {e}", file=stderr)
        return 2
    except LedgerError as e:
        bar.finish()
        print(f"greenai: {e}", file=stderr)
        return 1
    bar.finish()
    try:
        written = write_report(doc, out, formats)
    except OSError as e:
        print(
            f"greenai: cannot write the report in {out}: {e.strerror or e}; pick another --out", file=stderr
        )
        return 2
    for path in written:
        if path.suffix != ".png":
            print(path, file=stdout)
    return 0
