"""`greenai report`: real ledgers written by the real writer (fake clock), two nodes at two sites."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.carbon.model import CarbonModel
from agent.cli import main
from agent.config import settings
from agent.ledger.writer import Ledger
from agent.report.annual import make_report, write_report
from collectors.workloads import JobInfo, JobKey
from tests.support.clock import FakeClock
from tests.support.processes import REPO

KWH = 3.6e6
H1 = 1_709_287_200  # 2024-03-01T10:00:00Z, in the hourly CSV (100 g/kWh, 80 % CFE)
H2 = H1 + 3600  # not in the CSV: FRA's annual figure
JULY = 1_720_000_800  # 2024-07-03T10:00:00Z
BLOOM_START = 1_704_412_800  # 2024-01-05T00:00:00Z
BLOOM_HOURS = 480
BLOOM_KWH = 433_196.0
BASE_HOUR = 1_686_218_400  # 2023-06-08T10:00:00Z
GPU, CPU, EST = ("gpu", "nvml"), ("cpu", "rapl"), ("gpu", "estimate")
J0, J1, J2, J3 = (JobKey("slurm", str(i)) for i in range(4))
BLOOM = JobKey("imported", "bloom-176b")


def record(
    led: Ledger,
    hour: int,
    jobs: dict[JobKey, tuple[JobInfo, dict[tuple[str, str], float]]],
    unattributed_j: float = 0.0,
    node: bool = True,
) -> None:
    """One interval ending mid-`hour`: the jobs' joules, unattributed CPU joules, one GPU-hour per job."""
    total = {GPU: sum(sum(e.values()) for _i, e in jobs.values()) + unattributed_j}
    led.record(
        hour + 1800,
        jobs,
        unattributed={CPU: unattributed_j} if unattributed_j else {},
        node=total if node else {},
        gpu_seconds={k: 3600.0 for k in jobs},
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("report")
    csv = tmp / "paris.csv"
    csv.write_text("timestamp,g_per_kwh,cfe_pct\n2024-03-01T10:00:00Z,100,80\n")
    cfg_path = tmp / "agent.yaml"
    cfg_path.write_text(
        f"""carbon:
  sites:
    paris: {{location: FRA, intensity_csv: {csv}, pue: 1.2, nodes: ["gpu-a"]}}
    virginia: {{location: US-VA, pue: 1.5, cfe_contract_pct: 50, supplier_g_per_kwh: 300, nodes: ["gpu-b"]}}
  embodied:
    - {{name: dgx, total_kg: 1000, lifetime_years: 4, nodes: ["gpu-a"]}}
"""
    )
    clock = FakeClock(BLOOM_START)
    a, b = tmp / "gpu-a.db", tmp / "gpu-b.db"
    alice = JobInfo(user="alice", name="train-x", project="atlas", phase="pretraining", model="llama-x")
    led = Ledger(a, "gpu-a", clock, background=False)
    record(led, BASE_HOUR, {J0: (alice, {GPU: 4 * KWH})})
    record(led, H1, {J1: (alice, {GPU: 1 * KWH, CPU: 0.5 * KWH})}, unattributed_j=0.1 * KWH)
    record(led, H2, {J1: (alice, {GPU: 2 * KWH})})
    led.job_ended(J1, H2 + 3600)
    led.flush()
    led.annotate("slurm:0", 2_000_000, None)
    led.annotate("slurm:1", 2_000_000, None)
    led.close()

    bob = JobInfo(user="bob", name="ft", project="atlas", phase="fine-tuning", model="llama-x")
    serve = JobInfo(user="alice", name="serve", project="beacon", phase="inference", model="llama-x")
    led = Ledger(b, "gpu-b", clock, background=False)
    record(led, JULY, {J2: (bob, {EST: 2 * KWH}), J3: (serve, {GPU: 1 * KWH})})
    # BLOOM's final training (Luccioni et al. 2022), booked like an import: spread over hours.
    bloom = JobInfo(name="bloom", project="bigscience", phase="pretraining", model="bloom")
    for h in range(BLOOM_HOURS):
        record(
            led, BLOOM_START + 3600 * h, {BLOOM: (bloom, {GPU: BLOOM_KWH / BLOOM_HOURS * KWH})}, node=False
        )
    led.flush()
    led.close()
    with sqlite3.connect(b) as conn:  # the run's own figures, as `greenai import` stores them
        conn.execute(
            "UPDATE jobs SET origin = 'csv:bloom', location = 'FRA', pue = 1.0, intensity_g_per_kwh = 57, "
            "tokens = 366000000000 WHERE job_id = 'bloom-176b'"
        )
        conn.execute(
            "UPDATE energy SET source = 'import:csv' "
            "WHERE job = (SELECT id FROM jobs WHERE job_id = 'bloom-176b')"
        )
    cfg = settings.load(cfg_path)
    model = CarbonModel.from_config(cfg.carbon)
    doc = make_report(cfg, 2024, [a, b], baseline_year=2023)
    return {"tmp": tmp, "cfg": cfg, "cfg_path": cfg_path, "ledgers": [a, b], "doc": doc, "model": model}


def figures(model: CarbonModel) -> dict[str, float]:
    """The expected per-job grams, from the sites' own annual figures (formulas of docs/carbon.md)."""
    fra, va = model.site_for("gpu-a").annual, model.site_for("gpu-b").annual
    g_fra, g_va = fra.grid_cfe_share or 0.0, va.grid_cfe_share or 0.0
    return {
        "i_fra": fra.g_per_kwh,
        "g_fra": g_fra,
        "i_va": va.g_per_kwh,
        "g_va": g_va,
        "j1_loc": 1.8 * 100 + 2.4 * fra.g_per_kwh,
        "j1_fac": 1.8 + 2.4,
        "j1_cfe": 1.8 * 0.8 + 2.4 * g_fra,
        "un_loc": 0.12 * 100,
        "un_fac": 0.12,
        "un_cfe": 0.12 * 0.8,
        "j2_loc": 3.0 * va.g_per_kwh,
        "j2_mkt": 3.0 * 0.5 * 300,
        "j2_cfe": 3.0 * (0.5 + 0.5 * g_va),
        "j3_loc": 1.5 * va.g_per_kwh,
        "j3_mkt": 1.5 * 0.5 * 300,
        "j3_cfe": 1.5 * (0.5 + 0.5 * g_va),
        "bloom_loc": BLOOM_KWH * 57,
        "j0_loc": 4 * 1.2 * fra.g_per_kwh,
    }


def test_energy_and_emissions_are_energy_weighted_sums(setup: dict[str, Any]) -> None:
    doc, f = setup["doc"], figures(setup["model"])
    it = 1.5 + 2 + 0.1 + 2 + 1 + BLOOM_KWH
    assert doc["year"] == 2024 and doc["baseline_year"] == 2023
    assert doc["energy"]["it_kwh"] == pytest.approx(it, rel=1e-12)
    assert doc["energy"]["facility_kwh"] == pytest.approx(4.2 + 0.12 + 3 + 1.5 + BLOOM_KWH, rel=1e-12)
    loc = f["j1_loc"] + f["un_loc"] + f["j2_loc"] + f["j3_loc"] + f["bloom_loc"]
    assert doc["emissions"]["location_kg"] == pytest.approx(loc / 1000, rel=1e-12)
    mkt = f["j1_loc"] + f["un_loc"] + f["j2_mkt"] + f["j3_mkt"] + f["bloom_loc"]
    assert doc["emissions"]["market_kg"] == pytest.approx(mkt / 1000, rel=1e-12)
    cfe = f["j1_cfe"] + f["un_cfe"] + f["j2_cfe"] + f["j3_cfe"]
    assert doc["cfe_pct"] == pytest.approx(100 * cfe / doc["energy"]["facility_kwh"], rel=1e-12)
    # SCI's M: 1000 kg over 4 years, gpu-a reserved for its 2 hours with data (28.5 g an hour).
    assert doc["emissions"]["embodied_kg"] == pytest.approx(2 * 1000 * 1000 / (4 * 8760) / 1000, rel=1e-12)
    assert doc["energy"]["gpu_hours"] == pytest.approx(2 + 1 + 1 + BLOOM_HOURS)
    assert doc["jobs"]["count"] == 4
    # The hour in the CSV is priced at its 100 g/kWh, for the job and the unattributed energy alike.
    assert doc["emissions"]["intensity_heatmap"][2][10] == pytest.approx(100.0)


def test_bloom_reproduces_the_published_figure(setup: dict[str, Any]) -> None:
    site = {r["site"]: r for r in setup["doc"]["by_site"]}["France"]
    assert site["location_kg"] == pytest.approx(24_692.172, rel=1e-9)  # 24.7 t
    assert round(site["location_kg"] / 1000, 1) == 24.7
    top = setup["doc"]["jobs"]["top"][0]
    assert top["job"] == "imported:bloom-176b" and top["origin"] == "csv:bloom"


def test_a_job_over_hours_of_different_intensity_gets_the_energy_weighted_sum(setup: dict[str, Any]) -> None:
    f = figures(setup["model"])
    job = {j["job"]: j for j in setup["doc"]["jobs"]["top"]}["slurm:1"]
    assert job["location_kg"] == pytest.approx(f["j1_loc"] / 1000, rel=1e-12)  # 1.8 x 100 + 2.4 x FRA
    assert job["intensity_g_per_kwh"] == pytest.approx(f["j1_loc"] / 4.2, rel=1e-12)
    assert job["intensity_g_per_kwh"] != pytest.approx((100 + f["i_fra"]) / 2)


def test_by_month_by_phase_and_by_project(setup: dict[str, Any]) -> None:
    doc, f = setup["doc"], figures(setup["model"])
    months = {r["month"]: r for r in doc["by_month"]}
    assert [r["month"] for r in doc["by_month"]] == list(range(1, 13))
    assert months[1]["it_kwh"] == pytest.approx(BLOOM_KWH)
    assert months[3]["it_kwh"] == pytest.approx(3.6)
    assert months[3]["location_kg"] == pytest.approx((f["j1_loc"] + f["un_loc"]) / 1000, rel=1e-12)
    assert months[7]["market_kg"] == pytest.approx((f["j2_mkt"] + f["j3_mkt"]) / 1000, rel=1e-12)
    assert months[5]["it_kwh"] == 0 and months[5]["pue"] is None
    phases = {r["phase"]: r for r in doc["by_phase"]}
    assert phases["pretraining"]["location_kg"] == pytest.approx((f["j1_loc"] + f["bloom_loc"]) / 1000)
    assert phases["fine-tuning"]["it_kwh"] == pytest.approx(2.0)
    assert phases["inference"]["jobs"] == 1
    projects = {r["project"]: r for r in doc["by_project"]}
    assert projects["atlas"]["it_kwh"] == pytest.approx(5.5)
    # The projects and the unattributed energy add up to the total.
    total = sum(r["it_kwh"] for r in doc["by_project"]) + doc["energy"]["unattributed_kwh"]
    assert total == pytest.approx(doc["energy"]["it_kwh"])
    cards = {c["model"]: c for c in doc["energy_cards"]}
    assert cards["llama-x"]["it_kwh"] == pytest.approx(5.5) and cards["llama-x"]["tasks"] == 2


def test_training_tasks_and_targets(setup: dict[str, Any]) -> None:
    doc, f = setup["doc"], figures(setup["model"])
    tasks = doc["jobs"]["training_tasks"]
    kg = sorted([f["j1_loc"] / 1000, f["j2_loc"] / 1000, f["bloom_loc"] / 1000])
    assert tasks["count"] == 3
    assert tasks["location_kg_median"] == pytest.approx(kg[1])
    assert tasks["location_kg_p90"] == pytest.approx(kg[1] + 0.8 * (kg[2] - kg[1]))
    eff = (3.5 + BLOOM_KWH) / (2e6 + 366e9) * 1e6
    assert tasks["kwh_per_million_tokens"] == pytest.approx(eff)
    pre, ft = tasks["by_phase"]["pretraining"], tasks["by_phase"]["fine-tuning"]
    assert pre["count"] == 2 and ft["count"] == 1
    assert pre["location_kg_mean"] == pytest.approx((f["j1_loc"] + f["bloom_loc"]) / 2000)
    assert ft["location_kg_total"] == pytest.approx(f["j2_loc"] / 1000)
    assert pre["location_kg_low"] <= pre["location_kg_total"] <= pre["location_kg_high"]
    t = doc["targets"]
    co2 = t["co2_per_training_task"]
    # The headline is the phase with the most CO2e (pretraining), its mean per task.
    assert co2["headline_phase"] == "pretraining" and co2["figure"] == "location_kg_mean"
    assert co2["actual"] == pytest.approx(pre["location_kg_mean"])
    assert co2["baseline"] == pytest.approx(f["j0_loc"] / 1000)
    assert co2["target"] == pytest.approx(f["j0_loc"] / 1000 * 0.871)
    assert co2["path"][5]["target"] == pytest.approx(f["j0_loc"] / 1000 * 0.871**5)
    assert co2["by_phase"]["pretraining"]["on_track"] is False
    assert co2["by_phase"]["fine-tuning"]["baseline"] is None  # no fine-tuning in 2023
    assert co2["on_track"] is False
    base_cfe = 100 * f["g_fra"]
    cfe = t["cfe"]
    assert cfe["baseline"] == pytest.approx(base_cfe)
    assert cfe["target"] == pytest.approx(base_cfe + (100 - base_cfe) / 7)
    assert cfe["path"][-1] == {"year": 2030, "target": 100.0}
    assert cfe["on_track"] is (doc["cfe_pct"] >= cfe["target"])
    e = t["efficiency"]
    assert e["baseline"] == pytest.approx(2.0)
    assert e["target_5x"] == pytest.approx(2.0 / 5 ** (1 / 7))
    assert e["target_10x"] == pytest.approx(2.0 / 10 ** (1 / 7))
    assert e["path_10x"][-1]["target"] == pytest.approx(0.2)
    assert e["on_track_5x"] is True and e["on_track_10x"] is True  # BLOOM's tokens: 1.18 kWh/Mtok


def test_data_quality(setup: dict[str, Any]) -> None:
    doc = setup["doc"]
    q, it = doc["data_quality"], doc["energy"]["it_kwh"]
    assert q["unattributed_share"] == pytest.approx(0.1 / it)
    assert q["estimated_share"] == pytest.approx(2.0 / it)
    assert q["imported_share"] == pytest.approx(BLOOM_KWH / it)
    nodes = {n["node"]: n for n in q["nodes"]}
    assert nodes["gpu-a"]["hours_with_data"] == 2 and nodes["gpu-a"]["hours_missing_in_span"] == 0
    assert nodes["gpu-b"]["hours_without_data"] == 8784 - 1
    assert q["fallback_locations"] == []
    assert doc["method"]["measured_share"] == pytest.approx(1 - (2.0 + BLOOM_KWH) / it)
    assert q["measured_share"] == doc["method"]["measured_share"]
    assert doc["energy"]["provenance"]["kwh_by_source"] == pytest.approx(
        {"estimate": 2.0, "import:csv": BLOOM_KWH, "nvml": 4.0, "rapl": 0.6}
    )
    # BLOOM's energy has no stated accuracy: inside both ends of the range at its value.
    assert doc["energy"]["unquantified_kwh"] == pytest.approx(BLOOM_KWH)
    low = BLOOM_KWH + 4.6 * 0.95 + 2.0 * 0.4
    assert doc["energy"]["it_kwh_low"] == pytest.approx(low)
    sites = {r["site"]: r for r in doc["by_site"]}
    assert sites["paris"]["gpu_hours"] == pytest.approx(2.0) and sites["France"]["gpu_hours"] == BLOOM_HOURS


def test_markdown_html_and_anonymized_users(setup: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "report",
            "--year",
            "2024",
            "--config",
            str(setup["cfg_path"]),
            "--ledger",
            *map(str, setup["ledgers"]),
            "--out",
            str(out),
            "--baseline-year",
            "2023",
            "--anonymize-users",
        ]
    )
    assert code == 0
    md = (out / "report.md").read_text()
    sections = [
        "Summary",
        "Method",
        "Energy",
        "Emissions",
        "Year over year",
        "CO2 per training task and targets",
    ]
    sections += ["Top jobs and models", "Energy Cards", "Appendix: data quality"]
    assert re.findall(r"^## (.+)$", md, re.M) == sections
    for png in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (out / png).stat().st_size > 1000
    assert len(re.findall(r"\]\(([^)]+\.png)\)", md)) == 4
    html = (out / "report.html").read_text()
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", html)
    assert "http://" not in html and "https://" not in html
    images = re.findall(r"<img [^>]*src='([^']*)'", html)
    assert len(images) == 4 and all(s.startswith("data:image/png;base64,") for s in images)
    doc = json.loads((out / "report.json").read_text())
    users = {r["user"] for r in doc["by_user"]}
    assert users == {"user-1", "user-2", None}
    assert "alice" not in html and "bob" not in md and "alice" not in json.dumps(doc)


