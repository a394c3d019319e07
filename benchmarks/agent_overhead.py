#!/usr/bin/env python3
"""The agent's own cost: CPU time per sample and resident memory, in two cases measured one after
the other in one run:

- `nvml_rapl`: 2 simulated sockets (a generated powercap tree) and 8 fake GPUs (the fake
  libnvidia-ml.so.1 under real pynvml);
- `every_source`: the same, plus every other source on: 8 fake AMD GPUs (the fake libamd_smi.so
  under the real amdsmi bindings), a generated hwmon tree (an Intel GPU, an ACPI power meter of the
  node, a Grace socket's four meters) and a BMC (a local HTTPS Redfish service, polled every 5 s,),
  with `other` derived from the wall.

Floors: at most 2 ms of CPU per sample and 60 MB RSS for `nvml_rapl`; `every_source` at most 1 ms
of CPU per sample above it. Prints the figures as JSON and exits 1 when a floor is missed. Run from
anywhere: python3 benchmarks/agent_overhead.py [--seconds N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.amdsmi import FakeAmdGpu, build_fake_amdsmi, write_amd_state  # noqa: E402
from tests.support.hwmon import FakeHwmon, acpi_node_meter, grace_socket, intel_gpu  # noqa: E402
from tests.support.nvml import FakeGpu, build_fake_nvml, write_state  # noqa: E402
from tests.support.powercap import PowercapTree, server_zones  # noqa: E402
from tests.support.processes import AgentProcess  # noqa: E402
from tests.support.redfish import FakeBmc  # noqa: E402

CPU_MS_PER_SAMPLE_FLOOR = 2.0
RSS_MB_FLOOR = 60.0
EVERY_SOURCE_EXTRA_MS_FLOOR = 1.0
"""What every other source on may add to a sample's CPU cost, over nvml_rapl's."""


def _every_source(root: Path, sysfs: Path, env: dict[str, str]) -> list[str]:
    """Turn every other source on: fake AMD GPUs, hwmon sensors, a BMC. Returns the config lines."""
    amd_lib = build_fake_amdsmi(root / "amdlib")
    env["LD_LIBRARY_PATH"] = f"{env['LD_LIBRARY_PATH']}:{amd_lib}"
    env["FAKE_AMDSMI_STATE"] = str(root / "amd.state")
    write_amd_state(
        root / "amd.state", [FakeAmdGpu(f"0000:{0x10 + i:02x}:00.0", power_w=500, ticks=1) for i in range(8)]
    )
    hwmon = FakeHwmon(sysfs)
    intel_gpu(hwmon, "0000:05:00.0", energy_uj=1_000_000)
    acpi_node_meter(hwmon, power_uw=3_000_000_000)
    grace_socket(hwmon, 0, power_uw=100_000_000)
    password = root / "bmc-password"
    password.write_text("secret\n")
    password.chmod(0o600)
    bmc = FakeBmc(root, username="greenai", password="secret", power_w=3200.0)
    assert bmc.ca_file is not None
    return [
        "collectors:",
        "  amdsmi: {enabled: 'true'}",
        "  hwmon: {enabled: 'true'}",
        f"  bmc: {{enabled: 'true', url: '{bmc.url}', username: greenai, password_file: '{password}',",
        f"        verify_tls: '{bmc.ca_file}', interval_seconds: 5}}",
    ]


def measure(seconds: float, interval: float, every_source: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="greenai-bench-") as tmp:
        root = Path(tmp)
        lib = build_fake_nvml(root / "lib")
        state = root / "nvml.state"
        now = time.time()
        write_state(state, [FakeGpu(i, power_mw=300_000, live=True, t0=now) for i in range(8)])
        with PowercapTree(root / "sys", server_zones(2)) as tree, tree.following_real_time(0.05):
            env = {"LD_LIBRARY_PATH": str(lib), "FAKE_NVML_STATE": str(state)}
            config = [f"ledger: {{path: '{root / 'ledger.db'}'}}"]
            if every_source:
                config += _every_source(root, tree.root, env)
            (root / "agent.yaml").write_text("\n".join(config) + "\n")
            args = [
                "--config",
                str(root / "agent.yaml"),
                "--interval",
                str(interval),
                "--sysfs",
                str(tree.root),
            ]
            with AgentProcess(args, env=env) as agent:
                agent.wait_ready()
                proc = psutil.Process(agent.proc.pid)
                agent.wait_samples(20)  # past start-up and imports
                cpu0, samples0 = sum(proc.cpu_times()[:2]), agent.value("greenai_agent_samples_total") or 0
                time.sleep(seconds)
                cpu1, samples1 = sum(proc.cpu_times()[:2]), agent.value("greenai_agent_samples_total") or 0
                rss = proc.memory_info().rss
                components = {
                    dict(labels).get("component")
                    for (name, labels) in agent.samples()
                    if name == "greenai_node_energy_joules_total"
                }
                gpus = sum(
                    1
                    for (name, labels) in agent.samples()
                    if name == "greenai_node_energy_joules_total" and ("component", "gpu") in labels
                )
                agent.stop()
    samples = samples1 - samples0
    return {
        "samples": samples,
        "gpus": gpus,
        "components": sorted(c for c in components if c),
        "sockets": 2,
        "interval_seconds": interval,
        "cpu_ms_per_sample": (cpu1 - cpu0) * 1000 / samples,
        "rss_mb": rss / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="how long to measure each case (default 20)"
    )
    parser.add_argument("--interval", type=float, default=0.05, help="sampling interval (default 0.05)")
    args = parser.parse_args()
    today = measure(args.seconds, args.interval)
    every = measure(args.seconds, args.interval, every_source=True)
    extra = every["cpu_ms_per_sample"] - today["cpu_ms_per_sample"]
    checks = {
        "cpu_ms_per_sample": today["cpu_ms_per_sample"] <= CPU_MS_PER_SAMPLE_FLOOR,
        "rss_mb": today["rss_mb"] <= RSS_MB_FLOOR,
        "every_source_extra_ms": extra <= EVERY_SOURCE_EXTRA_MS_FLOOR,
    }
    figures = {
        "nvml_rapl": today,
        "every_source": every,
        "every_source_extra_ms_per_sample": extra,
        "floor_cpu_ms_per_sample": CPU_MS_PER_SAMPLE_FLOOR,
        "floor_rss_mb": RSS_MB_FLOOR,
        "floor_every_source_extra_ms": EVERY_SOURCE_EXTRA_MS_FLOOR,
        "checks": checks,
        "meets_floors": all(checks.values()),
    }
    print(json.dumps(figures, indent=2))
    return 0 if figures["meets_floors"] else 1


if __name__ == "__main__":
    sys.exit(main())
