#!/usr/bin/env python3
"""The agent's own cost: CPU time per sample and resident memory, on a node with 2 simulated
sockets (generated powercap tree) and 8 fake GPUs (the fake libnvidia-ml.so.1 under real pynvml).

Floors: at most 2 ms of CPU per sample and 60 MB RSS. Prints the figures as JSON and exits 1 when
a floor is missed. Run from anywhere: python3 benchmarks/agent_overhead.py [--seconds N]
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

from tests.support.nvml import FakeGpu, build_fake_nvml, write_state  # noqa: E402
from tests.support.powercap import PowercapTree, server_zones  # noqa: E402
from tests.support.processes import AgentProcess  # noqa: E402

CPU_MS_PER_SAMPLE_FLOOR = 2.0
RSS_MB_FLOOR = 60.0


def measure(seconds: float, interval: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="greenai-bench-") as tmp:
        root = Path(tmp)
        lib = build_fake_nvml(root / "lib")
        state = root / "nvml.state"
        now = time.time()
        write_state(state, [FakeGpu(i, power_mw=300_000, live=True, t0=now) for i in range(8)])
        with PowercapTree(root / "sys", server_zones(2)) as tree, tree.following_real_time(0.05):
            env = {"LD_LIBRARY_PATH": str(lib), "FAKE_NVML_STATE": str(state)}
            args = ["--interval", str(interval), "--sysfs", str(tree.root)]
            with AgentProcess(args, env=env) as agent:
                agent.wait_ready()
                proc = psutil.Process(agent.proc.pid)
                agent.wait_samples(20)  # past start-up and imports
                cpu0, samples0 = sum(proc.cpu_times()[:2]), agent.value("greenai_agent_samples_total") or 0
                time.sleep(seconds)
                cpu1, samples1 = sum(proc.cpu_times()[:2]), agent.value("greenai_agent_samples_total") or 0
                rss = proc.memory_info().rss
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
        "sockets": 2,
        "interval_seconds": interval,
        "cpu_ms_per_sample": (cpu1 - cpu0) * 1000 / samples,
        "rss_mb": rss / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure (default 10)")
    parser.add_argument("--interval", type=float, default=0.05, help="sampling interval (default 0.05)")
    args = parser.parse_args()
    figures = measure(args.seconds, args.interval)
    figures["floor_cpu_ms_per_sample"] = CPU_MS_PER_SAMPLE_FLOOR
    figures["floor_rss_mb"] = RSS_MB_FLOOR
    ok = figures["cpu_ms_per_sample"] <= CPU_MS_PER_SAMPLE_FLOOR and figures["rss_mb"] <= RSS_MB_FLOOR
    figures["meets_floors"] = ok
    print(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
