"""What the NVML collector keeps per GPU, shared by its energy side (collector) and its usage side."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from collectors.base import Device, PowerIntegral

SUPERCHIP = re.compile(r"\bG[HB]\d{3}\b")
"""NVML names of superchip modules (`NVIDIA GH200 480GB`, `NVIDIA GB200`): their energy counter and
power reading cover the whole module, Grace CPU and memory included, not the GPU alone."""


def component_of(name: str) -> str:
    """`module` for a superchip's GPU, whose counter contains its Grace CPU and memory; else `gpu`."""
    return "module" if SUPERCHIP.search(name) else "gpu"


@dataclass(frozen=True)
class MigDevice:
    """One MIG device of a GPU: its UUID (the instance's name in GpuUsage) and multiprocessors."""

    uuid: str
    handle: Any
    sms: int


@dataclass
class Gpu:
    """What the collector keeps per GPU between reads; energy in microjoules, power in milliwatts."""

    index: int
    uuid: str
    name: str
    method: str
    handle: Any = None
    """None while the GPU is down (lost or failing), until it is re-opened."""
    reason: str = ""
    retry_at: float = 0.0
    power: PowerIntegral = field(default_factory=PowerIntegral)
    """The integrated energy of a power GPU; a counter GPU keeps its last counter value in it, so that
    the integral continues from there if the counter goes away."""
    util_seen_us: int = 0
    """The newest process utilisation sample's timestamp (NVML's, microseconds): the next query's start."""
    mig: tuple[MigDevice, ...] | None = None
    """The MIG devices, () when MIG is off or unsupported; None until looked up (again)."""
    mig_until: float = 0.0
    unsupported: set[str] = field(default_factory=set)
    """Usage functions this GPU answered not_supported or function_not_found: not called again."""
    max_power_w: float | None = None
    """The most the board may draw: the top of its power limit range, else its enforced limit."""

    @property
    def up(self) -> bool:
        return self.handle is not None

    @property
    def device(self) -> str:
        return f"gpu{self.index}"

    @property
    def component(self) -> str:
        return component_of(self.name)

    def as_device(self) -> Device:
        details = {"uuid": self.uuid, "name": self.name, "index": str(self.index)}
        if self.max_power_w is not None:
            details["max_power_w"] = f"{self.max_power_w:g}"
        if self.component == "module":
            details["contains"] = "GPU, Grace CPU and their memory"
        return Device(
            component=self.component, device=self.device, source="nvml", method=self.method, details=details
        )
