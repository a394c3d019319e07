"""Past runs and other tools' runs, read from CSV files into clean records (docs/import.md).

Two formats: our own documented columns (`parse_runs_csv`) and CodeCarbon's `emissions.csv`
(`parse_codecarbon_csv`). Both are pure: bytes in, `ImportedRun`s out, nothing stored. Every problem
with a file is one `ImportFileError` whose message is one line naming the file, the row (the line the
record starts on; the header is row 1), the column and the value, and saying what to do.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone, tzinfo
from os import PathLike
from typing import NoReturn

from agent.carbon import data as carbon_data
from agent.config.work import PHASES
from collectors.jobs.paths import clean_text
from collectors.workloads import JobKey

DEFAULT_SCHEDULER = "imported"
"""The scheduler of a row of our CSV that has no `scheduler` cell."""
CODECARBON_SCHEDULER = "codecarbon"
AGREEMENT = 1e-3
"""`energy_kwh` and the sum of the components may differ by this relative amount (0.1%)."""
MAX_TEXT = 200
LATEST_EPOCH_S = 32503680000.0
"""3000-01-01: a later epoch is almost surely milliseconds or microseconds."""

REQUIRED = ("job_id", "start", "end")
COMPONENTS = ("cpu", "gpu", "dram")
ENERGY_COLUMNS = ("energy_kwh", *(f"{c}_kwh" for c in COMPONENTS))
OPTIONAL = (
    "node", "user", "name", "project", "phase", "model", "gpu_hours", "location", "pue",
    "intensity_g_per_kwh", "tokens", "scheduler", "gpu_model", "gpu_count", "cpu_model", "method",
    "uncertainty_pct",
)  # fmt: skip
KNOWN = (*REQUIRED, *ENERGY_COLUMNS, *OPTIONAL)
IGNORED_PREFIX = "x_"
"""Columns whose name starts with this are ignored, so notes can travel with the data."""

ENERGY_UNITS: Mapping[str, tuple[str, float]] = {
    "wh": ("Wh", 1e-3), "mwh": ("MWh", 1e3), "gwh": ("GWh", 1e6), "twh": ("TWh", 1e9),
    "j": ("J", 1 / 3.6e6), "joules": ("J", 1 / 3.6e6), "uj": ("µJ", 1 / 3.6e12), "mj": ("MJ", 1 / 3.6),
    "kj": ("kJ", 1 / 3.6e3), "gj": ("GJ", 1e3 / 3.6),
}  # fmt: skip
"""Energy units people put in column names -> (how to write it, kWh per unit)."""
_ENERGY_NAME = re.compile(r"(energy|cpu|gpu|dram|ram|mem|memory)(?:_energy)?(?:_in)?_?([a-zµ]*)")
_INTENSITY_NAME = re.compile(r"(carbon_)?(intensity|ci)(_.+)?")
_GPU_TIME_NAME = re.compile(r"gpu_?(s|sec|secs|seconds|min|mins|minutes|h|hr|hrs|hour|time)")
_EPOCH = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")
_CODECARBON_GPUS = re.compile(r"(\d+) x (.+?)(?=\d+ x |$)")
"""CodeCarbon's `gpu_model`: `4 x NVIDIA A100-SXM4-80GB`, several kinds written one after another."""
CODECARBON_METHOD = (
    "tracking_mode {mode}{version}: CPU energy from RAPL and GPU energy from NVML where CodeCarbon could "
    "read them, else estimated from the CPU's TDP; RAM estimated from its size"
)
"""How CodeCarbon obtains energy (its documented methodology), as `method` of its runs."""

CODECARBON_REQUIRED = (
    "timestamp", "run_id", "duration", "emissions", "cpu_energy", "gpu_energy", "ram_energy",
    "energy_consumed",
)  # fmt: skip

US_STATES: Mapping[str, str] = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL", "indiana": "IN",
    "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA", "maine": "ME", "maryland": "MD",
    "massachusetts": "MA", "michigan": "MI", "minnesota": "MN", "mississippi": "MS", "missouri": "MO",
    "montana": "MT", "nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ",
    "new mexico": "NM", "new york": "NY", "north carolina": "NC", "north dakota": "ND", "ohio": "OH",
    "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA", "rhode island": "RI",
    "south carolina": "SC", "south dakota": "SD", "tennessee": "TN", "texas": "TX", "utah": "UT",
    "vermont": "VT", "virginia": "VA", "washington": "WA", "west virginia": "WV", "wisconsin": "WI",
    "wyoming": "WY",
}  # fmt: skip
"""CodeCarbon's `region` for the USA (a state's name in lower case) -> its postal code."""
CANADA_PROVINCES: Mapping[str, str] = {name: code for code, name in carbon_data.CANADA_PROVINCES.items()}
"""CodeCarbon's `region` for Canada (a province's name in lower case) -> its ISO 3166-2:CA code."""


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


