"""A real agent with a BMC that stops answering: a timing-out BMC and one that answers 500 never
delay a sample, show as greenai_collector_up{collector="bmc"} 0 with their reason counted, and the
wall counter resumes when the BMC does. The BMC is a local HTTPS Redfish service
(tests/support/redfish.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import AgentProcess, wait_for
from tests.support.redfish import FakeBmc

INTERVAL_S = 0.1
TIMEOUT_S = 0.5
"""The BMC's request timeout: five sampling intervals."""
USER, PASSWORD = "greenai", "only-in-the-password-file"


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[FakeBmc]:
    (tmp_path / "bmc").mkdir()
    with FakeBmc(tmp_path / "bmc", username=USER, password=PASSWORD, power_w=800.0) as served:
        yield served


@pytest.fixture
def agent(bmc: FakeBmc, tmp_path: Path) -> Iterator[AgentProcess]:
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"ledger: {{path: '{tmp_path / 'ledger.db'}'}}\n"
        "collectors:\n"
        f"  bmc: {{enabled: 'true', url: '{bmc.url}', username: {USER}, password_file: '{password}',\n"
        f"        verify_tls: '{bmc.ca_file}', interval_seconds: 1, timeout_seconds: {TIMEOUT_S}}}\n"
    )
    with AgentProcess(["--config", str(config), "--interval", str(INTERVAL_S)]) as running:
        running.wait_ready()
        yield running


def watch(agent: AgentProcess, seconds: float) -> tuple[float, float, set[float]]:
    """Scrape for `seconds`: the longest sample duration seen, samples taken, and bmc's up values."""
    longest, ups = 0.0, set()
    first = agent.value("greenai_agent_samples_total") or 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        longest = max(longest, agent.value("greenai_agent_sample_duration_seconds") or 0.0)
        ups.add(agent.value("greenai_collector_up", collector="bmc") or 0.0)
        time.sleep(0.05)
    return longest, (agent.value("greenai_agent_samples_total") or 0.0) - first, ups


def wall_j(agent: AgentProcess) -> float:
    return agent.value("greenai_node_energy_joules_total", component="node", source="redfish") or 0.0


@pytest.mark.parametrize(("mode", "reason"), [("slow", "timeout"), ("fail", "http_500")])
def test_a_bmc_that_stops_answering_never_delays_a_sample(
    agent: AgentProcess, bmc: FakeBmc, mode: str, reason: str
) -> None:
    wait_for(lambda: wall_j(agent) > 0, 15, "the wall counter to move")
    _, taken_ok, ups = watch(agent, 2.0)
    assert ups == {1.0}
    bmc.delay_s = 30.0
    bmc.mode = mode
    wait_for(lambda: agent.value("greenai_collector_up", collector="bmc") == 0.0, 10, "bmc down")
    stalled = wall_j(agent)
    longest, taken_down, ups = watch(agent, 3.0)
    assert ups == {0.0}
    # A request to the BMC takes up to 0.5 s; no sample ever waited for one. A loose bound: the
    # machine may be busy, but a sample that waited would take at least the timeout.
    assert longest < TIMEOUT_S / 2
    assert taken_down >= 0.5 * taken_ok * 3.0 / 2.0  # sampling kept its pace (a margin for load)
    assert (agent.value("greenai_collector_errors_total", collector="bmc", reason=reason) or 0) > 0
    assert wall_j(agent) == pytest.approx(stalled)  # no energy made up while the BMC is silent
    bmc.mode = "ok"
    wait_for(lambda: agent.value("greenai_collector_up", collector="bmc") == 1.0, 10, "bmc back")
    wait_for(lambda: wall_j(agent) > stalled, 10, "the wall counter to move again")
    assert PASSWORD not in agent.log
