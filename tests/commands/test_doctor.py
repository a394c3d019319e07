"""`greenai doctor`: which sources work, their devices, and what to do about each problem."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

from agent.commands import doctor
from agent.config import settings
from tests.support.nvml import FakeGpu, write_state
from tests.support.powercap import PowercapTree, server_zones
from tests.support.privileges import unprivileged
from tests.support.processes import run_greenai


def _doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_greenai("doctor", *args, env=env)


def test_without_rapl_or_gpu_it_says_it_is_estimating_and_why() -> None:
    out = _doctor("--sysfs", "/nonexistent-sys", env={"LD_LIBRARY_PATH": "/nonexistent"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    rapl = next(line for line in lines if line.startswith("rapl"))
    nvml = next(line for line in lines if line.startswith("nvml"))
    assert "not found" in rapl and "no RAPL zones" in rapl
    assert "not found" in nvml and "libnvidia-ml.so.1" in nvml
    assert any(line.strip().startswith("to fix:") and "modprobe" in line for line in lines)
    estimate = next(line for line in lines if line.startswith("estimate"))
    assert "W by utilisation" in estimate and "W/GB" in estimate
    result = lines[-1]
    assert result.startswith("result: ESTIMATING cpu, dram")
    assert "rapl: not found" in result and "nvml: not found" in result and 'source="estimate"' in result


def test_with_rapl_and_gpus_it_measures_and_lists_devices(
    tmp_path: Path, sysfs: Path, fake_nvml_lib: Path
) -> None:
    state = tmp_path / "nvml.state"
    write_state(state, [FakeGpu(0, power_mw=250_000), FakeGpu(1, counter=False, power_mw=100_000)])
    with PowercapTree(sysfs, server_zones(2)):
        out = _doctor(
            "--sysfs",
            str(sysfs),
            "--json",
            env={"LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(state)},
        )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    by_name = {c["name"]: c for c in report["collectors"]}
    assert by_name["rapl"]["status"] == "found" and by_name["rapl"]["active"]
    assert {(d["component"], d["device"]) for d in by_name["rapl"]["devices"]} == {
        ("cpu", "package-0"),
        ("cpu", "package-1"),
        ("dram", "package-0"),
        ("dram", "package-1"),
    }
    gpus = {d["device"]: d["method"] for d in by_name["nvml"]["devices"]}
    assert gpus == {"gpu0": "counter", "gpu1": "power"}
    assert by_name["estimate"]["status"] == "disabled" and not by_name["estimate"]["active"]
    assert report["summary"] == "measuring with rapl, nvml"


def test_root_only_rapl_is_permission_denied_with_the_fix(sysfs: Path) -> None:
    zones = server_zones(1)
    with PowercapTree(sysfs, zones) as tree:
        for zone in zones:
            tree.make_root_only(zone)
        cfg = settings.load(None, {"host": {"sysfs": str(sysfs)}, "collectors": {"nvml": {"enabled": False}}})
        out = io.StringIO()
        with unprivileged():
            code = doctor.run(cfg, out)
    text = out.getvalue()
    assert code == 0  # the estimate still works
    rapl = next(line for line in text.splitlines() if line.startswith("rapl"))
    assert "permission denied" in rapl and "energy_uj" in rapl
    rapl_block = text.split("\nnvml")[0].splitlines()
    fix = next(line.strip() for line in rapl_block if line.strip().startswith("to fix:"))
    assert "run the agent as root" in fix and "read access" in fix
    assert "result: ESTIMATING cpu, dram" in text and "rapl: permission denied" in text


def test_nothing_works_exits_1(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "collectors: {rapl: {enabled: false}, nvml: {enabled: false}, estimate: {enabled: false}}\n"
    )
    out = _doctor("--config", str(cfg))
    assert out.returncode == 1
    assert (
        out.stdout.splitlines()[-1]
        == "result: no energy source works on this node; fix one of the problems above"
    )
    assert out.stdout.count("disabled by collectors.") == 3


def test_job_accounting_checks(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"ledger: {{path: {tmp_path / 'x' / 'ledger.db'}}}\nslurm: {{scontrol: /nonexistent/scontrol}}\n"
    )
    out = _doctor("--config", str(cfg), "--json", "--sysfs", "/nonexistent-sys")
    checks = {c["name"]: c for c in json.loads(out.stdout)["jobs"]}
    assert checks["ledger"]["status"] == "found" and "will be created" in checks["ledger"]["reason"]
    assert checks["slurm"]["status"] != "found" and "/nonexistent/scontrol" in checks["slurm"]["reason"]
    assert checks["jobs"]["status"] == "found" and "cgroup" in checks["jobs"]["reason"]
    with unprivileged():
        probe = doctor.job_checks(settings.load(None, {"ledger": {"path": "/root/greenai/ledger.db"}}))[-1][1]
    assert probe.status.value == "permission denied" and "ledger.path" in probe.fix
