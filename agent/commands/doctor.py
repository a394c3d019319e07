"""`greenai doctor`: what each collector found on this node, its devices, how its energy is priced in
CO2e (the `carbon:` section: each site's location, intensity and its source, hourly series, PUE,
contracts), and what to do about problems."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from agent.carbon.data import CodecarbonData, UnknownLocation
from agent.carbon.datafiles import CarbonDataError
from agent.carbon.model import CarbonModel, Site, build_site, location_key, site_configs
from agent.config.settings import Config
from agent.live.sources import Source, probe_sources
from agent.units import json_text
from collectors.base import Probe, Status
from collectors.jobs.cgroups import JobDiscovery
from collectors.jobs.slurm import SlurmMetadata


def diagnose(config: Config) -> list[Source]:
    """Probe every collector as the agent would, then release them."""
    sources = probe_sources(config, time.monotonic)
    for s in sources:
        if s.collector is not None:
            s.collector.close()
    return sources


def job_checks(config: Config) -> list[tuple[str, Probe]]:
    """What per-job accounting will find: job cgroups, Slurm names, and whether the ledger is writable."""
    discovery = JobDiscovery(config.host.procfs, config.host.cgroupfs, config.node_name)
    try:
        checks = [("jobs", discovery.probe())]
    finally:
        discovery.close()
    if config.slurm.scontrol:
        slurm = SlurmMetadata(config.slurm.scontrol, config.slurm.refresh_seconds)
        checks.append(("slurm", slurm.probe()))
        slurm.close()
    checks.append(("ledger", _ledger_probe(config.ledger.path)))
    return checks


def _ledger_probe(path: Path) -> Probe:
    # os.path.exists, unlike Path.exists, says False where a parent cannot be searched
    existing = next((p for p in (path, *path.parents) if os.path.exists(p)), Path("/"))
    if not os.access(existing, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return Probe(
            Status.PERMISSION_DENIED,
            f"{path}: {existing} is not writable by this user",
            fix="run the agent as root, or set ledger.path to a writable place",
        )
    state = "exists" if os.path.exists(path) else "will be created by the agent"
    return Probe(Status.OK, f"{path} ({state})")


def summary(sources: list[Source]) -> str:
    """One line: is the node measured, estimated, or neither, and why."""
    active = [s for s in sources if s.active]
    measured = [s.name for s in active if s.probe.status is Status.OK]
    estimated = [d.component for s in active if s.probe.status is Status.ESTIMATE for d in s.probe.devices]
    missing = "; ".join(
        f"{s.name}: {s.probe.status.value}"
        for s in sources
        if s.name != "estimate" and s.probe.status not in (Status.OK, Status.DISABLED)
    )
    if not active:
        return "no energy source works on this node; fix one of the problems above"
    if estimated and not measured:
        return (
            f"ESTIMATING {', '.join(estimated)}: no measured source on this node ({missing}); "
            'every figure is labelled source="estimate"'
        )
    text = f"measuring with {', '.join(measured)}"
    if estimated:
        text += f"; estimating {', '.join(estimated)} (no measured source for it)"
    components = {d.component: d.source for s in active for d in s.probe.devices}
    if "module" in components:
        text += "; superchip modules counted once, their Grace sensors shown as detail"
    if "node" in components:
        text += (
            f"; wall power from {components['node']}: what no counter explains is `other`, "
            "split per attribution.other_policy"
        )
    return text


@dataclass(frozen=True)
class SiteCheck:
    """One configured site: resolved and loaded, or the problem that stopped it."""

    name: str
    configured: str | None
    """The location as written in the config; None when none is."""
    site: Site | None
    place: str = ""
    problem: str = ""
    nearest: tuple[str, ...] = ()


@dataclass(frozen=True)
class CarbonCheck:
    """What the `carbon:` section makes of this node's energy."""

    sites: list[SiteCheck]
    node_site: str = ""
    """The site this node's energy is priced at, and why: `main (matches gpu-.*)`."""
    warnings: list[str] = field(default_factory=list)
    problem: str = ""
    """A problem with the carbon data itself (codecarbon missing), before any site."""
    year: int = 0
    year_span: tuple[int, int] = (0, 0)

    @property
    def ok(self) -> bool:
        return not self.problem and not any(s.problem for s in self.sites)


