"""Our own documented CSV columns (docs/import.md): `parse_runs_csv`, with the header's checks.

The common part (records, errors, reading the file, parsing cells) is in `import_files`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import timezone, tzinfo
from os import PathLike

from agent.config.work import PHASES
from agent.ledger.import_files import (
    AGREEMENT,
    MAX_FILE_BYTES,
    At,
    ImportedRun,
    cell_non_negative,
    cell_optional,
    cell_pue,
    cell_text,
    cell_time,
    check_energy,
    check_span,
    read_table,
    row_cells,
)
from collectors.workloads import JobKey

DEFAULT_SCHEDULER = "imported"
"""The scheduler of a row of our CSV that has no `scheduler` cell."""

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


def parse_runs_csv(
    path: str | PathLike[str], naive_tz: tzinfo = timezone.utc, max_bytes: int = MAX_FILE_BYTES
) -> list[ImportedRun]:
    """The runs in a CSV of our documented columns, in file order; a date without offset is in `naive_tz`.

    A file larger than `max_bytes` is refused."""
    name = str(path)
    header, rows = read_table(name, max_bytes)
    columns = _check_header(name, header)
    runs: list[ImportedRun] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        cell = row_cells(name, line, header, cells)
        run = _parse_run(At(name, line), {k: v for k, v in cell.items() if k in columns}, naive_tz)
        if run.origin in seen:
            At(name, line).fail(
                "job_id", run.key.job_id,
                f"same job_id, scheduler and node as row {seen[run.origin]}; merge the two rows into one",
            )  # fmt: skip
        seen[run.origin] = line
        runs.append(run)
    return runs


def _check_header(path: str, header: Sequence[str]) -> set[str]:
    """The known columns of a header, after rejecting unnamed, duplicate, misnamed and missing ones."""
    at = At(path, 1)
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


def _parse_run(at: At, cell: Mapping[str, str], naive_tz: tzinfo) -> ImportedRun:
    job_id = cell_text(cell.get("job_id", ""))
    if not job_id:
        at.fail("job_id", "", "empty; every row needs the job's id")
    start = cell_time(at, "start", cell["start"], naive_tz)
    end = cell_time(at, "end", cell["end"], naive_tz)
    if end < start:
        at.fail("end", cell["end"], f"before start ({cell['start']}); swap them or fix the date")
    check_span(at, "end", cell["end"], start, end)
    components = {c: cell_optional(at, f"{c}_kwh", cell, cell_non_negative) for c in COMPONENTS}
    total = cell_optional(at, "energy_kwh", cell, cell_non_negative)
    given = {c: v for c, v in components.items() if v is not None}
    for column, kwh in (*((f"{c}_kwh", v) for c, v in given.items()), ("energy_kwh", total)):
        if kwh is not None:
            check_energy(at, column, cell[column], kwh)
    if len(given) > 1:
        check_energy(at, "energy_kwh", "cpu_kwh + gpu_kwh + dram_kwh", sum(given.values()))
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
    phase = cell_text(cell.get("phase", "")).lower()
    if phase and phase not in PHASES:
        at.fail("phase", cell["phase"], f"unknown phase; use one of {', '.join(PHASES)} or leave it empty")
    tokens = _whole(at, "tokens", cell, "the count of tokens")
    gpu_count = _whole(at, "gpu_count", cell, "the number of GPUs the run used")
    return ImportedRun(
        source="csv",
        key=JobKey(cell_text(cell.get("scheduler", "")) or DEFAULT_SCHEDULER, job_id),
        start=start,
        end=end,
        cpu_kwh=given.get("cpu", 0.0),
        gpu_kwh=given.get("gpu", 0.0),
        dram_kwh=given.get("dram", 0.0),
        unsplit_kwh=0.0 if given else (total or 0.0),
        node=cell_text(cell.get("node", "")),
        user=cell_text(cell.get("user", "")),
        project=cell_text(cell.get("project", "")),
        phase=phase,
        model=cell_text(cell.get("model", "")),
        location=cell_text(cell.get("location", "")),
        gpu_hours=cell_optional(at, "gpu_hours", cell, cell_non_negative),
        pue=cell_optional(at, "pue", cell, cell_pue),
        intensity_g_per_kwh=cell_optional(at, "intensity_g_per_kwh", cell, cell_non_negative),
        tokens=tokens,
        name=cell_text(cell.get("name", "")),
        gpu_model=cell_text(cell.get("gpu_model", "")),
        gpu_count=gpu_count,
        cpu_model=cell_text(cell.get("cpu_model", "")),
        method=cell_text(cell.get("method", "")),
        uncertainty_pct=cell_optional(at, "uncertainty_pct", cell, cell_non_negative),
        row=at.row,
    )


def _whole(at: At, column: str, cell: Mapping[str, str], what: str) -> int | None:
    """The column's whole number (not negative), or None where absent or empty."""
    number = cell_optional(at, column, cell, cell_non_negative)
    if number is None:
        return None
    if not number.is_integer():
        at.fail(column, cell[column], f"not a whole number; give {what}")
    return int(number)