# ---- our documented columns ----


def parse_runs_csv(path: str | PathLike[str], naive_tz: tzinfo = timezone.utc) -> list[ImportedRun]:
    """The runs in a CSV of our documented columns, in file order; a date without offset is in `naive_tz`."""
    name = str(path)
    header, rows = _read_table(name)
    columns = _check_header(name, header)
    runs: list[ImportedRun] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        cell = _cells(name, line, header, cells)
        run = _parse_run(_At(name, line), {k: v for k, v in cell.items() if k in columns}, naive_tz)
        if run.origin in seen:
            _At(name, line).fail(
                "job_id", run.key.job_id,
                f"same job_id, scheduler and node as row {seen[run.origin]}; merge the two rows into one",
            )  # fmt: skip
        seen[run.origin] = line
        runs.append(run)
    return runs


def _check_header(path: str, header: Sequence[str]) -> set[str]:
    """The known columns of a header, after rejecting unnamed, duplicate, misnamed and missing ones."""
    at = _At(path, 1)
    if len(header) == 1 and any(sep in header[0] for sep in ";\t"):
        at.fail(None, None, "columns are not separated by commas; save the file as comma-separated CSV")
    if not any(name in KNOWN for name in header):
        at.fail(None, None, "not a CSV of runs: row 1 must name the columns (job_id,start,end,energy_kwh)")
    for position, name in enumerate(header, start=1):
        if not name:
            at.fail(f"#{position}", "", "column has no name; name it or delete it")
        if header.index(name) != position - 1:
            at.fail(name, None, "column appears twice; keep one")
        if name in KNOWN or name.startswith(IGNORED_PREFIX):
            continue
        hint = _wrong_unit(name)
        if hint is not None:
            at.fail(name, None, hint)
        close = difflib.get_close_matches(name, KNOWN, n=1)
        fix = f"did you mean {close[0]!r}? " if close else ""
        at.fail(
            name, None,
            f"unknown column; {fix}rename it, delete it, or prefix it with {IGNORED_PREFIX!r} to ignore it",
        )  # fmt: skip
    for name in REQUIRED:
        if name not in header:
            at.fail(name, None, f"required column is missing; the header needs {', '.join(REQUIRED)}")
    if not any(name in header for name in ENERGY_COLUMNS):
        at.fail("energy_kwh", None, "no energy column; add energy_kwh, or any of cpu_kwh, gpu_kwh, dram_kwh")
    return {name for name in header if name in KNOWN}


def _wrong_unit(name: str) -> str | None:
    """What to do about a column that names a quantity we take in another unit, or None."""
    match = _ENERGY_NAME.fullmatch(name)
    if match is not None:
        base, unit = match.groups()
        target = {"energy": "energy_kwh", "ram": "dram_kwh", "mem": "dram_kwh", "memory": "dram_kwh"}.get(
            base, f"{base}_kwh"
        )
        if unit in ENERGY_UNITS:
            written, factor = ENERGY_UNITS[unit]
            return (
                f"{written} is the wrong unit; give kWh in column {target!r} (1 {written} = {factor:g} kWh)"
            )
        if unit in ("kwh", ""):
            return f"give this energy in kWh in column {target!r}"
        if unit in ("w", "kw", "mw", "watts", "power"):
            return f"power is not accepted; give energy in kWh in column {target!r} (mean W x hours / 1000)"
    if _INTENSITY_NAME.fullmatch(name):
        return "give the grid's intensity in grams CO2e per kWh in column 'intensity_g_per_kwh'"
    if _GPU_TIME_NAME.fullmatch(name):
        return "give GPU time in hours in column 'gpu_hours'"
    return None


