"""Annual location-based carbon intensity (gCO2e/kWh) from the data files codecarbon ships.

The files are read as plain JSON/CSV: codecarbon itself is never imported, so none of its trackers,
network look-ups or heavy imports run. Location syntax (docs/carbon.md):

    FRA            country, ISO 3166 alpha-3          global_energy_mix.json
    US-CA          US state (eGRID, lbs/MWh)          2023/usa_emissions.json
    CA-QC          Canadian province (generation mix) 2023/canada_energy_mix.json
    CN-BJ          Chinese province                   2023/china_provincial_emissions.json
    SE1..SE4, NO1..NO5, FI   Nordic bidding zones     nordic_emissions.json
    gcp:europe-west1         Google Cloud region      cloud/impact.csv
    aws:eu-west-3, azure:westeurope  our table below, to one of the forms above

A location not in the data falls back to its country (US-, CA-, CN- forms) or else the world average,
and the figure says so (`fallback`).
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.config.checks import ConfigError

G_PER_KWH_PER_LB_PER_MWH = 0.453592
"""1 lb/MWh = 453.592 g / 1000 kWh."""

AWS_REGIONS: Mapping[str, str] = {
    "us-east-1": "US-VA", "us-east-2": "US-OH", "us-west-1": "US-CA", "us-west-2": "US-OR",
    "ca-central-1": "CA-QC", "ca-west-1": "CA-AB", "sa-east-1": "BRA", "mx-central-1": "MEX",
    "eu-central-1": "DEU", "eu-central-2": "CHE", "eu-west-1": "IRL", "eu-west-2": "GBR",
    "eu-west-3": "FRA", "eu-north-1": "SE3", "eu-south-1": "ITA", "eu-south-2": "ESP",
    "af-south-1": "ZAF", "il-central-1": "ISR", "me-south-1": "BHR", "me-central-1": "ARE",
    "ap-east-1": "HKG", "ap-south-1": "IND", "ap-south-2": "IND", "ap-northeast-1": "JPN",
    "ap-northeast-2": "KOR", "ap-northeast-3": "JPN", "ap-southeast-1": "SGP", "ap-southeast-2": "AUS",
    "ap-southeast-3": "IDN", "ap-southeast-4": "AUS", "ap-southeast-5": "MYS",
}  # fmt: skip
"""AWS region -> the location of its data centres (US state or Canadian province where known)."""

AZURE_REGIONS: Mapping[str, str] = {
    "eastus": "US-VA", "eastus2": "US-VA", "centralus": "US-IA", "northcentralus": "US-IL",
    "southcentralus": "US-TX", "westcentralus": "US-WY", "westus": "US-CA", "westus2": "US-WA",
    "westus3": "US-AZ", "canadacentral": "CA-ON", "canadaeast": "CA-QC", "brazilsouth": "BRA",
    "mexicocentral": "MEX", "northeurope": "IRL", "westeurope": "NLD", "uksouth": "GBR",
    "ukwest": "GBR", "francecentral": "FRA", "francesouth": "FRA", "germanywestcentral": "DEU",
    "germanynorth": "DEU", "switzerlandnorth": "CHE", "switzerlandwest": "CHE", "norwayeast": "NO1",
    "norwaywest": "NO2", "swedencentral": "SE3", "polandcentral": "POL", "italynorth": "ITA",
    "spaincentral": "ESP", "eastasia": "HKG", "southeastasia": "SGP", "japaneast": "JPN",
    "japanwest": "JPN", "koreacentral": "KOR", "koreasouth": "KOR", "centralindia": "IND",
    "southindia": "IND", "westindia": "IND", "australiaeast": "AUS", "australiasoutheast": "AUS",
    "australiacentral": "AUS", "southafricanorth": "ZAF", "southafricawest": "ZAF", "uaenorth": "ARE",
    "uaecentral": "ARE", "qatarcentral": "QAT", "israelcentral": "ISR",
}  # fmt: skip
"""Azure region -> the location of its data centres."""

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

_PARENT = {"US": "USA", "CA": "CAN", "CN": "CHN"}
_NORDIC = re.compile(r"(SE[1-4]|NO[1-5]|DK[12]|FI)")


class CarbonDataError(ConfigError):
    """Carbon input data is missing or malformed; one line for the user (the CLI exits 2, as for config)."""


@dataclass(frozen=True)
class Provenance:
    """Where an intensity figure comes from."""

    dataset: str
    """The file: relative to codecarbon's package for its data, else the path given in the config."""
    version: str
    """`codecarbon 3.3.2` for codecarbon's data; "" for a user's file."""
    resolution: str
    """`annual` or `hourly`."""
    location: str
    """The location the figure is for, in our syntax (`world` for the world average)."""
    year: int | None = None
    """The data year, where the data says it."""
    fallback: bool = False
    """True when this is not the asked location's own figure (world average, or the country's)."""
    note: str = ""


