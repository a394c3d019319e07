"""`greenai import csv|codecarbon FILE`: parse a file of runs and store it in the ledger, all or nothing."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timezone, tzinfo
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.commands.failures import EXIT_OK
from agent.config.checks import ArgumentError
from agent.ledger.import_codecarbon import parse_codecarbon_csv
from agent.ledger.import_csv import parse_runs_csv
from agent.ledger.imports import store_runs

PARSERS = {"csv": parse_runs_csv, "codecarbon": parse_codecarbon_csv}


def run(form: str, file: Path, tz_name: str | None, ledger: Path, as_json: bool, out: TextIO) -> int:
    """Import `file` (format `form`) into `ledger` and print one summary line; raises ArgumentError,
    ImportFileError (bad input) or LedgerError."""
    runs = PARSERS[form](file, _timezone(tz_name))
    summary = store_runs(ledger, runs, str(file))
    if as_json:
        print(json.dumps({"file": str(file), **asdict(summary)}), file=out)
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
