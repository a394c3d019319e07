"""A GH200 node's energy is counted once: NVML's module counter, with Grace's own sensors as detail.

Runs tests/live/superchip_node.py in a process of its own (pynvml loads the fake library once per
process), through `probe_sources`, the Sampler and the Accountant as the agent wires them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collectors.base import NOT_IN_TOTAL
from tests.live.superchip_node import CPU_W, GRACE_W, MODULE_W, SECONDS, SYSIO_W

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def node(fake_nvml_lib: Path, tmp_path: Path) -> dict[str, Any]:
    state = tmp_path / "state"
    env = {**os.environ, "LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(state)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.live.superchip_node", str(tmp_path / "node"),
         str(tmp_path / "ledger.db"), "--state", str(state)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_node_total_is_the_module_counter_not_module_plus_grace(node: dict[str, Any]) -> None:
    counted = sum(j for c, _, _, j in node["energy"] if c not in NOT_IN_TOTAL)
    assert counted == pytest.approx(SECONDS * MODULE_W, rel=1e-9)
    by_key = {(c, d, s): j for c, d, s, j in node["energy"]}
    assert by_key[("module", "gpu0", "nvml")] == pytest.approx(SECONDS * MODULE_W)
    # Grace's meters are shown, as detail inside the module, and hwmon's copy of the module is not read.
    assert by_key[("grace", "socket0", "hwmon")] == pytest.approx(SECONDS * GRACE_W)
    assert by_key[("grace", "socket0.cpu", "hwmon")] == pytest.approx(SECONDS * CPU_W)
    assert by_key[("grace", "socket0.sysio", "hwmon")] == pytest.approx(SECONDS * SYSIO_W)
    assert not [k for k in by_key if k[0] == "module" and k[2] == "hwmon"]
    assert not [k for k in by_key if k[0] in ("cpu", "dram", "gpu")]  # nothing estimated on top


def test_the_sources_say_what_each_meter_is(node: dict[str, Any]) -> None:
    sources = node["sources"]
    assert sources["nvml"]["devices"] == [["module", "gpu0", "nvml"]]
    assert sorted(sources["hwmon"]["devices"]) == [
        ["grace", "socket0", "hwmon"],
        ["grace", "socket0.cpu", "hwmon"],
        ["grace", "socket0.sysio", "hwmon"],
    ]
    assert sources["estimate"]["status"] == "DISABLED"
    assert "not needed" in sources["estimate"]["reason"]


def test_the_module_is_attributed_once_grace_part_by_cpu_the_rest_by_gpu(node: dict[str, Any]) -> None:
    grace = GRACE_W / MODULE_W  # the Grace socket's part of the module
    jobs, left = node["jobs"], node["unattributed"]
    gpu_job = SECONDS * MODULE_W * ((1 - grace) + grace * 0.1)  # the GPU's part, and 0.1 of the CPU's
    cpu_job = SECONDS * MODULE_W * grace * 0.9
    assert jobs["77"] == {"module": pytest.approx(gpu_job, rel=1e-6)}
    assert jobs["78"] == {"module": pytest.approx(cpu_job, rel=1e-6)}
    # Conservation: jobs + unattributed = the module counter, and Grace's detail goes to no job.
    assert jobs["77"]["module"] + jobs["78"]["module"] + left.get("module", 0.0) == pytest.approx(
        SECONDS * MODULE_W, rel=1e-9
    )
    assert left["grace"] == pytest.approx(SECONDS * (GRACE_W + CPU_W + SYSIO_W))
