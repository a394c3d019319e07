"""Annual location-based carbon intensity (gCO2e/kWh) from the data files codecarbon ships, cited.

The files are read as plain JSON/CSV: codecarbon itself is never imported, so none of its trackers,
network look-ups or heavy imports run. Location forms (agent.carbon.places; docs/carbon.md):

    FRA or FR      country, ISO 3166 alpha-3 or -2   global_energy_mix.json     Our World in Data
    US-CA          US state (lbs/MWh)                2023/usa_emissions.json    US EPA eGRID
    CA-QC          Canadian province (generation mix) 2023/canada_energy_mix.json  Canada Energy Regulator
    CN-BJ          Chinese province (CO2 only)       2023/china_provincial_emissions.json  MEE / NBS
    SE1..SE4, NO1..NO5, FI   Nordic bidding zones    nordic_emissions.json      ENTSO-E
    gcp:europe-west1         Google Cloud region     cloud/impact.csv           Google Cloud
    aws:eu-west-3, azure:westeurope  our region tables, to one of the forms above

A Nordic zone or an ISO 3166-2 subdivision that the data lacks (DK1, CN-XZ, DE-BY) takes its
country's figure, flagged (`fallback`). Any other location without a figure is an error naming the
nearest codes (`CodecarbonData.lookup`); no location at all is the world average, flagged.
"""

from __future__ import annotations

import csv
import difflib
import functools
import importlib.metadata
import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.carbon.places import (
    CLOUD_NAMES,
    NORDIC_ZONE,
    Place,
    alpha2,
    country_name,
    parse,
    subdivision_name,
)
from agent.config.checks import ConfigError

G_PER_KWH_PER_LB_PER_MWH = 0.453592
"""1 lb/MWh = 453.592 g / 1000 kWh."""

COUNTRIES = "private_infra/global_energy_mix.json"
US_STATES = "private_infra/2023/usa_emissions.json"
CANADA = "private_infra/2023/canada_energy_mix.json"
CHINA = "private_infra/2023/china_provincial_emissions.json"
NORDIC = "private_infra/nordic_emissions.json"
PER_SOURCE = "private_infra/carbon_intensity_per_source.json"
GCP = "cloud/impact.csv"

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


class UnknownLocation(CarbonDataError):
    """A configured location that fits no form we know, or that codecarbon has no figure for."""

    def __init__(self, key: str, value: str, problem: str, nearest: Sequence[str]) -> None:
        hint = f"nearest: {', '.join(nearest)}" if nearest else "no code is close"
        super().__init__(f"key {key!r}: {value!r} {problem}; {hint}; location forms: docs/carbon.md")
        self.key, self.value, self.problem, self.nearest = key, value, problem, tuple(nearest)


