"""Which chassis holds the node's power, and which property of which resource to poll for it.

The rule needs no configuration and follows links only (`@odata.id`), never assumed ids:

1. From the service root, the Chassis collection; each member's Chassis document.
2. Node chassis: those whose `ChassisType` is a whole machine (RackMount, StandAlone, Tower, Desktop,
   Blade, Sled). Sub-parts (Module, Card, Component, Drawer ...) hold part of a node's power, and
   shared ones (Enclosure, Rack, Shelf, a power shelf without a type) hold several nodes': neither
   is this node's wall power.
3. Of the node chassis, those contained (`Links.ContainedBy`) in no other node chassis come first,
   then the collection's order; the first with a power reading is read, and only that one, so
   `node` is always one meter. The others are named in the probe's notes.
4. Within it, in order: EnvironmentMetrics `PowerWatts`; the deprecated Power resource's first
   `PowerControl` entry with `PowerConsumedWatts`, else with `PowerMetrics.AverageConsumedWatts`;
   then, when no power reading exists, the EnvironmentMetrics energy meter `EnergyJoules`, else
   `EnergykWh` (coarse: see track.py).
5. The most it can draw: PowerSubsystem `CapacityWatts` (its power supplies' capacity), else the
   PowerControl's `PowerCapacityWatts`, else the power limit's maximum (`PowerLimitWatts.AllowableMax`,
   `PowerLimit.LimitInWatts`); None when none is published.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collectors.bmc.client import RedfishError

NODE_TYPES = ("RackMount", "StandAlone", "Tower", "Desktop", "Blade", "Sled")
MAX_CHASSIS = 64
"""Chassis documents read at most: a BMC with more is a rack or enclosure manager, not a node's."""

Key = tuple[str | int, ...]
Get = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class PowerSource:
    """What to poll: the resource's path and the property holding watts (POWER) or an energy meter."""

    path: str
    keys: Key
    kind: str
    """"power" (watts, integrated step-hold) or "energy" (a meter, joules after `scale`)."""
    scale: float = 1.0
    """Joules per unit of an energy meter: 1 for EnergyJoules, 3.6e6 for EnergykWh."""

    @property
    def property(self) -> str:
        """The property as a path, e.g. PowerControl/0/PowerConsumedWatts."""
        return "/".join(str(k) for k in self.keys)

    def read(self, document: dict[str, Any]) -> float:
        """The reading in watts (power) or joules (energy); raises RedfishError when it is missing."""
        value = number(dig(document, self.keys))
        if value is None:
            raise RedfishError("bad_document", f"GET {self.path}: no number in {self.property}")
        return value * self.scale


@dataclass(frozen=True)
class NodeChassis:
    """The chassis read as the node's meter, how, and what else was seen."""

    id: str
    path: str
    type: str
    model: str
    source: PowerSource
    max_power_w: float | None
    max_power_from: str


def number(value: object) -> float | None:
    """A finite, non-negative JSON number; None for null, text, booleans and the rest."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def dig(document: object, keys: Key) -> object:
    """The value at `keys` inside nested objects and arrays, or None."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(document, list) or key >= len(document):
                return None
            document = document[key]
        elif isinstance(document, dict):
            document = document.get(key)
        else:
            return None
    return document


def link(document: dict[str, Any], *keys: str | int) -> str | None:
    """The path of the `@odata.id` link at `keys`, without any fragment; None when absent."""
    target = dig(document, (*keys, "@odata.id"))
    if not isinstance(target, str) or not target:
        return None
    return target.split("#", 1)[0]


