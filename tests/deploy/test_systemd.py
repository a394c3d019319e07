"""The systemd unit and the default config it ships with (docs/systemd.md).

`systemd-analyze verify` needs the ExecStart binary to exist, and the unit points at
/opt/greenai/venv/bin/greenai, so the checks run on a copy of the unit whose ExecStart is the
`greenai` installed with this checkout. Both checks are skipped only where systemd-analyze is
missing (scripts/test installs the `systemd` package then).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.carbon.data import place_name
from agent.carbon.model import CarbonModel
from agent.config import settings
from tests.support.examples import uncomment_block
from tests.support.nvml import FakeGpu, write_state

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "greenai-agent.service"
CONFIG = REPO / "systemd" / "agent.yaml"
INSTALLED_EXEC = "/opt/greenai/venv/bin/greenai"
MAX_EXPOSURE = 5.0

analyze = shutil.which("systemd-analyze") or shutil.which("systemd-analyze", path="/usr/bin:/bin")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze not installed (Debian package systemd; scripts/test installs it)"
)


def _greenai() -> str:
    found = shutil.which("greenai") or str(Path(sys.executable).parent / "greenai")
    assert Path(found).exists(), "the greenai entry point is not installed (pip install -e .)"
    return found


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's greenai, same file name."""
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED_EXEC} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_EXEC, _greenai()), encoding="utf-8")
    return copy


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert analyze is not None
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run([analyze, *args], capture_output=True, text=True, timeout=120, check=False, env=env)


@needs_analyze
def test_unit_verifies_without_a_single_message(unit_copy: Path) -> None:
    # verify exits 0 even for misspelt keys ("Unknown key ..., ignoring"): any output is a failure.
    result = _analyze("verify", str(unit_copy))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@needs_analyze
def test_verify_would_catch_a_misspelt_key(unit_copy: Path) -> None:
    """The check above means something: a typo in a hardening key does produce output."""
    unit_copy.write_text(
        unit_copy.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"), encoding="utf-8"
    )
    result = _analyze("verify", str(unit_copy))
    assert "ProtectSytem" in result.stdout + result.stderr


@needs_analyze
def test_unit_exposure_is_at_most_five(unit_copy: Path) -> None:
    result = _analyze("security", "--offline=true", "--no-pager", str(unit_copy))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert match, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_unit_settings() -> None:
    """The decisions docs/systemd.md explains, pinned so that a later edit does not undo them."""
    lines = [line.strip() for line in UNIT.read_text(encoding="utf-8").splitlines()]
    settings: dict[str, list[str]] = {}
    for line in lines:
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    assert settings["ExecStart"] == [f"{INSTALLED_EXEC} agent --config /etc/greenai/agent.yaml"]
    assert settings["User"] == ["root"]
    assert set(settings["CapabilityBoundingSet"][0].split()) == {"CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"}
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["StateDirectory"] == ["greenai"] and settings["StateDirectoryMode"] == ["0700"]
    assert "ReadWritePaths" not in settings  # the state directory is the only writable path
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == ["2"]  # a config mistake: restarting cannot help
    assert settings["DevicePolicy"] == ["closed"]
    assert "PrivateDevices" not in settings  # it would hide /dev/nvidia*
    assert "SecureBits" not in settings  # noroot would strip root's capabilities at exec
    assert settings["MemoryMax"] == ["256M"]


def test_default_config_loads_with_the_service_values() -> None:
    cfg = settings.load(CONFIG)
    assert cfg.listen == "127.0.0.1:9877"
    assert cfg.interval_seconds == 1.0
    # The ledger sits in the unit's StateDirectory, the only path the service may write.
    assert cfg.ledger.path == Path("/var/lib/greenai/ledger.db")
    assert cfg.ledger.flush_seconds == 5.0
    assert cfg.host == settings.HostPaths()
    assert cfg.collectors.rapl.enabled == "auto"
    assert cfg.collectors.nvml.enabled == "auto"
    assert cfg.collectors.estimate.enabled == "auto"
    assert cfg.collectors.estimate.cpu_tdp_watts is None
    assert cfg.attribution.idle_policy == "share"
    assert cfg.slurm.environ_fallback == "auto"
    assert cfg.api.allow_annotate is False
    assert cfg.work.rules == ()
    # Everything written out is a default: the file documents them without changing behaviour.
    defaults = settings.load(None)
    assert cfg.collectors == defaults.collectors
    assert cfg.jobs == defaults.jobs and cfg.slurm == defaults.slurm and cfg.kubernetes == defaults.kubernetes


def test_doctor_accepts_the_default_config() -> None:
    result = subprocess.run(
        [_greenai(), "doctor", "--config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# MemoryDenyWriteExecute=yes: the unit's seccomp filter refuses writable+executable memory. Linux
# 6.3+ offers the same rule per process (prctl PR_SET_MDWE), so the agent, ctypes and pynvml can be
# run under it here. ctypes needs W+X memory only for Python callbacks (CFUNCTYPE), which neither the
# agent nor pynvml creates.
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
MDWE_WRAPPER = f"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit(78)
except OSError:
    pass
from agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _mdwe_available() -> bool:
    # Try in a child: the flag cannot be cleared once set.
    probe = "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) < 0)"  # PR_GET_MDWE
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


@pytest.mark.skipif(not _mdwe_available(), reason="kernel without PR_SET_MDWE (< 6.3)")
def test_agent_and_nvml_work_without_writable_executable_memory(fake_nvml_lib: Path, tmp_path: Path) -> None:
    state = tmp_path / "nvml.state"
    write_state(state, [FakeGpu(0, power_mw=300_000, energy_mj=1_000_000, live=True, t0=time.time())])
    env = {**os.environ, "LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(state)}
    result = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, "doctor", "--json", "--config", str(CONFIG)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    nvml = next(c for c in json.loads(result.stdout)["collectors"] if c["name"] == "nvml")
    assert nvml["active"], nvml


def test_the_carbon_example_parses_and_resolves_when_uncommented(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(uncomment_block(CONFIG.read_text(encoding="utf-8"), "carbon:"), encoding="utf-8")
    carbon = settings.load(path).carbon
    assert carbon.sites and carbon.default_site == "main"
    warnings: list[str] = []
    model = CarbonModel.from_config(carbon, warn=warnings.append)
    assert warnings == []
    for site in model.sites:
        assert not site.annual.provenance.fallback, site.name
        assert place_name(site.annual.provenance.location) == "France"
    assert model.site_for("node01").name == "main"
    result = subprocess.run(
        [_greenai(), "doctor", "--config", str(path), "--json", "--sysfs", "/nonexistent-sys"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["carbon"]["warnings"] == []


def test_the_report_example_parses_when_uncommented(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    text = uncomment_block(CONFIG.read_text(encoding="utf-8"), "carbon:")
    path.write_text(uncomment_block(text, "report:"), encoding="utf-8")
    report = settings.load(path).report
    assert report.organisation == "Example Institute for AI Research"
    assert report.contact.email == "sustainability@example.org"
    assert report.reporting_boundary.sites == ("main",)
