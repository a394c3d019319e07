"""Annual location-based carbon intensity (gCO2e/kWh) from the data files codecarbon ships, cited.

The files are read and cited by agent.carbon.datafiles; place names and nearest-code suggestions
come from agent.carbon.places, which `CodecarbonData` builds on. Location forms (docs/carbon.md):

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

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent.carbon.datafiles import (
    CANADA,
    CANADA_PROVINCES,
    CANADA_SOURCES,
    CHINA,
    COUNTRIES,
    DATASETS,
    FOSSIL_SOURCES,
    GCP,
    GCP_YEARS,
    NORDIC,
    PER_SOURCE,
    US_STATES,
    CarbonDataError,
    Dataset,
)
from agent.carbon.places import AWS_REGIONS, AZURE_REGIONS, NORDIC_ZONE, PlaceNames, parse

G_PER_KWH_PER_LB_PER_MWH = 0.453592
"""1 lb/MWh = 453.592 g / 1000 kWh."""


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


class CodecarbonData(PlaceNames):
    """The location tables from codecarbon's data folder, read lazily, each file once."""

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


@functools.cache
def installed_data() -> CodecarbonData:
    """One CodecarbonData over the installed codecarbon, made on first use (for `place_name`)."""
    return CodecarbonData()


def place_name(location: str, data: CodecarbonData | None = None) -> str:
    """A plain place name for a location (`France`, `Quebec, Canada`, `world average`); see
    `CodecarbonData.place_name`. A location of no known form is returned as given."""
    return (data if data is not None else installed_data()).place_name(location)


def _with_note(prov: Provenance, note: str) -> Provenance:
    return replace(prov, note=f"{note}; {prov.note}" if prov.note else note)


def _flagged(found: LocationIntensity, note: str) -> LocationIntensity:
    prov = replace(_with_note(found.provenance, note), fallback=True)
    return LocationIntensity(found.g_per_kwh, found.grid_cfe_share, prov)
