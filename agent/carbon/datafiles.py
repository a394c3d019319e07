"""codecarbon's packaged data files: where they are, who publishes each, and one cached reader.

The files are read as plain JSON/CSV: codecarbon itself is never imported, so none of its trackers,
network look-ups or heavy imports run. `DATASETS` is the citation of each file (publisher, dataset);
`CodecarbonFiles` reads each file once. What the files mean is agent.carbon.data's business (the
figures) and agent.carbon.places' (the names).
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.checks import ConfigError

COUNTRIES = "private_infra/global_energy_mix.json"
US_STATES = "private_infra/2023/usa_emissions.json"
CANADA = "private_infra/2023/canada_energy_mix.json"
CHINA = "private_infra/2023/china_provincial_emissions.json"
NORDIC = "private_infra/nordic_emissions.json"
PER_SOURCE = "private_infra/carbon_intensity_per_source.json"
GCP = "cloud/impact.csv"

CANADA_PROVINCES: Mapping[str, str] = {
    "AB": "alberta", "BC": "british columbia", "MB": "manitoba", "NB": "new brunswick",
    "NL": "newfoundland and labrador", "NS": "nova scotia", "NT": "northwest territories",
    "NU": "nunavut", "ON": "ontario", "PE": "prince edward island", "QC": "quebec",
    "SK": "saskatchewan", "YT": "yukon",
}  # fmt: skip
"""ISO 3166-2:CA code -> the province's key in canada_energy_mix.json."""

CANADA_SOURCES: Mapping[str, str] = {
    "coal": "coal", "petroleum": "petroleum", "naturalGas": "natural_gas", "hydro": "hydroelectricity",
    "nuclear": "nuclear", "solar": "solar", "wind": "wind", "biomass": "biomass",
}  # fmt: skip
"""canada_energy_mix.json source -> its factor in carbon_intensity_per_source.json (tidal, other: none)."""

FOSSIL_SOURCES = frozenset({"coal", "petroleum", "naturalGas", "other"})
"""Canadian mix sources that are not carbon-free (`other` counted as fossil: unknown, so not claimed)."""


@dataclass(frozen=True)
class Dataset:
    """Who publishes a data file's figures and under what name, for a citation."""

    publisher: str
    title: str


BY_SOURCE = "x codecarbon's lifecycle factors per source"
DATASETS: Mapping[str, Dataset] = {
    COUNTRIES: Dataset(
        "Ember and Energy Institute via Our World in Data",
        "carbon intensity of electricity generation by country",
    ),
    US_STATES: Dataset("US EPA", "eGRID, CO2e total output emission rate by state (lbs/MWh)"),
    CANADA: Dataset(
        "Canada Energy Regulator",
        "Canada's Energy Future data appendices (doi:10.35002/zjr8-8x75), generation mix by province "
        + BY_SOURCE,
    ),
    CHINA: Dataset(
        "China Ministry of Ecology and Environment and National Bureau of Statistics",
        "provincial average electricity CO2 emission factors (CO2 only)",
    ),
    NORDIC: Dataset(
        "ENTSO-E Transparency Platform", f"actual generation per production type by bidding zone {BY_SOURCE}"
    ),
    GCP: Dataset("Google Cloud", "region carbon data, grid carbon intensity by region"),
    PER_SOURCE: Dataset("IEA", "Global Energy & CO2 Status Report 2019, world average"),
}
"""Data file -> its publisher and dataset, from the files' own source notes and codecarbon's docs."""

GCP_YEARS: Mapping[str, int] = {"3.3.2": 2023}
"""codecarbon version -> the year of Google's figures in its cloud/impact.csv, which has no year column:
checked value by value against Google's region-carbon-info yearly files. Other versions: not stated."""


class CarbonDataError(ConfigError):
    """Carbon input data is missing or malformed; one line for the user (the CLI exits 2, as for config)."""


def codecarbon_data_dir() -> Path | None:
    """codecarbon's packaged data folder, found without importing codecarbon."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    return path if path.is_dir() else None


class CodecarbonFiles:
    """codecarbon's data folder, each file read lazily and once."""

    def __init__(self, data_dir: Path | None = None, version: str | None = None) -> None:
        found = data_dir if data_dir is not None else codecarbon_data_dir()
        if found is None:
            raise CarbonDataError("codecarbon's data files were not found; install codecarbon (pip)")
        self.data_dir = found
        self.release = version or _codecarbon_version()
        self.version = f"codecarbon {self.release}"
        self._cache: dict[str, Any] = {}

    def _gcp_row(self, region: str) -> Mapping[str, str] | None:
        return next(
            (r for r in self._csv(GCP) if r.get("provider") == "gcp" and r.get("region") == region), None
        )

    def _json(self, name: str) -> Mapping[str, Any]:
        if name not in self._cache:
            self._cache[name] = json.loads(self._read(name))
        data = self._cache[name]
        if not isinstance(data, Mapping):
            raise CarbonDataError(f"{self.data_dir / name}: not a JSON object; reinstall codecarbon")
        return data

    def _csv(self, name: str) -> list[dict[str, str]]:
        if name not in self._cache:
            # utf-8-sig: impact.csv starts with a byte-order mark.
            self._cache[name] = list(csv.DictReader(self._read(name, "utf-8-sig").splitlines()))
        rows: list[dict[str, str]] = self._cache[name]
        return rows

    def _read(self, name: str, encoding: str = "utf-8") -> str:
        path = self.data_dir / name
        try:
            return path.read_text(encoding=encoding)
        except OSError as e:
            raise CarbonDataError(f"{path}: cannot read codecarbon's data ({e.strerror}); reinstall") from e


def _codecarbon_version() -> str:
    try:
        return importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"
