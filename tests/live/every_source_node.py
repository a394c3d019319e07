"""A node with every new source, through the agent's own wiring, with two jobs in generated cgroups.

Run as `python -m tests.live.every_source_node ROOT LEDGER --bmc-url URL --bmc-ca FILE
--bmc-password FILE` from the repo root, in an environment whose LD_LIBRARY_PATH holds the fake
libamd_smi.so and whose FAKE_AMDSMI_STATE names its state file (the bindings load the library once
per process). The BMC is a FakeBmc the test serves. On a fake clock, for `SECONDS` one-second
intervals:

- RAPL (a generated powercap tree): one package at PACKAGE_W, its DRAM at DRAM_W;
- an AMD MI300X (AMD SMI over the fake library) at AMD_W, whose only process is job 51's;
- an Intel Arc GPU (hwmon `xe` energy) at INTEL_W, whose only DRM client is job 52's (DRM fdinfo
  in the generated procfs);
- the BMC reads WALL_W at the wall: `other` is the rest;
- job 51 uses 0.3 CPU-seconds per second, job 52 0.1.

Prints one JSON object: the node's energy rows, each job's energy by component, the unattributed
energy by component, and which collectors were up at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.config.settings import BmcConfig, CollectorsConfig, Config, HostPaths, LedgerConfig, NvmlConfig
from agent.daemon import JobAccounting
from agent.live.sampler import Sampler
from agent.live.sources import devices, probe_sources, require
from tests.live.nodes import Jobs, run_jobs, run_json, start_jobs
from tests.support.amdsmi import FakeAmdGpu, FakeAmdProcess, write_amd_state
from tests.support.cgroups import GeneratedCgroups
from tests.support.clock import FakeClock
from tests.support.hwmon import FakeHwmon, drm_fd, drm_fdinfo, intel_gpu
from tests.support.powercap import PowercapTree, server_zones
from tests.support.procfs import FakeProcfs

SECONDS = 6
PACKAGE_W, DRAM_W, AMD_W, INTEL_W, WALL_W = 100.0, 10.0, 500.0, 200.0, 1500.0
AMD_RESOLUTION_UJ = 15.3
AMD_BDF = "0000:c1:00.0"
INTEL_PCI = "0000:03:00.0"
JOBS: Jobs = {"51": (801, 0.3), "52": (802, 0.1)}


def write_amd(state: Path, second: int) -> None:
    ticks = round(second * AMD_W * 1e6 / AMD_RESOLUTION_UJ)
    gpu = FakeAmdGpu(
        AMD_BDF,
        ticks=ticks,
        resolution=AMD_RESOLUTION_UJ,
        processes=(FakeAmdProcess(801, vram=8 << 30, gfx_ns=second * 900_000_000),),
    )
    write_amd_state(state, [gpu])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("ledger", type=Path)
    parser.add_argument("--amd-state", type=Path, required=True)
    parser.add_argument("--bmc-url", required=True)
    parser.add_argument("--bmc-ca", type=Path, required=True)
    parser.add_argument("--bmc-user", required=True)
    parser.add_argument("--bmc-password", type=Path, required=True)
    args = parser.parse_args(argv)

    clock = FakeClock(1_714_521_600.0)
    procfs = FakeProcfs(args.root / "proc", sockets=1, threads=4)
    cgroups = GeneratedCgroups(args.root / "cg")
    start_jobs(JOBS, procfs.root, cgroups)
    render = {"drm-engine-render": "0 ns", "drm-resident-local0": "1 GiB"}
    intel_fd = drm_fd(procfs.root, 802, 7, INTEL_PCI, 1, render, driver="xe")
    write_amd(args.amd_state, 0)

    with PowercapTree(args.root / "sys", server_zones(1, PACKAGE_W, DRAM_W), mmio=False) as tree:
        hwmon = FakeHwmon(tree.root)
        intel = intel_gpu(hwmon, INTEL_PCI, energy_uj=0, labels=False, driver="i915")
        config = Config(
            node_name="e1",
            host=HostPaths(sysfs=tree.root, procfs=procfs.root, cgroupfs=cgroups.root),
            ledger=LedgerConfig(path=args.ledger),
            collectors=CollectorsConfig(
                nvml=NvmlConfig(enabled="false"),
                bmc=BmcConfig(
                    enabled="true",
                    url=args.bmc_url,
                    username=args.bmc_user,
                    password_file=args.bmc_password,
                    verify_tls=args.bmc_ca,
                ),
            ),
        )
        sources = probe_sources(config, clock)
        sampler = Sampler(require(sources), clock, devices(sources))
        jobs = JobAccounting.open(config, sources, clock)
        try:
            accounted = jobs.accountant.account(sampler.tick())  # every counter's baseline
            for second in range(1, SECONDS + 1):
                clock.advance(1.0)
                tree.advance(1.0)
                procfs.run(1.0, 0.5 / procfs.threads)  # 0.5 CPU-seconds per second, 0.4 of them in jobs
                run_jobs(JOBS, cgroups, second)
                write_amd(args.amd_state, second)
                hwmon.set(intel, "energy1_input", round(second * INTEL_W * 1e6))
                render["drm-engine-render"] = f"{second * 600_000_000} ns"
                drm_fdinfo(intel_fd, INTEL_PCI, 1, render, driver="xe")
                accounted = jobs.accountant.account(sampler.tick())
        finally:
            jobs.close()
            sampler.close()
    print(run_json({s.name: s.probe.status.name for s in sources}, sampler.snapshot, accounted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
