"""Runs read from CSV files into clean records, what every format shares (docs/import.md).

`ImportedRun` (one run), `ImportFileError` (what is wrong with a file), reading a file into rows
(`read_table`, `row_cells`) and parsing cells (`cell_*`), within the bounds every run must keep: dates
from 1970 to 2100, at most two years long, at most 1 TWh, from files of at most 200 MB unless raised.
The formats are `import_csv` (our own documented columns) and `import_codecarbon` (CodeCarbon's
`emissions.csv`). All are pure: bytes in, `ImportedRun`s out, nothing stored. Every problem with a
file is one `ImportFileError` whose message is one line naming the file, the row (the line the record
starts on; the header is row 1), the column and the value, and saying what to do.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime, tzinfo
from functools import cached_property
from typing import NoReturn

from collectors.jobs.paths import clean_text
from collectors.workloads import JobKey

AGREEMENT = 1e-3
"""`energy_kwh` and the sum of the components may differ by this relative amount (0.1%)."""
MAX_TEXT = 200
EARLIEST_EPOCH_S = 0.0
"""1970-01-01: no run is older than the epoch."""
LATEST_EPOCH_S = 4102444800.0
"""2100-01-01: a later date is a typo, or an epoch in milliseconds or microseconds."""
MAX_DURATION_S = 2 * 366 * 86400.0
"""A run is at most two years long; a longer one is a wrong date, and would book every hour of it."""
MAX_RUN_KWH = 1e9
"""1 TWh: more than any run uses (a year of a 100 MW site is 0.88 TWh); beyond is a wrong unit or column."""
MAX_NUMBER = 1e15
"""No number in a file is larger: sums and products of them stay finite, and counts fit SQLite's integers."""
MAX_FILE_BYTES = 200 * 1024 * 1024
"""The largest file read by default (`--max-bytes` raises it): about 2 million runs of our CSV."""
_CHUNK_BYTES = 1 << 20
_EPOCH = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")


class ImportFileError(Exception):
    """A file that can't be imported as it is; str() is one line: file, row, column, value, what to do."""

    def __init__(
        self, path: str, problem: str, row: int | None = None, column: str | None = None,
        value: str | None = None,
    ) -> None:  # fmt: skip
        self.path, self.row, self.column, self.value, self.problem = path, row, column, value, problem
        where = [path]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        if value is not None:
            where.append(f"value {_one_line(value)!r}")
        super().__init__(": ".join([*where, problem]))


