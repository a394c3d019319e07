"""Units every layer shares, defined once: seconds per hour, joules per kWh, and the hour a figure is
booked to.

Level 1: imports nothing of the project.
"""

from __future__ import annotations

import json
import math

HOUR_SECONDS = 3600
DAY_SECONDS = 24 * HOUR_SECONDS
HOURS_PER_YEAR = 8760
"""SCI's expected lifespan is in years of 365 days."""
SECONDS_PER_YEAR = HOURS_PER_YEAR * HOUR_SECONDS
JOULES_PER_KWH = 3.6e6


def hour_of(t: float) -> int:
    """The UTC hour (epoch seconds of its start) that an interval ending at `t` is booked to.

    Hours are (h, h + 3600]: an interval ending exactly at 14:00:00 belongs to 13:00.
    """
    return (math.ceil(t / HOUR_SECONDS) - 1) * HOUR_SECONDS


# ---- plain numbers: the one way every output (CLI, cards, report, epilog) writes energy and CO2e ----

ENERGY_UNITS: tuple[tuple[str, float], ...] = (("Wh", 1e-3), ("kWh", 1.0), ("MWh", 1e3), ("GWh", 1e6))
"""(name, kWh per unit), smallest first."""
MASS_UNITS: tuple[tuple[str, float], ...] = (("g", 1.0), ("kg", 1e3), ("t", 1e6))
"""(name, grams per unit), smallest first."""
SIGNIFICANT = 3


def sig(value: float, digits: int = SIGNIFICANT) -> str:
    """`value` to `digits` significant figures, thousands separated, never an exponent, never `-0`:
    433,000 / 12.3 / 0.0123."""
    if not math.isfinite(value):
        return "unknown"
    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    if rounded == 0:
        return "0"
    return f"{rounded:,.0f}" if decimals <= 0 else f"{rounded:,.{decimals}f}"


def unit_for(value: float, units: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    """The largest unit in which `value` (in the base unit), rounded to the significant figures shown,
    is at least 1 (999.96 kWh reads 1.00 MWh); the smallest unit for less."""
    if math.isfinite(value) and value:
        value = float(f"{value:.{SIGNIFICANT}g}")
    chosen = units[0]
    for unit in units:
        if abs(value) >= unit[1]:
            chosen = unit
    return chosen


def _rounded(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def energy_text(kwh: float, digits: int = SIGNIFICANT) -> str:
    """Energy in the unit that suits it: 0.412 Wh, 12.3 kWh, 50.4 MWh, 1.20 GWh."""
    name, per = unit_for(kwh, ENERGY_UNITS)
    return f"{sig(_rounded(kwh, digits) / per, digits)} {name}"


def joules_text(joules: float, digits: int = SIGNIFICANT) -> str:
    return energy_text(joules / JOULES_PER_KWH, digits)


def mass_text(grams: float, digits: int = SIGNIFICANT) -> str:
    """CO2e mass in the unit that suits it: 412 g, 12.3 kg, 1.56 t (the caller adds `CO2e`)."""
    name, per = unit_for(grams, MASS_UNITS)
    return f"{sig(_rounded(grams, digits) / per, digits)} {name}"


def range_text(value: float, low: float | None, high: float | None, units: tuple[tuple[str, float], ...],
               digits: int = SIGNIFICANT) -> str:  # fmt: skip
    """`101 MWh (95.0-108)`: the value and its range, in the value's unit; no range when unknown."""
    name, per = unit_for(value, units)
    text = f"{sig(_rounded(value, digits) / per, digits)} {name}"
    if low is None or high is None or not value:
        return text
    return f"{text} ({sig(low / per, digits)}-{sig(high / per, digits)})"


def table_unit(values: list[float], units: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    """One unit for a whole column or table: the one that suits its largest figure."""
    return unit_for(max((abs(v) for v in values if math.isfinite(v)), default=0.0), units)


def share_text(share: float | None, digits: int = 1) -> str:
    """A share (0 to 1) as a percentage: `12.3 %`; `< 0.1 %` for a little; never `-0.0 %`; `-` unknown."""
    if share is None or not math.isfinite(share):
        return "-"
    pct = 100.0 * share
    if 0 < pct < 10**-digits:
        return f"< {10**-digits:g} %"  # not 0.0 %: there is some
    text = f"{pct:.{digits}f}"
    if float(text) == 0:
        text = f"{0:.{digits}f}"
    return f"{text} %"


# ---- JSON: the one way every output (CLI, cards, report, HTTP API) writes it ----


def finite(value: object) -> object:
    """`value` with every non-finite float (inf, nan) in it, at any depth, made None: JSON's null, unknown."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(value: object, indent: int | None = None, sort_keys: bool = False) -> str:
    """Strict JSON (RFC 8259) of `value`: a figure that overflowed is null, never `Infinity` or `NaN`."""
    return json.dumps(finite(value), indent=indent, sort_keys=sort_keys, allow_nan=False)
