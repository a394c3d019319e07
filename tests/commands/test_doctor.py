"""`greenai doctor`: which sources work, their devices, and what to do about each problem."""

from __future__ import annotations

import io
import json
import subprocess
import time
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


# ---- the carbon section ----


def _doctor_with(tmp_path: Path, carbon_yaml: str, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"node_name: gpu-01\n{carbon_yaml}")
    return _doctor("--config", str(cfg), "--sysfs", "/nonexistent-sys", *args)


def test_carbon_location_fr_resolves_to_france_with_its_source(tmp_path: Path) -> None:
    out = _doctor_with(tmp_path, "carbon: {location: FR}\n")
    assert out.returncode == 0, out.stdout + out.stderr
    carbon = [line for line in out.stdout.splitlines() if line.startswith("carbon")]
    assert "site default: FR -> FRA = France:" in carbon[0] and "gCO2e/kWh" in carbon[0]
    assert "this node (gpu-01) is priced at site default (the only site)" in carbon[-1]
    assert "Our World in Data" in out.stdout and "warning" not in "\n".join(carbon)
    report = json.loads(_doctor_with(tmp_path, "carbon: {location: FR}\n", "--json").stdout)["carbon"]
    (site,) = report["sites"]
    assert report["ok"] and report["warnings"] == [] and report["node_site"] == "default (the only site)"
    assert site["location"] == "FRA" and site["place"] == "France" and not site["fallback"]
    assert site["citation"].startswith("Ember and Energy Institute via Our World in Data")
    assert site["pue"] == {"min": 1.0, "max": 1.0, "monthly": [1.0] * 12} and site["hourly"] is None


def test_a_bogus_location_exits_1_naming_the_nearest_codes(tmp_path: Path) -> None:
    carbon = (
        "carbon:\n  sites:\n    main: {location: Frnace, nodes: ['gpu-.*']}\n    lab: {location: US-CA}\n"
    )
    out = _doctor_with(tmp_path, carbon)
    assert out.returncode == 1, out.stdout + out.stderr
    bad = next(line for line in out.stdout.splitlines() if "site main" in line)
    assert "unknown location" in bad and "'carbon.sites.main.location'" in bad and "FRA (France)" in bad
    assert "site lab: US-CA = California, United States" in out.stdout  # the other site is still checked
    assert out.stdout.splitlines()[-1].endswith("carbon: fix the problems above")
    report = json.loads(_doctor_with(tmp_path, carbon, "--json").stdout)["carbon"]
    assert not report["ok"] and report["sites"][0]["nearest"][0] == "FRA (France)"


def test_no_location_warns_but_passes(tmp_path: Path) -> None:
    out = _doctor_with(tmp_path, "")
    assert out.returncode == 0, out.stdout + out.stderr
    warning = next(line for line in out.stdout.splitlines() if line.startswith("carbon    warning"))
    assert "world average" in warning and "set carbon.location" in warning


def test_an_hourly_series_its_coverage_and_the_sites_figures(tmp_path: Path) -> None:
    year = time.gmtime().tm_year
    rows = "".join(f"{year}-01-{day:02d}T{hour:02d}:00:00Z,50,80\n" for day in (1, 2) for hour in range(24))
    csv = tmp_path / "ci.csv"
    csv.write_text("timestamp,g_per_kwh,cfe_pct\n" + rows)
    carbon = (
        f"carbon:\n  sites:\n    hall:\n      location: SE3\n      intensity_csv: {csv}\n"
        "      pue: [1.1, 1.1, 1.1, 1.2, 1.2, 1.3, 1.4, 1.4, 1.3, 1.2, 1.1, 1.1]\n"
        "      cfe_contract_pct: 40\n      supplier_g_per_kwh: 20\n      nodes: ['gpu-.*']\n"
        "    office:\n      location: gcp:europe-west1\n      nodes: ['cpu-.*']\n"
    )
    out = _doctor_with(tmp_path, carbon)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{csv}, 48 hours ({year}); covers 1% of {year}" in out.stdout
    assert "PUE 1.1 to 1.4 by month; CFE contracts 40%; supplier factor 20 g/kWh" in out.stdout
    assert "site office: gcp:europe-west1 = Google Cloud europe-west1 (Belgium)" in out.stdout
    assert "this node (gpu-01) is priced at site hall (matches gpu-.*)" in out.stdout
    report = json.loads(_doctor_with(tmp_path, carbon, "--json").stdout)["carbon"]
    hall = report["sites"][0]
    assert hall["hourly"]["hours"] == 48 and hall["hourly"]["current_year"] == year
    assert hall["nodes"] == ["gpu-.*"] and hall["cfe_contract_pct"] == 40
    assert report["warnings"] == []  # the node matched a site: no word about unmatched nodes


def test_a_node_that_matches_no_site_is_named_in_a_warning(tmp_path: Path) -> None:
    sites = "    a: {location: FR, nodes: ['cpu-.*']}\n    b: {location: DE, nodes: ['x-.*']}\n"
    carbon = f"carbon:\n  sites:\n{sites}"
    report = json.loads(_doctor_with(tmp_path, carbon, "--json").stdout)["carbon"]
    assert report["node_site"] is None
    (warning,) = report["warnings"]
    assert "node gpu-01 matches no site" in warning
