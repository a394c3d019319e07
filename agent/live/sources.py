"""Which collectors run on this node: build them from the config and probe each once.

`enabled: auto` uses a collector when its probe finds something; `true` requires it (the agent
refuses to start without it); `false` turns it off. The estimate fills only the components that no
measuring collector covers, so a component is never counted twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.config.settings import Config
from collectors.base import Clock, Collector, Device, Probe, Status
from collectors.estimate import EstimateCollector
from collectors.nvml.collector import NvmlCollector
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


class SourceMissing(Exception):
    """The node cannot be measured as configured: an `enabled: true` collector cannot be used, or no
    collector works at all. The message is one line for the operator."""


def _disabled(name: str, why: str) -> Source:
    return Source(name, "false", Probe(Status.DISABLED, why), None)


def _probed(name: str, enabled: str, collector: Collector) -> Source:
    probe = collector.probe()
    if not probe.status.usable:
        collector.close()
        return Source(name, enabled, probe, None)
    return Source(name, enabled, probe, collector)


Factory = Callable[[Config, Clock], Collector]


def _rapl(config: Config, clock: Clock) -> Collector:
    return RaplCollector(config.host.sysfs)


def _nvml(config: Config, clock: Clock) -> Collector:
    return NvmlCollector(clock, config.collectors.nvml.reprobe_seconds)


MEASURING: tuple[tuple[str, Factory], ...] = (("rapl", _rapl), ("nvml", _nvml))
"""The measuring collectors, in the order they are probed and shown: (name under `collectors:`, factory)."""


def probe_sources(config: Config, clock: Clock) -> list[Source]:
    """Build and probe every collector the config enables, in a fixed order; the estimate last, for
    whatever the measuring ones leave uncovered."""
    sources: list[Source] = []
    for name, factory in MEASURING:
        enabled = getattr(config.collectors, name).enabled
        if enabled == "false":
            sources.append(_disabled(name, f"disabled by collectors.{name}.enabled: false"))
        else:
            sources.append(_probed(name, enabled, factory(config, clock)))
    measured = {d.component for d in devices(sources)}
    sources.append(_estimate(config, clock, measured))
    return sources


def _estimate(config: Config, clock: Clock, measured: set[str]) -> Source:
    e = config.collectors.estimate
    missing = ESTIMABLE - measured
    if e.enabled == "false":
        return _disabled("estimate", "disabled by collectors.estimate.enabled: false")
    if not missing:
        not_needed = Probe(Status.DISABLED, "not needed: CPU and DRAM are measured")
        return Source("estimate", e.enabled, not_needed, None)
    collector = EstimateCollector(
        config.host.procfs,
        clock,
        components=frozenset(missing),
        tdp_watts=e.cpu_tdp_watts,
        idle_watts=e.cpu_idle_watts,
        idle_fraction=e.cpu_idle_fraction,
        memory_watts_per_gb=e.memory_watts_per_gb,
    )
    return _probed("estimate", e.enabled, collector)


def require(sources: list[Source]) -> list[Collector]:
    """The collectors to sample; raises SourceMissing for the first `enabled: true` collector that
    cannot be used, or when none can."""
    for s in sources:
        # DISABLED here means "not needed": config-disabled sources are never enabled: true
        if s.enabled == "true" and not s.active and s.probe.status is not Status.DISABLED:
            fix = f"; {s.probe.fix}" if s.probe.fix else ""
            raise SourceMissing(
                f"collectors.{s.name}.enabled is true but {s.name} is {s.probe.status.value}: "
                f"{s.probe.reason}{fix}"
            )
    active = [s.collector for s in sources if s.collector is not None and s.active]
    if not active:
        raise SourceMissing("no energy source works on this node; run `greenai doctor` to see why")
    return active


def devices(sources: list[Source]) -> tuple[Device, ...]:
    """Every device of the active sources."""
    return tuple(d for s in sources if s.active for d in s.probe.devices)
