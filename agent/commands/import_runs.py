"""`greenai import csv|codecarbon FILE`: parse a file of runs and store it in the ledger, all or nothing."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timezone, tzinfo
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.commands.failures import EXIT_OK
from agent.config.checks import ArgumentError
from agent.ledger.import_codecarbon import parse_codecarbon_csv
from agent.ledger.import_csv import parse_runs_csv
from agent.ledger.import_files import MAX_FILE_BYTES
from agent.ledger.imports import store_runs
from agent.units import json_text

PARSERS = {"csv": parse_runs_csv, "codecarbon": parse_codecarbon_csv}
__all__ = ["MAX_FILE_BYTES", "PARSERS", "run"]


def run(
    form: str, file: Path, tz_name: str | None, ledger: Path, as_json: bool, out: TextIO,
    max_bytes: int = MAX_FILE_BYTES,
) -> int:  # fmt: skip
    """Import `file` (format `form`, at most `max_bytes`) into `ledger` and print one summary line;
    raises ArgumentError, ImportFileError (bad input) or LedgerError."""
    if max_bytes < 1:
        raise ArgumentError(f"--max-bytes {max_bytes}: give the largest file to read, in bytes (at least 1)")
    runs = PARSERS[form](file, _timezone(tz_name), max_bytes)
    summary = store_runs(ledger, runs, str(file))
    if as_json:
        print(json_text({"file": str(file), **asdict(summary)}), file=out)
    else:
        print(f"{file}: {summary.line()}", file=out)
    return EXIT_OK


def _timezone(name: str | None) -> tzinfo:
    if name is None:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ArgumentError(
            f"--timezone {name!r} is not a known time zone; give an IANA name such as UTC or Europe/Paris"
        ) from None