def carbon_check(config: Config, now: float) -> CarbonCheck:
    """Resolve every site as the agent would, without stopping at the first problem."""
    year = datetime.fromtimestamp(now, timezone.utc).year
    span = (_year_start(year), _year_start(year + 1))
    try:
        data = CodecarbonData()
    except CarbonDataError as e:
        return CarbonCheck([], problem=str(e), year=year, year_span=span)
    checks = []
    for name, sc in site_configs(config.carbon).items():
        try:
            site = build_site(name, sc, data, location_key(config.carbon, name))
        except UnknownLocation as e:
            checks.append(SiteCheck(name, sc.location, None, problem=str(e), nearest=e.nearest))
            continue
        except CarbonDataError as e:
            checks.append(SiteCheck(name, sc.location, None, problem=str(e)))
            continue
        place = data.place_name(sc.location) if sc.location is not None else "world average"
        checks.append(SiteCheck(name, sc.location, site, place))
    if any(c.problem for c in checks):
        return CarbonCheck(checks, year=year, year_span=span)
    model = CarbonModel.from_config(config.carbon, data, warn=lambda _: None)
    node_site = _node_site(model, config.carbon.default_site, config.node_name)
    return CarbonCheck(checks, node_site, list(model.warnings), year=year, year_span=span)


def _node_site(model: CarbonModel, default_site: str | None, node: str) -> str:
    """`main (matches gpu-.*)`; "" when the node falls to the unassigned site (a warning says so)."""
    site = model.site_for(node)
    pattern = next((p.pattern for p in site.nodes if p.fullmatch(node)), None)
    if pattern is not None:
        return f"{site.name} (matches {pattern})"
    if all(s is not site for s in model.sites):
        return ""
    why = "carbon.default_site" if default_site is not None else "the only site"
    return f"{site.name} ({why})"


def _year_start(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=timezone.utc).timestamp())


def site_facts(site: Site, check: CarbonCheck) -> dict[str, Any]:
    """A loaded site's figures, JSON-ready: intensity and its citation, hourly series, PUE, contracts."""
    annual = site.annual
    hourly = None
    if site.hourly is not None:
        hourly = {
            "path": site.hourly.path,
            "hours": len(site.hourly.hours),
            "years": list(site.hourly.years),
            "basis": site.hourly.basis,
            "current_year": check.year,
            "current_year_coverage": site.hourly.coverage(*check.year_span),
            "citation": site.hourly.provenance(site.name).cite(),
        }
    return {
        "location": annual.provenance.location,
        "fallback": annual.provenance.fallback,
        "g_per_kwh": annual.g_per_kwh,
        "grid_cfe_pct": annual.grid_cfe_share * 100 if annual.grid_cfe_share is not None else None,
        "citation": annual.provenance.cite(),
        "provenance": asdict(annual.provenance),
        "hourly": hourly,
        "pue": {"min": min(site.pue), "max": max(site.pue), "monthly": list(site.pue)},
        "cfe_contract_pct": site.cfe_contract_share * 100,
        "supplier_g_per_kwh": site.supplier_g_per_kwh,
        "nodes": [p.pattern for p in site.nodes],
    }


def carbon_json(check: CarbonCheck) -> dict[str, Any]:
    """The carbon check as a JSON-ready dict."""
    return {
        "ok": check.ok,
        "problem": check.problem,
        "node_site": check.node_site or None,
        "warnings": check.warnings,
        "sites": [
            {
                "name": c.name,
                "configured_location": c.configured,
                "place": c.place,
                "problem": c.problem,
                "nearest": list(c.nearest),
                **(site_facts(c.site, check) if c.site is not None else {}),
            }
            for c in check.sites
        ],
    }


def print_carbon(check: CarbonCheck, node_name: str, out: TextIO) -> None:
    """The carbon section of the report: one block per site, then this node's site and any warning."""
    pad = " " * 29
    if check.problem:
        out.write(f"{'carbon':<9} {'error':<18} {check.problem}\n")
    for c in check.sites:
        if c.site is None:
            status = "unknown location" if c.nearest or "location" in c.problem else "error"
            out.write(f"{'carbon':<9} {status:<18} site {c.name}: {c.problem}\n")
            if c.nearest:
                out.write(
                    f"{pad}to fix: use one of {', '.join(c.nearest)}, or another form in docs/carbon.md\n"
                )
            continue
        f = site_facts(c.site, check)
        status = "fallback" if f["fallback"] else "ok"
        grid = f", grid {f['grid_cfe_pct']:.0f}% low-carbon" if f["grid_cfe_pct"] is not None else ""
        out.write(
            f"{'carbon':<9} {status:<18} site {c.name}: {_where(c, f['location'])}: "
            f"{f['g_per_kwh']:.4g} gCO2e/kWh (annual average){grid}\n"
        )
        out.write(f"{pad}source: {f['citation']}\n")
        out.write(f"{pad}hourly: {_hourly_text(f['hourly'])}\n")
        pue = f["pue"]
        pue_text = (
            f"{pue['min']:g}" if pue["min"] == pue["max"] else f"{pue['min']:g} to {pue['max']:g} by month"
        )
        supplier = f["supplier_g_per_kwh"]
        supplier_text = (
            f"{supplier:g} g/kWh" if supplier is not None else "none (the grid's figure prices the rest)"
        )
        contracts = f"CFE contracts {f['cfe_contract_pct']:g}%; supplier factor {supplier_text}"
        out.write(f"{pad}PUE {pue_text}; {contracts}\n")
        out.write(f"{pad}nodes: {', '.join(f['nodes']) or 'no patterns'}\n")
    if check.node_site:
        out.write(f"{'carbon':<9} {'ok':<18} this node ({node_name}) is priced at site {check.node_site}\n")
    for warning in check.warnings:
        out.write(f"{'carbon':<9} {'warning':<18} {warning}\n")