def _parse_run(at: _At, cell: Mapping[str, str], naive_tz: tzinfo) -> ImportedRun:
    job_id = _text(cell.get("job_id", ""))
    if not job_id:
        at.fail("job_id", "", "empty; every row needs the job's id")
    start = _time(at, "start", cell["start"], naive_tz)
    end = _time(at, "end", cell["end"], naive_tz)
    if end < start:
        at.fail("end", cell["end"], f"before start ({cell['start']}); swap them or fix the date")
    components = {c: _optional(at, f"{c}_kwh", cell, _non_negative) for c in COMPONENTS}
    total = _optional(at, "energy_kwh", cell, _non_negative)
    given = {c: v for c, v in components.items() if v is not None}
    if total is None and not given:
        at.fail("energy_kwh", "", "no energy in this row; fill energy_kwh or cpu_kwh, gpu_kwh, dram_kwh")
    if given and total is not None:
        parts = sum(given.values())
        if abs(total - parts) > AGREEMENT * max(total, parts):
            at.fail(
                "energy_kwh", cell["energy_kwh"],
                f"differs by more than 0.1% from cpu_kwh + gpu_kwh + dram_kwh = {parts:g}; "
                "correct one of them or leave energy_kwh empty",
            )  # fmt: skip
    phase = _text(cell.get("phase", "")).lower()
    if phase and phase not in PHASES:
        at.fail("phase", cell["phase"], f"unknown phase; use one of {', '.join(PHASES)} or leave it empty")
    tokens = _whole(at, "tokens", cell, "the count of tokens")
    gpu_count = _whole(at, "gpu_count", cell, "the number of GPUs the run used")
    return ImportedRun(
        source="csv",
        key=JobKey(_text(cell.get("scheduler", "")) or DEFAULT_SCHEDULER, job_id),
        start=start,
        end=end,
        cpu_kwh=given.get("cpu", 0.0),
        gpu_kwh=given.get("gpu", 0.0),
        dram_kwh=given.get("dram", 0.0),
        unsplit_kwh=0.0 if given else (total or 0.0),
        node=_text(cell.get("node", "")),
        user=_text(cell.get("user", "")),
        project=_text(cell.get("project", "")),
        phase=phase,
        model=_text(cell.get("model", "")),
        location=_text(cell.get("location", "")),
        gpu_hours=_optional(at, "gpu_hours", cell, _non_negative),
        pue=_optional(at, "pue", cell, _pue),
        intensity_g_per_kwh=_optional(at, "intensity_g_per_kwh", cell, _non_negative),
        tokens=tokens,
        name=_text(cell.get("name", "")),
        gpu_model=_text(cell.get("gpu_model", "")),
        gpu_count=gpu_count,
        cpu_model=_text(cell.get("cpu_model", "")),
        method=_text(cell.get("method", "")),
        uncertainty_pct=_optional(at, "uncertainty_pct", cell, _non_negative),
        row=at.row,
    )


def _whole(at: _At, column: str, cell: Mapping[str, str], what: str) -> int | None:
    """The column's whole number (not negative), or None where absent or empty."""
    number = _optional(at, column, cell, _non_negative)
    if number is None:
        return None
    if not number.is_integer():
        at.fail(column, cell[column], f"not a whole number; give {what}")
    return int(number)


# ---- CodeCarbon's emissions.csv ----


def parse_codecarbon_csv(path: str | PathLike[str], naive_tz: tzinfo = timezone.utc) -> list[ImportedRun]:
    """The runs in CodeCarbon's emissions.csv, the last row of each run_id; `timestamp` is in `naive_tz`.

    CodeCarbon's energies include its PUE; they are divided by it here, so that IT kWh x `pue` gives
    CodeCarbon's figures back.
    """
    name = str(path)
    header, rows = _read_table(name)
    for column in CODECARBON_REQUIRED:
        if column not in header:
            also = "; for our own columns use `greenai import csv`" if "job_id" in header else ""
            _At(name, 1).fail(column, None, f"not a CodeCarbon emissions.csv: column is missing{also}")
    latest: dict[str, ImportedRun] = {}
    for line, cells in rows:
        run = _parse_codecarbon_row(_At(name, line), _cells(name, line, header, cells), naive_tz)
        # flush() appends the run's cumulative totals again: the last row per run is the whole run.
        latest.pop(run.key.job_id, None)
        latest[run.key.job_id] = run
    return list(latest.values())


