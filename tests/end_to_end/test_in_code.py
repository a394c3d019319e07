"""The researcher's side against a real agent: `greenai run` and the CodeCarbon drop-in, over the
agent's local socket (the caller is in no job here: its own process tree is measured)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from tests.support.processes import REPO, AgentProcess, wait_for

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "run" / "agent.sock"
    config = tmp_path / "agent.yaml"
    config.write_text(f"ledger: {{path: '{tmp_path / 'agent.db'}'}}\napi: {{socket: '{sock}'}}\n")
    with AgentProcess(["--config", str(config), "--interval", "0.2"]) as running:
        running.wait_ready()
        wait_for(sock.exists, 10, "the local socket")
        yield sock


def greenai(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], cwd=REPO, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_greenai_run_states_the_energy_and_its_csv_imports_back(
    agent: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emissions = tmp_path / "emissions.csv"
    done = greenai("run", "--socket", str(agent), "--csv", str(emissions), "--", sys.executable, "-c", BURN)
    assert done.returncode == 0, done.stderr
    assert "process tree" in done.stderr and "estimated" in done.stderr, done.stderr
    failed = greenai("run", "--socket", str(agent), "--", sys.executable, "-c", "raise SystemExit(3)")
    assert failed.returncode == 3
    (row,) = list(csv.DictReader(emissions.open()))
    kwh = float(row["energy_consumed"])
    assert kwh > 0 and row["tracking_mode"] == "greenai-agent"
    ledger = tmp_path / "imported.db"
    assert main(["import", "codecarbon", str(emissions), "--ledger", str(ledger)]) == 0
    capsys.readouterr()
    assert main(["jobs", "--ledger", str(ledger), "--json"]) == 0
    (job,) = json.loads(capsys.readouterr().out)
    assert job["energy_kwh"] == pytest.approx(kwh, rel=1e-6)


SCRIPT = """
from agent.tracker import EmissionsTracker  # was: from codecarbon import EmissionsTracker
import time

tracker = EmissionsTracker(project_name="demo", output_dir={out!r})
tracker.start()
t = time.process_time()
while time.process_time() - t < 0.5:
    pass
emissions = tracker.stop()
print("kg", emissions)
"""


def test_a_codecarbon_script_runs_unchanged_but_its_import_line(agent: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(out=str(tmp_path)))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "GREENAI_SOCKET": str(agent), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    kg = float(done.stdout.split()[-1])
    assert kg > 0
    (row,) = list(csv.DictReader((tmp_path / "emissions.csv").open()))
    assert row["project_name"] == "demo"
    assert float(row["emissions"]) == pytest.approx(kg)


def test_a_window_ended_at_once_has_no_energy_and_says_so(agent: Path) -> None:
    from agent.client import Monitor

    monitor = Monitor(str(agent))
    monitor.begin_window("instant")
    window = monitor.end_window("instant")
    assert window.owner["kind"] == "process"
    assert window.shares is None or set(window.shares) == {"measured", "estimated"}
    assert window.energy_j["total"] >= 0


def test_the_notebook_magic_prints_the_cells_energy(agent: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "agent.notebook")
    shell.run_cell_magic("greenai", str(agent), BURN.replace("1.0", "0.6") + "\nburnt = True")
    assert shell.user_ns["burnt"] is True  # the cell ran in the notebook's namespace
    err = capsys.readouterr().err
    # The kernel is in no job: its process tree, counted from the window's begin (three intervals).
    assert "greenai: `the cell` ran" in err and "process tree" in err, err
    assert "no energy figure" not in err and " 0 Wh" not in err, err
    shell.run_cell_magic("greenai", str(agent.parent / "nothing.sock"), "ran_anyway = 1")
    assert shell.user_ns["ran_anyway"] == 1
    assert "no energy figure for this cell" in capsys.readouterr().err
