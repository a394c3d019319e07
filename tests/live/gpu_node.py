"""A node with four fake NVIDIA GPUs and two Slurm jobs, run through the live path into a real ledger.

Run as `python -m tests.live.gpu_node ROOT LEDGER` from the repo root, in an environment whose
LD_LIBRARY_PATH holds the fake libnvidia-ml.so.1 and whose FAKE_NVML_STATE names its state file
(pynvml loads the library once per process, hence a process of its own). On a fake clock, with a
generated procfs and cgroups under ROOT, the real NvmlCollector, Sampler, JobDiscovery, Accountant
and Ledger run `SECONDS` one-second intervals:

- job 77 runs on gpu0 alone for the first half, then on gpu0 and gpu1 (2 GPUs at once);
- job 78 runs on gpu2 (an H100) for the first half, then moves to gpu3 (an A100): 1 GPU at once, two models;
- both jobs end, and the ledger is flushed after every interval, as its thread would.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.ledger.writer import Ledger
from agent.live.accounting import Accountant
from agent.live.sampler import Sampler
from collectors.jobs.cgroups import JobDiscovery
from collectors.nvml.collector import NvmlCollector
from collectors.tdp import read_cpuinfo
from tests.live.nodes import START, node_arguments
from tests.support.cgroups import GeneratedCgroups, fake_process
from tests.support.clock import FakeClock
from tests.support.nvml import FakeGpu, FakeProcess, write_state
from tests.support.procfs import FakeProcfs

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
MODELS = (H100, H100, H100, A100)
CPU_MODEL = "AMD EPYC 9654 96-Core Processor"
SECONDS = 6
WATTS = 300.0
JOBS = {"77": (501, 502), "78": (601, 602)}
"""Job id -> its two processes' pids."""


def placement(second: int) -> dict[int, int]:
    """GPU index -> pid of the process on it, `second` seconds in."""
    if second < SECONDS // 2:
        return {0: 501, 2: 601}
    return {0: 501, 1: 502, 3: 602}


def write_gpus(state: Path, second: int) -> None:
    on = placement(second)
    gpus = [
        FakeGpu(
            i,
            name=model,
            energy_mj=round(second * WATTS * 1000),
            processes=(FakeProcess(on[i], memory_mib=1024, sm=50),) if i in on else (),
        )
        for i, model in enumerate(MODELS)
    ]
    write_state(state, gpus)


def main(argv: list[str] | None = None) -> int:
    args = node_arguments(__doc__, argv)
    clock = FakeClock(START)
    procfs = FakeProcfs(args.root / "proc", model=CPU_MODEL)
    cgroups = GeneratedCgroups(args.root / "cg")
    for job_id, pids in JOBS.items():
        cgroups.v1(f"slurm/uid_0/job_{job_id}", cpu_ns=0, memory_bytes=1 << 30)
        for pid in pids:
            fake_process(procfs.root, pid, f"4:cpuacct:/slurm/uid_0/job_{job_id}/step_0\n0::/\n".encode())
    write_gpus(args.state, 0)

    nvml = NvmlCollector(clock)
    probe = nvml.probe()
    if not probe.status.usable:
        print(f"nvml: {probe.reason}", file=sys.stderr)
        return 1
    sampler = Sampler([nvml], clock, probe.devices)
    discovery = JobDiscovery(procfs.root, cgroups.root, "node1", clock, environ_fallback=False)
    ledger = Ledger(args.ledger, "node1", clock, background=False)
    accountant = Accountant(
        discovery,
        clock,
        probe.devices,
        gpus=nvml,
        ledger=ledger,
        cpu_model=read_cpuinfo(procfs.root).model,
    )
    try:
        accountant.account(sampler.tick())  # every counter's first read is its baseline
        for second in range(1, SECONDS + 1):
            clock.advance(1.0)
            procfs.run(1.0, 0.5)
            for job_id in JOBS:
                cgroups.v1(f"slurm/uid_0/job_{job_id}", cpu_ns=second * 10**9, memory_bytes=1 << 30)
            write_gpus(args.state, second)
            accountant.account(sampler.tick())
            ledger.flush()
        for job_id in JOBS:
            for hierarchy in ("cpuacct", "memory"):
                (cgroups.root / hierarchy / "slurm" / "uid_0" / f"job_{job_id}").rename(
                    args.root / f"gone-{hierarchy}-{job_id}"
                )
        clock.advance(1.0)
        accountant.account(sampler.tick())
    finally:
        ledger.close()
        sampler.close()
        discovery.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
