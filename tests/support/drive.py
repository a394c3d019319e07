"""Drive an NvmlCollector and a Sampler on a fake clock from JSON commands on stdin, one per line.

Run as `python -m tests.support.drive [--reprobe-seconds S]` from the repo root, in an environment whose
LD_LIBRARY_PATH holds the fake libnvidia-ml.so.1 and whose FAKE_NVML_STATE names its state file.
Commands, each answered by one JSON line on stdout:
  {"advance": seconds}  step the fake clock, tick the sampler, print the snapshot;
  {"probe": true}       print the probe result of startup;
  {"usage": true}       print gpu_usage() and its usage_errors (the clock does not move).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, Literal, Protocol

from agent.live.sampler import Sampler
from agent.live.snapshot import Snapshot
from collectors.base import Collector, Device, Probe, is_outage
from collectors.nvml.collector import NvmlCollector
from collectors.workloads import GpuProcess, GpuUsage
from tests.support.clock import FakeClock

__all__ = ["FakeClock", "device_json", "probe_json", "serve", "snapshot_json", "usage_json"]


class GpuCollector(Collector, Protocol):
    """What the drives ask of a GPU collector beyond the Collector protocol."""

    @property
    def devices(self) -> tuple[Device, ...]: ...

    @property
    def usage_errors(self) -> tuple[str, ...]: ...

    def gpu_usage(self) -> tuple[GpuUsage, ...]: ...


def device_json(device: Device) -> dict[str, Any]:
    return {
        "component": device.component,
        "device": device.device,
        "source": device.source,
        "method": device.method,
        "details": dict(device.details),
    }


def probe_json(probe: Probe) -> dict[str, Any]:
    return {
        "status": probe.status.name,
        "reason": probe.reason,
        "fix": probe.fix,
        "devices": [device_json(d) for d in probe.devices],
        "notes": list(probe.notes),
    }


def snapshot_json(
    snapshot: Snapshot, collector: GpuCollector, label: Literal["component", "source"] = "component"
) -> dict[str, Any]:
    """The snapshot as JSON; each energy row carries its `label` besides energy and power."""
    return {
        "time": snapshot.time,
        "samples": snapshot.samples,
        "energy": {
            row.device: {"energy_j": row.energy_j, "power_w": row.power_w, label: getattr(row, label)}
            for row in snapshot.energy
            if not is_outage(row.source)
        },
        "outage": {row.device: row.energy_j for row in snapshot.energy if is_outage(row.source)},
        "interval": {f"{device}/{source}": j for (_, device, source), j in snapshot.interval_j.items()},
        "devices_up": {device: up for (_, device), up in snapshot.devices_up.items()},
        "collectors_up": dict(snapshot.collectors_up),
        "errors": {f"{name}/{reason}": n for (name, reason), n in snapshot.errors.items()},
        "devices": [device_json(d) for d in snapshot.devices],
        "methods": {d.device: d.method for d in collector.devices},
    }


def processes_json(processes: tuple[GpuProcess, ...]) -> list[dict[str, Any]]:
    return [{"pid": p.pid, "sm_util": p.sm_util, "memory_bytes": p.memory_bytes} for p in processes]


def usage_json(usages: tuple[GpuUsage, ...], errors: tuple[str, ...]) -> dict[str, Any]:
    """{"usage": {device: {"processes": [...], "instances": {name: {"sm_share", "processes"}}}}, "errors"}"""
    return {
        "usage": {
            usage.device: {
                "processes": processes_json(usage.processes),
                "instances": {
                    name: {"sm_share": share, "processes": processes_json(processes)}
                    for name, (share, processes) in usage.instances.items()
                },
            }
            for usage in usages
        },
        "errors": list(errors),
    }


def serve(
    collector: GpuCollector,
    clock: FakeClock,
    *,
    label: Literal["component", "source"] = "component",
    probe_answer: Callable[[Probe], dict[str, Any]] = probe_json,
) -> int:
    """Probe `collector`, then answer the commands on stdin (see above) until it closes.

    `label` is what each energy row of a snapshot carries (snapshot_json); `probe_answer` the answer
    to {"probe": true}.
    """
    probe = collector.probe()
    sampler = Sampler([collector], clock, devices=probe.devices)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            if "advance" in command:
                clock.now += float(command["advance"])
                answer = snapshot_json(sampler.tick(), collector, label)
            elif "probe" in command:
                answer = probe_answer(probe)
            elif "usage" in command:
                answer = usage_json(collector.gpu_usage(), collector.usage_errors)
            else:
                answer = {"error": f"unknown command {line.strip()}"}
            print(json.dumps(answer), flush=True)
    finally:
        sampler.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reprobe-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)

    clock = FakeClock()
    collector = NvmlCollector(clock, reprobe_seconds=args.reprobe_seconds)
    return serve(
        collector,
        clock,
        probe_answer=lambda probe: {**probe_json(probe), "driver_version": collector.driver_version},
    )


if __name__ == "__main__":
    sys.exit(main())
