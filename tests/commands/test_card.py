"""Energy Cards and per-job CO2e over real ledgers written by the real Ledger, priced by a real config."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, ModelCardData

from agent.carbon.model import CarbonModel
from agent.cli import main
from agent.commands.card import energy_text, mass_text
from agent.config.settings import load
from agent.export.api import LedgerApi
from agent.ledger.writer import Ledger
from agent.units import SECONDS_PER_YEAR
from collectors.workloads import JobInfo, JobKey

T0 = 1_714_521_600  # 2024-05-01T00:00:00Z, an hour start
HOUR = 3600
KWH = 3.6e6
PUE = 1.5
# Hour -> (g/kWh, grid CFE %): three hours of very different intensity.
GRID = {T0: (100.0, 50.0), T0 + HOUR: (300.0, 20.0), T0 + 2 * HOUR: (500.0, 0.0)}
CONTRACT, SUPPLIER = 0.5, 400.0
EMBODIED_KG, LIFE_YEARS = 1000.0, 4.0

TRAIN = JobKey("slurm", "100")
TRAIN_INFO = JobInfo("alice", 1000, "llm-pretrain", phase="pretraining", model="llm-7b")
# TRAIN's IT energy per hour, by (component, source), in kWh.
TRAIN_KWH = {
    T0: {("gpu", "nvml"): 1.0, ("cpu", "rapl"): 0.1},
    T0 + HOUR: {("gpu", "nvml"): 2.0},
    T0 + 2 * HOUR: {("cpu", "estimate"): 0.5},
}
RESUME = JobKey("slurm", "200")
OTHER = JobKey("slurm", "300")


Hours = dict[int, dict[tuple[str, str], float]]


def _write(path: Path, node: str, jobs: list[tuple[JobKey, JobInfo, Hours]]) -> None:
    """Each job seen at its first hour's start, one interval per hour ending mid-hour, ended an hour
    after its last hour's start."""
    now = [0.0]
    led = Ledger(path, node, clock=lambda: now[0], background=False)
    for key, info, hours in jobs:
        first, last = min(hours), max(hours)
        now[0] = first
        led.job_seen(key, info, first)
        for hour, kwh in sorted(hours.items()):
            now[0] = hour + HOUR / 2
            energy = {k: v * KWH for k, v in kwh.items()}
            led.record(now[0], {key: (info, energy)}, {}, {}, gpu_seconds={key: 4 * HOUR / 2})
        now[0] = last + HOUR
        led.job_ended(key, now[0])
    led.close()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(config, ledger of gpu-01, ledger of gpu-02)."""
    csv = tmp_path / "grid.csv"
    csv.write_text("timestamp,g_per_kwh,cfe_pct\n" + "".join(f"{h},{g},{c}\n" for h, (g, c) in GRID.items()))
    first, second = tmp_path / "gpu-01.db", tmp_path / "gpu-02.db"
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"ledger: {{path: {first}}}\n"
        "carbon:\n"
        "  sites:\n"
        f"    main: {{location: FRA, intensity_csv: {csv}, pue: {PUE}, cfe_contract_pct: {CONTRACT * 100:g},"
        f" supplier_g_per_kwh: {SUPPLIER:g}, nodes: ['gpu-.*']}}\n"
        f"  embodied: [{{name: dgx, total_kg: {EMBODIED_KG:g}, lifetime_years: {LIFE_YEARS:g},"
        " nodes: ['gpu-.*']}]\n"
    )
    _write(first, "gpu-01", [(TRAIN, TRAIN_INFO, TRAIN_KWH)])
    other_info = JobInfo("bob", 1001, "bert", phase="fine-tuning", model="bert")
    _write(
        second,
        "gpu-02",
        [
            (RESUME, TRAIN_INFO, {T0 + 2 * HOUR: {("gpu", "nvml"): 1.0}}),
            (OTHER, other_info, {T0: {("gpu", "nvml"): 9.0}}),
        ],
    )
    return config, first, second


def _expected(hours: Hours) -> tuple[float, float, float, float]:
    """(location g, market g, CFE kWh, embodied g) from the formulas in docs/carbon.md, by hand."""
    location = market = cfe = 0.0
    for hour, kwh in hours.items():
        facility = sum(kwh.values()) * PUE
        g, grid_cfe = GRID[hour]
        location += facility * g
        market += facility * (1 - CONTRACT) * SUPPLIER
        cfe += facility * (CONTRACT + (1 - CONTRACT) * grid_cfe / 100)
    seconds = max(hours) + HOUR - min(hours)
    return location, market, cfe, EMBODIED_KG * 1000 * seconds / (LIFE_YEARS * SECONDS_PER_YEAR)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_job_json_has_energy_weighted_co2e_and_sci(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    code, out, err = _cli(capsys, "job", "100", "--config", str(config), "--json")
    assert code == 0, err
    job = json.loads(out)
    location, market, cfe, embodied = _expected(TRAIN_KWH)
    assert location == pytest.approx(1440.0)  # 1.5 x (1.1 x 100 + 2 x 300 + 0.5 x 500)
    mean_intensity = sum(g for g, _ in GRID.values()) / len(GRID)
    assert location != pytest.approx(3.6 * PUE * mean_intensity)  # not kWh x the mean intensity
    assert job["co2e_grams"] == {"location": pytest.approx(location), "market": pytest.approx(market)}
    assert job["sci_g_per_run"] == pytest.approx(location + embodied)
    assert embodied == pytest.approx(85.616, abs=1e-3)
    carbon = job["carbon"]
    assert carbon["facility_kwh"] == pytest.approx(3.6 * PUE)
    assert carbon["cfe_pct"] == pytest.approx(100 * cfe / (3.6 * PUE))
    assert carbon["measured_share"] == pytest.approx(1 - 0.5 / 3.6)
    assert carbon["hourly_coverage"] == pytest.approx(1.0)
    assert "grid.csv (hourly, main)" in job["intensity_source"]
    code, out, _ = _cli(capsys, "job", "100", "--config", str(config))
    assert code == 0 and "co2e" in out and "1440 g location-based" in out


def test_card_json_for_one_job(setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _ = setup
    code, out, err = _cli(capsys, "card", "--job", "slurm:100", "--format", "json", "--config", str(config))
    assert code == 0, err
    card = json.loads(out)
    location, market, _, embodied = _expected(TRAIN_KWH)
    block = card["co2_eq_emissions"]
    assert block["emissions"] == pytest.approx(location)
    assert block["source"] == "greenai-agent 0.1.0: measured (NVML, RAPL) / estimated share 14%"
    assert block["training_type"] == "pre-training"
    assert block["geographical_location"] == "FRA"
    assert block["hardware_used"] == "gpu-01"
    assert card["energy_kwh"] == {
        "cpu": pytest.approx(0.6), "dram": 0.0, "gpu": pytest.approx(3.0), "total": pytest.approx(3.6)
    }  # fmt: skip
    assert card["gpu_hours"] == pytest.approx(3 * 2)
    assert card["pue"] == pytest.approx(PUE)
    assert card["co2e_grams"]["market"] == pytest.approx(market)
    assert card["sci_g_per_run"] == pytest.approx(location + embodied)
    assert card["runs"] == 1 and card["jobs"][0]["job"] == "slurm:100"
    assert energy_text(3.6) in card["statement"] and mass_text(location) in card["statement"]
    assert "3.60 kWh" in card["statement"] and "1.44 kg CO2e" in card["statement"]
    assert "14% of the energy was estimated" in card["statement"]


def test_card_for_a_model_sums_its_jobs_over_several_ledgers(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, first, second = setup
    args = ("card", "--model", "llm-7b", "--format", "json", "--config", str(config))
    code, out, err = _cli(capsys, *args, "--ledger", str(first), str(second))
    assert code == 0, err
    card = json.loads(out)
    resume_kwh = {T0 + 2 * HOUR: {("gpu", "nvml"): 1.0}}
    loc_a, _, _, emb_a = _expected(TRAIN_KWH)
    loc_b, _, _, emb_b = _expected(resume_kwh)
    assert [j["job"] for j in card["jobs"]] == ["slurm:100", "slurm:200"]  # not bert's slurm:300
    assert card["it_kwh"] == pytest.approx(4.6)
    assert card["co2_eq_emissions"]["emissions"] == pytest.approx(loc_a + loc_b)
    assert card["co2_eq_emissions"]["hardware_used"] == "gpu-01, gpu-02"
    assert card["sci_g_per_run"] == pytest.approx((loc_a + emb_a + loc_b + emb_b) / 2)
    assert "4.60 kWh" in card["statement"] and mass_text(loc_a + loc_b) in card["statement"]


def test_markdown_front_matter_is_hugging_face_model_card_metadata(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    code, text, err = _cli(capsys, "card", "--model", "llm-7b", "--config", str(config))
    assert code == 0, err
    _, as_json, _ = _cli(capsys, "card", "--model", "llm-7b", "--format", "json", "--config", str(config))
    expected = json.loads(as_json)["co2_eq_emissions"]
    card = ModelCard(text)
    assert isinstance(card.data, ModelCardData)
    block = card.data.get("co2_eq_emissions")
    assert block == expected
    again = ModelCard(f"---\n{ModelCardData(co2_eq_emissions=block).to_yaml()}\n---\n")
    assert isinstance(again.data, ModelCardData) and again.data.get("co2_eq_emissions") == block
    # ModelCard.validate() asks the Hub over the network, which tests do not have; check the fields of
    # the Hub's co2_eq_emissions schema here instead: emissions in grams (a number), the rest strings.
    assert isinstance(block["emissions"], float) and block["emissions"] > 0
    for key in ("source", "training_type", "geographical_location", "hardware_used"):
        assert isinstance(block[key], str) and block[key], key
    body = card.text
    assert "# Energy Card: model llm-7b" in body and "## Energy impact statement" in body
    rows = ("| IT energy |", "| PUE | 1.50 |", "| GPU-hours |", "| CO2e, market-based |", "| SCI per run |")
    assert all(row in body for row in rows)


def test_a_run_with_its_own_intensity_and_pue_is_priced_with_them(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, first, _ = setup
    # What an import stores for a run that states its own figures (ledger schema 3, docs/import.md).
    with sqlite3.connect(first) as conn:
        conn.execute("UPDATE jobs SET intensity_g_per_kwh = 57, pue = 1.1 WHERE job_id = '100'")
    conn.close()
    code, out, err = _cli(capsys, "job", "100", "--config", str(config), "--json")
    assert code == 0, err
    job = json.loads(out)
    assert job["co2e_grams"]["location"] == pytest.approx(3.6 * 1.1 * 57)
    assert job["intensity_source"].startswith("the run's own intensity_g_per_kwh (per run")


def test_unknown_subjects_exit_1_and_bad_arguments_exit_2(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    code, out, err = _cli(capsys, "card", "--model", "nope", "--config", str(config))
    assert code == 1 and out == "" and err.count("\n") == 1 and "nope" in err
    code, out, err = _cli(capsys, "card", "--job", "999", "--config", str(config))
    assert code == 1 and err.count("\n") == 1
    for bad in (["card"], ["card", "--model", "a", "--job", "1"], ["card", "--job", "1", "--format", "pdf"]):
        with pytest.raises(SystemExit) as exit_info:
            main(bad)
        assert exit_info.value.code == 2
    capsys.readouterr()


def test_the_api_prices_a_job_with_rows_not_yet_written(
    tmp_path: Path, setup: tuple[Path, Path, Path]
) -> None:
    config, _, _ = setup
    model = CarbonModel.from_config(load(config).carbon, warn=lambda _: None)
    led = Ledger(tmp_path / "live.db", "gpu-01", clock=lambda: T0, background=False)
    try:
        led.job_seen(TRAIN, TRAIN_INFO, T0)
        led.record(T0 + 60, {TRAIN: (TRAIN_INFO, {("gpu", "nvml"): 1.0 * KWH})}, {}, {})
        led.flush()
        led.record(T0 + HOUR + 60, {TRAIN: (TRAIN_INFO, {("gpu", "nvml"): 2.0 * KWH})}, {}, {})  # pending
        job = LedgerApi(led, model).get_job("100")
    finally:
        led.close()
    assert job["co2e_grams"]["location"] == pytest.approx(PUE * (1.0 * 100 + 2.0 * 300))
    assert job["sci_g_per_run"] > job["co2e_grams"]["location"]
    assert "intensity_source" in job
