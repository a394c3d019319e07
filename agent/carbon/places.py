"""Locations as people type them: which form a text is, its canonical code, and plain names.

`parse` and the name functions read no data file; agent.carbon.data decides whether codecarbon has a
figure for a code. `PlaceNames` adds what codecarbon's files know: the codes that have a figure,
their names, and the nearest codes to a misspelt location. ISO 3166 codes and names come from
pycountry (the iso-codes tables Debian maintains). A text is read as the first of these that fits
(docs/carbon.md, "Locations"):

    1. `provider:region`   a cloud region: gcp:europe-west1, aws:eu-west-3, azure:westeurope
    2. a Nordic zone       SE1-SE4, NO1-NO5, DK1, DK2, FI (so `FI` is the Finnish zone's figure,
                           which is also Finland's)
    3. three letters       an ISO 3166-1 alpha-3 country code: FRA
    4. two letters         an ISO 3166-1 alpha-2 country code: FR, read as FRA
    5. `CC-XXX`            an ISO 3166-2 subdivision: US-CA, CA-QC, CN-BJ, DE-BY

Case does not matter; the canonical code is upper case (cloud regions lower case).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pycountry

from agent.carbon.datafiles import (
    CANADA,
    CANADA_PROVINCES,
    CHINA,
    COUNTRIES,
    GCP,
    NORDIC,
    US_STATES,
    CodecarbonFiles,
)

CLOUD_NAMES = {"gcp": "Google Cloud", "aws": "AWS", "azure": "Azure"}
"""Cloud providers we know regions of, and how a person names them."""

NORDIC_ZONE = re.compile(r"SE[1-4]|NO[1-5]|DK[12]|FI")
ZONE_COUNTRY = {"SE": "SWE", "NO": "NOR", "DK": "DNK", "FI": "FIN"}
"""Nordic bidding zone prefix -> the country (alpha-3) whose figure stands in for a zone without one."""

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

_SUBDIVISION = re.compile(r"([A-Z]{2})-([A-Z0-9]{1,3})")

Kind = Literal["cloud", "zone", "country", "subdivision"]


@dataclass(frozen=True)
class Place:
    """A location text read as one of the forms above."""

    kind: Kind
    code: str
    """Canonical: `gcp:europe-west1`, `SE3`, `FRA`, `US-CA`."""
    country: str | None
    """The alpha-3 code of the country it is in, where known (a cloud region's is not known here)."""
    iso_known: bool = True
    """False for a well-formed country or subdivision code that ISO 3166 does not have."""


def parse(text: str) -> Place | None:
    """`text` as a location form, or None when it fits none of them."""
    raw = text.strip()
    provider, sep, region = raw.partition(":")
    if sep:
        provider, region = provider.strip().lower(), region.strip().lower()
        if provider not in CLOUD_NAMES or not region:
            return None
        return Place("cloud", f"{provider}:{region}", None)
    upper = raw.upper()
    if NORDIC_ZONE.fullmatch(upper):
        return Place("zone", upper, ZONE_COUNTRY[upper[:2]])
    if re.fullmatch(r"[A-Z]{3}", upper):
        return Place("country", upper, upper, pycountry.countries.get(alpha_3=upper) is not None)
    if re.fullmatch(r"[A-Z]{2}", upper):
        found = pycountry.countries.get(alpha_2=upper)
        return Place("country", found.alpha_3, found.alpha_3) if found is not None else None
    match = _SUBDIVISION.fullmatch(upper)
    if match:
        country = pycountry.countries.get(alpha_2=match.group(1))
        known = _subdivision(upper) is not None
        return Place("subdivision", upper, country.alpha_3 if country is not None else None, known)
    return None


def country_name(alpha3: str) -> str | None:
    """The plain English name of an ISO 3166-1 alpha-3 country: `Vietnam`, not `Viet Nam`."""
    found = pycountry.countries.get(alpha_3=alpha3)
    if found is None:
        return None
    return str(getattr(found, "common_name", None) or found.name)


def subdivision_name(code: str) -> str | None:
    """The ISO 3166-2 name of a subdivision (`US-CA` -> `California`), or None."""
    found = _subdivision(code)
    return str(found.name) if found is not None else None


def _subdivision(code: str) -> Any:
    """pycountry's subdivision record, or None (its subdivision look-up has no type hints)."""
    return pycountry.subdivisions.get(code=code)  # type: ignore[no-untyped-call]


def alpha2(alpha3: str) -> str | None:
    """The alpha-2 code of an alpha-3 country code, or None."""
    found = pycountry.countries.get(alpha_3=alpha3)
    return str(found.alpha_2) if found is not None else None


class PlaceNames(CodecarbonFiles):
    """Plain place names and nearest-code suggestions, from codecarbon's files and pycountry."""

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
