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
UNASSIGNED = "unassigned"
"""The site of nodes that match no site when several sites and no default_site are configured."""

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
        prov = site.hourly.provenance(site.name)
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
    notes: tuple[str, ...] = ()
    """Warnings about the config itself (a site with no location), given once at start-up."""
    warn: Callable[[str], None] = field(default=log.warning, compare=False, repr=False)
    """Told, once per node, when a node falls to the unassigned site."""
    unassigned_nodes: set[str] = field(default_factory=set, compare=False, repr=False)
    """The nodes priced at the unassigned site so far: they match no site and no default_site is set."""

    @classmethod
    def from_config(
        cls,
        config: CarbonConfig,
        data: CodecarbonData | None = None,
        warn: Callable[[str], None] = log.warning,
    ) -> CarbonModel:
        """Resolve locations and read intensity CSVs; raises CarbonDataError (one line) on bad input.

        An unknown location is an UnknownLocation error; a site without a location prices at the
        world average, flagged, and `warn` is told once. A node that matches no site while several
        sites and no default_site are configured also prices at the world average: `warn` is told
        when that first happens to it (`site_for`), and `warnings` lists such nodes.
        """
        data = data if data is not None else CodecarbonData()
        configs = site_configs(config)
        sites = [build_site(name, sc, data, location_key(config, name)) for name, sc in configs.items()]
        by_name = {s.name: s for s in sites}
        if config.default_site is not None:
            default = by_name[config.default_site]
        elif len(sites) == 1:
            default = sites[0]
        else:
            note = "node matches no site and no carbon.default_site is set"
            default = Site(UNASSIGNED, data.world(note))
        notes = _location_notes(config, data)
        for line in notes:
            warn(line)
        return cls(sites, default, [_item(e) for e in config.embodied], notes, warn)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Everything a reader of the figures should be told: the config's notes, then the nodes that
        fell to the unassigned site (only once some did)."""
        nodes = sorted(list(self.unassigned_nodes))  # list() first: one atomic copy of the set
        return self.notes + ((self._unassigned_warning(nodes),) if nodes else ())

    def site_for(self, node: str) -> Site:
        """The first site whose `nodes` regexes match `node` in full, else the default site."""
        site = next((s for s in self.sites if s.matches(node)), None)
        if site is not None:
            return site
        if node not in self.unassigned_nodes and all(s is not self.default for s in self.sites):
            self.unassigned_nodes.add(node)
            self.warn(self._unassigned_warning([node]))
        return self.default

    def emissions(self, node: str, hour_start: int, it_kwh: float) -> Emissions:
        """`it_kwh` used by `node` in the hour starting at `hour_start` (UTC epoch seconds)."""
        return hour_emissions(self.site_for(node), hour_start, it_kwh)

    def embodied_covers(self, node: str) -> bool:
        """Whether a `carbon.embodied` item covers `node` (else its embodied CO2e is not configured,
        which is not the same as zero)."""
        return any(p.fullmatch(node) for i in self.embodied for p in i.nodes)

    def embodied_g(self, node: str, seconds: float, share: float = 1.0) -> float:
        """Embodied grams of `node`'s hardware items for `seconds` of reservation at `share` of the node."""
        return sum(
            embodied_g(i.total_kg, i.lifetime_years, seconds, i.share * share)
            for i in self.embodied
            if any(p.fullmatch(node) for p in i.nodes)
        )

    def _unassigned_warning(self, nodes: Sequence[str]) -> str:
        which = ", ".join(nodes)
        return (
            f"carbon: node{'s' if len(nodes) > 1 else ''} {which} match{'' if len(nodes) > 1 else 'es'} no "
            f"site's nodes: CO2 is priced at the world average, {self.default.annual.g_per_kwh:g} g/kWh; "
            "add a pattern to carbon.sites.NAME.nodes or set carbon.default_site"
        )


def site_configs(config: CarbonConfig) -> Mapping[str, SiteConfig]:
    """The configured sites; without `sites`, one implicit site at `carbon.location`."""
    return config.sites or {IMPLICIT_SITE: SiteConfig(location=config.location)}


def location_key(config: CarbonConfig, site: str) -> str:
    """The config key a site's location is read from, for messages: `carbon.sites.main.location`."""
    return f"carbon.sites.{site}.location" if config.sites else "carbon.location"


def build_site(name: str, config: SiteConfig, data: CodecarbonData, key: str) -> Site:
    """Resolve a site's location (UnknownLocation names `key`) and read its intensity CSV."""
    if config.location is None:
        annual = data.world("no location configured")
    else:
        annual = data.lookup(config.location, key)
    return Site(
        name=name,
        annual=annual,
        hourly=read_series(config.intensity_csv) if config.intensity_csv is not None else None,
        pue=config.pue,
        cfe_contract_share=config.cfe_contract_pct / 100.0,
        supplier_g_per_kwh=config.supplier_g_per_kwh,
        nodes=tuple(re.compile(p) for p in config.nodes),
    )


def _location_notes(config: CarbonConfig, data: CodecarbonData) -> tuple[str, ...]:
    missing = [name for name, sc in site_configs(config).items() if sc.location is None]
    if not missing:
        return ()
    world = data.world().g_per_kwh
    if not config.sites:
        where = "no carbon.location is set"
        fix = "set carbon.location, e.g. FR or US-CA"
    else:
        where = f"no location for site{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
        fix = "set carbon.sites.NAME.location"
    return (f"carbon: {where}: CO2 is priced at the world average, {world:g} g/kWh; {fix} (docs/carbon.md)",)


def _item(config: EmbodiedConfig) -> EmbodiedItem:
    return EmbodiedItem(
        config.name,
        config.total_kg,
        config.lifetime_years,
        config.share,
        tuple(re.compile(p) for p in config.nodes),
    )
