"""A real Prometheus server scrapes a running agent that measures a generated powercap tree and fake
GPUs on real time; increase() over a window matches the simulated energy within 2%."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nvml import FakeGpu, write_state
from tests.support.powercap import PowercapTree, Zone, server_zones
from tests.support.processes import AgentProcess, PrometheusServer, wait_for

WINDOW_S = 15
PACKAGE_W, DRAM_W, PSYS_W = 120.0, 15.0, 200.0
GPU_COUNTER_W, GPU_POWER_ONLY_W = 300.0, 150.0


@pytest.fixture
def live_tree(tmp_path: Path) -> Iterator[PowercapTree]:
    """A 2-socket powercap tree whose counters follow real time."""
    zones = [*server_zones(2, PACKAGE_W, DRAM_W), Zone((2,), "psys", PSYS_W)]
    with PowercapTree(tmp_path / "sys", zones) as tree, tree.following_real_time():
        yield tree


def test_increase_matches_simulated_energy(
    tmp_path: Path, live_tree: PowercapTree, fake_nvml_lib: Path
) -> None:
    state = tmp_path / "nvml.state"
    now = time.time()
    write_state(
        state,
        [
            FakeGpu(0, power_mw=int(GPU_COUNTER_W * 1000), energy_mj=7_000_000, live=True, t0=now),
            FakeGpu(1, power_mw=int(GPU_POWER_ONLY_W * 1000), counter=False, live=True, t0=now),
        ],
    )
    env = {"LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(state)}
    args = ["--interval", "0.2", "--sysfs", str(live_tree.root)]
    with AgentProcess(args, env=env) as agent:
        agent.wait_ready()
        with PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{agent.port}"]) as prom:
            prom.wait_ready()

            def enough_history() -> bool:
                got = prom.query(f"count_over_time(greenai_agent_samples_total[{WINDOW_S + 3}s])")
                return bool(got) and float(got[0]["value"][1]) >= WINDOW_S + 2

            wait_for(enough_history, WINDOW_S + 30, "prometheus to hold a full window", poll=0.5)
            at = time.time() - 0.5
            rows = prom.query(f"increase(greenai_node_energy_joules_total[{WINDOW_S}s])", at)
            by_component = prom.query(
                f"sum by (component) (increase(greenai_node_energy_joules_total[{WINDOW_S}s]))", at
            )
            up = prom.query("greenai_collector_up", at)

    measured = {
        (r["metric"]["component"], r["metric"]["device"], r["metric"]["source"]): float(r["value"][1])
        for r in rows
    }
    expected = {
        ("cpu", "package-0", "rapl"): PACKAGE_W,
        ("cpu", "package-1", "rapl"): PACKAGE_W,
        ("dram", "package-0", "rapl"): DRAM_W,
        ("dram", "package-1", "rapl"): DRAM_W,
        ("platform", "psys", "rapl"): PSYS_W,
        ("gpu", "gpu0", "nvml"): GPU_COUNTER_W,
        ("gpu", "gpu1", "nvml"): GPU_POWER_ONLY_W,
    }
    assert set(measured) == set(expected), measured
    for key, watts in expected.items():
        assert measured[key] == pytest.approx(watts * WINDOW_S, rel=0.02), key
    totals = {r["metric"]["component"]: float(r["value"][1]) for r in by_component}
    assert totals["cpu"] == pytest.approx(2 * PACKAGE_W * WINDOW_S, rel=0.02)
    assert totals["gpu"] == pytest.approx((GPU_COUNTER_W + GPU_POWER_ONLY_W) * WINDOW_S, rel=0.02)
    assert {r["metric"]["collector"]: r["value"][1] for r in up} == {"rapl": "1", "nvml": "1"}
