"""The node's metric families: energy and power per device, collector health, devices, the agent itself.

Read from one published `Snapshot`; never from hardware. The names and labels are a contract that
dashboards, the report and the alert rules rely on. No label is named `job` or `instance`:
Prometheus owns those.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from agent import __version__
from agent.export.exposition import Family, counter, gauge
from agent.live.snapshot import Snapshot
from collectors.base import Status

ENERGY_LABELS = ["component", "device", "source"]
BROKEN = (Status.PERMISSION_DENIED, Status.ERROR)
"""Probe outcomes that are a problem to fix, so the collector shows as down (0) rather than absent."""


def node_families(snap: Snapshot, node_name: str, statuses: Mapping[str, Status]) -> Iterator[Family]:
    """The node's families as of `snap`.

    `statuses` is what each configured collector's probe found; it does not change while the agent
    runs. A collector whose hardware is simply absent (not found, disabled) has no `up` series, so
    that a node without GPUs does not look like a node with a broken GPU collector.
    """
    energy = counter(
        "greenai_node_energy_joules",
        "Energy used by the node since the agent started, per component and device; source says "
        "whether it was measured (rapl, nvml, amdsmi, hwmon, redfish) or estimated. Components node "
        "(the wall), platform and grace contain others: leave them out of sums.",
        labels=ENERGY_LABELS,
    )
    power = gauge(
        "greenai_node_power_watts",
        "Mean power over the last sampling interval, per component and device.",
        labels=ENERGY_LABELS,
    )
    for row in snap.energy:
        labels = [row.component, row.device, row.source]
        energy.add(labels, row.energy_j)
        if row.power_w is not None:
            power.add(labels, row.power_w)
    yield energy
    yield power

    up = gauge(
        "greenai_collector_up",
        "1 when the collector's last read succeeded (the library answered, even if some of its devices "
        "did not: see greenai_device_up), else 0.",
        ["collector"],
    )
    states = {name: 0.0 for name, status in statuses.items() if status in BROKEN}
    states.update({name: 1.0 if ok else 0.0 for name, ok in snap.collectors_up.items()})
    for name, value in sorted(states.items()):
        up.add([name], value)
    yield up

    device_up = gauge(
        "greenai_device_up",
        "1 when the device's last reading was read and plausible; 0 when it failed (a lost GPU, an "
        "unreadable counter) or was rejected (out of range, more than the device can draw).",
        ["component", "device"],
    )
    for (component, device), ok in sorted(snap.devices_up.items()):
        device_up.add([component, device], 1.0 if ok else 0.0)
    yield device_up

    status = gauge(
        "greenai_collector_status",
        "What each configured collector found when the agent started (found, estimate, not_found, "
        "permission_denied, error, disabled); `greenai doctor` says why.",
        ["collector", "status"],
    )
    for name, found in sorted(statuses.items()):
        status.add([name, found.value.replace(" ", "_")], 1.0)
    yield status

    errors = counter(
        "greenai_collector_errors",
        "Failed reads per collector and reason (a device lost, not supported, no permission, ...), "
        "and counter readings not booked: counter_out_of_range (a failed read), counter_reset "
        "(re-baselined), counter_implausible (more than the device can draw).",
        ["collector", "reason"],
    )
    for (name, reason), count in sorted(snap.errors.items()):
        errors.add([name, reason], count)
    yield errors

    info = gauge(
        "greenai_device_info",
        "Devices the agent measures or estimates, with how (method) and what they are.",
        [*ENERGY_LABELS, "method", "model", "uuid"],
    )
    for dev in snap.devices:
        model = dev.details.get("name") or dev.details.get("model") or ""
        info.add([dev.component, dev.device, dev.source, dev.method, model, dev.details.get("uuid", "")], 1.0)
    yield info

    yield gauge(
        "greenai_agent_sample_duration_seconds",
        "Wall-clock time the last sample of all collectors took.",
        value=snap.sample_duration_s,
    )
    yield counter("greenai_agent_samples", "Samples taken since the agent started.", value=snap.samples)
    node = gauge("greenai_node_info", "The node this agent measures.", ["node"])
    node.add([node_name], 1.0)
    yield node
    build = gauge("greenai_build_info", "The agent's version.", ["version"])
    build.add([__version__], 1.0)
    yield build
