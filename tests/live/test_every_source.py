"""Every new source found, read and attributed to jobs through the agent's own wiring: AMD SMI over
the fake libamd_smi.so, hwmon (an Intel GPU, its processes from DRM fdinfo), a BMC over Redfish (a
local HTTPS service) for the wall, and RAPL; `other` split with conservation exact.

Runs tests/live/every_source_node.py in a process of its own (the amdsmi bindings load the library
once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collectors.base import NOT_IN_TOTAL
from tests.live.every_source_node import AMD_W, DRAM_W, INTEL_W, PACKAGE_W, SECONDS, WALL_W
from tests.support.redfish import FakeBmc

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "greenai", "not-in-the-output"


@pytest.fixture
def node(fake_amdsmi_lib: Path, tmp_path: Path) -> dict[str, Any]:
    password = tmp_path / "bmc-password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    (tmp_path / "bmc").mkdir()
    with FakeBmc(tmp_path / "bmc", username=USER, password=PASSWORD, power_w=WALL_W) as bmc:
        assert bmc.ca_file is not None
        env = {k: v for k, v in os.environ.items() if k not in ("ROCM_PATH", "ROCM_HOME")}
        env |= {"LD_LIBRARY_PATH": str(fake_amdsmi_lib), "FAKE_AMDSMI_STATE": str(tmp_path / "amd.state")}
        done = subprocess.run(
            [sys.executable, "-m", "tests.live.every_source_node", str(tmp_path / "node"),
             str(tmp_path / "ledger.db"), "--amd-state", str(tmp_path / "amd.state"), "--bmc-url", bmc.url,
             "--bmc-ca", str(bmc.ca_file), "--bmc-user", USER, "--bmc-password", str(password)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_every_source_is_found_and_read(node: dict[str, Any]) -> None:
    assert {name: node["sources"][name] for name in ("rapl", "amdsmi", "hwmon", "bmc")} == dict.fromkeys(
        ("rapl", "amdsmi", "hwmon", "bmc"), "OK"
    )
    assert node["up"] == {"rapl": True, "amdsmi": True, "hwmon": True, "bmc": True}
    by_key = {(c, d, s): j for c, d, s, j in node["energy"]}
    assert by_key[("gpu", "gpu0", "amdsmi")] == pytest.approx(SECONDS * AMD_W, rel=1e-6)
    assert by_key[("gpu", "intelgpu0", "hwmon")] == pytest.approx(SECONDS * INTEL_W)
    wall = sum(j for (c, _, s), j in by_key.items() if c == "node" and s == "redfish")
    assert wall == pytest.approx(SECONDS * WALL_W, rel=1e-6)
    counted = SECONDS * (PACKAGE_W + DRAM_W + AMD_W + INTEL_W)
    assert by_key[("other", "node", "redfish")] == pytest.approx(SECONDS * WALL_W - counted, rel=1e-6)
    assert sum(j for (c, _, _), j in by_key.items() if c not in NOT_IN_TOTAL) == pytest.approx(wall, rel=1e-6)


def test_each_gpu_goes_to_the_job_on_it_and_energy_is_conserved(node: dict[str, Any]) -> None:
    jobs, left = node["jobs"], node["unattributed"]
    # The first interval is every counter's baseline; the GPUs' first process listings have no
    # engine share yet, so the split falls back to memory: each GPU's one job gets all of it.
    assert jobs["51"]["gpu"] == pytest.approx(SECONDS * AMD_W, rel=1e-6)
    assert jobs["52"]["gpu"] == pytest.approx(SECONDS * INTEL_W, rel=1e-6)
    by_component: dict[str, float] = {}
    for component, _, _, joules in node["energy"]:
        by_component[component] = by_component.get(component, 0.0) + joules
    for component, joules in by_component.items():
        given = sum(job.get(component, 0.0) for job in jobs.values())
        assert given + left.get(component, 0.0) == pytest.approx(joules, rel=1e-9), component
    # `other` follows each job's share of the counted energy.
    counted = SECONDS * (PACKAGE_W + DRAM_W + AMD_W + INTEL_W)
    other = SECONDS * WALL_W - counted
    for job in jobs.values():
        mine = sum(j for c, j in job.items() if c != "other")
        assert job["other"] == pytest.approx(other * mine / counted, rel=1e-6)
    assert jobs["51"]["other"] > 2 * jobs["52"]["other"]
