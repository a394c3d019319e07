"""The `carbon:` section of the config file: sites, their grid and PUE, and embodied hardware items.

Checked with agent.config.checks, whose `At` carries the rest of the dotted key (`.main.pue[3]`), so
the config loader's one-line error names the exact place: `carbon.sites.main.pue[3]`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import checks

MONTHS = 12


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


_PUE = checks.number(1.0, 5.0)


def _pue(value: Any) -> tuple[float, ...]:
    """A constant, 12 monthly values, or {month 1-12: value} with every month given."""
    if isinstance(value, list):
        if len(value) != MONTHS:
            raise ValueError(f"must have 12 monthly values (January first), got {len(value)}")
        return tuple(checks.nested(_PUE, v, f"[{i}]") for i, v in enumerate(value))
    if isinstance(value, Mapping):
        unknown = [k for k in value if isinstance(k, bool) or k not in range(1, MONTHS + 1)]
        if unknown:
            raise checks.At(f"[{unknown[0]!r}]", "is not a month; use 1 to 12")
        missing = [m for m in range(1, MONTHS + 1) if m not in value]
        if missing:
            raise ValueError(f"must give every month 1 to 12; missing {', '.join(map(str, missing))}")
        return tuple(checks.nested(_PUE, value[m], f"[{m}]") for m in range(1, MONTHS + 1))
    return (_PUE(value),) * MONTHS


_SITE = checks.section(
    {
        "location": checks.text,
        "intensity_csv": checks.path,
        "pue": _pue,
        "cfe_contract_pct": checks.number(0, 100),
        "supplier_g_per_kwh": checks.number(0, 1e5),
        "nodes": checks.regexes,
    }
)
_EMBODIED = checks.section(
    {
        "name": checks.text,
        "total_kg": checks.number(0, 1e9),
        "lifetime_years": checks.number(0.01, 100),
        "nodes": checks.regexes,
        "share": checks.number(0, 1),
    },
    required=("name", "total_kg", "lifetime_years"),
)
_CARBON = checks.section(
    {
        "location": checks.text,
        "default_site": checks.text,
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
        raise checks.At(".sites", f"must be a mapping of site name to site, got {raw_sites!r}")
    for name, site in raw_sites.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise checks.At(f".sites.{name}", "site names must be letters, digits, _ . -")
        sites[name] = SiteConfig(**checks.nested(_SITE, site, f".sites.{name}"))
    raw_items = raw.get("embodied") or []
    if not isinstance(raw_items, list):
        raise checks.At(".embodied", f"must be a list of items, got {raw_items!r}")
    items = tuple(
        EmbodiedConfig(**checks.nested(_EMBODIED, v, f".embodied[{i}]")) for i, v in enumerate(raw_items)
    )
    if sites and "location" in raw:
        raise checks.At(".location", "applies only without sites; set location on each site instead")
    default = raw.get("default_site")
    if default is not None and default not in sites:
        raise checks.At(".default_site", f"names no site; sites are: {', '.join(sites) or 'none'}")
    return CarbonConfig(location=raw.get("location"), default_site=default, sites=sites, embodied=items)
