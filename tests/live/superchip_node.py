"""A GH200 node through the agent's own wiring: NVML's module counter plus Grace's hwmon sensors.

Run as `python -m tests.live.superchip_node ROOT LEDGER --state STATE` from the repo root, in an
environment whose LD_LIBRARY_PATH holds the fake libnvidia-ml.so.1 and whose FAKE_NVML_STATE names
its state file. The collectors are found by `probe_sources` from a config whose sysfs is a generated
hwmon tree (one GH200 socket: module, Grace, CPU and SysIO meters) and whose procfs and cgroups are
generated too. On a fake clock, for `SECONDS` one-second intervals:

- the GH200's NVML counter (the module: GPU, Grace CPU, memory) moves MODULE_W each second; Grace's
  own meters read GRACE_W (socket), CPU_W and SYSIO_W, and hwmon's module meter MODULE_W too;
- job 77 runs the GPU's only process and uses 0.1 CPU-second per second; job 78 uses 0.9, CPU only.

Prints one JSON object: what each source found, the node's energy by component, device and source,
and each job's energy by component, from the accountant.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.config.settings import CollectorsConfig, Config, HostPaths, LedgerConfig
from agent.daemon import JobAccounting
from agent.live.sampler import Sampler
from agent.live.sources import devices, probe_sources, require
from tests.live.nodes import START, Jobs, node_arguments, run_jobs, run_json, start_jobs
from tests.support.cgroups import GeneratedCgroups
from tests.support.clock import FakeClock
from tests.support.hwmon import FakeHwmon, grace_socket
from tests.support.nvml import FakeGpu, FakeProcess, write_state
from tests.support.procfs import FakeProcfs

GH200 = "NVIDIA GH200 480GB"
SECONDS = 6
MODULE_W, GRACE_W, CPU_W, SYSIO_W = 600.0, 150.0, 100.0, 20.0
JOBS: Jobs = {"77": (501, 0.1), "78": (601, 0.9)}


def write_gpu(state: Path, second: int) -> None:
    gpu = FakeGpu(
        0,
        name=GH200,
        energy_mj=round(second * MODULE_W * 1000),
        processes=(FakeProcess(501, memory_mib=4096, sm=80),),
    )
    write_state(state, [gpu])


def main(argv: list[str] | None = None) -> int:
    args = node_arguments(__doc__, argv)
    clock = FakeClock(START)
    procfs = FakeProcfs(args.root / "proc", model="Neoverse-V2", sockets=1, threads=8)
    cgroups = GeneratedCgroups(args.root / "cg")
    hwmon = FakeHwmon(args.root / "sys")
    meters = grace_socket(hwmon, 0)
    for kind, watts in (("Module", MODULE_W), ("Grace", GRACE_W), ("CPU", CPU_W), ("SysIO", SYSIO_W)):
        hwmon.set(meters[kind], "power1_average", round(watts * 1e6))
    start_jobs(JOBS, procfs.root, cgroups)
    write_gpu(args.state, 0)

    config = Config(
        node_name="gh1",
        host=HostPaths(sysfs=hwmon.root, procfs=procfs.root, cgroupfs=cgroups.root),
        ledger=LedgerConfig(path=args.ledger),
        collectors=CollectorsConfig(),
    )
    sources = probe_sources(config, clock)
    found = {
        s.name: {
            "status": s.probe.status.name,
            "reason": s.probe.reason,
            "devices": [[d.component, d.device, d.source] for d in s.probe.devices] if s.active else [],
        }
        for s in sources
    }
    sampler = Sampler(require(sources), clock, devices(sources))
    jobs = JobAccounting.open(config, sources, clock)
    try:
        jobs.accountant.account(sampler.tick())  # every counter's first read is its baseline
        for second in range(1, SECONDS + 1):
            clock.advance(1.0)
            procfs.run(1.0, 1.0 / procfs.threads)  # one CPU-second per second, all of it in the jobs
            run_jobs(JOBS, cgroups, second)
            write_gpu(args.state, second)
            accounted = jobs.accountant.account(sampler.tick())
    finally:
        jobs.close()
        sampler.close()
    print(run_json(found, sampler.snapshot, accounted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
