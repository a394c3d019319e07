"""Locations as people type them: which form a text is, its canonical code, and plain names.

No data file is read here; agent.carbon.data decides whether codecarbon has a figure for a code.
ISO 3166 codes and names come from pycountry (the iso-codes tables Debian maintains). A text is
read as the first of these that fits (docs/carbon.md, "Locations"):

    1. `provider:region`   a cloud region: gcp:europe-west1, aws:eu-west-3, azure:westeurope
    2. a Nordic zone       SE1-SE4, NO1-NO5, DK1, DK2, FI (so `FI` is the Finnish zone's figure,
                           which is also Finland's)
    3. three letters       an ISO 3166-1 alpha-3 country code: FRA
    4. two letters         an ISO 3166-1 alpha-2 country code: FR, read as FRA
    5. `CC-XXX`            an ISO 3166-2 subdivision: US-CA, CA-QC, CN-BJ, DE-BY

Case does not matter; the canonical code is upper case (cloud regions lower case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import pycountry

CLOUD_NAMES = {"gcp": "Google Cloud", "aws": "AWS", "azure": "Azure"}
"""Cloud providers we know regions of, and how a person names them."""

NORDIC_ZONE = re.compile(r"SE[1-4]|NO[1-5]|DK[12]|FI")
ZONE_COUNTRY = {"SE": "SWE", "NO": "NOR", "DK": "DNK", "FI": "FIN"}
"""Nordic bidding zone prefix -> the country (alpha-3) whose figure stands in for a zone without one."""

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
