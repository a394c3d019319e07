"""The one small interface every power source implements, and the one counter-delta helper.

A collector probes once (what is supported, and if not, why in one line), then reads cumulative
energy counters per device, then closes. It never knows about jobs, Prometheus or the ledger.

Every cumulative counter is differenced by `counter_step` (or `counter_delta`, its plain number),
which decides whether a reading is a move, a wrap, a reset or a failed read; docs/collectors.md
says why each bound is what it is.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Clock = Callable[[], float]
"""A monotonic clock in seconds; tests pass a fake one they step by hand."""

COMPONENTS = ("cpu", "dram", "gpu", "module", "other", "platform", "node", "grace")
"""What a counter measures.

Counted once, and summed into the node's IT energy:
- `cpu`, `dram`, `gpu`: a CPU package, its memory, a GPU board;
- `module`: a superchip module (GH200, GB200), whose one counter contains its GPU, its Grace CPU and
  their memory;
- `other`: derived, never read: the part of the node's wall energy (`node`) that no counted component
  explains (fans, power-supply losses, NICs, disks).

Meters that contain counted components, shown as detail and never added again:
- `platform`: RAPL psys, which contains the package and DRAM;
- `node`: the node's wall power (a BMC over Redfish or IPMI, an ACPI power meter), which contains
  everything; the IT total with it is the counted components plus `other`, which is the wall figure;
- `grace`: the Grace CPU's own sensors (socket, CPU cores, SoC I/O) inside a `module` that is measured.
"""
NOT_IN_TOTAL = frozenset({"platform", "node", "grace"})
"""Components that overlap others, so a total would count them twice."""
GPU_COMPONENTS = frozenset({"gpu", "module"})
"""Components of a GPU device: a GPU board, or a superchip module around one."""
CONTAINS: Mapping[str, str] = {
    "platform": "it includes cpu and dram",
    "node": "the wall meter, which includes every other component",
    "grace": "part of the module",
}
"""What each component outside the total contains, in words, for the notes beside it."""
SOURCES = ("rapl", "nvml", "amdsmi", "hwmon", "redfish", "ipmi", "estimate")


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
    means the counter was reset and must be re-baselined. `max_power_w` is the most the device can
    draw, from its own limits (RAPL's constraints, NVML's power limit); None when it does not say,
    and then `FALLBACK_MAX_POWER_W` of the component bounds it.
    """

    component: str
    device: str
    source: str
    energy_uj: int
    wrap_uj: int | None = None
    max_power_w: float | None = None

    @property
    def bound_w(self) -> float | None:
        """The power that bounds this counter's deltas, before the margin: its own, else its component's."""
        if self.max_power_w is not None and self.max_power_w > 0:
            return self.max_power_w
        return FALLBACK_MAX_POWER_W.get(self.component)


@dataclass(frozen=True)
class Reading:
    """What one `read()` returned: the counters it could read, why the others failed, and which.

    `down` names the (component, device) of each device that could not be read this time, so that
    one lost GPU shows on `greenai_device_up` while its collector stays up.
    """

    counters: tuple[Counter, ...]
    errors: tuple[str, ...] = ()
    down: tuple[tuple[str, str], ...] = ()


