"""The `carbon:` section of the config file: sites, their grid and PUE, and embodied hardware items.

Checkers raise `At`, a ValueError that carries the rest of the dotted key (`.main.pue[3]`), so the
config loader's one-line error names the exact place: `carbon.sites.main.pue[3]`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MONTHS = 12


class At(ValueError):
    """A problem inside a nested value; `where` is the key path below the checked key."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where = where


@dataclass(frozen=True)
class SiteConfig:
    """One site: where its power comes from, its PUE, and which nodes it holds."""

    location: str | None = None
    """Location (docs/carbon.md), e.g. FRA, US-CA, aws:us-east-1; None: the world average, flagged."""
    intensity_csv: Path | None = None
    pue: tuple[float, ...] = (1.0,) * MONTHS
    """Power usage effectiveness, January to December."""
    cfe_contract_pct: float = 0.0
    """Share of consumption covered by carbon-free contracts (PPAs, certificates), percent, annual."""
    supplier_g_per_kwh: float | None = None
    nodes: tuple[str, ...] = ()
    """Regexes, matched in full against the node name."""


@dataclass(frozen=True)
class EmbodiedConfig:
    """One hardware item's embodied emissions, spread over its life."""

    name: str
    total_kg: float
    lifetime_years: float
    nodes: tuple[str, ...] = (".*",)
    share: float = 1.0
    """Share of the item attributed to each matching node (e.g. 1/4 of a switch for 4 nodes)."""


@dataclass(frozen=True)
class CarbonConfig:
    location: str | None = None
    """Shortcut: the location of the one implicit site when `sites` is empty."""
    default_site: str | None = None
    """Site of nodes that match no site's `nodes`; by default the only site, if there is one."""
    sites: Mapping[str, SiteConfig] = field(default_factory=dict)
    embodied: tuple[EmbodiedConfig, ...] = ()


Check = Callable[[Any], Any]


def _number(low: float, high: float) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        if math.isnan(value) or not low <= value <= high:
            raise ValueError(f"must be from {low:g} to {high:g}, got {value!r}")
        return float(value)

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(ch in value for ch in "\n\r\0"):
        raise ValueError(f"must be a non-empty single-line string, got {value!r}")
    return value.strip()


def _path(value: Any) -> Path:
    if not _text(value).startswith("/"):
        raise ValueError(f"must be an absolute path, got {value!r}")
    return Path(value)


def _regexes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a list of node-name regexes, got {value!r}")
    for i, item in enumerate(value):
        try:
            re.compile(_text(item))
        except re.error as e:
            raise At(f"[{i}]", f"is not a valid regex ({e})") from None
        except ValueError as e:
            raise At(f"[{i}]", str(e)) from None
    return tuple(value)


_PUE = _number(1.0, 5.0)


def _pue(value: Any) -> tuple[float, ...]:
    """A constant, 12 monthly values, or {month 1-12: value} with every month given."""
    if isinstance(value, list):
        if len(value) != MONTHS:
            raise ValueError(f"must have 12 monthly values (January first), got {len(value)}")
        return tuple(_item(_PUE, v, f"[{i}]") for i, v in enumerate(value))
    if isinstance(value, Mapping):
        unknown = [k for k in value if isinstance(k, bool) or k not in range(1, MONTHS + 1)]
        if unknown:
            raise At(f"[{unknown[0]!r}]", "is not a month; use 1 to 12")
        missing = [m for m in range(1, MONTHS + 1) if m not in value]
        if missing:
            raise ValueError(f"must give every month 1 to 12; missing {', '.join(map(str, missing))}")
        return tuple(_item(_PUE, value[m], f"[{m}]") for m in range(1, MONTHS + 1))
    return (_PUE(value),) * MONTHS


def _item(check: Check, value: Any, where: str) -> Any:
    try:
        return check(value)
    except ValueError as e:
        raise At(where + getattr(e, "where", ""), str(e)) from None


def _section(schema: Mapping[str, Check], required: tuple[str, ...] = ()) -> Callable[[Any], dict[str, Any]]:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a mapping of keys, got {value!r}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in schema:
                raise At(f".{key}", f"is an unknown key (known keys here: {', '.join(sorted(schema))})")
            out[key] = _item(schema[key], item, f".{key}")
        missing = [k for k in required if k not in out]
        if missing:
            raise At(f".{missing[0]}", "is required")
        return out

    return check


_SITE = _section(
    {
        "location": _text,
        "intensity_csv": _path,
        "pue": _pue,
        "cfe_contract_pct": _number(0, 100),
        "supplier_g_per_kwh": _number(0, 1e5),
        "nodes": _regexes,
    }
)
_EMBODIED = _section(
    {
        "name": _text,
        "total_kg": _number(0, 1e9),
        "lifetime_years": _number(0.01, 100),
        "nodes": _regexes,
        "share": _number(0, 1),
    },
    required=("name", "total_kg", "lifetime_years"),
)
_CARBON = _section(
    {
        "location": _text,
        "default_site": _text,
        "sites": lambda v: v,  # checked below, per site name
        "embodied": lambda v: v,
    }
)


def carbon_section(value: Any) -> CarbonConfig:
    """Check the `carbon:` mapping and build its config; raises ValueError/At naming the bad key."""
    if value is None:
        return CarbonConfig()
    raw = _CARBON(value)
    sites: dict[str, SiteConfig] = {}
    raw_sites = raw.get("sites") or {}
    if not isinstance(raw_sites, Mapping):
        raise At(".sites", f"must be a mapping of site name to site, got {raw_sites!r}")
    for name, site in raw_sites.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise At(f".sites.{name}", "site names must be letters, digits, _ . -")
        sites[name] = SiteConfig(**_item(_SITE, site, f".sites.{name}"))
    raw_items = raw.get("embodied") or []
    if not isinstance(raw_items, list):
        raise At(".embodied", f"must be a list of items, got {raw_items!r}")
    items = tuple(EmbodiedConfig(**_item(_EMBODIED, v, f".embodied[{i}]")) for i, v in enumerate(raw_items))
    if sites and "location" in raw:
        raise At(".location", "applies only without sites; set location on each site instead")
    default = raw.get("default_site")
    if default is not None and default not in sites:
        raise At(".default_site", f"names no site; sites are: {', '.join(sites) or 'none'}")
    return CarbonConfig(location=raw.get("location"), default_site=default, sites=sites, embodied=items)
