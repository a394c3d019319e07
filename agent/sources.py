"""Which collectors run on this node: build them from the config and probe each once.

`enabled: auto` uses a collector when its probe finds something; `true` requires it (the agent
refuses to start without it); `false` turns it off. The estimate fills only the components that no
measuring collector covers, so a component is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import Config
from collectors.base import Clock, Collector, Device, Probe, Status
from collectors.estimate import EstimateCollector
from collectors.nvml import NvmlCollector
from collectors.rapl import RaplCollector

ESTIMABLE = frozenset({"cpu", "dram"})


@dataclass(frozen=True)
class Source:
    """A configured collector and what its probe found."""

    name: str
    enabled: str
    probe: Probe
    collector: Collector | None

    @property
    def active(self) -> bool:
        return self.collector is not None and self.probe.status.usable


class RequiredSourceMissing(Exception):
    """A collector set to `enabled: true` cannot be used on this node."""


def _disabled(name: str, why: str) -> Source:
    return Source(name, "false", Probe(Status.DISABLED, why), None)


def _probed(name: str, enabled: str, collector: Collector) -> Source:
    probe = collector.probe()
    if not probe.status.usable:
        collector.close()
        return Source(name, enabled, probe, None)
    return Source(name, enabled, probe, collector)


def probe_sources(config: Config, clock: Clock) -> list[Source]:
    """Build and probe every collector the config enables, in a fixed order."""
    c = config.collectors
    sources: list[Source] = []
    if c.rapl.enabled == "false":
        sources.append(_disabled("rapl", "disabled by collectors.rapl.enabled: false"))
    else:
        sources.append(_probed("rapl", c.rapl.enabled, RaplCollector(config.host.sysfs)))
    if c.nvml.enabled == "false":
        sources.append(_disabled("nvml", "disabled by collectors.nvml.enabled: false"))
    else:
        sources.append(_probed("nvml", c.nvml.enabled, NvmlCollector(clock, c.nvml.reprobe_seconds)))

    measured = {d.component for s in sources if s.active for d in s.probe.devices}
    missing = ESTIMABLE - measured
    e = c.estimate
    if e.enabled == "false":
        sources.append(_disabled("estimate", "disabled by collectors.estimate.enabled: false"))
    elif not missing:
        sources.append(
            Source(
                "estimate", e.enabled, Probe(Status.DISABLED, "not needed: CPU and DRAM are measured"), None
            )
        )
    else:
        collector = EstimateCollector(
            config.host.procfs,
            clock,
            components=frozenset(missing),
            tdp_watts=e.cpu_tdp_watts,
            idle_watts=e.cpu_idle_watts,
            idle_fraction=e.cpu_idle_fraction,
            memory_watts_per_gb=e.memory_watts_per_gb,
        )
        sources.append(_probed("estimate", e.enabled, collector))
    return sources


def require(sources: list[Source]) -> None:
    """Raise RequiredSourceMissing for the first `enabled: true` collector that cannot be used."""
    for s in sources:
        # DISABLED here means "not needed": config-disabled sources are never enabled: true
        if s.enabled == "true" and not s.active and s.probe.status is not Status.DISABLED:
            fix = f"; {s.probe.fix}" if s.probe.fix else ""
            raise RequiredSourceMissing(
                f"collectors.{s.name}.enabled is true but {s.name} is {s.probe.status.value}: "
                f"{s.probe.reason}{fix}"
            )


def devices(sources: list[Source]) -> tuple[Device, ...]:
    """Every device of the active sources."""
    return tuple(d for s in sources if s.active for d in s.probe.devices)
