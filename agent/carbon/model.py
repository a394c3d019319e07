"""From IT kWh to CO2e per ledger hour: sites, PUE, location- and market-based intensity, CFE, embodied.

The formulas (docs/carbon.md), for one site, one hour h, IT energy E_h in kWh:

    F_h        = E_h x PUE[month(h)]                                  facility kWh
    location_g = F_h x I_h         I_h: the hourly CSV's value, else the location's annual figure
    market_g   = F_h x (1 - c) x S S: supplier_g_per_kwh, else I_h;  c: cfe_contract_pct / 100
    cfe_kwh    = F_h x (c + (1 - c) x g_h)       g_h: the grid's carbon-free share that hour (0 if unknown)

Totals over many hours are sums of these per-hour figures (`Emissions.__add__`): Σ F_h x I_h, never
total kWh x mean intensity. Everything here is pure arithmetic over loaded data; only
`CarbonModel.from_config` reads files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from agent.carbon.data import CodecarbonData, LocationIntensity, Provenance
from agent.carbon.series import HourlySeries, read_series
from agent.config.carbon import MONTHS, CarbonConfig, EmbodiedConfig, SiteConfig
from agent.units import SECONDS_PER_YEAR

IMPLICIT_SITE = "default"

log = logging.getLogger("greenai.carbon")


@dataclass(frozen=True)
class Emissions:
    """Energy and CO2e for one hour of one node, or a sum of such (add them with +)."""

    it_kwh: float
    facility_kwh: float
    location_g: float
    market_g: float
    cfe_kwh: float
    hourly_kwh: float = 0.0
    """Facility kWh whose intensity came from an hourly series (the rest used an annual figure)."""
    provenance: tuple[Provenance, ...] = ()
    """Every distinct source behind the figure."""

    @property
    def intensity_g_per_kwh(self) -> float:
        """Location-based intensity applied: location_g / facility_kwh (energy-weighted for a sum)."""
        return self.location_g / self.facility_kwh if self.facility_kwh else 0.0

    @property
    def cfe_pct(self) -> float:
        """Carbon-free energy consumed over energy consumed, percent."""
        return 100.0 * self.cfe_kwh / self.facility_kwh if self.facility_kwh else 0.0

    @property
    def hourly_coverage(self) -> float:
        """Share (0 to 1) of facility kWh priced with an hourly intensity rather than an annual one."""
        return self.hourly_kwh / self.facility_kwh if self.facility_kwh else 0.0

    @property
    def pue(self) -> float:
        """Effective PUE: facility kWh / IT kWh."""
        return self.facility_kwh / self.it_kwh if self.it_kwh else 0.0

    def __add__(self, other: Emissions) -> Emissions:
        return Emissions(
            it_kwh=self.it_kwh + other.it_kwh,
            facility_kwh=self.facility_kwh + other.facility_kwh,
            location_g=self.location_g + other.location_g,
            market_g=self.market_g + other.market_g,
            cfe_kwh=self.cfe_kwh + other.cfe_kwh,
            hourly_kwh=self.hourly_kwh + other.hourly_kwh,
            provenance=tuple(dict.fromkeys(self.provenance + other.provenance)),
        )


ZERO = Emissions(0.0, 0.0, 0.0, 0.0, 0.0)


def total(parts: Iterable[Emissions]) -> Emissions:
    """The sum of many hours' emissions (energy-weighted by construction)."""
    out = ZERO
    for part in parts:
        out = out + part
    return out


@dataclass(frozen=True)
class Site:
    """A site with everything needed to price an hour: resolved and loaded, no I/O left."""

    name: str
    annual: LocationIntensity
    hourly: HourlySeries | None = None
    pue: tuple[float, ...] = (1.0,) * MONTHS
    cfe_contract_share: float = 0.0
    supplier_g_per_kwh: float | None = None
    nodes: tuple[re.Pattern[str], ...] = ()

    def matches(self, node: str) -> bool:
        return any(p.fullmatch(node) for p in self.nodes)

    def pue_at(self, hour_start: float) -> float:
        return self.pue[datetime.fromtimestamp(hour_start, timezone.utc).month - 1]


