"""Runs read from CSV files into clean records, what every format shares (docs/import.md).

`ImportedRun` (one run), `ImportFileError` (what is wrong with a file), reading a file into rows
(`read_table`, `row_cells`) and parsing cells (`cell_*`). The formats are `import_csv` (our own
documented columns) and `import_codecarbon` (CodeCarbon's `emissions.csv`). All are pure: bytes in,
`ImportedRun`s out, nothing stored. Every problem with a file is one `ImportFileError` whose message is
one line naming the file, the row (the line the record starts on; the header is row 1), the column
and the value, and saying what to do.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from typing import NoReturn

from collectors.jobs.paths import clean_text
from collectors.workloads import JobKey

AGREEMENT = 1e-3
"""`energy_kwh` and the sum of the components may differ by this relative amount (0.1%)."""
MAX_TEXT = 200
LATEST_EPOCH_S = 32503680000.0
"""3000-01-01: a later epoch is almost surely milliseconds or microseconds."""
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

    @property
    def origin(self) -> str:
        """The run's identity across imports: source, scheduler, job id and node. Upsert on this."""
        return json.dumps([self.source, self.key.scheduler, self.key.job_id, self.node])

    @property
    def digest(self) -> str:
        """sha256 (hex) of every parsed field but `row`: a stored run whose digest differs was edited."""
        fields = asdict(self)
        del fields["row"]
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


def read_table(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The normalised header (lower case, trimmed) and each non-blank record with the line it starts on."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ImportFileError(path, f"cannot read the file: {e.strerror or e}") from e
    if b"\0" in raw:
        raise ImportFileError(path, "not a CSV file (it holds binary data); export the data as CSV")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ImportFileError(
            path, f"not UTF-8 text (byte {e.start}); save the file as CSV UTF-8 and import it again"
        ) from e
    if not text.strip():
        raise ImportFileError(path, "the file is empty; it needs a header row and one row per run")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                records.append((line, [cell.strip() for cell in record]))
            line = reader.line_num + 1
    except csv.Error as e:
        raise ImportFileError(path, f"not valid CSV ({e}); check the quotes on this line", line) from e
    if not records:
        raise ImportFileError(path, "the file is empty; it needs a header row and one row per run")
    first_line, header = records[0]
    if first_line != 1:
        raise ImportFileError(path, "the file starts with blank lines; the header must be row 1", 1)
    return [h.lower() for h in header], records[1:]


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
    """Epoch seconds from ISO 8601 (no offset: `naive_tz`) or from epoch seconds."""
    if _EPOCH.fullmatch(value):
        seconds = float(value)
        if seconds < 0 or seconds >= LATEST_EPOCH_S:
            hint = "; in milliseconds? divide by 1000" if seconds >= LATEST_EPOCH_S else ""
            at.fail(column, value, f"epoch seconds out of range (1970 to 3000){hint}")
        return seconds
    iso = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        at.fail(column, value, "not a date; write ISO 8601 (2024-03-01T12:00:00Z) or epoch seconds")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz)
    return moment.timestamp()
