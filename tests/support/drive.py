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
from typing import Any

from agent.live.sampler import Sampler
from agent.live.snapshot import Snapshot
from collectors.base import Device, Probe, is_outage
from collectors.nvml.collector import NvmlCollector
from collectors.workloads import GpuProcess, GpuUsage


class FakeClock:
    """A clock in seconds that moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


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


def snapshot_json(snapshot: Snapshot, collector: NvmlCollector) -> dict[str, Any]:
    return {
        "time": snapshot.time,
        "samples": snapshot.samples,
        "energy": {
            row.device: {"energy_j": row.energy_j, "power_w": row.power_w, "component": row.component}
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reprobe-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)

    clock = FakeClock()
    collector = NvmlCollector(clock, reprobe_seconds=args.reprobe_seconds)
    probe = collector.probe()
    sampler = Sampler([collector], clock, devices=probe.devices)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            if "advance" in command:
                clock.now += float(command["advance"])
                answer = snapshot_json(sampler.tick(), collector)
            elif "probe" in command:
                answer = {**probe_json(probe), "driver_version": collector.driver_version}
            elif "usage" in command:
                usages = collector.gpu_usage()
                answer = usage_json(usages, collector.usage_errors)
            else:
                answer = {"error": f"unknown command {line.strip()}"}
            print(json.dumps(answer), flush=True)
    finally:
        sampler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
