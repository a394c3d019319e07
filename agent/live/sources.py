"""Which collectors run on this node: build them from the config and probe each once.

`enabled: auto` uses a collector when its probe finds something; `true` requires it (the agent
refuses to start without it); `false` turns it off. The estimate fills only the components that no
measuring collector covers, so a component is never counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.config.settings import Config
from agent.live.accounting import GpuUsageSource
from collectors.amdsmi.collector import AmdSmiCollector
from collectors.base import Clock, Collector, Device, Probe, Status
from collectors.bmc import BmcCollector
from collectors.estimate import EstimateCollector
from collectors.hwmon import HwmonCollector
from collectors.nvml.collector import NvmlCollector
from collectors.rapl import RaplCollector
from collectors.workloads import GpuUsage

ESTIMABLE = frozenset({"cpu", "dram"})
COVERS = {"module": frozenset({"cpu", "dram", "gpu"})}
"""What a measured component also covers: a superchip module's counter contains its Grace CPU and
memory, so neither is estimated on top of it."""


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


Factory = Callable[[Config, Clock, Sequence[Source]], "Collector | Probe"]
"""Builds a collector from the config and the sources probed before it; a Probe when there is
nothing to build (its reason says why)."""


def _rapl(config: Config, clock: Clock, before: Sequence[Source]) -> Collector:
    return RaplCollector(config.host.sysfs)


def _nvml(config: Config, clock: Clock, before: Sequence[Source]) -> Collector:
    return NvmlCollector(clock, config.collectors.nvml.reprobe_seconds)


def _amdsmi(config: Config, clock: Clock, before: Sequence[Source]) -> Collector:
    # Device labels go on after NVIDIA's, so that a node with both vendors has no two `gpu0`.
    nvidia = sum(1 for d in devices(before) if d.source == "nvml")
    return AmdSmiCollector(clock, config.collectors.amdsmi.reprobe_seconds, index_offset=nvidia)


def _hwmon(config: Config, clock: Clock, before: Sequence[Source]) -> Collector:
    measured = devices(before)
    return HwmonCollector(
        config.host.sysfs,
        config.host.procfs,
        clock,
        amdgpu=not any(d.source == "amdsmi" for d in measured),
        module_elsewhere=any(d.component == "module" for d in measured),
    )


def _bmc(config: Config, clock: Clock, before: Sequence[Source]) -> Collector | Probe:
    b = config.collectors.bmc
    if not b.url:
        return Probe(
            Status.NOT_FOUND if b.enabled == "true" else Status.DISABLED,
            "no BMC configured (collectors.bmc.url is empty)",
            fix="set collectors.bmc.url, username and password_file to read the node's wall power",
        )
    return BmcCollector(
        b.url.replace("{node_name}", config.node_name),
        clock,
        username=b.username,
        password_file=b.password_file,
        verify_tls=b.verify_tls,
        interval_seconds=b.interval_seconds,
        timeout_seconds=b.timeout_seconds,
    )


MEASURING: tuple[tuple[str, Factory], ...] = (
    ("rapl", _rapl),
    ("nvml", _nvml),
    ("amdsmi", _amdsmi),
    ("hwmon", _hwmon),
    ("bmc", _bmc),
)
"""The measuring collectors, in the order they are probed and shown: (name under `collectors:`, factory).
A factory sees the sources probed before it: amdsmi numbers its GPUs after NVIDIA's, and hwmon leaves
AMD GPUs to amdsmi and a superchip module to NVML."""


def probe_sources(config: Config, clock: Clock) -> list[Source]:
    """Build and probe every collector the config enables, in a fixed order; the estimate last, for
    whatever the measuring ones leave uncovered."""
    sources: list[Source] = []
    for name, factory in MEASURING:
        enabled = getattr(config.collectors, name).enabled
        if enabled == "false":
            sources.append(_disabled(name, f"disabled by collectors.{name}.enabled: false"))
            continue
        built = factory(config, clock, sources)
        if isinstance(built, Probe):
            sources.append(Source(name, enabled, built, None))
        else:
            sources.append(_probed(name, enabled, built))
    measured = {c for d in devices(sources) for c in (d.component, *COVERS.get(d.component, ()))}
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


def devices(sources: Sequence[Source]) -> tuple[Device, ...]:
    """Every device of the active sources."""
    return tuple(d for s in sources if s.active for d in s.probe.devices)


class GpuUsages:
    """The processes on every GPU of the node, from each collector that lists them, as one source."""

    def __init__(self, readers: Sequence[GpuUsageSource]) -> None:
        self._readers = tuple(readers)
        self.usage_errors: tuple[str, ...] = ()

    def gpu_usage(self) -> tuple[GpuUsage, ...]:
        usages: list[GpuUsage] = []
        errors: list[str] = []
        for reader in self._readers:
            usages += reader.gpu_usage()
            errors += reader.usage_errors
        self.usage_errors = tuple(errors)
        return tuple(usages)


def gpu_usages(sources: Sequence[Source]) -> GpuUsages | None:
    """The active collectors' GPU process lists as one source; None when no collector lists any."""
    readers = [
        s.collector
        for s in sources
        if s.active and isinstance(s.collector, (NvmlCollector, AmdSmiCollector, HwmonCollector))
    ]
    return GpuUsages(readers) if readers else None
