"""`greenai import csv|codecarbon FILE`: parse a file of runs and store it in the ledger, all or nothing."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import timezone, tzinfo
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.importers import ImportFileError, parse_codecarbon_csv, parse_runs_csv
from agent.ledger_import import store_runs
from agent.ledger_schema import LedgerError

EXIT_BAD_INPUT = 2
PARSERS = {"csv": parse_runs_csv, "codecarbon": parse_codecarbon_csv}


def run(
    form: str,
    file: Path,
    tz_name: str | None,
    ledger: Path,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Import `file` (format `form`) into `ledger`; prints one summary line. 0 ok, 1 ledger, 2 bad input."""
    try:
        naive_tz = _timezone(tz_name)
        runs = PARSERS[form](file, naive_tz)
        summary = store_runs(ledger, runs, str(file))
    except (ImportFileError, ValueError) as e:
        print(f"greenai: {e}", file=err)
        return EXIT_BAD_INPUT
    except LedgerError as e:
        print(f"greenai: {e}", file=err)
        return 1
    if as_json:
        print(json.dumps({"file": str(file), **asdict(summary)}), file=out)
    else:
        print(f"{file}: {summary.line()}", file=out)
    return 0


def _timezone(name: str | None) -> tzinfo:
    if name is None:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"--timezone {name!r} is not a known time zone; give an IANA name such as UTC or Europe/Paris"
        ) from None