def _where(check: SiteCheck, code: str) -> str:
    """`FR -> FRA (France)`, `gcp:europe-west1 (Google Cloud europe-west1 (Belgium))`."""
    if check.configured is None:
        return "no location set (world average)"
    shown = check.configured if check.configured.upper() == code.upper() else f"{check.configured} -> {code}"
    return f"{shown} = {check.place}"


def _hourly_text(hourly: dict[str, Any] | None) -> str:
    if hourly is None:
        return "none: the annual figure prices every hour"
    years = ", ".join(map(str, hourly["years"])) or "no hours"
    return (
        f"{hourly['path']}, {hourly['hours']} hours ({years}); covers "
        f"{hourly['current_year_coverage'] * 100:.0f}% of {hourly['current_year']} "
        "(other hours: the annual figure)"
    )


def print_report(
    sources: list[Source],
    checks: list[tuple[str, Probe]],
    node_name: str,
    out: TextIO,
    carbon: CarbonCheck | None = None,
) -> None:
    """The human-readable report: energy sources, per-job accounting, carbon, then the verdict."""
    out.write(f"greenai doctor on node {node_name}\n\n")
    for s in sources:
        _line(out, s.name, s.probe)
        for d in s.probe.devices:
            details = ", ".join(f"{k}={v}" for k, v in d.details.items())
            out.write(f"{'':<29}device {d.component}/{d.device} via {d.method}: {details}\n")
        for note in s.probe.notes:
            out.write(f"{'':<29}note: {note}\n")
        if s.probe.fix:
            out.write(f"{'':<29}to fix: {s.probe.fix}\n")
    out.write("\n")
    for name, probe in checks:
        _line(out, name, probe)
        if probe.fix:
            out.write(f"{'':<29}to fix: {probe.fix}\n")
    verdict = summary(sources)
    if carbon is not None:
        out.write("\n")
        print_carbon(carbon, node_name, out)
        if not carbon.ok:
            verdict += "; carbon: fix the problems above"
    out.write(f"\nresult: {verdict}\n")


def _line(out: TextIO, name: str, probe: Probe) -> None:
    out.write(f"{name:<9} {probe.status.value:<18} {probe.reason}\n")


def as_json(sources: list[Source], node_name: str) -> dict[str, Any]:
    """The same report as a JSON-ready dict."""
    return {
        "node": node_name,
        "summary": summary(sources),
        "collectors": [
            {
                "name": s.name,
                "status": s.probe.status.value,
                "active": s.active,
                "reason": s.probe.reason,
                "fix": s.probe.fix,
                "notes": list(s.probe.notes),
                "devices": [
                    {
                        "component": d.component,
                        "device": d.device,
                        "source": d.source,
                        "method": d.method,
                        **dict(d.details),
                    }
                    for d in s.probe.devices
                ],
            }
            for s in sources
        ],
    }


def run(
    config: Config, out: TextIO, as_json_output: bool = False, clock: Callable[[], float] = time.time
) -> int:
    """Print the report; 0 when at least one source, measured or estimated, works and every carbon
    site resolves (an unknown location or a bad intensity CSV: 1)."""
    sources = diagnose(config)
    checks = job_checks(config)
    carbon = carbon_check(config, clock())
    if as_json_output:
        report = as_json(sources, config.node_name)
        report["jobs"] = [
            {"name": name, "status": p.status.value, "reason": p.reason, "fix": p.fix} for name, p in checks
        ]
        report["carbon"] = carbon_json(carbon)
        out.write(json_text(report, indent=2) + "\n")
    else:
        print_report(sources, checks, config.node_name, out, carbon)
    return 0 if any(s.active for s in sources) and carbon.ok else 1
