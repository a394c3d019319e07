"""Per-job energy end to end: real cgroups and processes, the real attribution, the ledger, /metrics.

Real CPU time needs real time, so these tests tick on the real clock for a second or two.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent.live.accounting import Accountant
from agent.live.sampler import Sampler
from agent.live.snapshot import JobsSnapshot, Snapshot
from collectors.estimate import EstimateCollector
from collectors.jobs.cgroups import JobDiscovery
from collectors.workloads import JobKey
from tests.support.cgroups import UNIFIED, V1, RealCgroups, real_cgroups_missing
from tests.support.nvml import FakeGpu, FakeProcess, write_state
from tests.support.processes import AgentProcess, http_get, run_greenai, wait_for

real = pytest.mark.skipif(bool(real_cgroups_missing()), reason=real_cgroups_missing() or "ok")
PROC, CGROUPFS = Path("/proc"), Path("/sys/fs/cgroup")
NO_RAPL = ["--sysfs", "/nonexistent-sys"]

POD_A, POD_B = "1234abcd-5678-90ab-cdef-1234567890ab", "1234abcd-5678-90ab-cdef-1234567890ac"
HEX = "ab" * 32
SHAPES = {
    "slurm v1": ("slurm/uid_0/job_4242/step_0", V1, JobKey("slurm", "4242")),
    "slurm v2": ("system.slice/slurmstepd.scope/job_4343/step_0", UNIFIED, JobKey("slurm", "4343")),
    "k8s systemd": (
        f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_A.replace('-', '_')}.slice"
        f"/cri-containerd-{HEX}.scope",
        V1,
        JobKey("kubernetes", POD_A),
    ),
    "k8s cgroupfs": (f"kubepods/besteffort/pod{POD_B}/{HEX}", V1, JobKey("kubernetes", POD_B)),
    "docker": (f"docker/{'cd' * 32}", V1, JobKey("docker", "cd" * 6)),
}


def assert_conserved(sample: Snapshot, jobs: JobsSnapshot) -> None:
    """jobs + unexported + unattributed == node, per component, to a relative 1e-9."""
    for component in {row.component for row in sample.energy}:
        node = sample.energy_j(component)
        charged = sum(s.energy_j.get(component, 0.0) for s in jobs.jobs)
        other = jobs.unexported_j.get(component, 0.0) + jobs.unattributed_j.get(component, 0.0)
        assert charged + other == pytest.approx(node, rel=1e-9, abs=1e-9), component


@real
@pytest.mark.parametrize("burner_shape", list(SHAPES))
def test_the_burner_gets_the_active_cpu_energy(cgroups: RealCgroups, burner_shape: str) -> None:
    names = list(SHAPES)
    sleeper_shape = names[(names.index(burner_shape) + 1) % len(names)]
    burner_rel, burner_h, burner = SHAPES[burner_shape]
    sleeper_rel, sleeper_h, sleeper = SHAPES[sleeper_shape]
    cgroups.start(burner_rel, "burner", burner_h)
    cgroups.start(sleeper_rel, "sleeper", sleeper_h)

    estimate = EstimateCollector(PROC, time.monotonic)
    probe = estimate.probe()
    assert estimate.model is not None
    sampler = Sampler([estimate], time.monotonic, probe.devices)
    discovery = JobDiscovery(PROC, CGROUPFS, "vm", environ_fallback=False)
    accountant = Accountant(discovery, time.time, probe.devices, idle_policy="node")
    active_j = 0.0
    for tick in range(16):
        sample = sampler.tick()
        jobs = accountant.account(sample)
        assert_conserved(sample, jobs)
        if tick == 2:  # both jobs have a baseline from here on
            start = {s.key: s.energy_j.get("cpu", 0.0) for s in jobs.jobs}
            first = discovery.scan()
        if tick > 2:
            cpu_j = sum(j for (c, _, _), j in sample.interval_j.items() if c == "cpu")
            active_j += cpu_j - estimate.model.cpu_idle_w * sample.interval_s
        time.sleep(0.1)
    last = discovery.scan()
    got = {s.key: s.energy_j.get("cpu", 0.0) - start.get(s.key, 0.0) for s in jobs.jobs}
    # Whatever else loads the machine (other tests, CI's neighbours) takes its share of the active
    # energy, unattributed: the burner's due is its share of the node's busy CPU time in the window.
    burner_cpu = last.jobs[burner].cpu_ns - first.jobs[burner].cpu_ns
    node_busy = last.node.cpu_busy_ns - first.node.cpu_busy_ns
    assert active_j > 0 and node_busy > 0
    assert got[burner] == pytest.approx(active_j * burner_cpu / node_busy, rel=0.1), (got, active_j)
    assert got[burner] >= 0.9 * sum(got.values()), got  # of what jobs got, the burner got nearly all
    assert got.get(sleeper, 0.0) <= 0.02 * active_j
    assert jobs.running >= 2
    discovery.close()


def _agent_config(tmp_path: Path, **extra: str) -> Path:
    cfg = tmp_path / "agent.yaml"
    lines = [f"ledger: {{path: {tmp_path / 'ledger.db'}, flush_seconds: 0.5}}", "slurm: {scontrol: ''}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _job_energy(agent: AgentProcess, key: JobKey, component: str) -> float:
    value = agent.value(
        "greenai_job_energy_joules_total", job_id=key.job_id, scheduler=key.scheduler, component=component
    )
    return value or 0.0


@real
def test_shared_gpu_split_by_sm_utilisation(
    cgroups: RealCgroups, tmp_path: Path, fake_nvml_lib: Path
) -> None:
    a = cgroups.start("slurm/uid_0/job_501/step_0", "sleeper")
    b = cgroups.start("slurm/uid_0/job_502/step_0", "sleeper")
    c = cgroups.start(f"docker/{'ef' * 32}", "sleeper")
    now = time.time()
    state = tmp_path / "nvml.state"
    write_state(
        state,
        [
            FakeGpu(
                0,
                power_mw=400_000,
                live=True,
                t0=now,
                processes=(FakeProcess(a.pid, 1000, sm=75), FakeProcess(b.pid, 3000, sm=25)),
            ),
            FakeGpu(1, power_mw=200_000, live=True, t0=now, processes=(FakeProcess(c.pid, 500, sm=10),)),
        ],
    )
    env = {"LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(state)}
    args = ["--config", str(_agent_config(tmp_path)), "--interval", "0.2", *NO_RAPL]
    with AgentProcess(args, env=env) as agent:
        agent.wait_ready()
        agent.wait_samples(12)
        samples = agent.samples()
        agent.stop()

    def value(name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)

    job_a = value("greenai_job_energy_joules_total", job_id="501", component="gpu")
    job_b = value("greenai_job_energy_joules_total", job_id="502", component="gpu")
    job_c = value("greenai_job_energy_joules_total", job_id="ef" * 6, component="gpu")
    gpu0 = value("greenai_node_energy_joules_total", device="gpu0")
    gpu1 = value("greenai_node_energy_joules_total", device="gpu1")
    assert job_a > 0 and job_b > 0
    assert job_a / (job_a + job_b) == pytest.approx(0.75, abs=1e-6)
    assert job_a + job_b == pytest.approx(gpu0, rel=1e-9)  # all of it: every process belongs to a job
    assert job_c == pytest.approx(gpu1, rel=1e-9)  # a GPU with one job's process: all of its energy
    assert value("greenai_node_unattributed_energy_joules_total", component="gpu") == pytest.approx(
        0, abs=1e-6
    )


@real
def test_kill_9_loses_at_most_the_flush_window(
    cgroups: RealCgroups, tmp_path: Path, fake_nvml_lib: Path
) -> None:
    job = cgroups.start("slurm/uid_0/job_777/step_0", "sleeper")
    watts = 300.0
    state = tmp_path / "nvml.state"
    write_state(
        state,
        [
            FakeGpu(
                0,
                power_mw=int(watts * 1000),
                live=True,
                t0=time.time(),
                processes=(FakeProcess(job.pid, 100, sm=50),),
            )
        ],
    )
    env = {"LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(state)}
    cfg = _agent_config(tmp_path)
    args = ["--config", str(cfg), "--interval", "0.2", *NO_RAPL]
    key = JobKey("slurm", "777")

    def ledger_gpu_j() -> float:
        out = run_greenai("job", "slurm:777", "--json", "--config", str(cfg))
        return float(json.loads(out.stdout)["energy_joules"]["gpu"]) if out.returncode == 0 else 0.0

    with AgentProcess(args, env=env) as first:
        first.wait_ready()
        wait_for(lambda: ledger_gpu_j() > 2 * watts, 30, "the ledger to hold two seconds of the job")
        seen = _job_energy(first, key, "gpu")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(5)
    assert first.proc.returncode == -signal.SIGKILL
    kept = ledger_gpu_j()
    # The ledger may miss what came after its last flush: one flush window (0.5 s) and the interval
    # being sampled (0.2 s), with some slack for the scrape and the kill.
    assert seen - watts * (0.5 + 0.2 + 0.3) <= kept <= seen + watts * 0.5

    with AgentProcess(args, env=env) as second:
        second.wait_ready()
        wait_for(lambda: ledger_gpu_j() > kept + 2 * watts, 30, "the job to keep accumulating")
        code, _ = second.stop()
    assert code == 0
    final = json.loads(run_greenai("jobs", "--json", "--config", str(cfg)).stdout)
    records = [j for j in final if j["scheduler"] == "slurm" and j["job_id"] == "777"]
    assert len(records) == 1  # the same record continued, not a second one
    assert records[0]["energy_joules"]["gpu"] > kept + 2 * watts
    assert records[0]["end"] is None  # still running when the agent stopped


@real
def test_hostile_names_never_break_metrics_ledger_or_cli(cgroups: RealCgroups, tmp_path: Path) -> None:
    # The kernel refuses newlines and names over 255 bytes; tests/collectors/test_job_discovery.py covers
    # those on generated trees, tests/commands/test_jobs.py in the ledger and the CLI.
    non_utf8 = b"bad\xff\xfe".decode("utf-8", "surrogateescape")
    names = ["q\"uo'te", "back\\slash", non_utf8, "x" * 240]
    for i, name in enumerate(names):
        cgroups.start(f"system.slice/{name}-{i}.service", "burner" if i == 0 else "sleeper")
    cfg = _agent_config(tmp_path, jobs="{labels: [name, user]}")
    with AgentProcess(["--config", str(cfg), "--interval", "0.2", *NO_RAPL]) as agent:
        agent.wait_ready()
        wait_for(lambda: (agent.value("greenai_jobs_running") or 0) >= len(names), 15, "the services")
        agent.wait_samples(10)
        text = agent.metrics_text()
        api = json.loads(http_get(f"{agent.url}/api/v1/jobs"))
        agent.stop()
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert {"back\\slash-1.service", "q\"uo'te-0.service"} <= {j["job_id"] for j in api}
    table = run_greenai("jobs", "--config", str(cfg))
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if " systemd " in line]
    assert len(rows) == len(names)  # one line per job, whatever its name
    listed = json.loads(run_greenai("jobs", "--json", "--config", str(cfg)).stdout)
    ids = {j["job_id"] for j in listed}
    assert "q\"uo'te-0.service" in ids and "back\\slash-1.service" in ids
    assert "bad\ufffd\ufffd-2.service" in ids
    assert any(i.startswith("x" * 200) for i in ids)


@real
def test_every_scrape_adds_up(cgroups: RealCgroups, tmp_path: Path) -> None:
    cgroups.start("slurm/uid_0/job_880/step_0", "burner")
    cgroups.start(f"docker/{'fe' * 32}", "sleeper")
    with AgentProcess(["--config", str(_agent_config(tmp_path)), "--interval", "0.05", *NO_RAPL]) as agent:
        agent.wait_ready()
        agent.wait_samples(5)
        scrapes = [agent.samples() for _ in range(60)]
        agent.stop()
    for samples in scrapes:
        for component in ("cpu", "dram"):
            node = _total(samples, "greenai_node_energy_joules_total", component)
            parts = sum(
                _total(samples, name, component)
                for name in (
                    "greenai_job_energy_joules_total",
                    "greenai_jobs_unexported_energy_joules_total",
                    "greenai_node_unattributed_energy_joules_total",
                )
            )
            assert parts == pytest.approx(node, rel=1e-9), component


def _total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, component: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and ("component", component) in labels)