def hour_emissions(site: Site, hour_start: int, it_kwh: float) -> Emissions:
    """Price `it_kwh` of IT energy used in the hour starting at `hour_start` (UTC epoch s) at `site`."""
    facility = it_kwh * site.pue_at(hour_start)
    value = site.hourly.hours.get(hour_start) if site.hourly is not None else None
    if value is not None and site.hourly is not None:
        intensity, grid_cfe = value.g_per_kwh, value.cfe_share
        prov = Provenance(site.hourly.path, "", "hourly", site.name, note=f"{site.hourly.basis} intensity")
        hourly_kwh = facility
    else:
        intensity, grid_cfe = site.annual.g_per_kwh, site.annual.grid_cfe_share
        prov, hourly_kwh = site.annual.provenance, 0.0
    c = site.cfe_contract_share
    residual_factor = site.supplier_g_per_kwh if site.supplier_g_per_kwh is not None else intensity
    return Emissions(
        it_kwh=it_kwh,
        facility_kwh=facility,
        location_g=facility * intensity,
        market_g=facility * (1 - c) * residual_factor,
        cfe_kwh=facility * (c + (1 - c) * (grid_cfe or 0.0)),
        hourly_kwh=hourly_kwh,
        provenance=(prov,),
    )


def embodied_g(total_kg: float, lifetime_years: float, reserved_seconds: float, share: float = 1.0) -> float:
    """SCI's M = TE x (TiR / EL) x (RR / ToR), in grams: `share` is RR / ToR, the resource share."""
    return total_kg * 1000.0 * (reserved_seconds / (lifetime_years * SECONDS_PER_YEAR)) * share


@dataclass(frozen=True)
class EmbodiedItem:
    name: str
    total_kg: float
    lifetime_years: float
    share: float
    nodes: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class CarbonModel:
    """Sites and hardware items, resolved once; prices ledger hours."""

    sites: Sequence[Site]
    default: Site
    embodied: Sequence[EmbodiedItem] = ()
    warnings: tuple[str, ...] = field(default=())

    @classmethod
    def from_config(
        cls,
        config: CarbonConfig,
        data: CodecarbonData | None = None,
        warn: Callable[[str], None] = log.warning,
    ) -> CarbonModel:
        """Resolve locations and read intensity CSVs; raises CarbonDataError (one line) on bad input.

        Unresolved locations price at the world average (flagged) and are named in one warning.
        """
        data = data if data is not None else CodecarbonData()
        missing: list[str] = []
        site_configs: Mapping[str, SiteConfig] = config.sites or {
            IMPLICIT_SITE: SiteConfig(location=config.location)
        }
        sites = [_site(name, sc, data, missing) for name, sc in site_configs.items()]
        by_name = {s.name: s for s in sites}
        if config.default_site is not None:
            default = by_name[config.default_site]
        elif len(sites) == 1:
            default = sites[0]
        else:
            note = "node matches no site and no carbon.default_site is set"
            default = Site("unassigned", data.world(note))
            missing.append("a site for nodes that match none (set carbon.default_site)")
        items = [_item(e) for e in config.embodied]
        warnings: tuple[str, ...] = ()
        if missing:
            world = data.world().g_per_kwh
            warnings = (
                f"carbon: {'; '.join(missing)}: CO2 is priced at the world average, {world:g} g/kWh, until "
                "carbon.location or carbon.sites says where the nodes are",
            )
            warn(warnings[0])
        return cls(sites, default, items, warnings)

    def site_for(self, node: str) -> Site:
        """The first site whose `nodes` regexes match `node` in full, else the default site."""
        return next((s for s in self.sites if s.matches(node)), self.default)

    def emissions(self, node: str, hour_start: int, it_kwh: float) -> Emissions:
        """`it_kwh` used by `node` in the hour starting at `hour_start` (UTC epoch seconds)."""
        return hour_emissions(self.site_for(node), hour_start, it_kwh)

    def embodied_g(self, node: str, seconds: float, share: float = 1.0) -> float:
        """Embodied grams of `node`'s hardware items for `seconds` of reservation at `share` of the node."""
        return sum(
            embodied_g(i.total_kg, i.lifetime_years, seconds, i.share * share)
            for i in self.embodied
            if any(p.fullmatch(node) for p in i.nodes)
        )


def _site(name: str, config: SiteConfig, data: CodecarbonData, missing: list[str]) -> Site:
    if config.location is None:
        annual = data.world("no location configured")
        missing.append(f"no location for site {name!r}")
    else:
        found = data.resolve(config.location)
        if found is None:
            annual = data.world(f"{config.location} not found")
            missing.append(f"location {config.location!r} of site {name!r} not in the data")
        else:
            annual = found
    return Site(
        name=name,
        annual=annual,
        hourly=read_series(config.intensity_csv) if config.intensity_csv is not None else None,
        pue=config.pue,
        cfe_contract_share=config.cfe_contract_pct / 100.0,
        supplier_g_per_kwh=config.supplier_g_per_kwh,
        nodes=tuple(re.compile(p) for p in config.nodes),
    )


def _item(config: EmbodiedConfig) -> EmbodiedItem:
    return EmbodiedItem(
        config.name,
        config.total_kg,
        config.lifetime_years,
        config.share,
        tuple(re.compile(p) for p in config.nodes),
    )
