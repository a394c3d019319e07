"""`greenai import` storing runs in the ledger, and the agent's live CO2e metrics (docs/import.md)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.ledger.imports import hour_shares
from agent.ledger.writer import Ledger
from collectors.workloads import JobKey
from tests.support.cgroups import RealCgroups, real_cgroups_missing
from tests.support.codecarbon_run import tracked_run
from tests.support.processes import AgentProcess, run_greenai, wait_for

J_PER_KWH = 3.6e6
BLOOM = (
    "job_id,start,end,energy_kwh,project,phase,model,intensity_g_per_kwh,location,gpu_hours\n"
    "bloom-176b,2022-03-11T00:00:00Z,2022-07-05T00:00:00Z,433196,bigscience,pretraining,BLOOM,57,FRA,"
    "1082990\n"
)
RUNS = (
    "job_id,start,end,cpu_kwh,gpu_kwh,dram_kwh,node\n"
    "a,2024-05-01T10:30:00Z,2024-05-01T12:15:00Z,1,6,0.5,n1\n"
    "b,2024-05-02T00:00:00Z,2024-05-02T02:00:00Z,2,4,0,n1\n"
)
CODECARBON = (
    "timestamp,project_name,run_id,duration,emissions,emissions_rate,cpu_power,gpu_power,ram_power,"
    "cpu_energy,gpu_energy,ram_energy,energy_consumed,country_name,country_iso_code,region,pue\n"
    "2024-06-01T12:00:00,demo,run-1,7200,0.0168,2.3e-6,42.5,0,10,0.06,0,0.012,0.072,France,FRA,,1.2\n"
)


def write(tmp_path: Path, text: str, name: str = "runs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in key order: equal dumps mean equal ledger content."""
    with sqlite3.connect(db) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall() for t in tables}


