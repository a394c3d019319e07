"""Energy Cards and per-job CO2e over real ledgers written by the real Ledger, priced by a real config."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard, ModelCardData

from agent.carbon.model import CarbonModel
from agent.cli import main
from agent.config.settings import load
from agent.export.api import LedgerApi
from agent.ledger.provenance import ESTIMATE_ACCURACY, NVML_ACCURACY, RAPL_ACCURACY
from agent.ledger.writer import Ledger
from agent.units import ENERGY_UNITS, SECONDS_PER_YEAR, energy_text, mass_text, range_text
from collectors.workloads import JobInfo, JobKey
from tests.support.processes import run_greenai

T0 = 1_714_521_600  # 2024-05-01T00:00:00Z, an hour start
HOUR = 3600
KWH = 3.6e6
PUE = 1.5
# Hour -> (g/kWh, grid CFE %): three hours of very different intensity.
GRID = {T0: (100.0, 50.0), T0 + HOUR: (300.0, 20.0), T0 + 2 * HOUR: (500.0, 0.0)}
CONTRACT, SUPPLIER = 0.5, 400.0
EMBODIED_KG, LIFE_YEARS = 1000.0, 4.0

TRAIN = JobKey("slurm", "100")
H100 = "NVIDIA H100 80GB HBM3"
TRAIN_INFO = JobInfo(
    "alice", 1000, "llm-pretrain", phase="pretraining", model="llm-7b", gpu_model=H100, gpu_count=8,
    cpu_model="AMD EPYC 9654 96-Core Processor",
)  # fmt: skip
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
    assert code == 0 and "co2e" in out and "location-based 1.44 kg" in out


def test_card_json_for_one_job(setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _ = setup
    code, out, err = _cli(capsys, "card", "--job", "slurm:100", "--format", "json", "--config", str(config))
    assert code == 0, err
    card = json.loads(out)
    location, market, _, embodied = _expected(TRAIN_KWH)
    block = card["co2_eq_emissions"]
    assert block["emissions"] == pytest.approx(location)
    assert block["source"] == "greenai-agent 0.1.0: measured (NVML, RAPL) 86 %, estimated 14 %"
    assert block["training_type"] == "pre-training"
    assert block["geographical_location"] == "France"
    assert block["hardware_used"] == f"8 x {H100}"
    assert card["subject"] == {"kind": "job", "name": "llm-pretrain", "id": "slurm:100"}
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
    assert "86.1 % was measured per job by greenai-agent (NVML, RAPL)" in card["statement"]
    assert "13.9 % was estimated by greenai-agent's power model" in card["statement"]
    assert f"on 8 x {H100}" in card["statement"] and "in France" in card["statement"]
    assert card["embodied_g"] == pytest.approx(embodied) and card["embodied_configured"] is True
    assert card["wall_clock_hours"] == pytest.approx(3.0) and card["hardware_days"] == pytest.approx(6 / 24)


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
    assert card["co2_eq_emissions"]["hardware_used"] == f"8 x {H100}"  # the GPUs, not the host names
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
    rows = (
        "| IT energy |", "| PUE | 1.50 |", "| GPU-hours |", "| CO2e, market-based |", "| SCI per run ",
        f"| Hardware | 8 x {H100} |", "| Wall-clock time |", "| Hardware-days (GPU-days) |",
    )  # fmt: skip
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


# ---- a history of imported and estimated runs, through the real CLI ----

MODEL = "llm-x"
CSV_RUNS = """job_id,scheduler,node,model,phase,start,end,energy_kwh,location,tokens,gpu_hours
p23,slurm,gpu-a,llm-x,pretraining,2023-03-01T00:00:00Z,2023-03-03T00:00:00Z,1234,FRA,2000000000,384
p24,slurm,gpu-b,llm-x,pretraining,2024-02-01T00:00:00Z,2024-02-02T00:00:00Z,500,US-CA,,192
f24,slurm,gpu-a,llm-x,fine-tuning,2024-05-10T00:00:00Z,2024-05-10T06:00:00Z,20,FRA,,48
e24,slurm,gpu-a,llm-x,evaluation,2024-07-01T10:00:00Z,2024-07-01T12:00:00Z,2,FRA,,2
"""
ESTIMATED_KEY = JobKey("slurm", "est1")
ESTIMATED_AT = 1_722_470_400  # 2024-08-01T00:00:00Z
ESTIMATED_KWH = 0.5


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A ledger with an estimated evaluation run (written by the agent's Ledger) and four runs imported
    from a CSV by `greenai import csv`: pretraining in 2023 and 2024, a fine-tune, an evaluation."""
    ledger = tmp_path / "history.db"
    info = JobInfo(
        "carol", 1002, "eval-cpu", phase="evaluation", model=MODEL, cpu_model="Intel Xeon Gold 6338"
    )
    _write(ledger, "cpu-01", [(ESTIMATED_KEY, info, {ESTIMATED_AT: {("cpu", "estimate"): ESTIMATED_KWH}})])
    runs = tmp_path / "runs.csv"
    runs.write_text(CSV_RUNS)
    done = run_greenai("import", "csv", str(runs), "--ledger", str(ledger))
    assert done.returncode == 0, done.stderr
    return ledger


