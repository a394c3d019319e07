"""`greenai run`: the command's exit code, the statement, the CodeCarbon row read back by `greenai import`."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from agent.commands.run import window_name
from agent.ledger.import_codecarbon import parse_codecarbon_csv
from agent.tracker import CODECARBON_COLUMNS, TRACKING_MODE
from tests.client.test_client import FakeAgent, serving
from tests.support.processes import REPO


@pytest.fixture
def fake_agent(tmp_path: Path) -> Iterator[FakeAgent]:
    with serving(tmp_path) as agent:
        yield agent


def test_the_exit_code_and_the_statement(fake_agent: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--socket", fake_agent.socket_path, "--", "sh", "-c", "exit 3"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("greenai: `sh -c exit 3` ran 1 min 0 s; meanwhile the job slurm:4242 used 10.0 Wh")
    assert "It is the job's figure: other steps of the job that ran at the same time are in it" in err
    assert "(cpu 0.500 Wh, dram 0.0500 Wh, gpu 9.45 Wh)" in err
    assert "4.00 g CO2e location-based, 0 g CO2e market-based" in err
    assert "Of this energy, 100.0 % was measured per job by greenai-agent (NVML, RAPL)." in err
    assert "1.50 s at the window's edges were interpolated" in err
    assert err.count("\n") == 1
    assert fake_agent.windows == {}


def test_a_process_tree_in_no_job_says_so_and_without_carbon_no_co2e(
    fake_agent: FakeAgent, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_agent.job, fake_agent.grams_per_kwh = None, None
    assert main(["run", "--socket", fake_agent.socket_path, "true"]) == 0
    err = capsys.readouterr().err
    assert f"meanwhile the process tree of pid {os.getpid()} used" in err
    assert "It is the process tree's figure: the command is in no job" in err
    assert "CO2e unknown (the agent has no carbon model" in err


def test_a_signal_that_ends_the_command_is_128_plus_n(fake_agent: FakeAgent) -> None:
    assert main(["run", "--socket", fake_agent.socket_path, "--", "sh", "-c", "kill -TERM $$"]) == 143


def test_a_missing_command_is_127_and_the_window_still_ends(
    fake_agent: FakeAgent, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--socket", fake_agent.socket_path, "--", "/no/such/program"]) == 127
    assert "greenai: /no/such/program: command not found" in capsys.readouterr().err
    assert fake_agent.windows == {}


def test_without_an_agent_the_command_runs_and_no_figure_is_invented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = tmp_path / "done"
    path = str(tmp_path / "none.sock")
    csv_file = tmp_path / "emissions.csv"
    code = main(["run", "--socket", path, "--csv", str(csv_file), "--", "sh", "-c", f"touch {done}; exit 5"])
    assert code == 5 and done.exists()
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"greenai: no energy figure for this run: no greenai agent answers at {path} (no such socket); "
        "is the greenai agent running on this node with api.socket set? see docs/in-code.md"
    ]
    assert not csv_file.exists()


def test_the_csv_row_reads_back_with_the_same_kwh(
    fake_agent: FakeAgent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "emissions.csv"
    for _ in range(2):
        assert main(["run", "--socket", fake_agent.socket_path, "--csv", str(rows), "--", "true"]) == 0
    with rows.open(newline="") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == CODECARBON_COLUMNS and len(table) == 3
    row = dict(zip(table[0], table[1], strict=True))
    assert row["tracking_mode"] == TRACKING_MODE and row["codecarbon_version"] == ""
    assert float(row["energy_consumed"]) == pytest.approx(0.01) and row["pue"] == "1"
    assert float(row["emissions"]) == pytest.approx(0.004) and row["gpu_count"] == "2"
    runs = parse_codecarbon_csv(rows)
    assert len(runs) == 2
    run = runs[0]
    assert run.cpu_kwh == pytest.approx(1800 / 3.6e6) and run.gpu_kwh == pytest.approx(34020 / 3.6e6)
    assert run.dram_kwh == pytest.approx(180 / 3.6e6) and run.unsplit_kwh == 0
    assert run.end - run.start == pytest.approx(60.0, abs=1)
    capsys.readouterr()
    ledger = tmp_path / "ledger.db"
    assert main(["import", "codecarbon", str(rows), "--ledger", str(ledger), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["kwh"] == pytest.approx(0.02)


def test_a_window_without_carbon_leaves_emissions_empty(
    fake_agent: FakeAgent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_agent.grams_per_kwh = None
    rows = tmp_path / "emissions.csv"
    assert main(["run", "--socket", fake_agent.socket_path, "--csv", str(rows), "--", "true"]) == 0
    with rows.open(newline="") as f:
        row = next(csv.DictReader(f))
    assert row["emissions"] == "" and row["emissions_rate"] == ""  # unknown, not 0


def test_the_card_is_markdown_on_stdout(fake_agent: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--card", "--socket", fake_agent.socket_path, "--", "true"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Energy of this run\n\n| field | value |\n|---|---|\n| command | `true` |\n")
    assert "| energy (IT, before PUE) | 10.0 Wh |" in out
    assert "| CO2e location-based | 4.00 g |" in out
    assert "| whose energy | the job slurm:4242 |" in out


def test_no_command_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--"]) == 2
    assert "no command given" in capsys.readouterr().err


def test_the_window_name_is_safe_and_unique_per_process() -> None:
    assert (
        window_name(["/usr/bin/python", "train.py", "--out=a/b"], 42) == "python train.py --out=a_b [pid 42]"
    )
    long = window_name(["x" * 300], 7)
    assert len(long) == 128 and long.endswith(" [pid 7]")


def test_sigterm_to_greenai_run_reaches_the_command(fake_agent: FakeAgent, tmp_path: Path) -> None:
    started = tmp_path / "started"
    script = (
        f"trap 'echo got-term > {tmp_path}/term; exit 7' TERM; touch {started}; while :; do sleep 0.05; done"
    )
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--socket",
            fake_agent.socket_path,
            "--",
            "sh",
            "-c",
            script,
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists()
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 7  # the command's own exit, after its trap ran
    assert (tmp_path / "term").read_text() == "got-term\n"
    assert "meanwhile the job slurm:4242 used" in err


def test_a_run_shorter_than_an_interval_gets_no_figure_and_says_why() -> None:
    from agent.client import Window
    from agent.commands.run import statement

    owner = {"kind": "process", "job": None, "pid": 7, "uid": 0}
    answer = {
        "name": "x",
        "owner": owner,
        "begin": 10.0,
        "end": 10.3,
        "duration_s": 0.3,
        "energy_j": {"cpu": 0.0, "dram": 0.0, "gpu": 0.0, "total": 0.0},
        "kwh": 0.0,
        "co2e_g": None,
        "sources": {},
        "shares": None,
        "node_unattributed_share": None,
        "gpu_shares": {},
        "interval_seconds": 1.0,
        "interpolated_s": 0.3,
        "note": "",
    }
    window = Window.from_json(answer)
    text = statement(window, "true")
    assert "no energy figure for so short a span" in text and "0 Wh" not in text, text