@dataclass(frozen=True)
class ImportedRun:
    """One run from an imported file. Energy is IT energy in kWh, before PUE; times are epoch seconds.

    `unsplit_kwh` is energy the file gave only as a total (`energy_kwh` with no component columns).
    """

    source: str
    """"csv" or "codecarbon": which parser read it."""
    key: JobKey
    start: float
    end: float
    cpu_kwh: float = 0.0
    gpu_kwh: float = 0.0
    dram_kwh: float = 0.0
    unsplit_kwh: float = 0.0
    node: str = ""
    user: str = ""
    project: str = ""
    phase: str = ""
    model: str = ""
    location: str = ""
    gpu_hours: float | None = None
    pue: float | None = None
    intensity_g_per_kwh: float | None = None
    """When set, overrides the location's intensity for this run."""
    tokens: int | None = None
    reported_emissions_kg: float | None = None
    """What the source tool itself computed (CodeCarbon's `emissions`), kept for comparison."""
    name: str = ""
    """The job's name."""
    gpu_model: str = ""
    """The GPU models, '; ' between several kinds (as the agent records them)."""
    gpu_count: int | None = None
    cpu_model: str = ""
    method: str = ""
    """How the other tool obtained the energy, in words (measured how, or estimated how)."""
    uncertainty_pct: float | None = None
    """The energy's relative accuracy as the file states it, in percent (+/-); None: not stated."""
    row: int = field(default=0, compare=False)
    """Where in the file it came from; not part of `digest`, so moving a row changes nothing."""

    @property
    def energy_kwh(self) -> float:
        """IT energy in kWh: the components and the unsplit rest."""
        return self.cpu_kwh + self.gpu_kwh + self.dram_kwh + self.unsplit_kwh

    @cached_property
    def origin(self) -> str:
        """The run's identity across imports: source, scheduler, job id and node. Upsert on this."""
        return json.dumps([self.source, self.key.scheduler, self.key.job_id, self.node])

    @cached_property
    def digest(self) -> str:
        """sha256 (hex) of every parsed field but `row`: a stored run whose digest differs was edited."""
        # Not dataclasses.asdict: its deep copies were most of an import's time. JSON writes `key` as
        # a list either way.
        fields = {f.name: getattr(self, f.name) for f in dataclass_fields(self) if f.name != "row"}
        for name in DIGEST_IF_GIVEN:  # not there before: a run that does not give them keeps its digest
            if fields[name] in ("", None):
                del fields[name]
        canonical = json.dumps(fields, sort_keys=True, allow_nan=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


DIGEST_IF_GIVEN = ("name", "gpu_model", "gpu_count", "cpu_model", "method", "uncertainty_pct")
"""Fields in `digest` only when given, so that runs stored before they existed are not seen as edited."""


# ---- reading and cells ----


@dataclass(frozen=True)
class At:
    """A place in a file, to raise errors from."""

    path: str
    row: int

    def fail(self, column: str | None, value: str | None, problem: str) -> NoReturn:
        raise ImportFileError(self.path, problem, self.row, column, value)


def read_table(
    path: str, max_bytes: int = MAX_FILE_BYTES
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The normalised header (lower case, trimmed) and each non-blank record with the line it starts on.

    Reads at most `max_bytes` (a larger file, pipe or device is an error), so a wrong path never fills
    memory; the records are parsed as they are taken.
    """
    raw = _read_bounded(path, max_bytes)
    if b"\0" in raw:
        raise ImportFileError(path, "not a CSV file (it holds binary data); export the data as CSV")
    try:
        empty = not raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError as e:
        raise ImportFileError(
            path, f"not UTF-8 text (byte {e.start}); save the file as CSV UTF-8 and import it again"
        ) from e
    if empty:
        raise ImportFileError(path, "the file is empty; it needs a header row and one row per run")
    # Decoded again as the records are taken: the file's text is not held a second time, as str.
    records = _records(path, io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline=""))
    first = next(records, None)
    if first is None:
        raise ImportFileError(path, "the file is empty; it needs a header row and one row per run")
    first_line, header = first
    if first_line != 1:
        raise ImportFileError(path, "the file starts with blank lines; the header must be row 1", 1)
    return [h.lower() for h in header], records


def _read_bounded(path: str, max_bytes: int) -> bytes:
    """The file's bytes, read in chunks and refused past `max_bytes` (its size, when it has one, first)."""
    too_big = (
        f"larger than the limit of {max_bytes:,} bytes; split the file, or raise the limit with --max-bytes"
    )
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > max_bytes:
                raise ImportFileError(path, too_big)
            chunks, size = [], 0
            while chunk := f.read(min(_CHUNK_BYTES, max_bytes + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise ImportFileError(path, too_big)
    except OSError as e:
        raise ImportFileError(path, f"cannot read the file: {e.strerror or e}") from e
    return b"".join(chunks)


def _records(path: str, text: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(text, strict=True)
    line = 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                yield line, [cell.strip() for cell in record]
            line = reader.line_num + 1
    except csv.Error as e:
        raise ImportFileError(path, f"not valid CSV ({e}); check the quotes on this line", line) from e


def row_cells(path: str, line: int, header: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    if len(cells) != len(header):
        raise ImportFileError(
            path,
            f"{len(cells)} cells but the header has {len(header)} columns; "
            "check for a stray or missing comma (quote cells that contain commas)",
            line,
        )
    return dict(zip(header, cells, strict=True))


def cell_text(value: str) -> str:
    return clean_text(value.strip(), MAX_TEXT)


def _one_line(value: str) -> str:
    return clean_text(value, 80)


def _number(at: At, column: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        at.fail(
            column, value, "not a number; write digits, '.' for decimals, no units or thousands separators"
        )
    if abs(number) > MAX_NUMBER:
        at.fail(column, value, f"too large (more than {MAX_NUMBER:.0e}); check the unit and the column")
    return number


def cell_non_negative(at: At, column: str, value: str) -> float:
    number = _number(at, column, value)
    if number < 0:
        at.fail(column, value, "negative; it can't be below 0")
    return number


def cell_pue(at: At, column: str, value: str) -> float:
    number = _number(at, column, value)
    if number < 1:
        at.fail(column, value, "PUE is facility energy / IT energy, so at least 1; give 1 or leave it empty")
    return number


def cell_optional(
    at: At, column: str, cell: Mapping[str, str], parse: Callable[[At, str, str], float]
) -> float | None:
    """The column's number, or None where the column is absent or the cell empty."""
    value = cell.get(column, "")
    return parse(at, column, value) if value else None


def cell_time(at: At, column: str, value: str, naive_tz: tzinfo) -> float:
    """Epoch seconds from ISO 8601 (no offset: `naive_tz`) or from epoch seconds, 1970 to 2100."""
    if _EPOCH.fullmatch(value):
        seconds = float(value)
        if not EARLIEST_EPOCH_S <= seconds < LATEST_EPOCH_S:
            hint = "; in milliseconds? divide by 1000" if seconds >= LATEST_EPOCH_S else ""
            at.fail(column, value, f"epoch seconds out of range (1970 to 2100){hint}")
        return seconds
    iso = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        at.fail(column, value, "not a date; write ISO 8601 (2024-03-01T12:00:00Z) or epoch seconds")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz)
    try:
        seconds = moment.timestamp()
    except (OverflowError, ValueError):
        seconds = math.inf
    if not EARLIEST_EPOCH_S <= seconds < LATEST_EPOCH_S:
        at.fail(column, value, "date out of range; runs must lie between 1970 and 2100")
    return seconds


def check_span(at: At, column: str, value: str, start: float, end: float) -> None:
    """Refuse a run longer than MAX_DURATION_S (two years)."""
    if end - start > MAX_DURATION_S:
        at.fail(
            column, value,
            f"the run would last {(end - start) / 86400:,.0f} days, more than the "
            f"{MAX_DURATION_S / 86400:.0f} allowed (2 years); check the dates, or split the run",
        )  # fmt: skip


def check_energy(at: At, column: str, value: str, kwh: float) -> None:
    """Refuse a run's energy above MAX_RUN_KWH (1 TWh)."""
    if kwh > MAX_RUN_KWH:
        at.fail(
            column, value,
            f"more than {MAX_RUN_KWH:,.0f} kWh (1 TWh) in one run; check the unit (kWh) and the column",
        )  # fmt: skip
