"""`greenai agent` as a real process on this machine: it starts on the estimate, serves /metrics,
passes promtool's lint, and stops cleanly on SIGTERM and SIGINT within 2 seconds."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import AgentProcess, http_get, run_greenai

HOST_ROOTS = ["--sysfs", "/nonexistent-sys"]  # this machine has no RAPL; make that certain on any host


def _estimate_only_env() -> dict[str, str]:
    return {"LD_LIBRARY_PATH": "/nonexistent"}


def test_starts_on_the_estimate_and_serves_metrics() -> None:
    with AgentProcess(["--interval", "0.1", *HOST_ROOTS], env=_estimate_only_env()) as agent:
        agent.wait_ready()
        agent.wait_samples(5)
        first = agent.value("greenai_node_energy_joules_total", component="cpu", source="estimate")
        agent.wait_samples(8)
        later = agent.value("greenai_node_energy_joules_total", component="cpu", source="estimate")
        assert first is not None and later is not None and later > first > 0
        assert agent.value("greenai_node_energy_joules_total", component="dram", source="estimate")
        assert agent.value("greenai_node_power_watts", component="cpu", source="estimate")
        assert agent.value("greenai_collector_up", collector="estimate") == 1
        assert agent.value("greenai_collector_up", collector="rapl") is None  # not found: not sampled
        assert agent.value("greenai_build_info") == 1
        assert agent.value("greenai_agent_sample_duration_seconds") is not None
        assert http_get(f"{agent.url}/healthz") == b"ok\n"
        code, took = agent.stop(signal.SIGTERM)
    assert code == 0 and took < 2.0, agent.log
    assert "estimate" in agent.log and "stopped" in agent.log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_within_two_seconds(sig: int) -> None:
    # A long interval: the agent must not wait for the next tick to notice the signal.
    with AgentProcess(["--interval", "30", *HOST_ROOTS], env=_estimate_only_env()) as agent:
        agent.wait_ready()
        code, took = agent.stop(sig)
    assert code == 0, agent.log
    assert took < 2.0
    assert "Traceback" not in agent.log


def test_metrics_pass_promtool_and_use_no_reserved_labels() -> None:
    with AgentProcess(["--interval", "0.1", *HOST_ROOTS], env=_estimate_only_env()) as agent:
        agent.wait_ready()
        agent.wait_samples(3)
        text = agent.metrics_text()
        labels = {name for (_, pairs) in agent.samples() for name, _ in pairs}
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == "" and lint.stderr.strip() == "", lint.stdout + lint.stderr
    assert "job" not in labels and "instance" not in labels
    greenai = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("greenai_")}
    for name in [
        "greenai_node_energy_joules_total",
        "greenai_node_power_watts",
        "greenai_collector_up",
        "greenai_agent_sample_duration_seconds",
        "greenai_build_info",
    ]:
        assert name in greenai


def test_listen_address_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"ledger: {{path: {tmp_path / 'ledger.db'}}}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_greenai("agent", "--config", str(cfg), "--listen", f"127.0.0.1:{port}", *HOST_ROOTS)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("greenai:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "--listen" in errors[0]
    assert "Traceback" not in out.stderr


def test_a_required_collector_that_is_missing_stops_the_start(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("collectors:\n  rapl: {enabled: true}\n")
    out = run_greenai("agent", "--config", str(cfg), *HOST_ROOTS)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("greenai:")]
    assert len(errors) == 1
    assert "collectors.rapl.enabled is true" in errors[0] and "not found" in errors[0]