def label(chassis_id: str) -> str:
    """A chassis Id as a device label: [A-Za-z0-9_.-] only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", chassis_id) or "chassis"


def find_node(get: Get, root: dict[str, Any], notes: list[str]) -> NodeChassis | None:
    """The node chassis and its power source, or None (the reasons in `notes`).

    Raises RedfishError when the Chassis collection cannot be read; a chassis or power resource that
    fails is noted and skipped, and its error raised only when nothing else was found.
    """
    collection_path = link(root, "Chassis")
    if collection_path is None:
        notes.append("the service root has no Chassis collection")
        return None
    members = get(collection_path).get("Members")
    paths = (
        [p for p in (link(m) for m in members if isinstance(m, dict)) if p]
        if isinstance(members, list)
        else []
    )
    if len(paths) > MAX_CHASSIS:
        notes.append(f"{len(paths)} chassis: only the first {MAX_CHASSIS} are read")
    failures: list[RedfishError] = []
    chassis: list[dict[str, Any]] = []
    for path in paths[:MAX_CHASSIS]:
        try:
            chassis.append(get(path))
        except RedfishError as e:
            failures.append(e)
            notes.append(f"{path}: {e}")
    nodes = [c for c in chassis if c.get("ChassisType") in NODE_TYPES]
    for c in chassis:
        if c.get("ChassisType") not in NODE_TYPES:
            kind = c.get("ChassisType")
            notes.append(
                f"chassis {c.get('Id')} ({kind}): not a node chassis (a part of one, or shared), not read"
            )
    node_paths = {link(c) for c in nodes}
    nodes.sort(key=lambda c: _inside(c, node_paths))  # stable: the collection's order otherwise
    for c in nodes:
        try:
            found = _node(get, c)
        except RedfishError as e:
            failures.append(e)
            notes.append(f"chassis {c.get('Id')}: {e}")
            continue
        if found is None:
            notes.append(f"chassis {c.get('Id')} ({c.get('ChassisType')}): no power reading")
            continue
        others = [str(o.get("Id")) for o in nodes if o is not c]
        if others:
            notes.append(f"chassis {', '.join(others)} also present: one node chassis is read, {found.id}")
        return found
    if failures:
        raise failures[0]
    return None


def _inside(chassis: dict[str, Any], node_paths: set[str | None]) -> bool:
    """Whether `chassis` is contained in another node chassis (then it is a part of that one)."""
    container = link(chassis, "Links", "ContainedBy")
    return container is not None and container in node_paths and container != link(chassis)


def _node(get: Get, chassis: dict[str, Any]) -> NodeChassis | None:
    """The chassis' power source and maximum power, or None when it publishes no power reading."""
    path = link(chassis) or ""
    failures: list[RedfishError] = []

    def fetch(target: str | None) -> dict[str, Any]:
        """A linked resource, or {} when absent or failing (a BMC may link what it does not serve)."""
        if target is None:
            return {}
        try:
            return get(target)
        except RedfishError as e:
            failures.append(e)
            return {}

    metrics_path = link(chassis, "EnvironmentMetrics")
    power_path = link(chassis, "Power")
    metrics = fetch(metrics_path)
    power = fetch(power_path) if number(dig(metrics, ("PowerWatts", "Reading"))) is None else {}
    source = _source(metrics_path, metrics, power_path, power)
    if source is None:
        if failures:
            raise failures[0]
        return None
    subsystem = fetch(link(chassis, "PowerSubsystem"))
    control = _control_index(power)
    limits: list[tuple[str, object]] = [
        ("PowerSubsystem CapacityWatts", subsystem.get("CapacityWatts")),
        ("PowerControl PowerCapacityWatts", dig(power, ("PowerControl", control, "PowerCapacityWatts"))),
        (
            "EnvironmentMetrics PowerLimitWatts.AllowableMax",
            dig(metrics, ("PowerLimitWatts", "AllowableMax")),
        ),
        (
            "PowerControl PowerLimit.LimitInWatts",
            dig(power, ("PowerControl", control, "PowerLimit", "LimitInWatts")),
        ),
    ]
    max_power_w, max_from = next(((w, name) for name, v in limits if (w := number(v))), (None, ""))
    model = " ".join(str(chassis[k]) for k in ("Manufacturer", "Model") if isinstance(chassis.get(k), str))
    chassis_id = chassis.get("Id")
    return NodeChassis(
        id=str(chassis_id) if chassis_id is not None else path.rstrip("/").rpartition("/")[2],
        path=path,
        type=str(chassis.get("ChassisType")),
        model=model,
        source=source,
        max_power_w=max_power_w,
        max_power_from=max_from,
    )


def _control_index(power: dict[str, Any]) -> int:
    """The PowerControl entry to read: the first with a consumed power, else the first with an average."""
    controls = power.get("PowerControl")
    if not isinstance(controls, list):
        return 0
    for keys in (("PowerConsumedWatts",), ("PowerMetrics", "AverageConsumedWatts")):
        for i, entry in enumerate(controls):
            if number(dig(entry, keys)) is not None:
                return i
    return 0


def _source(
    metrics_path: str | None, metrics: dict[str, Any], power_path: str | None, power: dict[str, Any]
) -> PowerSource | None:
    """The first power reading in the rule's order, else an energy meter; None when neither exists."""
    candidates: list[PowerSource] = []
    if metrics_path:
        candidates.append(PowerSource(metrics_path, ("PowerWatts", "Reading"), "power"))
    if power_path:
        i = _control_index(power)
        candidates.append(PowerSource(power_path, ("PowerControl", i, "PowerConsumedWatts"), "power"))
        candidates.append(
            PowerSource(power_path, ("PowerControl", i, "PowerMetrics", "AverageConsumedWatts"), "power")
        )
    if metrics_path:
        candidates.append(PowerSource(metrics_path, ("EnergyJoules", "Reading"), "energy"))
        candidates.append(PowerSource(metrics_path, ("EnergykWh", "Reading"), "energy", 3.6e6))
    for source in candidates:
        document = metrics if source.path == metrics_path else power
        if number(dig(document, source.keys)) is not None:
            return source
    return None