@dataclass(frozen=True)
class LocationIntensity:
    """A location's annual average intensity and, where the data gives it, its carbon-free share."""

    g_per_kwh: float
    grid_cfe_share: float | None
    """Low-carbon (renewable + nuclear) share of generation, 0 to 1; None where the data has no mix."""
    provenance: Provenance


def codecarbon_data_dir() -> Path | None:
    """codecarbon's packaged data folder, found without importing codecarbon."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    return path if path.is_dir() else None


class CodecarbonData:
    """The location tables from codecarbon's data folder, read lazily, each file once."""

    def __init__(self, data_dir: Path | None = None, version: str | None = None) -> None:
        found = data_dir if data_dir is not None else codecarbon_data_dir()
        if found is None:
            raise CarbonDataError("codecarbon's data files were not found; install codecarbon (pip)")
        self.data_dir = found
        self.version = f"codecarbon {version or _codecarbon_version()}"
        self._cache: dict[str, Any] = {}

    def world(self, note: str = "") -> LocationIntensity:
        """The world average, always flagged as a fallback."""
        name = "private_infra/carbon_intensity_per_source.json"
        value = self._json(name).get("world_average")
        if not isinstance(value, int | float):
            raise CarbonDataError(f"{self.data_dir / name}: no world_average; reinstall codecarbon")
        return LocationIntensity(float(value), None, self._prov(name, "world", None, True, note))

    def resolve(self, location: str) -> LocationIntensity | None:
        """The location's annual intensity, its country's (flagged), or None when neither is known."""
        text = location.strip()
        provider, sep, region = text.partition(":")
        if sep:
            return self._cloud(provider.lower(), region.strip(), text)
        found = self._exact(text)
        if found is not None:
            return found
        prefix, dash, _ = text.upper().partition("-")
        parent = _PARENT.get(prefix) if dash else None
        if parent is not None:
            country = self._country(parent)
            if country is not None:
                note = f"{text} not in codecarbon's data; the country's figure is used"
                return _flagged(country, note)
        return None

    # ---- one reader per dataset ----

    def _exact(self, text: str) -> LocationIntensity | None:
        upper = text.upper()
        if _NORDIC.fullmatch(upper):
            return self._nordic(upper)
        if re.fullmatch(r"[A-Z]{3}", upper):
            return self._country(upper)
        if upper.startswith("US-"):
            return self._us_state(upper[3:])
        if upper.startswith("CA-"):
            return self._canada(upper[3:])
        if upper.startswith("CN-"):
            return self._keyed("private_infra/2023/china_provincial_emissions.json", upper)
        return None

    def _country(self, iso3: str) -> LocationIntensity | None:
        name = "private_infra/global_energy_mix.json"
        entry = self._json(name).get(iso3)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("carbon_intensity"), int | float):
            return None
        low, total = entry.get("low_carbon_TWh"), entry.get("total_TWh")
        share = None
        if isinstance(low, int | float) and isinstance(total, int | float) and total > 0:
            share = low / total
        year = entry.get("year") if isinstance(entry.get("year"), int) else None
        return LocationIntensity(float(entry["carbon_intensity"]), share, self._prov(name, iso3, year))

    def _us_state(self, code: str) -> LocationIntensity | None:
        name = "private_infra/2023/usa_emissions.json"
        data = self._json(name)
        unit = data.get("_unit", {}).get("emissions")
        if unit != "lbs/MWh":
            raise CarbonDataError(f"{self.data_dir / name}: unit {unit!r}, expected lbs/MWh; update greenai")
        source = data.get("_source", {})
        year = source.get("year") if isinstance(source.get("year"), int) else None
        for key, entry in data.items():
            if key.startswith("_") or not isinstance(entry, Mapping) or entry.get("regionCode") != code:
                continue
            g_per_kwh = float(entry["emissions"]) * G_PER_KWH_PER_LB_PER_MWH
            return LocationIntensity(g_per_kwh, None, self._prov(name, f"US-{code}", year))
        return None

    def _canada(self, code: str) -> LocationIntensity | None:
        name = "private_infra/2023/canada_energy_mix.json"
        mix = self._json(name).get(CANADA_PROVINCES.get(code, ""))
        if not isinstance(mix, Mapping):
            return None
        factors = self._json("private_infra/carbon_intensity_per_source.json")
        total = float(mix["total"])
        g_per_kwh = sum(
            float(mix.get(source, 0.0)) * float(factors[factor]) for source, factor in CANADA_SOURCES.items()
        )
        clean = sum(float(v) for k, v in mix.items() if k not in FOSSIL_SOURCES and k != "total")
        note = "from the generation mix x carbon_intensity_per_source.json; tidal and other count 0 g"
        year = int(Path(name).parent.name)
        prov = self._prov(name, f"CA-{code}", year, note=note)
        return LocationIntensity(g_per_kwh / total, clean / total, prov)

    def _nordic(self, zone: str) -> LocationIntensity | None:
        return self._keyed("private_infra/nordic_emissions.json", zone)

    def _keyed(self, name: str, key: str) -> LocationIntensity | None:
        """China's and the Nordic files: {"data": {KEY: {"emission_factor", "unit", "year"}}}."""
        entry = self._json(name).get("data", {}).get(key)
        if not isinstance(entry, Mapping):
            return None
        if not str(entry.get("unit", "")).startswith("gCO2") or not str(entry["unit"]).endswith("/kWh"):
            raise CarbonDataError(f"{self.data_dir / name}: {key} unit {entry.get('unit')!r}, expected g/kWh")
        year = entry.get("year") if isinstance(entry.get("year"), int) else None
        return LocationIntensity(float(entry["emission_factor"]), None, self._prov(name, key, year))

    def _cloud(self, provider: str, region: str, text: str) -> LocationIntensity | None:
        if provider == "gcp":
            return self._gcp(region)
        table = {"aws": AWS_REGIONS, "azure": AZURE_REGIONS}.get(provider)
        target = table.get(region.lower()) if table is not None else None
        found = self._exact(target) if target is not None else None
        if found is None:
            return None
        prov = found.provenance
        note = f"{text} is in {target} (greenai's region table)"
        return LocationIntensity(found.g_per_kwh, found.grid_cfe_share, _with_note(prov, note))

    def _gcp(self, region: str) -> LocationIntensity | None:
        name = "cloud/impact.csv"
        for row in self._csv(name):
            if row.get("provider") == "gcp" and row.get("region") == region:
                return LocationIntensity(float(row["impact"]), None, self._prov(name, f"gcp:{region}", None))
        return None

    # ---- file access ----

    def _prov(
        self, name: str, location: str, year: int | None, fallback: bool = False, note: str = ""
    ) -> Provenance:
        return Provenance(name, self.version, "annual", location, year, fallback, note)

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


def _with_note(prov: Provenance, note: str) -> Provenance:
    return replace(prov, note=f"{note}; {prov.note}" if prov.note else note)


def _flagged(found: LocationIntensity, note: str) -> LocationIntensity:
    prov = replace(_with_note(found.provenance, note), fallback=True)
    return LocationIntensity(found.g_per_kwh, found.grid_cfe_share, prov)