@dataclass(frozen=True)
class Provenance:
    """Where an intensity figure comes from (serialised as is into report.json: add fields, never rename)."""

    dataset: str
    """The file: relative to codecarbon's package for its data, else the path given in the config."""
    version: str
    """`codecarbon 3.3.2` for codecarbon's data; "" for a user's file."""
    resolution: str
    """`annual`, `hourly` or `per run`."""
    location: str
    """The location the figure is for, in our syntax (`world` for the world average)."""
    year: int | None = None
    """The data year, where the data says it."""
    fallback: bool = False
    """True when this is not the asked location's own figure (world average, or the country's)."""
    note: str = ""
    publisher: str = ""
    """Who publishes the figures (`US EPA`); for a user's file, the source it declares, if any."""
    title: str = ""
    """The published dataset's name; "" for a user's file or a run's own figure."""

    def cite(self) -> str:
        """One line citing the figures: publisher, dataset, year, resolution, then the file read."""
        if self.title:
            year = str(self.year) if self.year is not None else "year not stated"
            read = f"via {self.version}: {self.dataset}" if self.version else self.dataset
            return f"{self.publisher}, {self.title}, {year}, {self.resolution} ({read})"
        text = f"{self.dataset} ({', '.join(d for d in (self.resolution, self.location) if d)})"
        if self.year is not None:
            text += f", {self.year}"
        if self.note:
            text += f"; {self.note}"
        if self.publisher:
            text += f"; source: {self.publisher}"
        elif self.resolution == "hourly":
            text += "; no source stated in the file"
        return text


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
        self.release = version or _codecarbon_version()
        self.version = f"codecarbon {self.release}"
        self._cache: dict[str, Any] = {}

    def world(self, note: str = "") -> LocationIntensity:
        """The world average, always flagged as a fallback."""
        value = self._json(PER_SOURCE).get("world_average")
        if not isinstance(value, int | float):
            raise CarbonDataError(f"{self.data_dir / PER_SOURCE}: no world_average; reinstall codecarbon")
        return LocationIntensity(float(value), None, self._prov(PER_SOURCE, "world", None, True, note))

    def lookup(self, location: str, key: str) -> LocationIntensity:
        """The location's figure, as `resolve`; raises UnknownLocation naming config `key` when none."""
        found = self.resolve(location)
        if found is not None:
            return found
        place = parse(location)
        problem = "is not a location greenai knows"
        if place is not None and place.kind == "country" and place.iso_known:
            problem = (
                f"is {self.place_name(place.code)} ({place.code}), which codecarbon's data has no figure for"
            )
        raise UnknownLocation(key, location, problem, self.nearest(location))

    def resolve(self, location: str) -> LocationIntensity | None:
        """The location's annual intensity, its country's (flagged), or None when neither is known."""
        place = parse(location)
        if place is None:
            return None
        if place.kind == "cloud":
            return self._cloud(place.code)
        found = self._exact(place.code)
        if found is not None or place.kind == "country" or not place.iso_known or place.country is None:
            return found
        country = self._country(place.country)
        if country is None:
            return None
        return _flagged(country, f"{place.code} not in codecarbon's data; the country's figure is used")

    # ---- names: for people, for suggestions ----

    def place_name(self, location: str) -> str:
        """A plain name: `France`, `California, United States`, `Google Cloud europe-west1 (Belgium)`.

        `world` (or nothing) is `world average`; a location of no known form is returned as given.
        """
        text = location.strip()
        if text.lower() in ("", "world"):
            return "world average"
        place = parse(text)
        if place is None:
            return text
        if place.kind == "cloud":
            provider, region = place.code.split(":", 1)
            where = self._cloud_place(place.code)
            return f"{CLOUD_NAMES[provider]} {region}" + (f" ({where})" if where else "")
        return self._plain(place) or text

    def known(self) -> Mapping[str, str]:
        """Every location code with a figure of its own -> a short place name (cloud: where it is)."""
        if "known" not in self._cache:
            out = {code: self._country_name(code) for code in self._json(COUNTRIES) if len(code) == 3}
            for entry in self._json(US_STATES).values():
                if isinstance(entry, Mapping) and len(str(entry.get("regionCode", ""))) == 2:
                    code = f"US-{entry['regionCode']}"
                    out[code] = subdivision_name(code) or code
            for code, key in CANADA_PROVINCES.items():
                if key in self._json(CANADA):
                    out[f"CA-{code}"] = subdivision_name(f"CA-{code}") or key.title()
            for name in (CHINA, NORDIC):
                for code, entry in self._json(name).get("data", {}).items():
                    out[code] = str(entry.get("description", code))
            for row in self._csv(GCP):
                if row.get("provider") == "gcp":
                    out[f"gcp:{row['region']}"] = self._cloud_place(f"gcp:{row['region']}") or ""
            for provider, table in (("aws", AWS_REGIONS), ("azure", AZURE_REGIONS)):
                for region in table:
                    out[f"{provider}:{region}"] = self._cloud_place(f"{provider}:{region}") or ""
            self._cache["known"] = out
        known: Mapping[str, str] = self._cache["known"]
        return known

    def nearest(self, text: str, count: int = 3) -> list[str]:
        """Up to `count` known codes closest to `text` by spelling of code or name: `FRA (France)`."""
        known = self.known()
        keys: dict[str, str] = {}
        for code, name in known.items():
            keys.setdefault(code.lower(), code)
            keys.setdefault(name.lower(), code)
            two = alpha2(code) if len(code) == 3 else None
            if two is not None:
                keys.setdefault(two.lower(), code)
        query = text.strip().lower()
        matches: list[str] = []
        for cutoff in (0.6, 0.4):
            matches = difflib.get_close_matches(query, keys, n=4 * count, cutoff=cutoff)
            if matches:
                break
        codes = list(dict.fromkeys(keys[m] for m in matches))[:count]
        return [f"{c} ({known[c]})" if known[c] else c for c in codes]

    def _plain(self, place: Place) -> str | None:
        if place.kind == "country":
            return self._country_name(place.code)
        country = self._country_name(place.country) if place.country is not None else None
        if place.kind == "zone":
            return country if place.code == "FI" else f"{country}, bidding zone {place.code}"
        china = self._json(CHINA).get("data", {}).get(place.code) if place.code.startswith("CN-") else None
        name = str(china["description"]) if isinstance(china, Mapping) else subdivision_name(place.code)
        if name is None:
            return None
        return f"{name}, {country}" if country else name

    def _country_name(self, alpha3: str) -> str:
        entry = self._json(COUNTRIES).get(alpha3)
        if isinstance(entry, Mapping) and isinstance(entry.get("country_name"), str):
            return str(entry["country_name"])
        return country_name(alpha3) or alpha3

    def _cloud_place(self, code: str) -> str | None:
        """Where a cloud region is, in plain words, or None when we do not know the region."""
        provider, region = code.split(":", 1)
        if provider == "gcp":
            row = self._gcp_row(region)
            if row is None:
                return None
            country = self._country_name(row.get("countryIsoCode", ""))
            state = row.get("state", "").strip()
            return f"{state}, {country}" if state else country
        target = {"aws": AWS_REGIONS, "azure": AZURE_REGIONS}[provider].get(region)
        place = parse(target) if target is not None else None
        return self._plain(place) if place is not None else None

    # ---- one reader per dataset ----

    def _exact(self, code: str) -> LocationIntensity | None:
        if NORDIC_ZONE.fullmatch(code):
            return self._nordic(code)
        if len(code) == 3:
            return self._country(code)
        if code.startswith("US-"):
            return self._us_state(code[3:])
        if code.startswith("CA-"):
            return self._canada(code[3:])
        if code.startswith("CN-"):
            return self._china(code)
        return None

    def _country(self, iso3: str) -> LocationIntensity | None:
        entry = self._json(COUNTRIES).get(iso3)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("carbon_intensity"), int | float):
            return None
        low, total = entry.get("low_carbon_TWh"), entry.get("total_TWh")
        share = None
        if isinstance(low, int | float) and isinstance(total, int | float) and total > 0:
            share = low / total
        year = entry.get("year") if isinstance(entry.get("year"), int) else None
        return LocationIntensity(float(entry["carbon_intensity"]), share, self._prov(COUNTRIES, iso3, year))

    def _us_state(self, code: str) -> LocationIntensity | None:
        data = self._json(US_STATES)
        unit = data.get("_unit", {}).get("emissions")
        if unit != "lbs/MWh":
            raise CarbonDataError(
                f"{self.data_dir / US_STATES}: unit {unit!r}, expected lbs/MWh; update greenai"
            )
        source = data.get("_source", {})
        year = source.get("year") if isinstance(source.get("year"), int) else None
        cite = DATASETS[US_STATES]
        if isinstance(source.get("name"), str):
            # "EPA eGRID2023, annual CO2 equivalent total output emission rate": the edition, as published
            cite = replace(cite, title=f"{source['name'].removeprefix('EPA ')} by state (lbs/MWh)")
        for key, entry in data.items():
            if key.startswith("_") or not isinstance(entry, Mapping) or entry.get("regionCode") != code:
                continue
            g_per_kwh = float(entry["emissions"]) * G_PER_KWH_PER_LB_PER_MWH
            return LocationIntensity(g_per_kwh, None, self._prov(US_STATES, f"US-{code}", year, cite=cite))
        return None

    def _canada(self, code: str) -> LocationIntensity | None:
        mix = self._json(CANADA).get(CANADA_PROVINCES.get(code, ""))
        if not isinstance(mix, Mapping):
            return None
        factors = self._json(PER_SOURCE)
        total = float(mix["total"])
        g_per_kwh = sum(
            float(mix.get(source, 0.0)) * float(factors[factor]) for source, factor in CANADA_SOURCES.items()
        )
        clean = sum(float(v) for k, v in mix.items() if k not in FOSSIL_SOURCES and k != "total")
        note = "from the generation mix x carbon_intensity_per_source.json; tidal and other count 0 g"
        year = int(Path(CANADA).parent.name)
        prov = self._prov(CANADA, f"CA-{code}", year, note=note)
        return LocationIntensity(g_per_kwh / total, clean / total, prov)

    def _china(self, code: str) -> LocationIntensity | None:
        cite = DATASETS[CHINA]
        announcement = self._json(CHINA).get("metadata", {}).get("announcement")
        if isinstance(announcement, str):
            cite = replace(cite, title=f"{cite.title[:-1]}; Announcement {announcement})")
        return self._keyed(CHINA, code, cite)

    def _nordic(self, zone: str) -> LocationIntensity | None:
        source = str(self._json(NORDIC).get("metadata", {}).get("source", ""))
        if zone[:2] in ("SE", "NO") and "ENTSO-E" in source:
            return self._keyed(NORDIC, zone, DATASETS[NORDIC])
        # The file gives no source for the other zones' figures (FI: "prior value, unchanged").
        return self._keyed(NORDIC, zone, Dataset("codecarbon", "Nordic zone table (source not stated)"))

    def _keyed(self, name: str, key: str, cite: Dataset) -> LocationIntensity | None:
        """China's and the Nordic files: {"data": {KEY: {"emission_factor", "unit", "year"}}}."""
        entry = self._json(name).get("data", {}).get(key)
        if not isinstance(entry, Mapping):
            return None
        if not str(entry.get("unit", "")).startswith("gCO2") or not str(entry["unit"]).endswith("/kWh"):
            raise CarbonDataError(f"{self.data_dir / name}: {key} unit {entry.get('unit')!r}, expected g/kWh")
        year = entry.get("year") if isinstance(entry.get("year"), int) else None
        prov = self._prov(name, key, year, cite=cite)
        return LocationIntensity(float(entry["emission_factor"]), None, prov)

    def _cloud(self, code: str) -> LocationIntensity | None:
        provider, region = code.split(":", 1)
        if provider == "gcp":
            return self._gcp(region)
        target = {"aws": AWS_REGIONS, "azure": AZURE_REGIONS}[provider].get(region)
        found = self._exact(target) if target is not None else None
        if found is None:
            return None
        prov = _with_note(found.provenance, f"{code} is in {target} (greenai's region table)")
        return LocationIntensity(found.g_per_kwh, found.grid_cfe_share, prov)

    def _gcp(self, region: str) -> LocationIntensity | None:
        row = self._gcp_row(region)
        if row is None:
            return None
        prov = self._prov(GCP, f"gcp:{region}", GCP_YEARS.get(self.release))
        return LocationIntensity(float(row["impact"]), None, prov)

    def _gcp_row(self, region: str) -> Mapping[str, str] | None:
        return next(
            (r for r in self._csv(GCP) if r.get("provider") == "gcp" and r.get("region") == region), None
        )

    # ---- file access ----

    def _prov(
        self,
        name: str,
        location: str,
        year: int | None,
        fallback: bool = False,
        note: str = "",
        cite: Dataset | None = None,
    ) -> Provenance:
        source = cite if cite is not None else DATASETS[name]
        return Provenance(
            name, self.version, "annual", location, year, fallback, note, source.publisher, source.title
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


@functools.cache
def installed_data() -> CodecarbonData:
    """One CodecarbonData over the installed codecarbon, made on first use (for `place_name`)."""
    return CodecarbonData()


def place_name(location: str, data: CodecarbonData | None = None) -> str:
    """A plain place name for a location (`France`, `Quebec, Canada`, `world average`); see
    `CodecarbonData.place_name`. A location of no known form is returned as given."""
    return (data if data is not None else installed_data()).place_name(location)


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