def _parse_codecarbon_row(at: _At, cell: Mapping[str, str], naive_tz: tzinfo) -> ImportedRun:
    run_id = _text(cell["run_id"])
    if not run_id:
        at.fail("run_id", "", "empty; CodeCarbon writes one per run, so the file was edited: restore it")
    end = _time(at, "timestamp", cell["timestamp"], naive_tz)
    duration_s = _non_negative(at, "duration", cell["duration"])
    pue = _optional(at, "pue", cell, _pue) or 1.0
    cpu, gpu, ram, total = (
        _non_negative(at, c, cell[c]) for c in ("cpu_energy", "gpu_energy", "ram_energy", "energy_consumed")
    )
    rest = total - (cpu + gpu + ram)
    if abs(rest) <= AGREEMENT * total + 1e-12:
        rest = 0.0  # rounding
    elif rest < 0:
        at.fail(
            "energy_consumed", cell["energy_consumed"],
            f"below cpu + gpu + ram energy = {cpu + gpu + ram:g}; restore the file CodeCarbon wrote",
        )  # fmt: skip
    gpu_count = _optional(at, "gpu_count", cell, _non_negative)
    return ImportedRun(
        source="codecarbon",
        key=JobKey(CODECARBON_SCHEDULER, run_id),
        start=end - duration_s,
        end=end,
        cpu_kwh=cpu / pue,
        gpu_kwh=gpu / pue,
        dram_kwh=ram / pue,
        unsplit_kwh=rest / pue,
        project=_text(cell.get("project_name", "")),
        location=_codecarbon_location(cell),
        gpu_hours=gpu_count * duration_s / 3600 if gpu_count else None,
        pue=pue,
        reported_emissions_kg=_non_negative(at, "emissions", cell["emissions"]),
        gpu_model=_codecarbon_gpu_model(_text(cell.get("gpu_model", ""))),
        gpu_count=int(gpu_count) if gpu_count and gpu_count.is_integer() else None,
        cpu_model=_text(cell.get("cpu_model", "")),
        method=_codecarbon_method(cell),
        row=at.row,
    )


def _codecarbon_gpu_model(text: str) -> str:
    """`2 x NVIDIA A100-SXM4-80GB` -> `NVIDIA A100-SXM4-80GB`: the count is `gpu_count`."""
    found = _CODECARBON_GPUS.findall(text)
    return "; ".join(sorted({name.strip() for _, name in found})) if found else text


def _codecarbon_method(cell: Mapping[str, str]) -> str:
    mode = _text(cell.get("tracking_mode", "")) or "machine"  # CodeCarbon's default; older files lack it
    version = _text(cell.get("codecarbon_version", ""))
    return CODECARBON_METHOD.format(mode=mode, version=f", CodeCarbon {version}" if version else "")


def _codecarbon_location(cell: Mapping[str, str]) -> str:
    """Our location syntax (agent/carbon/data.py): CodeCarbon's country, or US and Canadian region."""
    country = _text(cell.get("country_iso_code", "")).upper()
    region = _text(cell.get("region", "")).lower()
    table = {"USA": ("US", US_STATES), "CAN": ("CA", CANADA_PROVINCES)}.get(country)
    if table is not None and region:
        prefix, names = table
        code = names.get(region) or (region.upper() if region.upper() in names.values() else None)
        if code is not None:
            return f"{prefix}-{code}"
    return country


# ---- reading and cells ----


@dataclass(frozen=True)
class _At:
    """A place in a file, to raise errors from."""

    path: str
    row: int

    def fail(self, column: str | None, value: str | None, problem: str) -> NoReturn:
        raise ImportFileError(self.path, problem, self.row, column, value)


def _read_table(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
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


def _cells(path: str, line: int, header: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    if len(cells) != len(header):
        raise ImportFileError(
            path,
            f"{len(cells)} cells but the header has {len(header)} columns; "
            "check for a stray or missing comma (quote cells that contain commas)",
            line,
        )
    return dict(zip(header, cells, strict=True))


def _text(value: str) -> str:
    return clean_text(value.strip(), MAX_TEXT)


def _one_line(value: str) -> str:
    return clean_text(value, 80)


def _number(at: _At, column: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        at.fail(
            column, value, "not a number; write digits, '.' for decimals, no units or thousands separators"
        )
    return number


def _non_negative(at: _At, column: str, value: str) -> float:
    number = _number(at, column, value)
    if number < 0:
        at.fail(column, value, "negative; it can't be below 0")
    return number


def _pue(at: _At, column: str, value: str) -> float:
    number = _number(at, column, value)
    if number < 1:
        at.fail(column, value, "PUE is facility energy / IT energy, so at least 1; give 1 or leave it empty")
    return number


def _optional(
    at: _At, column: str, cell: Mapping[str, str], parse: Callable[[_At, str, str], float]
) -> float | None:
    """The column's number, or None where the column is absent or the cell empty."""
    value = cell.get(column, "")
    return parse(at, column, value) if value else None


def _time(at: _At, column: str, value: str, naive_tz: tzinfo) -> float:
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
