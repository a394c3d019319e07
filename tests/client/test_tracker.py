"""agent.tracker: CodeCarbon's EmissionsTracker interface over the agent's windows, and its fallback."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger.import_codecarbon import parse_codecarbon_csv
from agent.tracker import EmissionsTracker, track_emissions
from tests.client.test_client import FakeAgent, serving


@pytest.fixture
def fake_agent(tmp_path: Path) -> Iterator[FakeAgent]:
    with serving(tmp_path) as agent:
        yield agent


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_start_stop_returns_kg_and_writes_codecarbons_row(fake_agent: FakeAgent, tmp_path: Path) -> None:
    tracker = EmissionsTracker(
        project_name="bert", output_dir=str(tmp_path), socket_path=fake_agent.socket_path
    )
    tracker.start()
    kg = tracker.stop()
    assert kg == pytest.approx(0.004) and tracker.final_emissions == kg
    (row,) = _rows(tmp_path / "emissions.csv")
    assert row["project_name"] == "bert" and row["run_id"] == tracker.run_id
    assert float(row["energy_consumed"]) == pytest.approx(0.01)
    (run,) = parse_codecarbon_csv(tmp_path / "emissions.csv")
    assert run.cpu_kwh + run.gpu_kwh + run.dram_kwh == pytest.approx(0.01)
    assert fake_agent.windows == {}


def test_flush_writes_the_run_so_far_and_stop_the_whole_run(fake_agent: FakeAgent, tmp_path: Path) -> None:
    with EmissionsTracker(output_dir=str(tmp_path), socket_path=fake_agent.socket_path) as tracker:
        assert tracker.flush() == pytest.approx(0.004)
        assert len(fake_agent.windows) == 1  # measuring goes on
    rows = _rows(tmp_path / "emissions.csv")
    assert [float(r["energy_consumed"]) for r in rows] == [pytest.approx(0.01), pytest.approx(0.02)]
    assert rows[0]["run_id"] == rows[1]["run_id"]
    assert float(rows[1]["duration"]) == pytest.approx(120.0)
    (run,) = parse_codecarbon_csv(tmp_path / "emissions.csv")  # the last row of the run is the run
    assert run.cpu_kwh + run.gpu_kwh + run.dram_kwh == pytest.approx(0.02)
    assert tracker.final_emissions == pytest.approx(0.008)


def test_tasks_are_windows_of_their_own(fake_agent: FakeAgent, tmp_path: Path) -> None:
    tracker = EmissionsTracker(save_to_file=False, socket_path=fake_agent.socket_path)
    tracker.start()
    tracker.start_task("load")
    task = tracker.stop_task()
    assert task.name.startswith("codecarbon codecarbon load") and task.kwh == pytest.approx(0.01)
    tracker.stop()
    assert not (tmp_path / "emissions.csv").exists()


def test_the_decorator_bare_and_with_arguments(
    fake_agent: FakeAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENAI_SOCKET", fake_agent.socket_path)
    monkeypatch.chdir(tmp_path)

    @track_emissions
    def bare(x: int) -> int:
        return x + 1

    @track_emissions(project_name="named", output_file="named.csv")
    def named() -> str:
        return "done"

    assert bare(1) == 2
    assert named() == "done"
    assert _rows(tmp_path / "emissions.csv")[0]["project_name"] == "codecarbon"
    assert _rows(tmp_path / "named.csv")[0]["project_name"] == "named"
    assert fake_agent.windows == {}


def test_without_an_agent_it_says_so_once_and_defers_to_codecarbon(tmp_path: Path) -> None:
    import codecarbon

    log = io.StringIO()
    tracker = EmissionsTracker(
        output_dir=str(tmp_path),
        socket_path=str(tmp_path / "none.sock"),
        log=log,
        offline=True,  # CodeCarbon's offline tracker: no network
        country_iso_code="FRA",
        measure_power_secs=1,
        log_level="error",
    )
    tracker.start()
    assert isinstance(tracker.fallback, codecarbon.OfflineEmissionsTracker)
    kg = tracker.stop()
    lines = log.getvalue().splitlines()
    assert len(lines) == 1
    assert "no greenai agent answers at" in lines[0]
    assert "measuring with CodeCarbon's OfflineEmissionsTracker instead (its figure)" in lines[0]
    (row,) = _rows(tmp_path / "emissions.csv")
    assert row["tracking_mode"] != "greenai-agent"  # CodeCarbon's own row, not ours
    assert kg == pytest.approx(float(row["emissions"]))
