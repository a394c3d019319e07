"""Drive an AmdSmiCollector and a Sampler on a fake clock from JSON commands on stdin, one per line.

Run as `python -m tests.support.drive_amd [--reprobe-seconds S] [--index-offset N]` from the repo root,
in an environment whose LD_LIBRARY_PATH holds the fake libamd_smi.so and whose FAKE_AMDSMI_STATE names
its state file. The commands and answers are those of tests.support.drive:
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
from collectors.amdsmi.collector import AmdSmiCollector
from collectors.base import is_outage
from tests.support.drive import FakeClock, device_json, probe_json, usage_json


def snapshot_json(snapshot: Snapshot, collector: AmdSmiCollector) -> dict[str, Any]:
    return {
        "time": snapshot.time,
        "energy": {
            row.device: {"energy_j": row.energy_j, "power_w": row.power_w, "source": row.source}
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reprobe-seconds", type=float, default=30.0)
    parser.add_argument("--index-offset", type=int, default=0)
    args = parser.parse_args(argv)

    clock = FakeClock()
    collector = AmdSmiCollector(clock, reprobe_seconds=args.reprobe_seconds, index_offset=args.index_offset)
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
                answer = probe_json(probe)
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
