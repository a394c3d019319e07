"""How the report writes numbers, on top of agent.units (the one formatter): prose figures and ranges
from report.json's kWh and kg, table columns in one unit each, plain table figures, changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from agent.units import (
    ENERGY_UNITS,
    MASS_UNITS,
    energy_text,
    mass_text,
    range_text,
    share_text,
    sig,
    table_unit,
)


def num(value: float | None, digits: int = 1) -> str:
    """A plain table figure (PUE, CFE %, g/kWh, GPU-hours): thousands separated, `-` unknown, never `-0`."""
    if value is None or not math.isfinite(value):
        return "-"
    if value and abs(value) < 10**-digits:
        return sig(value, 2)  # a small figure keeps its first digits rather than show as 0.0
    text = f"{value:,.{digits}f}"
    return text.lstrip("-") if float(text.replace(",", "")) == 0 else text


def pct(share: float | None) -> str:
    """A share (0 to 1) as `12.3 %` (agent.units.share_text)."""
    return share_text(share)


def energy(kwh: float | None) -> str:
    """Energy in prose in the unit that suits it: `433 MWh`; `-` unknown."""
    return "-" if kwh is None else energy_text(kwh)


def mass(kg: float | None) -> str:
    """CO2e in prose from report.json's kg: `24.7 t`, `412 g`; `-` unknown."""
    return "-" if kg is None else mass_text(kg * 1000.0)


def energy_range(kwh: float | None, low: float | None, high: float | None) -> str:
    """`101 MWh (95.0-108)`: energy and its range; `-` unknown."""
    return "-" if kwh is None else tidy_range(range_text(kwh, low, high, ENERGY_UNITS))


def tidy_range(text: str) -> str:
    """`433 MWh (433-433)` -> `433 MWh`: a range that reads as the value itself says nothing (energy of
    no stated accuracy is counted at its value at both ends)."""
    value, _, rest = text.partition(" ")
    unit, _, bounds = rest.partition(" (")
    return f"{value} {unit}" if bounds == f"{value}-{value})" else text


def mass_range(kg: float | None, low: float | None, high: float | None) -> str:
    """`24.7 t (22.1-27.4)` from kg; `-` unknown."""
    if kg is None:
        return "-"
    low_g = None if low is None else low * 1000.0
    high_g = None if high is None else high * 1000.0
    return tidy_range(range_text(kg * 1000.0, low_g, high_g, MASS_UNITS))


def change(new: float | None, old: float | None) -> str:
    """The change from `old` to `new` as a signed percentage: `-50.0 %`, `+3.1 %`; `-` unknown."""
    if new is None or old is None or not old:
        return "-"
    if new / old >= 10:
        return f"x{sig(new / old)}"  # +10829965.0 % reads as nothing
    text = share_text(abs(new / old - 1.0))
    sign = "+" if new > old else "-"
    if float(text.lstrip("< ").split()[0]) == 0:
        return text
    return f"< {sign}{text[2:]}" if text.startswith("<") else sign + text


class Column:
    """One unit for a whole table column (or table) of energy or CO2e: the one that suits its largest
    figure (agent.units.table_unit); cells are the figure in it to 3 significant figures."""

    def __init__(self, values: Iterable[float | None], mass_kg: bool = False) -> None:
        self.scale = 1000.0 if mass_kg else 1.0  # report.json's kg to the grams MASS_UNITS count in
        units = MASS_UNITS if mass_kg else ENERGY_UNITS
        self.unit, per = table_unit([v * self.scale for v in values if v is not None], units)
        self.per = per / self.scale

    def __call__(self, value: float | None) -> str:
        return "-" if value is None else sig(value / self.per)


def units(doc: Mapping[str, Any]) -> tuple[float, str, float, str]:
    """Units for the charts: (kWh per energy unit, its name, kg per mass unit, its name), the ones
    that suit the monthly figures."""
    e = Column(r["facility_kwh"] for r in doc["by_month"])
    m = Column((v for r in doc["by_month"] for v in (r["location_kg"], r["market_kg"])), mass_kg=True)
    return e.per, e.unit, m.per, m.unit


def points(new: float | None, old: float | None) -> str:
    """The change of a share (0 to 1) in percentage points: `-12.5 pt`; `-` unknown."""
    if new is None or old is None:
        return "-"
    diff = round(100.0 * (new - old), 1)
    return "0.0 pt" if diff == 0 else f"{diff:+.1f} pt"
