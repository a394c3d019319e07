"""`greenai report --year YYYY`: the annual AI Energy Impact Report as JSON, Markdown, HTML and PDF files.

matplotlib (the charts) and WeasyPrint (the PDF) are imported only when this command runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from agent.commands.failures import EXIT_OK
from agent.config.checks import ArgumentError
from agent.config.settings import Config
from agent.report import pdf
from agent.report.annual import make_report, write_report

PROGRESS_AFTER_S = 1.0

FIRST_YEAR, LAST_YEAR = 1970, 9998
"""The years a report can cover: ledger hours are epoch seconds, and the year after must be a date."""


def check_year(flag: str, year: int | None) -> None:
    """Raise ArgumentError, naming the range, for a year no report can cover."""
    if year is not None and not FIRST_YEAR <= year <= LAST_YEAR:
        raise ArgumentError(f"{flag} {year}: a report covers a year from {FIRST_YEAR} to {LAST_YEAR}")


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


def run(
    cfg: Config,
    year: int,
    ledgers: Sequence[Path],
    out: Path,
    formats: Sequence[str],
    baseline_year: int | None,
    anonymize_users: bool,
    stdout: IO[str],
    stderr: IO[str],
    prometheus_url: str | None = None,
) -> int:
    """Write the report's files under `out` and list them (the PNGs aside) on `stdout`; raises
    LedgerError or PromError (what to read is unreadable), ConfigError or ArgumentError."""
    check_year("--year", year)
    check_year("--baseline-year", baseline_year)
    if "pdf" in formats:
        pdf.require()  # before the ledgers are read: a missing WeasyPrint is known at once
    bar = ProgressLine(stderr)
    try:
        doc = make_report(cfg, year, ledgers, baseline_year, anonymize_users, bar, prometheus_url)
    finally:
        bar.finish()
    try:
        written = write_report(doc, out, formats)
    except OSError as e:
        raise ArgumentError(
            f"cannot write the report in {out}: {e.strerror or e}; pick another --out"
        ) from None
    for path in written:
        if path.suffix != ".png":
            print(path, file=stdout)
    return EXIT_OK