def test_bad_input_is_one_line(
    setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["report", "--year", "2024", "--ledger", str(tmp_path / "none.db"), "--out", str(tmp_path)]) == 1
    )
    assert main(["report", "--year", "2024", "--format", "docx", "--ledger", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no ledger at" in err[0] and "docx" in err[1]


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_the_html_opens_in_headless_chromium(setup: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(setup["doc"], out, ["html"])
    page = (out / "report.html").as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    )
    assert 'data-images-ok="yes"' in dom.stdout, dom.stderr[-2000:]
    assert 'data-images="4"' in dom.stdout
    assert "Uncaught" not in dom.stderr and ":CONSOLE" not in dom.stderr, dom.stderr[-2000:]
    artifact = REPO / "tests" / "artifacts" / "report.png"
    artifact.parent.mkdir(exist_ok=True)
    shot = subprocess.run(
        ["chromium", *flags, f"--screenshot={artifact}", "--window-size=1280,3000", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0 and artifact.stat().st_size > 10_000, shot.stderr[-2000:]
    print(f"screenshot: {artifact}", file=sys.stderr)


def test_bloom_through_import_csv_and_the_report(tmp_path: Path) -> None:
    """Luccioni et al. 2022: 433,196 kWh at 57 gCO2e/kWh = 24.7 t, via `greenai import csv`."""
    runs = tmp_path / "bloom.csv"
    runs.write_text(
        "job_id,start,end,energy_kwh,phase,model,location,pue,intensity_g_per_kwh,tokens\n"
        "bloom-176b,2022-03-11T00:00:00Z,2022-07-05T00:00:00Z,433196,pretraining,bloom,FRA,1.0,57,366000000000\n"
    )
    ledger = tmp_path / "ledger.db"
    assert main(["import", "csv", str(runs), "--ledger", str(ledger)]) == 0
    assert (
        main(
            ["report", "--year", "2022", "--ledger", str(ledger), "--format", "json", "--out", str(tmp_path)]
        )
        == 0
    )
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["emissions"]["location_kg"] == pytest.approx(24_692.172, rel=1e-9)
    assert round(doc["emissions"]["location_kg"] / 1000, 1) == 24.7
    assert doc["energy"]["it_kwh"] == pytest.approx(BLOOM_KWH, rel=1e-12)
    assert doc["data_quality"]["imported_share"] == pytest.approx(1.0)
    assert doc["data_quality"]["nodes"] == []  # an import is no agent sampling
    tasks = doc["jobs"]["training_tasks"]
    assert tasks["kwh_per_million_tokens"] == pytest.approx(BLOOM_KWH / 366_000)