def _card(ledger: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """(Markdown, JSON) of one card, each from its own `greenai card` process."""
    md = run_greenai("card", "--ledger", str(ledger), *args)
    assert md.returncode == 0, md.stderr
    as_json = run_greenai("card", "--ledger", str(ledger), *args, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    return md.stdout, json.loads(as_json.stdout)


def _runs_of(card: dict[str, Any]) -> list[str]:
    return sorted(j["job"] for j in card["jobs"])


def test_imported_and_estimated_energy_is_never_called_measured(history: Path) -> None:
    text, card = _card(history, "--model", MODEL)
    for said in (text.lower(), card["statement"].lower(), card["co2_eq_emissions"]["source"].lower()):
        assert "metered" not in said and "measured" not in said
    assert card["measured_share"] == 0
    assert card["imported_share"] == pytest.approx(1756 / (1756 + ESTIMATED_KWH))
    assert "was imported from a CSV file (its method not stated)" in card["statement"]
    assert "was estimated by greenai-agent's power model" in card["statement"]
    assert card["provenance"]["unquantified_kwh"] == pytest.approx(1756)  # a CSV without accuracy
    assert "imported without a stated accuracy is counted at its value" in card["statement"]
    assert card["co2_eq_emissions"]["source"] == "greenai-agent 0.1.0: imported from a CSV file 100 %"
    # No embodied item is configured: not configured, never 0 g.
    assert card["embodied_g"] is None and "| Embodied CO2e | not configured |" in text
    assert re.search(r"\b0 g\b", text) is None and "not included (not configured)" in card["statement"]


def test_a_card_range_holds_its_value_and_follows_the_stated_accuracies(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    code, out, err = _cli(capsys, "card", "--job", "100", "--format", "json", "--config", str(config))
    assert code == 0, err
    card = json.loads(out)
    measured = 3.0 + 0.1  # nvml and rapl kWh
    low = measured * (1 - NVML_ACCURACY.minus) + 0.5 * (1 - ESTIMATE_ACCURACY.minus)  # type: ignore[operator]
    high = measured * (1 + NVML_ACCURACY.plus) + 0.5 * (1 + ESTIMATE_ACCURACY.plus)  # type: ignore[operator]
    assert RAPL_ACCURACY == NVML_ACCURACY or RAPL_ACCURACY.minus == NVML_ACCURACY.minus
    energy = card["energy_kwh_range"]
    assert energy == {"value": pytest.approx(3.6), "low": pytest.approx(low), "high": pytest.approx(high)}
    assert energy["low"] < energy["value"] < energy["high"]
    location = card["co2e_grams_range"]["location"]
    assert location["low"] < location["value"] < location["high"]
    assert location["low"] == pytest.approx(location["value"] * low / 3.6)
    assert location["high"] == pytest.approx(location["value"] * high / 3.6)
    assert card["facility_kwh_range"]["high"] == pytest.approx(high * PUE)
    as_text = range_text(energy["value"], energy["low"], energy["high"], ENERGY_UNITS)
    assert as_text.startswith("3.60 kWh (3.1") and as_text in card["statement"]
    assert "docs/uncertainty.md" in card["statement"]
    code, text, _ = _cli(capsys, "card", "--job", "100", "--config", str(config))
    assert f"| IT energy | {as_text} |" in text


def test_phase_year_since_and_until_select_runs(history: Path) -> None:
    def chosen(*flags: str) -> list[str]:
        done = run_greenai("card", "--model", MODEL, "--ledger", str(history), "--format", "json", *flags)
        assert done.returncode == 0, done.stderr
        return _runs_of(json.loads(done.stdout))

    everything = ["slurm:e24", "slurm:est1", "slurm:f24", "slurm:p23", "slurm:p24"]
    assert chosen() == everything
    assert chosen("--phase", "pretraining") == ["slurm:p23", "slurm:p24"]
    assert chosen("--phase", "pretraining", "--phase", "fine-tuning") == [
        "slurm:f24",
        "slurm:p23",
        "slurm:p24",
    ]
    assert chosen("--year", "2023") == ["slurm:p23"]
    assert chosen("--year", "2024") == ["slurm:e24", "slurm:est1", "slurm:f24", "slurm:p24"]
    assert chosen("--phase", "pretraining", "--year", "2024") == ["slurm:p24"]
    assert chosen("--since", "2024-05-01", "--until", "2024-07-01") == ["slurm:e24", "slurm:f24"]  # whole day
    assert chosen("--until", "2024-07-01T10:00Z") == ["slurm:f24", "slurm:p23", "slurm:p24"]  # before it
    assert chosen("--since", "2024-07-01T10:00:00Z") == ["slurm:e24", "slurm:est1"]
    done = run_greenai("card", "--model", MODEL, "--ledger", str(history), "--phase", "inference")
    assert done.returncode == 1 and done.stdout == "" and "phase inference" in done.stderr
    for bad in (["--since", "yesterday"], ["--year", "2024", "--since", "2025-01-01"], ["--phase", "warmup"]):
        done = run_greenai("card", "--model", MODEL, "--ledger", str(history), *bad)
        assert done.returncode == 2, bad
    done = run_greenai("card", "--job", "p23", "--ledger", str(history), "--phase", "pretraining")
    assert done.returncode == 2 and done.stderr.splitlines()[-1].startswith("greenai: --phase, --year")


def test_training_emissions_are_the_training_runs_and_annex_xi_their_figures(history: Path) -> None:
    text, card = _card(history, "--model", MODEL)
    jobs = {j["job"]: j for j in card["jobs"]}
    training = [jobs[k] for k in ("slurm:p23", "slurm:p24", "slurm:f24")]
    block = card["co2_eq_emissions"]
    assert block["emissions"] == pytest.approx(sum(j["co2e_grams"]["location"] for j in training), abs=1e-3)
    assert block["emissions"] < card["co2e_grams"]["location"]  # the evaluations are not in it
    assert block["training_type"] == "pre-training, fine-tuning"
    assert block["geographical_location"] == "France, California, United States"
    assert card["co2_eq_emissions_scope"] == {
        "runs": 3, "training": True, "phases": ["pretraining", "fine-tuning"], "it_kwh": pytest.approx(1754)
    }  # fmt: skip
    assert [y["year"] for y in card["by_year"]] == [2023, 2024] and "## By year" in text
    assert "## By phase" in text and "| evaluation | 2 |" in text
    annex = card["eu_ai_act_annex_xi"]
    assert annex["training_energy_mwh"] == 1.8  # 1,754 kWh to 2 significant figures
    assert annex["training_time_wall_clock_days"] == pytest.approx(
        366 + 70.25
    )  # 2023-03-01 to 2024-05-10 06:00
    assert annex["training_time_hardware_days"] == pytest.approx((384 + 192 + 48) / 24)
    assert annex["compute_flops"] is None and annex["compute"] == "not reported"
    assert "| Computational resources (FLOPs) | not reported |" in text
    assert "| Energy consumption, known or estimated (IT) | 1.8 MWh" in text
    # Per-location intensity, by plain place names, and tokens where annotated.
    assert {p["place"] for p in card["locations"]} == {"France", "California, United States", "world average"}
    assert "## Where the energy was used" in text and "| California, United States | US-CA |" in text
    assert card["tokens"] == 2_000_000_000 and card["tokens_runs"] == 1
    assert card["kwh_per_million_tokens"] == pytest.approx(1234 / 2000)
    # One unit per table: the runs table is all MWh, small runs too.
    assert "| IT energy (MWh) |" in text and "| 0.00200 |" in text


def test_an_evaluation_card_has_no_training_block(history: Path) -> None:
    text, card = _card(history, "--model", MODEL, "--phase", "evaluation")
    assert _runs_of(card) == ["slurm:e24", "slurm:est1"]
    block = card["co2_eq_emissions"]
    assert "training_type" not in block and block["emissions"] > 0
    assert card["eu_ai_act_annex_xi"] is None and card["co2_eq_emissions_scope"]["training"] is False
    assert "No run here is training (evaluation)" in card["statement"]
    assert "Annex XI's training figures do not apply" in text
    front = ModelCard(text).data.get("co2_eq_emissions")
    assert front == block and "training_type" not in front
    assert block["hardware_used"] == "Intel Xeon Gold 6338"  # no GPU recorded: the CPU, never a host name


def test_a_job_card_is_titled_by_the_job_name(setup: tuple[Path, Path, Path]) -> None:
    config, _, _ = setup
    done = run_greenai("card", "--job", "slurm:100", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "# Energy Card: llm-pretrain (job slurm:100)" in done.stdout
    assert "Job llm-pretrain (slurm:100) (pre-training, 1 run," in done.stdout
    assert f"| Hardware | 8 x {H100} |" in done.stdout and f"hardware_used: 8 x {H100}" in done.stdout
