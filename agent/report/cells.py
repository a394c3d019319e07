"""How a section writes one cell or phrase: plain figures, ranges in a column's unit, target flags,
and where energy came from, generated from its kinds (a kind with no energy is never named).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.ledger.provenance import ESTIMATED, IMPORTED, KINDS, MEASURED, METER_NAMES, TOOL_NAMES
from agent.report.numbers import Column, pct
from agent.units import sig

KIND_TITLES = {MEASURED: "Measured", ESTIMATED: "Estimated", IMPORTED: "Imported"}
PHASES = ("pretraining", "fine-tuning")


def flag(on_track: bool | None) -> str:
    return "no baseline" if on_track is None else ("on track" if on_track else "off track")


def fig(value: float | None) -> str:
    """A figure without a unit scale (kWh per million tokens, g per sample): 3 significant figures."""
    return "-" if value is None else sig(value)


def kinds_present(doc: Mapping[str, Any]) -> list[str]:
    """The kinds of energy the report holds, in order (a kind with no energy is never named)."""
    by_kind = doc["energy"]["provenance"]["kwh_by_kind"]
    return [k for k in KINDS if by_kind.get(k, 0.0) > 0]


def source_text(provenance: Mapping[str, Any]) -> str:
    """Where a figure's energy came from, in a few words: `measured (NVML, RAPL)`, `imported (CSV)`,
    with each kind's share when there are several."""
    by_source: Mapping[str, float] = provenance["kwh_by_source"]
    parts = []
    for kind in KINDS:
        if provenance["kwh_by_kind"].get(kind, 0.0) <= 0:
            continue
        sources = sorted(s for s, kwh in by_source.items() if kwh > 0 and kind_of_source(s) == kind)
        if kind == MEASURED:
            text = f"measured ({', '.join(METER_NAMES.get(s, s).split(' (')[0] for s in sources)})"
        elif kind == IMPORTED:
            tools = (s.split(":", 1)[1] for s in sources)
            text = f"imported ({', '.join(TOOL_NAMES.get(t, t).removeprefix('a ') for t in tools)})"
        else:
            text = "estimated (power model)"
        parts.append((text, provenance["shares"][kind]))
    if not parts:
        return "-"
    return parts[0][0] if len(parts) == 1 else ", ".join(f"{t} {pct(s)}" for t, s in parts)


def get(*keys: str) -> Callable[[Mapping[str, Any]], Any]:
    """A reader of the value at `keys` in a row."""

    def get(row: Mapping[str, Any]) -> Any:
        value: Any = row
        for key in keys:
            value = value[key]
        return value

    return get


def pct_of(get: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], str]:
    return lambda row: pct(get(row))


def share_of(pct_value: float | None) -> float | None:
    return None if pct_value is None else pct_value / 100.0


def kind_of_source(source: str) -> str:
    return IMPORTED if source.startswith("import:") else ESTIMATED if source == "estimate" else MEASURED


def baseline_row(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    rows = doc["year_over_year"]
    return rows[0] if rows and rows[0]["role"] == "baseline" else None


def ranged(col: Column, value: float, low: float | None, high: float | None) -> str:
    """`12.3 (11.7-12.9)` in a column's unit; the value alone without a range."""
    if low is None or high is None or not value:
        return col(value)
    return f"{col(value)} ({col(low)}-{col(high)})"