class VendorError(Exception):
    """A call into a vendor library (NVML, AMD SMI) failed: `reason` is a snake_case label for
    metrics, `code` the library's own status code when it gave one."""

    def __init__(self, reason: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code


def vendor_call(
    library: Any,
    function: str,
    args: tuple[Any, ...],
    failure: type[Exception],
    translate: Callable[[Exception], VendorError],
    missing: Callable[[str], VendorError],
) -> Any:
    """Call `library.function(*args)`: the library's `failure` becomes `translate(e)`, a function the
    bindings lack (older than it) becomes `missing(function)`; the one place a vendor call is made."""
    call = getattr(library, function, None)
    if call is None:
        raise missing(function)
    try:
        return call(*args)
    except failure as e:
        raise translate(e) from e


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


MARGIN = 2.0
"""How far above its maximum power a device may seem to draw before a delta is rejected.

The maximum is a limit the hardware reports (a TDP-like constraint, a power cap), not physics: RAPL
lets a package exceed its long-term limit for seconds, and the sampler's clock and the counter's own
update are not read at the same instant, so a short interval can hold a little more than its share.
Twice the maximum keeps every real reading and still rejects the gigawatts of a bad one.
"""

FALLBACK_MAX_POWER_W: Mapping[str, float] = {
    "cpu": 1000.0,
    "dram": 500.0,
    "gpu": 2000.0,
    "module": 3000.0,
    "platform": 3000.0,
    "grace": 1000.0,
    "node": 30000.0,
}
"""Bounds for devices that report no limit: above what any one such device draws today (a CPU
package, a socket's DRAM, a GPU board, a superchip module, a whole platform, a Grace socket, a whole
node with eight GPUs and its power supplies)."""

CEILING_S = 10 * 365 * 24 * 3600.0
"""A counter that never wraps cannot have counted for longer than this at its maximum power: any
value above that is a failed read (NVML's counter has no range of its own)."""


class Outcome(enum.Enum):
    """What a new reading of a cumulative counter means."""

    MOVED = "moved"
    """Forward (or still) by a plausible amount: the delta is booked."""
    WRAPPED = "wrapped"
    """Lower than before, and the wrapped delta is plausible: booked."""
    RESET = "counter_reset"
    """Lower than before and not a plausible wrap: nothing booked, the reading is the new baseline."""
    IMPLAUSIBLE = "counter_implausible"
    """Forward by more than the device can draw in the interval: nothing booked, new baseline."""
    OUT_OF_RANGE = "counter_out_of_range"
    """Above the counter's range, or negative: a failed read; nothing booked, the old baseline kept."""


@dataclass(frozen=True)
class Step:
    """One reading judged against the previous one: what to book, and what happened."""

    delta: int
    outcome: Outcome

    @property
    def reason(self) -> str | None:
        """The error reason to count for this step (`greenai_collector_errors`), None when all is well."""
        return None if self.outcome in (Outcome.MOVED, Outcome.WRAPPED) else self.outcome.value

    @property
    def rebaseline(self) -> bool:
        """Whether the new reading becomes the baseline; a failed read leaves the old one."""
        return self.outcome is not Outcome.OUT_OF_RANGE


def max_delta(max_power_w: float | None, seconds: float) -> int | None:
    """The largest plausible increase in microjoules of a device that draws at most `max_power_w`
    for `seconds`, margin included; None when unbounded."""
    if max_power_w is None:
        return None
    return int(max_power_w * MARGIN * max(0.0, seconds) * 1e6)


def ceiling(max_power_w: float | None) -> int | None:
    """The highest plausible value, in microjoules, of a counter that never wraps; None: unbounded."""
    return max_delta(max_power_w, CEILING_S)


def counter_step(
    previous: int,
    current: int,
    wrap: int | None = None,
    most: int | None = None,
    top: int | None = None,
) -> Step:
    """Judge `current` against `previous` of a cumulative counter: the one helper for every counter.

    `wrap` is the value at which the counter wraps to zero (None: it never wraps); `most` the largest
    plausible increase over the interval (`max_delta`; None: unbounded); `top` the highest plausible
    value of a counter that never wraps (`ceiling`). A reading above the range is a failed read. A
    lower reading is a wrap only when the wrapped delta is plausible, else a reset: a counter read
    more often than it takes to count through its range can only have wrapped once, and a driver
    reload or a reset lands anywhere. A forward move of more than `most` is rejected.
    """
    limit = wrap if wrap is not None else top
    if current < 0 or (limit is not None and current > limit):
        return Step(0, Outcome.OUT_OF_RANGE)
    if current >= previous:
        delta = current - previous
        if most is not None and delta > most:
            return Step(0, Outcome.IMPLAUSIBLE)
        return Step(delta, Outcome.MOVED)
    if wrap is not None and wrap >= previous:  # a counter at its very top wraps too
        delta = wrap - previous + current
        if most is None or delta <= most:
            return Step(delta, Outcome.WRAPPED)
    return Step(0, Outcome.RESET)


def counter_delta(previous: int, current: int, wrap: int | None, most: int | None = None) -> int:
    """Increase of a cumulative counter between two reads, never negative: `counter_step`'s delta.

    For counters whose readings need no other verdict (CPU time: a lower value is a reset, never a wrap).
    """
    if wrap is None and most is None and 0 <= previous <= current:  # the usual case, once per job per sample
        return current - previous
    return counter_step(previous, current, wrap, most).delta


@dataclass
class PowerIntegral:
    """A cumulative energy counter, in microjoules, made from power samples: the trapezoid between
    consecutive samples on the caller's clock, and never across a gap (`forget`)."""

    energy_uj: float = 0.0
    """The counter; a device whose hardware counter went away continues from its last value."""
    last: tuple[float, float] | None = None
    """(clock seconds, microwatts) of the last sample; None after a gap: nothing to integrate from."""

    def add(self, now: float, power_uw: float) -> int:
        """Integrate up to `now`, where the power is `power_uw`; returns the counter."""
        if self.last is not None and now > self.last[0]:
            then, before_uw = self.last
            self.energy_uj += (before_uw + power_uw) / 2 * (now - then)  # uW x s = uJ
        self.last = (now, power_uw)
        return int(self.energy_uj)

    def forget(self) -> None:
        """The power since the last sample is unknown (a failed read): the next one starts afresh."""
        self.last = None


OUTAGE = "_outage"
"""Suffix of the source label of energy that a counter counted while it could not be read."""


def outage_source(source: str) -> str | None:
    """The source label for energy counted during an outage of a `source` counter; None for the
    estimate, which models any gap from its next reading and has nothing measured to set apart."""
    return None if source == "estimate" else source + OUTAGE


def is_outage(source: str) -> bool:
    """Whether energy of this source label was counted during an outage (no job can be charged)."""
    return source.endswith(OUTAGE)
