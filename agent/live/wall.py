"""The node's `other` energy: what its wall meter saw that no counted component explains.

A wall meter (`node`: a BMC over Redfish or IPMI, an ACPI power meter) sees fans, power-supply
losses, NICs and disks, which no CPU, DRAM or GPU counter does. Each interval, `other` is the wall
energy less the counted components. The meter and the counters are not read at the same instant (a
BMC is polled every few seconds, its reading held in between), so one interval's difference can be
negative and the next one's too large; the difference is therefore taken on running sums, and a
shortfall is carried until the meter catches up:

    other_n = max(0, (wall_1 + ... + wall_n) - (counted_1 + ... + counted_n) - (other_1 + ... + other_(n-1)))

Over any stretch where the wall meter is at least the counted sum, `other` adds up to exactly the
difference, so the node's IT total (counted + other) equals its wall energy. Intervals in which the
meter gave no reading (down, or energy counted during its outage) add to neither sum: for them the IT
total is the counted components alone. Only one meter source is used, so two meters of the same node
(a BMC and an ACPI meter) are never added together; the others stay detail.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.live.snapshot import Key
from collectors.base import NOT_IN_TOTAL

NODE = "node"
OTHER = "other"
METER_PREFERENCE = ("redfish", "ipmi", "hwmon")
"""Which meter `other` is taken from when a node has several: the BMC first, then the ACPI meter."""


def meter_source(sources: set[str]) -> str | None:
    """The source of the wall meter to derive `other` from, of those that measure `node`; None: none."""
    for source in METER_PREFERENCE:
        if source in sources:
            return source
    return min(sources) if sources else None


class Remainder:
    """Keeps the running sums and turns each interval's energy into its `other` energy."""

    def __init__(self, source: str) -> None:
        """`source`: the wall meter's source label (`redfish`, `ipmi`, `hwmon`)."""
        self.source = source
        self.key: Key = (OTHER, NODE, source)
        self._wall_j = 0.0
        self._counted_j = 0.0
        self._other_j = 0.0

    @property
    def shortfall_j(self) -> float:
        """How far the counted components are ahead of the wall meter, in joules; 0 when they are not."""
        return max(0.0, self._counted_j + self._other_j - self._wall_j)

    def other_j(self, interval_j: Mapping[Key, float]) -> float | None:
        """The interval's `other` energy in joules; None when the meter gave no reading in it."""
        wall = [j for (c, _, s), j in interval_j.items() if c == NODE and s == self.source]
        if not wall:
            return None
        self._wall_j += sum(wall)
        self._counted_j += sum(
            j for (c, _, _), j in interval_j.items() if c not in NOT_IN_TOTAL and c != OTHER
        )
        other = max(0.0, self._wall_j - self._counted_j - self._other_j)
        self._other_j += other
        return other
