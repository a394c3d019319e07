"""What the amdsmi collector keeps per physical GPU, shared by its energy side and its usage side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collectors.base import Device, PowerIntegral
from collectors.gpu import COUNTER

WRAP_TICKS_32 = 1 << 32
"""Ticks at which a 32-bit energy accumulator wraps (older firmware; the driver's field is 64-bit)."""


@dataclass
class Partition:
    """One processor handle of a GPU: the whole GPU, or one compute partition (MI300X CPX, ...)."""

    handle: Any
    partition_id: int
    bdf: str
    compute_units: int | None = None
    gfx_ns: dict[int, int] = field(default_factory=dict)
    """Each listed process's cumulative gfx engine time in nanoseconds, at `usage_at`."""
    usage_at: float | None = None
    """The clock time of the last process listing; None before the first."""

    @property
    def name(self) -> str:
        """The instance name in GpuUsage of a partitioned GPU."""
        return f"partition{self.partition_id}"


@dataclass
class Gpu:
    """What the collector keeps per physical GPU between reads; energy in microjoules, power in watts.

    `partitions` are its processor handles by partition id; the first (the primary partition, or the
    whole GPU) is the one asked for energy and power, which are the physical GPU's.
    """

    index: int
    partitions: tuple[Partition, ...]
    mode: str = ""
    """The compute partition mode (SPX, DPX, QPX, CPX), "" where amdsmi does not say."""
    uuid: str = ""
    name: str = ""
    method: str = COUNTER
    up: bool = True
    """False while the GPU is down (lost or failing), until it answers again."""
    reason: str = ""
    retry_at: float = 0.0
    power: PowerIntegral = field(default_factory=PowerIntegral)
    """The integrated energy of a power GPU; a counter GPU keeps its last counter value in it, so that
    the integral continues from there if the counter goes away."""
    wide: bool = False
    """The accumulator has been seen above 32 bits: it is a 64-bit counter that never wraps."""
    max_power_w: float | None = None
    unsupported: set[str] = field(default_factory=set)
    """Usage functions this GPU answered not_supported: not called again."""

    @property
    def device(self) -> str:
        return f"gpu{self.index}"

    @property
    def component(self) -> str:
        return "gpu"

    @property
    def primary(self) -> Partition:
        return self.partitions[0]

    @property
    def partitioned(self) -> bool:
        return len(self.partitions) > 1

    def as_device(self) -> Device:
        details = {"uuid": self.uuid, "bdf": self.primary.bdf, "name": self.name, "index": str(self.index)}
        if self.max_power_w is not None:
            details["max_power_w"] = f"{self.max_power_w:g}"
        if self.mode:
            details["partition_mode"] = self.mode
        if self.partitioned:
            details["partitions"] = str(len(self.partitions))
        return Device(
            component=self.component, device=self.device, source="amdsmi", method=self.method, details=details
        )
