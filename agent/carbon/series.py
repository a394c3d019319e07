"""Hourly grid carbon intensity from a CSV file: Electricity Maps' export, or plain `timestamp,g_per_kwh`.

Accepted headers (case, spacing and `₂`/`2` do not matter):

- time: `Datetime (UTC)` (Electricity Maps) or `timestamp` (ISO 8601, naive = UTC, or epoch seconds);
- intensity in gCO2e/kWh: `g_per_kwh`, or Electricity Maps' `Carbon Intensity gCO₂eq/kWh (direct)`
  and `... (LCA)` / `(Life cycle)` / `(life cycle assessment)`; with both, the life-cycle column is
  used, the same basis as codecarbon's annual figures that fill the hours the file lacks;
- optional carbon-free share in percent: `cfe_pct`, `Carbon-free energy percentage (CFE%)`,
  `Low Carbon Percentage`.

Rows are floored to their UTC hour; several rows in one hour (15-minute data) are averaged. Row
numbers in errors count the header as row 1, as a spreadsheet shows them.

A citation names the file and what it declares of its origin: Electricity Maps' export says it is
theirs (the `Datetime (UTC)` header) and gives each row's `Data source` and `Zone id`; the plain
format declares nothing.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.carbon.data import Provenance
from agent.carbon.datafiles import CarbonDataError
from agent.units import HOUR_SECONDS

_EM_INTENSITY = re.compile(r"carbon intensity (\S+) \((.+)\)")
_LIFE_CYCLE = ("lca", "life cycle", "life cycle assessment", "lifecycle")
_TIME = ("datetime (utc)", "timestamp")
_CFE = re.compile(r"cfe_pct|carbon-free energy percentage( \(cfe%\))?|low carbon percentage")
_OTHER_UNIT = re.compile(r"(k?g|lbs?|t)_per_(k|m)wh")
_EM_PUBLISHER = "Electricity Maps"
_DECLARED = {"data source": "data source", "zone id": "zone"}
"""Electricity Maps' columns that say where a row's figures come from -> how a citation names them."""


class IntensityCsvError(CarbonDataError):
    """A bad intensity CSV: the message is one line naming the file, row, column and value."""


@dataclass(frozen=True)
class HourValue:
    """One hour of grid data: intensity in gCO2e/kWh and carbon-free share (0 to 1, None if absent)."""

    g_per_kwh: float
    cfe_share: float | None


@dataclass(frozen=True)
class HourlySeries:
    """A file's hours, keyed by the UTC epoch second of the hour's start."""

    path: str
    basis: str
    """`life cycle`, `direct`, or `as given` (plain format)."""
    hours: Mapping[int, HourValue]
    publisher: str = ""
    """What the file says of its origin: `Electricity Maps (data source: rte; zone: FR)`; "" if nothing."""
    years: tuple[int, ...] = ()
    """The UTC years the file has hours in, in order."""

    def coverage(self, start: int, end: int) -> float:
        """Share (0 to 1) of the hours from `start` to `end` (UTC epoch seconds, end excluded) in the file."""
        total = (end - start) // HOUR_SECONDS
        return sum(1 for h in self.hours if start <= h < end) / total if total > 0 else 0.0

    def provenance(self, location: str) -> Provenance:
        """The provenance of this file's hours, for the site named `location`."""
        years = self.years
        note = f"{self.basis} intensity"
        if len(years) > 1:
            note += f", {years[0]}-{years[-1]}"
        year = years[0] if len(years) == 1 else None
        return Provenance(self.path, "", "hourly", location, year, note=note, publisher=self.publisher)


@dataclass(frozen=True)
class _Columns:
    time: int
    intensity: int
    cfe: int | None
    basis: str
    declared: Mapping[str, int]
    """Columns that name the origin of a row's figures (Electricity Maps' `Data source`, `Zone id`)."""
    publisher: str


