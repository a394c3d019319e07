"""How the report writes numbers: table figures, shares, energy and CO2e in prose, and the table units
that the whole report (tables and charts alike) uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def num(value: float | None, digits: int = 1) -> str:
    """A figure for a table: thousands separated, `-` when unknown."""
    if value is None:
        return "-"
    if value and abs(value) < 10**-digits:
        return f"{value:.2g}"  # a small figure keeps its first digits rather than show as 0.000
    return f"{value:,.{digits}f}"


def pct(share: float | None, digits: int = 1) -> str:
    if share is None:
        return "-"
    if 0 < share < 10**-digits / 100:
        return f"< {10**-digits:g} %"  # not 0.0 %: there is some
    return f"{100.0 * share:.{digits}f} %"


def energy(kwh: float | None) -> str:
    """Energy in prose, in the unit that suits it: 0.042 kWh, 12.3 kWh, 433.20 MWh, 1.20 GWh."""
    if kwh is None:
        return "-"
    if abs(kwh) >= 1e6:
        return f"{kwh / 1e6:,.2f} GWh"
    if abs(kwh) >= 1e3:
        return f"{kwh / 1e3:,.2f} MWh"
    return f"{kwh:,.1f} kWh" if abs(kwh) >= 1 else f"{kwh * 1000:.3g} Wh"


def mass(kg: float | None) -> str:
    """CO2e in prose: grams below 1 kg, tonnes from 1,000 kg."""
    if kg is None:
        return "-"
    if abs(kg) >= 1e3:
        return f"{kg / 1e3:,.2f} t"
    return f"{kg:,.2f} kg" if abs(kg) >= 1 else f"{kg * 1000:.3g} g"


def units(doc: Mapping[str, Any]) -> tuple[float, str, float, str]:
    """Table units for the whole report: (kWh divisor, name, kg divisor, name): MWh and t for big sites."""
    big_energy = doc["energy"]["it_kwh"] >= 1000
    big_mass = doc["emissions"]["location_kg"] >= 1000
    return (1000.0 if big_energy else 1.0, "MWh" if big_energy else "kWh",
            1000.0 if big_mass else 1.0, "t" if big_mass else "kg")  # fmt: skip
