"""CodeCarbon's `emissions.csv` (docs/import.md): `parse_codecarbon_csv`, its runs and their locations.

The common part (records, errors, reading the file, parsing cells) is in `import_files`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timezone, tzinfo
from os import PathLike

from agent.carbon import datafiles as carbon_data
from agent.ledger.import_files import (
    AGREEMENT,
    EARLIEST_EPOCH_S,
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

CODECARBON_SCHEDULER = "codecarbon"
_CODECARBON_GPUS = re.compile(r"(\d+) x (.+?)(?=\d+ x |$)")
"""CodeCarbon's `gpu_model`: `4 x NVIDIA A100-SXM4-80GB`, several kinds written one after another."""
CODECARBON_METHOD = (
    "tracking_mode {mode}{version}: CPU energy from RAPL and GPU energy from NVML where CodeCarbon could "
    "read them, else estimated from the CPU's TDP; RAM estimated from its size"
)
"""How CodeCarbon obtains energy (its documented methodology), as `method` of its runs."""
GREENAI_MODE = "greenai-agent"
"""The `tracking_mode` of rows that `greenai run --csv` and `agent.tracker` write in CodeCarbon's format."""
GREENAI_METHOD = (
    "written by greenai-agent (`greenai run --csv`, agent.tracker): the job's energy as the node's greenai "
    "agent attributed it over the run"
)

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


def parse_codecarbon_csv(
    path: str | PathLike[str], naive_tz: tzinfo = timezone.utc, max_bytes: int = MAX_FILE_BYTES
) -> list[ImportedRun]:
    """The runs in CodeCarbon's emissions.csv, the last row of each run_id; `timestamp` is in `naive_tz`.

    CodeCarbon's energies include its PUE; they are divided by it here, so that IT kWh x `pue` gives
    CodeCarbon's figures back. A file larger than `max_bytes` is refused.
    """
    name = str(path)
    header, rows = read_table(name, max_bytes)
    for column in CODECARBON_REQUIRED:
        if column not in header:
            also = "; for our own columns use `greenai import csv`" if "job_id" in header else ""
            At(name, 1).fail(column, None, f"not a CodeCarbon emissions.csv: column is missing{also}")
    latest: dict[str, ImportedRun] = {}
    for line, cells in rows:
        run = _parse_codecarbon_row(At(name, line), row_cells(name, line, header, cells), naive_tz)
        # flush() appends the run's cumulative totals again: the last row per run is the whole run.
        latest.pop(run.key.job_id, None)
        latest[run.key.job_id] = run
    return list(latest.values())


def _parse_codecarbon_row(at: At, cell: Mapping[str, str], naive_tz: tzinfo) -> ImportedRun:
    run_id = cell_text(cell["run_id"])
    if not run_id:
        at.fail("run_id", "", "empty; CodeCarbon writes one per run, so the file was edited: restore it")
    end = cell_time(at, "timestamp", cell["timestamp"], naive_tz)
    duration_s = cell_non_negative(at, "duration", cell["duration"])
    check_span(at, "duration", cell["duration"], end - duration_s, end)
    if end - duration_s < EARLIEST_EPOCH_S:
        at.fail(
            "duration", cell["duration"], "the run would start before 1970; restore the file CodeCarbon wrote"
        )
    pue = cell_optional(at, "pue", cell, cell_pue) or 1.0
    energies = {
        c: cell_non_negative(at, c, cell[c])
        for c in ("cpu_energy", "gpu_energy", "ram_energy", "energy_consumed")
    }
    for column, kwh in energies.items():
        check_energy(at, column, cell[column], kwh)
    cpu, gpu, ram, total = energies.values()
    rest = total - (cpu + gpu + ram)
    if abs(rest) <= AGREEMENT * total + 1e-12:
        rest = 0.0  # rounding
    elif rest < 0:
        at.fail(
            "energy_consumed", cell["energy_consumed"],
            f"below cpu + gpu + ram energy = {cpu + gpu + ram:g}; restore the file CodeCarbon wrote",
        )  # fmt: skip
    gpu_count = cell_optional(at, "gpu_count", cell, cell_non_negative)
    return ImportedRun(
        source="codecarbon",
        key=JobKey(CODECARBON_SCHEDULER, run_id),
        start=end - duration_s,
        end=end,
        cpu_kwh=cpu / pue,
        gpu_kwh=gpu / pue,
        dram_kwh=ram / pue,
        unsplit_kwh=rest / pue,
        project=cell_text(cell.get("project_name", "")),
        location=_codecarbon_location(cell),
        gpu_hours=gpu_count * duration_s / 3600 if gpu_count else None,
        pue=pue,
        reported_emissions_kg=cell_optional(at, "emissions", cell, cell_non_negative),
        gpu_model=_codecarbon_gpu_model(cell_text(cell.get("gpu_model", ""))),
        gpu_count=int(gpu_count) if gpu_count and gpu_count.is_integer() else None,
        cpu_model=cell_text(cell.get("cpu_model", "")),
        method=_codecarbon_method(cell),
        row=at.row,
    )


def _codecarbon_gpu_model(text: str) -> str:
    """`2 x NVIDIA A100-SXM4-80GB` -> `NVIDIA A100-SXM4-80GB`: the count is `gpu_count`."""
    found = _CODECARBON_GPUS.findall(text)
    return "; ".join(sorted({name.strip() for _, name in found})) if found else text


def _codecarbon_method(cell: Mapping[str, str]) -> str:
    mode = cell_text(cell.get("tracking_mode", "")) or "machine"  # CodeCarbon's default; older files lack it
    if mode == GREENAI_MODE:
        return GREENAI_METHOD
    version = cell_text(cell.get("codecarbon_version", ""))
    return CODECARBON_METHOD.format(mode=mode, version=f", CodeCarbon {version}" if version else "")


def _codecarbon_location(cell: Mapping[str, str]) -> str:
    """Our location syntax (agent/carbon/data.py): CodeCarbon's country, or US and Canadian region."""
    country = cell_text(cell.get("country_iso_code", "")).upper()
    region = cell_text(cell.get("region", "")).lower()
    table = {"USA": ("US", US_STATES), "CAN": ("CA", CANADA_PROVINCES)}.get(country)
    if table is not None and region:
        prefix, names = table
        code = names.get(region) or (region.upper() if region.upper() in names.values() else None)
        if code is not None:
            return f"{prefix}-{code}"
    return country