def read_series(path: Path) -> HourlySeries:
    """Read and check an intensity CSV; raises IntensityCsvError with a one-line message."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise IntensityCsvError(f"{path}: cannot read the intensity CSV ({e.strerror})") from None
    except UnicodeDecodeError:
        raise IntensityCsvError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    return parse_series(text, str(path))


def parse_series(text: str, origin: str) -> HourlySeries:
    """Parse CSV text; `origin` names the file in errors."""
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise IntensityCsvError(f"{origin}: row 1: empty file; expected a header such as timestamp,g_per_kwh")
    cols = _columns(header, origin)
    sums: dict[int, list[float]] = {}
    declared: dict[str, dict[str, None]] = {name: {} for name in cols.declared}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{origin}: row {reader.line_num}"
        for name, index in cols.declared.items():
            if index < len(row) and row[index].strip():
                declared[name].setdefault(row[index].strip())
        hour = _hour(_cell(row, cols.time, header, where), where, header[cols.time])
        g = _number(_cell(row, cols.intensity, header, where), where, header[cols.intensity], 1e5)
        cfe = None
        if cols.cfe is not None:
            raw = _cell(row, cols.cfe, header, where)
            cfe = _number(raw, where, header[cols.cfe], 100.0) / 100 if raw.strip() else None
        acc = sums.setdefault(hour, [0.0, 0.0, 0.0, 0.0])
        acc[0] += g
        acc[1] += 1
        if cfe is not None:
            acc[2] += cfe
            acc[3] += 1
    hours = {h: HourValue(a[0] / a[1], a[2] / a[3] if a[3] else None) for h, a in sums.items()}
    years = tuple(sorted({datetime.fromtimestamp(h, timezone.utc).year for h in hours}))
    return HourlySeries(origin, cols.basis, hours, _publisher(cols.publisher, declared), years)


def _publisher(publisher: str, declared: Mapping[str, Mapping[str, None]]) -> str:
    """`Electricity Maps (data source: rte, entsoe.eu; zone: FR)`, from the values the file gives."""
    parts = [f"{name}: {', '.join(values)}" for name, values in declared.items() if values]
    if not publisher:
        return ""
    return f"{publisher} ({'; '.join(parts)})" if parts else publisher


def _columns(header: Sequence[str], origin: str) -> _Columns:
    names = [" ".join(h.replace("₂", "2").lower().split()) for h in header]
    time = next((i for i, n in enumerate(names) if n in _TIME), None)
    intensity: dict[str, int] = {}
    cfe = next((i for i, n in enumerate(names) if _CFE.fullmatch(n)), None)
    for i, name in enumerate(names):
        em = _EM_INTENSITY.fullmatch(name)
        if name == "g_per_kwh":
            intensity["as given"] = i
        elif em and em.group(1) == "gco2eq/kwh":
            intensity["life cycle" if em.group(2) in _LIFE_CYCLE else em.group(2)] = i
        elif em or _OTHER_UNIT.fullmatch(name):
            raise IntensityCsvError(
                f"{origin}: row 1, column {header[i]!r}: intensity must be in gCO2eq/kWh; "
                "convert it and name the column g_per_kwh"
            )
    if time is None:
        raise IntensityCsvError(f"{origin}: row 1: no time column; expected 'Datetime (UTC)' or 'timestamp'")
    basis = next((b for b in ("life cycle", "direct", "as given") if b in intensity), None)
    if basis is None:
        raise IntensityCsvError(
            f"{origin}: row 1: no intensity column; expected g_per_kwh or "
            "'Carbon Intensity gCO₂eq/kWh (direct)' / '(life cycle assessment)'"
        )
    publisher = _EM_PUBLISHER if names[time] == "datetime (utc)" else ""
    declared = {_DECLARED[n]: i for i, n in enumerate(names) if n in _DECLARED} if publisher else {}
    return _Columns(time, intensity[basis], cfe, basis, declared, publisher)


def _cell(row: Sequence[str], index: int, header: Sequence[str], where: str) -> str:
    if index >= len(row):
        raise IntensityCsvError(f"{where}, column {header[index]!r}: missing value (row too short)")
    return row[index]


def _hour(raw: str, where: str, column: str) -> int:
    """UTC epoch second of the start of the hour `raw` falls in."""
    text = raw.strip()
    try:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            # fromisoformat in Python 3.10 does not read a trailing Z.
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            seconds = parsed.timestamp()
    except ValueError:
        raise IntensityCsvError(
            f"{where}, column {column!r}: {raw!r} is not an ISO 8601 time or epoch seconds"
        ) from None
    return int(seconds // HOUR_SECONDS) * HOUR_SECONDS


def _number(raw: str, where: str, column: str, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise IntensityCsvError(f"{where}, column {column!r}: {raw!r} is not a number") from None
    if math.isnan(value) or not 0 <= value <= high:
        raise IntensityCsvError(f"{where}, column {column!r}: {raw!r} must be from 0 to {high:g}")
    return value
