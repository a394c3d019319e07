"""The one small interface every power source implements, and the wrap-safe delta helper.

A collector probes once (what is supported, and if not, why in one line), then reads cumulative
energy counters per device, then closes. It never knows about jobs, Prometheus or the ledger.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

Clock = Callable[[], float]
"""A monotonic clock in seconds; tests pass a fake one they step by hand."""

COMPONENTS = ("cpu", "dram", "gpu", "platform")
NOT_IN_TOTAL = frozenset({"platform"})
"""Components that overlap others (psys includes package and dram), so a total would count them twice."""
SOURCES = ("rapl", "nvml", "estimate")


class Status(enum.Enum):
    """What a probe found."""

    OK = "found"
    ESTIMATE = "estimate"
    NOT_FOUND = "not found"
    PERMISSION_DENIED = "permission denied"
    ERROR = "error"
    DISABLED = "disabled"

    @property
    def usable(self) -> bool:
        return self in (Status.OK, Status.ESTIMATE)


@dataclass(frozen=True)
class Device:
    """One device a collector measures, as shown by `greenai doctor` and `greenai_device_info`."""

    component: str
    device: str
    source: str
    method: str
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """The outcome of probing a collector: status, a one-line reason and, for problems, the fix."""

    status: Status
    reason: str
    fix: str = ""
    devices: tuple[Device, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Counter:
    """A cumulative energy counter of one device, in microjoules.

    `wrap_uj` is the value at which the hardware counter wraps to zero (RAPL's
    `max_energy_range_uj`); None for counters that never wrap, where a value lower than the last one
    means the counter was reset and must be re-baselined.
    """

    component: str
    device: str
    source: str
    energy_uj: int
    wrap_uj: int | None = None


@dataclass(frozen=True)
class Reading:
    """What one `read()` returned: the counters it could read, and why the others failed."""

    counters: tuple[Counter, ...]
    errors: tuple[str, ...] = ()


class CollectorError(Exception):
    """The whole collector failed this call; `reason` is a short snake_case label for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Collector(Protocol):
    """A power or energy source."""

    name: str

    def probe(self) -> Probe:
        """Find out what is supported; called once before any read."""
        ...

    def read(self) -> Reading:
        """Read cumulative counters; raises CollectorError when nothing could be read."""
        ...

    def close(self) -> None:
        """Release what probe acquired."""
        ...


def counter_delta(previous: int, current: int, wrap: int | None) -> int:
    """Increase of a cumulative counter between two reads, never negative.

    A counter lower than before has wrapped when its wrap range is known (it can only have wrapped
    once if it is read more often than it takes to count through its whole range); otherwise it was
    reset (driver reload, GPU reset) and the new value is the new baseline, so the delta is zero
    rather than a negative value or a spike.
    """
    if current >= previous:
        return current - previous
    if wrap is not None and wrap > previous:
        return wrap - previous + current
    return 0
