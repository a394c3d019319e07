"""docs/api.openapi.yaml describes what a live agent answers: schemathesis generates requests from it
(valid and invalid) against a real agent over a seeded ledger, and finds no 500 and no answer that
the document does not allow. Bounded in examples and time, for CI on two cores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.export.seed import agent_config
from tests.support.processes import REPO, AgentProcess

DOCUMENT = REPO / "docs" / "api.openapi.yaml"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_the_document_names_every_endpoint() -> None:
    paths = yaml.safe_load(DOCUMENT.read_text())["paths"]
    assert set(paths) == {
        "/metrics",
        "/healthz",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/annotate",
    }


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(tmp_path: Path) -> None:
    config = agent_config(tmp_path)
    args = ["--config", str(config), "--interval", "0.5", "--sysfs", "/nonexistent-sys"]
    with AgentProcess(args, env={"LD_LIBRARY_PATH": "/nonexistent"}) as agent:
        agent.wait_ready()
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", str(DOCUMENT), "--url", agent.url,
             "--checks", CHECKS, "--max-examples", "25", "--seed", "20250601", "--workers", "2",
             "--phases", "examples,coverage,fuzzing", "--request-timeout", "10",
             "--generation-database", "none", "--no-color", "--suppress-health-check", "too_slow"],
            cwd=tmp_path, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert agent.proc.poll() is None
    assert "Traceback" not in agent.log, agent.log[-3000:]