def greenai_import(kind: str, file: Path, db: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return run_greenai("import", kind, str(file), "--ledger", str(db), *more)


def job(db: Path, job_id: str) -> dict[str, object]:
    shown = run_greenai("job", job_id, "--json", "--ledger", str(db))
    assert shown.returncode == 0, shown.stderr
    out: dict[str, object] = json.loads(shown.stdout)
    return out


def test_bloom_is_stored_with_its_kwh_intensity_and_gpu_hours(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    done = greenai_import("csv", write(tmp_path, BLOOM), db)
    assert done.returncode == 0, done.stderr
    assert "1 runs imported, 0 unchanged, 0 updated, 433 MWh in the file" in done.stdout
    shown = job(db, "bloom-176b")
    assert shown["energy_kwh"] == pytest.approx(433196, rel=1e-12)
    assert shown["gpu_hours"] == pytest.approx(1082990, rel=1e-12)
    assert shown["sources"] == {"import:csv": pytest.approx(433196 * J_PER_KWH, rel=1e-12)}
    assert shown["estimated_share"] == 0.0
    assert (shown["node"], shown["model"], shown["phase"]) == ("imported", "BLOOM", "pretraining")
    text = run_greenai("job", "bloom-176b", "--ledger", str(db)).stdout
    assert "433 MWh" in text and "imported" in text and "measured" not in text
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT intensity_g_per_kwh, location, origin FROM jobs").fetchone()
        node_j = conn.execute("SELECT SUM(joules) FROM node_energy").fetchone()[0]
    assert row[:2] == (57.0, "FRA") and "csv" in row[2]
    assert node_j == pytest.approx(433196 * J_PER_KWH, rel=1e-12)  # jobs + unattributed = node


def test_codecarbon_file_keeps_it_energy_before_pue(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    done = greenai_import("codecarbon", write(tmp_path, CODECARBON, "emissions.csv"), db)
    assert done.returncode == 0, done.stderr
    shown = job(db, "run-1")
    assert shown["scheduler"] == "codecarbon"
    assert shown["energy_kwh"] == pytest.approx(0.072 / 1.2, rel=1e-12)
    assert shown["start"] == "2024-06-01T10:00:00Z" and shown["end"] == "2024-06-01T12:00:00Z"
    assert set(shown["sources"]) == {"import:codecarbon"}  # type: ignore[arg-type]
    paris = greenai_import(
        "codecarbon", tmp_path / "emissions.csv", tmp_path / "p.db", "--timezone", "Europe/Paris"
    )
    assert paris.returncode == 0, paris.stderr
    assert job(tmp_path / "p.db", "run-1")["end"] == "2024-06-01T10:00:00Z"  # CEST is UTC+2


def test_name_hardware_method_and_accuracy_are_stored_and_shown(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    text = (
        "job_id,start,end,gpu_kwh,name,gpu_model,gpu_count,cpu_model,method,uncertainty_pct\n"
        "llm-7,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,100,train-llm,NVIDIA H100 80GB HBM3,8,"
        "AMD EPYC 9654 96-Core Processor,NVML energy counter per GPU,5\n"
    )
    done = greenai_import("csv", write(tmp_path, text), db)
    assert done.returncode == 0, done.stderr
    shown = job(db, "llm-7")
    assert shown["name"] == "train-llm"
    assert shown["hardware"] == {
        "gpu_model": "NVIDIA H100 80GB HBM3", "gpu_count": 8, "cpu_model": "AMD EPYC 9654 96-Core Processor",
    }  # fmt: skip
    provenance = shown["provenance"]
    assert isinstance(provenance, dict)
    assert provenance["kwh_by_kind"] == {"measured": 0.0, "estimated": 0.0, "imported": pytest.approx(100)}
    assert provenance["methods"] == {
        "import:csv": "imported from a CSV file (its method: NVML energy counter per GPU)"
    }
    assert shown["energy_kwh_range"] == {
        "value": pytest.approx(100), "low": pytest.approx(95), "high": pytest.approx(105),
    }  # fmt: skip
    text_view = run_greenai("job", "llm-7", "--ledger", str(db)).stdout
    assert "8 x NVIDIA H100 80GB HBM3" in text_view and "NVML energy counter per GPU" in text_view
    # A new method or accuracy is an edit: the run is updated.
    edited = greenai_import("csv", write(tmp_path, text.replace("GPU,5", "GPU,10"), "edited.csv"), db)
    assert "0 runs imported, 0 unchanged, 1 updated" in edited.stdout, edited.stdout
    assert job(db, "llm-7")["energy_kwh_range"] == {
        "value": pytest.approx(100), "low": pytest.approx(90), "high": pytest.approx(110),
    }  # fmt: skip


def test_codecarbon_runs_carry_their_hardware_and_method(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    text = (
        CODECARBON.splitlines()[0]
        + ",gpu_count,gpu_model,cpu_model,tracking_mode\n"
        + CODECARBON.splitlines()[1]
        + ",2,2 x NVIDIA A100-SXM4-80GB,Intel(R) Xeon(R) Gold 6148,machine\n"
    )
    assert greenai_import("codecarbon", write(tmp_path, text, "emissions.csv"), db).returncode == 0
    shown = job(db, "run-1")
    assert shown["hardware"] == {
        "gpu_model": "NVIDIA A100-SXM4-80GB", "gpu_count": 2, "cpu_model": "Intel(R) Xeon(R) Gold 6148",
    }  # fmt: skip
    assert shown["gpu_hours"] == pytest.approx(4.0)
    methods = shown["provenance"]["methods"]  # type: ignore[index]
    assert methods["import:codecarbon"].startswith(
        "imported from CodeCarbon (its method: tracking_mode machine: CPU energy from RAPL"
    )
    assert shown["energy_kwh_range"]["low"] is None  # type: ignore[index]  # accuracy unknown: no range
    text_view = run_greenai("job", "run-1", "--ledger", str(db)).stdout
    assert "energy     60.0 Wh (accuracy unknown)\n" in text_view, text_view
    assert "kinds      imported 100 % (from CodeCarbon, its method: tracking_mode machine:" in text_view


def test_reimporting_the_same_file_changes_nothing(tmp_path: Path) -> None:
    db, runs = tmp_path / "ledger.db", write(tmp_path, RUNS)
    assert greenai_import("csv", runs, db).returncode == 0
    before = dump(db)
    again = greenai_import("csv", runs, db)
    assert again.returncode == 0, again.stderr
    assert "0 runs imported, 2 unchanged, 0 updated" in again.stdout
    assert dump(db) == before


def test_an_edited_row_replaces_that_run_only(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    assert greenai_import("csv", write(tmp_path, RUNS), db).returncode == 0
    before = dump(db)
    edited = RUNS.replace(
        "b,2024-05-02T00:00:00Z,2024-05-02T02:00:00Z,2,4,0",
        "b,2024-05-02T00:00:00Z,2024-05-02T01:00:00Z,3,4,0",
    )
    done = greenai_import("csv", write(tmp_path, edited, "edited.csv"), db)
    assert "0 runs imported, 1 unchanged, 1 updated" in done.stdout
    after = dump(db)
    ids = {r[2]: r[0] for r in after["jobs"]}
    assert [r for r in after["energy"] if r[0] == ids["a"]] == [
        r for r in before["energy"] if r[0] == ids["a"]
    ]
    b_rows = [r for r in after["energy"] if r[0] == ids["b"]]
    assert {r[1] for r in b_rows} == {int(datetime(2024, 5, 2, tzinfo=timezone.utc).timestamp())}
    assert job(db, "b")["energy_kwh"] == pytest.approx(7.0)
    node_j = sum(r[4] for r in after["node_energy"])
    assert node_j == pytest.approx((7.5 + 7.0) * J_PER_KWH)  # the old hour's node rows are gone too


def test_a_run_is_spread_over_the_hours_it_overlaps(tmp_path: Path) -> None:
    ten = int(datetime(2024, 5, 1, 10, tzinfo=timezone.utc).timestamp())
    assert hour_shares(ten + 1800, ten + 2 * 3600 + 900) == [
        (ten, pytest.approx(30 / 105)),
        (ten + 3600, pytest.approx(60 / 105)),
        (ten + 7200, pytest.approx(15 / 105)),
    ]
    db = tmp_path / "ledger.db"
    assert greenai_import("csv", write(tmp_path, RUNS), db).returncode == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT e.hour, e.joules FROM energy e JOIN jobs j ON j.id = e.job "
            "WHERE j.job_id = 'a' AND e.component = 'gpu' ORDER BY e.hour"
        ).fetchall()
    assert [h for h, _ in rows] == [ten, ten + 3600, ten + 7200]
    minutes = [j / (6 * J_PER_KWH) * 105 for _, j in rows]
    assert minutes == [pytest.approx(30), pytest.approx(60), pytest.approx(15)]
    assert sum(j for _, j in rows) == pytest.approx(6 * J_PER_KWH, rel=1e-15)


def test_a_bad_file_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    assert greenai_import("csv", write(tmp_path, RUNS), db).returncode == 0
    before = dump(db)
    bad = write(tmp_path, RUNS + "c,yesterday,2024-05-03T00:00:00Z,1,0,0,n1\n", "bad.csv")
    done = greenai_import("csv", bad, db)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "row 4" in done.stderr and "'start'" in done.stderr
    assert done.stdout == ""
    assert dump(db) == before
    wrong = greenai_import("csv", write(tmp_path, RUNS), db, "--timezone", "Mars/Olympus")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1


def test_a_job_the_agent_already_has_is_refused_whole(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = Ledger(db, "n1", background=False)
    ledger.record(1e9, {}, {}, {}, cpu_seconds={JobKey("imported", "b"): 1.0})
    ledger.close()
    before = dump(db)
    done = greenai_import("csv", write(tmp_path, RUNS), db)
    assert done.returncode == 2 and "already in the ledger" in done.stderr, done.stderr
    assert dump(db) == before


def test_import_while_the_agent_writes(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = Ledger(db, "agent-node", flush_seconds=0.01)
    stop = threading.Event()

    def agent_like() -> None:
        t = time.time()
        while not stop.is_set():
            t += 1
            ledger.record(t, {}, {("cpu", "rapl"): 1.0}, {("cpu", "rapl"): 1.0})
            time.sleep(0.002)

    writer = threading.Thread(target=agent_like)
    writer.start()
    try:
        for name, text in (("bloom.csv", BLOOM), ("runs.csv", RUNS)):
            done = greenai_import("csv", write(tmp_path, text, name), db)
            assert done.returncode == 0, done.stderr
    finally:
        stop.set()
        writer.join()
        ledger.close()
    assert ledger.last_flush_ok
    assert job(db, "bloom-176b")["energy_kwh"] == pytest.approx(433196)


# ---- live CO2e on /metrics ----

real = pytest.mark.skipif(bool(real_cgroups_missing()), reason=real_cgroups_missing() or "ok")


def _series_csv(path: Path) -> Path:
    """An hourly plain CSV covering the hours around now at 100 g/kWh."""
    hour = int(time.time() // 3600) * 3600
    rows = [
        f"{datetime.fromtimestamp(hour + h * 3600, timezone.utc):%Y-%m-%dT%H:%M:%SZ},100,20"
        for h in range(-3, 4)
    ]
    path.write_text("timestamp,g_per_kwh,cfe_pct\n" + "\n".join(rows) + "\n")
    return path


@real
def test_live_co2_adds_up_in_every_scrape(tmp_path: Path) -> None:
    csv_path = _series_csv(tmp_path / "grid.csv")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"ledger: {{path: {tmp_path / 'ledger.db'}, flush_seconds: 0.5}}\nslurm: {{scontrol: ''}}\n"
        f"carbon: {{sites: {{lab: {{location: FRA, intensity_csv: {csv_path}, pue: 1.5, "
        "supplier_g_per_kwh: 300}}}\n"
    )
    with RealCgroups(Path("/sys/fs/cgroup")) as cgroups:
        cgroups.start("slurm/uid_0/job_990/step_0", "burner")
        with AgentProcess(
            ["--config", str(cfg), "--interval", "0.05", "--sysfs", "/nonexistent-sys"]
        ) as agent:
            agent.wait_ready()
            agent.wait_samples(5)
            first = agent.value("greenai_node_co2_grams_total", basis="location") or 0.0
            agent.wait_samples(int(agent.value("greenai_agent_samples_total") or 0) + 2)  # later samples
            wait_for(
                lambda: (agent.value("greenai_job_co2_grams_total", job_id="990", basis="location") or 0) > 0,
                15,
                "the job's CO2",
            )
            scrapes = [agent.samples() for _ in range(20)]
            text = agent.metrics_text()
            agent.stop()
    last = scrapes[-1]
    assert (
        last[
            ("greenai_grid_carbon_intensity_grams_per_kwh", frozenset({("site", "lab"), ("location", "FRA")}))
        ]
        == 100
    )
    assert last[("greenai_node_co2_grams_total", frozenset({("basis", "location")}))] > first
    for samples in scrapes:
        for basis in ("location", "market"):
            node = samples[("greenai_node_co2_grams_total", frozenset({("basis", basis)}))]
            parts = sum(
                v
                for (name, labels), v in samples.items()
                if ("basis", basis) in labels
                and name
                in (
                    "greenai_job_co2_grams_total",
                    "greenai_jobs_unexported_co2_grams_total",
                    "greenai_node_unattributed_co2_grams_total",
                )
            )
            assert parts == pytest.approx(node, rel=1e-9), basis
            joules = sum(
                v for (name, labels), v in samples.items()
                if name == "greenai_node_energy_joules_total" and ("component", "platform") not in labels
            )  # fmt: skip
            factor = 100 * 1.5 if basis == "location" else 300 * 1.5
            assert node == pytest.approx(joules / J_PER_KWH * factor, rel=1e-9)
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_bad_carbon_csv_stops_the_agent_with_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "timestamp,g_per_kwh\nnot-a-date,100\n", "grid.csv")
    cfg = write(
        tmp_path,
        f"ledger: {{path: {tmp_path / 'l.db'}}}\n"
        f"carbon: {{sites: {{lab: {{location: FRA, intensity_csv: {bad}}}}}}}\n",
        "agent.yaml",
    )
    done = run_greenai("agent", "--config", str(cfg), "--listen", "127.0.0.1:0")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "grid.csv" in done.stderr, done.stderr


def test_codecarbons_own_emissions_csv_keeps_its_kwh_and_kg(tmp_path: Path) -> None:
    """A file written by CodeCarbon's OfflineEmissionsTracker imports with the same kWh, and our
    carbon figures for the same country give the same kg (both read codecarbon's energy mix data)."""
    _, written = tracked_run(tmp_path)
    db = tmp_path / "ledger.db"
    out = greenai_import("codecarbon", tmp_path / "emissions.csv", db)
    assert out.returncode == 0, out.stderr
    config = write(tmp_path, f"ledger: {{path: {db}}}\ncarbon: {{location: FRA}}\n", "agent.yaml")
    shown = run_greenai("job", f"codecarbon:{written['run_id']}", "--json", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    pue = float(written.get("pue") or 1.0)
    assert record["energy_kwh"] * pue == pytest.approx(float(written["energy_consumed"]), rel=1e-6)
    assert record["co2e_grams"]["location"] / 1000 == pytest.approx(float(written["emissions"]), rel=0.01)
    # Another tool's figure: imported, and never counted as measured here.
    assert record["carbon"]["measured_share"] == 0.0
    assert record["provenance"]["shares"] == {"measured": 0.0, "estimated": 0.0, "imported": 1.0}


def test_annotate_an_imported_run(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    runs = write(
        tmp_path, "job_id,start,end,energy_kwh\nbloom-176b,2022-01-01T00:00:00,2022-01-02T00:00:00,10\n"
    )
    assert greenai_import("csv", runs, db).returncode == 0
    out = run_greenai("annotate", "imported:bloom-176b", "--tokens", "1000000", "--ledger", str(db))
    assert out.returncode == 0, out.stderr
    assert job(db, "imported:bloom-176b")["tokens"] == 1_000_000


def test_a_file_over_max_bytes_is_one_line_naming_the_flag_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    runs = write(tmp_path, RUNS)
    small = greenai_import("csv", runs, db, "--max-bytes", "50")
    assert small.returncode == 2 and small.stderr.count("\n") == 1
    assert "larger than the limit of 50 bytes" in small.stderr and "--max-bytes" in small.stderr
    endless = greenai_import("codecarbon", Path("/dev/zero"), db)
    assert endless.returncode == 2 and "limit of 209,715,200 bytes" in endless.stderr
    assert greenai_import("csv", runs, db, "--max-bytes", str(runs.stat().st_size)).returncode == 0
