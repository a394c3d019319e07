"""Importing runs from CSV: our documented columns and CodeCarbon's own emissions.csv (docs/import.md)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.ledger.import_codecarbon import parse_codecarbon_csv
from agent.ledger.import_csv import parse_runs_csv
from agent.ledger.import_files import ImportedRun, ImportFileError
from collectors.workloads import JobKey
from tests.support.codecarbon_run import tracked_run

T0 = datetime(2022, 1, 11, tzinfo=timezone.utc).timestamp()
"""BLOOM's final training began in January 2022."""


def write(tmp_path: Path, text: str, name: str = "runs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def one_run(tmp_path: Path, text: str) -> ImportedRun:
    (run,) = parse_runs_csv(write(tmp_path, text))
    return run


def error(path: Path) -> str:
    """The one-line message parse_runs_csv gives for a bad file."""
    with pytest.raises(ImportFileError) as caught:
        parse_runs_csv(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


# ---- our columns: good files ----


def test_bloom_final_training_survives_parsing_exactly(tmp_path: Path) -> None:
    run = one_run(
        tmp_path,
        "job_id,start,end,energy_kwh,intensity_g_per_kwh,model,phase,project,gpu_hours,location\n"
        "bloom-176b,2022-01-11T00:00:00Z,2022-03-12T00:00:00Z,433196,57,BLOOM,pretraining,BigScience,"
        "1082990,FRA\n",
    )
    assert run.energy_kwh == 433_196.0
    assert run.unsplit_kwh == 433_196.0 and run.cpu_kwh == run.gpu_kwh == run.dram_kwh == 0.0
    assert run.intensity_g_per_kwh == 57.0
    assert run.key == JobKey("imported", "bloom-176b")
    assert (run.start, run.end) == (T0, T0 + 60 * 86400)
    assert (run.model, run.phase, run.project, run.location) == ("BLOOM", "pretraining", "BigScience", "FRA")
    assert run.gpu_hours == 1_082_990.0
    assert run.pue is None and run.tokens is None and run.reported_emissions_kg is None


def test_component_columns_missing_ones_are_zero(tmp_path: Path) -> None:
    run = one_run(tmp_path, "job_id,start,end,cpu_kwh,gpu_kwh\nj1,0,3600,1.5,2.25\n")
    assert (run.cpu_kwh, run.gpu_kwh, run.dram_kwh, run.unsplit_kwh) == (1.5, 2.25, 0.0, 0.0)
    assert run.energy_kwh == 3.75
    # An empty cell is a missing component too.
    run = one_run(tmp_path, "job_id,start,end,cpu_kwh,gpu_kwh,dram_kwh\nj1,0,3600,,2,0.5\n")
    assert (run.cpu_kwh, run.gpu_kwh, run.dram_kwh) == (0.0, 2.0, 0.5)


def test_energy_and_components_that_agree_keep_the_components(tmp_path: Path) -> None:
    run = one_run(tmp_path, "job_id,start,end,energy_kwh,cpu_kwh,gpu_kwh,dram_kwh\nj,0,1,10.005,2,7,1\n")
    assert (run.cpu_kwh, run.gpu_kwh, run.dram_kwh, run.unsplit_kwh) == (2.0, 7.0, 1.0, 0.0)


def test_energy_and_components_that_disagree_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "job_id,start,end,energy_kwh,cpu_kwh,gpu_kwh,dram_kwh\nj,0,1,10.02,2,7,1\n")
    message = error(path)
    assert ": row 2: column 'energy_kwh': value '10.02': differs by more than 0.1%" in message
    assert "= 10;" in message


def test_optional_columns_headers_in_any_case_and_spacing(tmp_path: Path) -> None:
    run = one_run(
        tmp_path,
        "\ufeff Job_ID ,START,End,GPU_kWh,Node,User,Project,Phase,Model,GPU_Hours,Location,PUE,"
        "Intensity_g_per_kWh,Tokens,Scheduler,x_notes\r\n"
        "123,2024-05-01T10:00:00+02:00,2024-05-01T12:00:00+02:00,4.5,gpu01,alice,llm,Fine-Tuning,"
        'llama-3-8b,16,US-CA,1.2,250,2e9,slurm,"anything, at all"\r\n',
    )
    assert run.key == JobKey("slurm", "123")
    assert (run.node, run.user, run.project, run.phase, run.model) == (
        "gpu01", "alice", "llm", "fine-tuning", "llama-3-8b",
    )  # fmt: skip
    assert (run.gpu_hours, run.location, run.pue, run.intensity_g_per_kwh, run.tokens) == (
        16.0, "US-CA", 1.2, 250.0, 2_000_000_000,
    )  # fmt: skip
    assert run.start == datetime(2024, 5, 1, 8, tzinfo=timezone.utc).timestamp()
    assert run.end - run.start == 7200


def test_naive_dates_are_utc_aware_ones_keep_their_offset_epoch_is_seconds(tmp_path: Path) -> None:
    runs = parse_runs_csv(
        write(
            tmp_path,
            "job_id,start,end,energy_kwh\n"
            "naive,2022-01-11T00:00:00,2022-01-11 01:30:00,1\n"
            "aware,2022-01-11T01:00:00+01:00,2022-01-11T01:30:00Z,1\n"
            "epoch,1641859200,1641864600.5,1\n"
            "date-only,2022-01-11,2022-01-12,1\n",
        )
    )
    spans = {r.key.job_id: (r.start - T0, r.end - T0) for r in runs}
    assert spans == {
        "naive": (0, 5400), "aware": (0, 5400), "epoch": (0, 5400.5), "date-only": (0, 86400),
    }  # fmt: skip
    (shifted,) = parse_runs_csv(
        write(tmp_path, "job_id,start,end,energy_kwh\nj,2022-01-11T02:00:00,2022-01-11T03:00:00,1\n"),
        naive_tz=timezone(timedelta(hours=2)),
    )
    assert shifted.start == T0


def test_header_only_file_has_no_runs_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    assert parse_runs_csv(write(tmp_path, "job_id,start,end,energy_kwh\n")) == []
    runs = parse_runs_csv(write(tmp_path, "job_id,start,end,energy_kwh\n\na,0,1,1\n\nb,0,1,2\n"))
    assert [(r.key.job_id, r.row) for r in runs] == [("a", 3), ("b", 5)]


def test_identity_and_digest_make_reimport_idempotent(tmp_path: Path) -> None:
    text = "job_id,start,end,energy_kwh,node\na,0,10,1,n1\na,0,10,1,n2\nb,0,10,2,n1\n"
    first = parse_runs_csv(write(tmp_path, text))
    again = parse_runs_csv(write(tmp_path, text, "copy.csv"))
    assert [(r.origin, r.digest) for r in first] == [(r.origin, r.digest) for r in again]
    assert len({r.origin for r in first}) == 3  # same job on two nodes: two runs
    # Reordered rows and columns, and numbers written differently, are the same runs.
    shuffled = "node,energy_kwh,end,start,job_id\nn1,2.0,10,0,b\nn2,1,10,0,a\nn1,1.00,10,0,a\n"
    assert {(r.origin, r.digest) for r in parse_runs_csv(write(tmp_path, shuffled, "s.csv"))} == {
        (r.origin, r.digest) for r in first
    }
    # One edited cell: same identity, new digest, only for that run.
    edited = parse_runs_csv(write(tmp_path, text.replace("b,0,10,2", "b,0,10,3"), "e.csv"))
    changed = [(a.origin, a.digest != b.digest) for a, b in zip(first, edited, strict=True)]
    assert changed == [(first[0].origin, False), (first[1].origin, False), (first[2].origin, True)]


def test_name_hardware_and_the_other_tools_method_and_accuracy(tmp_path: Path) -> None:
    header = "job_id,start,end,gpu_kwh,name,gpu_model,gpu_count,cpu_model,method,uncertainty_pct\n"
    row = (
        "j1,0,3600,40,train-llm,NVIDIA H100 80GB HBM3,8,AMD EPYC 9654 96-Core Processor,"
        '"NVML energy counter per GPU, summed",5\n'
    )
    run = one_run(tmp_path, header + row)
    assert (run.name, run.gpu_model, run.gpu_count, run.cpu_model) == (
        "train-llm", "NVIDIA H100 80GB HBM3", 8, "AMD EPYC 9654 96-Core Processor",
    )  # fmt: skip
    assert run.method == "NVML energy counter per GPU, summed" and run.uncertainty_pct == 5.0
    # Each of them is in the digest: an edit is seen.
    for old, new in (("train-llm", "train-llm-2"), (",8,", ",4,"), ('summed",5', 'summed",10')):
        edited = one_run(tmp_path, header + row.replace(old, new))
        assert edited.origin == run.origin and edited.digest != run.digest, new
    # Empty, they are not given: the digest is the one of a file without those columns.
    bare = one_run(tmp_path, "job_id,start,end,gpu_kwh\nj1,0,3600,40\n")
    empty = one_run(tmp_path, header + "j1,0,3600,40,,,,,,\n")
    assert empty == bare and empty.digest == bare.digest and empty.gpu_count is None


# ---- our columns: bad files, one line each ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("job_id,end,energy_kwh\na,1,1\n", "row 1: column 'start': required column is missing"),
        ("job_id,start,end,node\na,0,1,n\n", "row 1: column 'energy_kwh': no energy column"),
        ("job_id,start,end,energy_wh\na,0,1,5\n",
         "row 1: column 'energy_wh': Wh is the wrong unit; give kWh in column 'energy_kwh' (1 Wh = 0.001"),
        ("job_id,start,end,energy_j\na,0,1,5\n", "row 1: column 'energy_j': J is the wrong unit"),
        ("job_id,start,end,energy_mwh\na,0,1,5\n", "MWh is the wrong unit; give kWh in column 'energy_kwh'"),
        ("job_id,start,end,gpu_wh\na,0,1,5\n",
         "column 'gpu_wh': Wh is the wrong unit; give kWh in column 'gpu_kwh'"),
        ("job_id,start,end,ram_kwh\na,0,1,5\n",
         "column 'ram_kwh': give this energy in kWh in column 'dram_kwh'"),
        ("job_id,start,end,energy\na,0,1,5\n",
         "column 'energy': give this energy in kWh in column 'energy_kwh'"),
        ("job_id,start,end,energy_kwh,intensity_kg_per_kwh\na,0,1,5,0.2\n",
         "column 'intensity_kg_per_kwh': give the grid's intensity in grams CO2e per kWh"),
        ("job_id,start,end,energy_kwh,gpu_seconds\na,0,1,5,7\n",
         "give GPU time in hours in column 'gpu_hours'"),
        ("job_id,start,end,energy_kwh,projcet\na,0,1,5,p\n",
         "row 1: column 'projcet': unknown column; did you mean 'project'?"),
        ("job_id,start,end,energy_kwh,energy_kwh\na,0,1,5,5\n", "column 'energy_kwh': column appears twice"),
        ("job_id;start;end;energy_kwh\na;0;1;5\n", "row 1: columns are not separated by commas"),
        ("job_id,start,end,energy_kwh\na,yesterday,1,5\n",
         "row 2: column 'start': value 'yesterday': not a date; write ISO 8601"),
        ("job_id,start,end,energy_kwh\na,2022-13-01T00:00:00,1,5\n",
         "row 2: column 'start': value '2022-13-01T00:00:00'"),
        ("job_id,start,end,energy_kwh\na,0,1641859200000,5\n",
         "column 'end': value '1641859200000': epoch seconds out"),
        ("job_id,start,end,energy_kwh\na,0,10,1\nb,2022-01-02,2022-01-01T23:59:59Z,5\n",
         "row 3: column 'end': value '2022-01-01T23:59:59Z': before start (2022-01-02)"),
        ("job_id,start,end,energy_kwh\na,0,1,-5\n", "row 2: column 'energy_kwh': value '-5': negative"),
        ("job_id,start,end,gpu_kwh\na,0,1,nan\n", "row 2: column 'gpu_kwh': value 'nan': not a number"),
        ("job_id,start,end,energy_kwh\na,0,1,\"1,5\"\n",
         "row 2: column 'energy_kwh': value '1,5': not a number"),
        ("job_id,start,end,energy_kwh\na,0,1,5 kWh\n", "value '5 kWh': not a number"),
        ("job_id,start,end,energy_kwh,pue\na,0,1,5,0.9\n",
         "row 2: column 'pue': value '0.9': PUE is facility"),
        ("job_id,start,end,energy_kwh,phase\na,0,1,5,training\n",
         "row 2: column 'phase': value 'training': unknown phase; use one of pretraining, fine-tuning"),
        ("job_id,start,end,energy_kwh,tokens\na,0,1,5,1.5\n",
         "column 'tokens': value '1.5': not a whole number"),
        ("job_id,start,end,energy_kwh,gpu_count\na,0,1,5,2.5\n",
         "column 'gpu_count': value '2.5': not a whole number; give the number of GPUs"),
        ("job_id,start,end,energy_kwh,uncertainty_pct\na,0,1,5,-5\n",
         "row 2: column 'uncertainty_pct': value '-5': negative"),
        ("job_id,start,end,energy_kwh,uncertainty_pct\na,0,1,5,5%\n",
         "column 'uncertainty_pct': value '5%': not a number"),
        ("job_id,start,end,energy_kwh,gpu_modle\na,0,1,5,x\n",
         "row 1: column 'gpu_modle': unknown column; did you mean 'gpu_model'?"),
        ("job_id,start,end,energy_kwh\n,0,1,5\n", "row 2: column 'job_id': value '': empty"),
        ("job_id,start,end,cpu_kwh,gpu_kwh\na,0,1,,\n",
         "row 2: column 'energy_kwh': value '': no energy in this row"),
        ("job_id,start,end,energy_kwh\na,0,1,5,extra\n", "row 2: 5 cells but the header has 4 columns"),
        ("job_id,start,end,energy_kwh\na,0,1,5\nb,0,1,6\na,0,2,7\n",
         "row 4: column 'job_id': value 'a': same job_id, scheduler and node as row 2"),
        ("job_id,start,end,energy_kwh\na,0,1,\"5\n", "row 2: not valid CSV"),
        ("", "the file is empty"),
        ("\ufeff\r\n \n", "the file is empty"),
        ('{"job_id": "a", "energy_kwh": 5}\n', "row 1: not a CSV of runs: row 1 must name the columns"),
        ("<html><body>runs</body></html>\n", "row 1: not a CSV of runs"),
    ],
)  # fmt: skip
def test_bad_csv_is_one_line_naming_the_row(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error(write(tmp_path, text))


def test_binary_and_non_utf8_files_are_not_csv(tmp_path: Path) -> None:
    png = tmp_path / "chart.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert "not a CSV file (it holds binary data)" in error(png)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("job_id,start,end,energy_kwh,user\na,0,1,5,José\n".encode("latin-1"))
    assert "not UTF-8 text" in error(latin1)
    assert "cannot read the file" in error(tmp_path / "missing.csv")


# ---- CodeCarbon ----

CODECARBON_HEADER = (
    "timestamp,project_name,run_id,experiment_id,duration,emissions,emissions_rate,cpu_power,gpu_power,"
    "ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,country_name,country_iso_code,region,"
    "gpu_count,pue\n"
)


def test_codecarbon_tracker_output_imports_with_the_same_kwh_and_kg(tmp_path: Path) -> None:
    path, written = tracked_run(tmp_path)

    (run,) = parse_codecarbon_csv(path)
    assert run.key == JobKey("codecarbon", written["run_id"])
    assert run.source == "codecarbon" and run.project == "greenai-test" and run.location == "FRA"
    assert run.pue == float(written["pue"]) == 1.0
    assert run.cpu_kwh == float(written["cpu_energy"]) > 0
    assert run.gpu_kwh == float(written["gpu_energy"])
    assert run.dram_kwh == float(written["ram_energy"]) > 0
    assert math.isclose(run.energy_kwh, float(written["energy_consumed"]), rel_tol=1e-9)
    assert run.unsplit_kwh == 0.0
    assert run.reported_emissions_kg == float(written["emissions"]) > 0
    assert run.end - run.start == pytest.approx(float(written["duration"]))
    stamp = datetime.fromisoformat(written["timestamp"]).replace(tzinfo=timezone.utc)
    assert run.end == stamp.timestamp()
    assert run.cpu_model == written["cpu_model"]
    mode, version = written.get("tracking_mode") or "machine", written["codecarbon_version"]
    assert run.method.startswith(f"tracking_mode {mode}, CodeCarbon {version}: "), run.method
    assert "RAPL" in run.method and "NVML" in run.method and "TDP" in run.method


def test_codecarbon_last_row_per_run_wins_and_pue_is_taken_out(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        CODECARBON_HEADER
        + "2024-06-01T10:00:00,p,run-a,e,1800,0.01,0,0,0,0,0.03,0.15,0.015,0.195,US,USA,california,2,1.5\n"
        + "2024-06-01T11:00:00,p,run-b,e,60,0.001,0,0,0,0,0.003,0,0.0015,0.0045,Canada,CAN,quebec,,\n"
        + "2024-06-01T10:30:00,p,run-a,e,3600,0.02,0,0,0,0,0.06,0.30,0.03,0.39,US,USA,california,2,1.5\n",
        "emissions.csv",
    )
    a, b = parse_codecarbon_csv(path)
    assert (a.key.job_id, b.key.job_id) == ("run-b", "run-a")
    assert a.location == "CA-QC" and a.pue == 1.0 and a.gpu_hours is None
    assert b.location == "US-CA" and b.pue == 1.5
    assert (b.cpu_kwh, b.gpu_kwh, b.dram_kwh) == pytest.approx((0.04, 0.20, 0.02))
    assert b.energy_kwh * 1.5 == pytest.approx(0.39)
    assert b.reported_emissions_kg == 0.02 and b.gpu_hours == 2.0
    assert b.end - b.start == 3600 and b.row == 4


def test_codecarbon_energy_beyond_the_components_is_kept_unsplit(tmp_path: Path) -> None:
    row = "2024-06-01T10:00:00,p,r,e,10,0,0,0,0,0,1,2,3,7,France,FRA,,,\n"
    path = write(tmp_path, CODECARBON_HEADER + row)
    (run,) = parse_codecarbon_csv(path)
    assert (run.cpu_kwh, run.gpu_kwh, run.dram_kwh, run.unsplit_kwh) == (1, 2, 3, 1)


def test_codecarbon_hardware_and_method(tmp_path: Path) -> None:
    header = CODECARBON_HEADER.rstrip("\n") + ",gpu_model,cpu_model,tracking_mode,codecarbon_version\n"
    base = (
        "2024-06-01T10:00:00,p,{run},e,3600,0,0,0,0,0,1,2,3,6,France,FRA,,{count},,{gpus},{cpu},process,"
        "2.8.3\n"
    )
    path = write(
        tmp_path,
        header
        + base.format(run="a", count="4", gpus="4 x NVIDIA A100-SXM4-80GB", cpu="Intel(R) Xeon(R) Gold 6148")
        + base.format(run="b", count="3", gpus="2 x NVIDIA A100-SXM4-80GB1 x Tesla T4", cpu="")
        + base.format(run="c", count="0", gpus="", cpu=""),
        "emissions.csv",
    )
    a, b, c = parse_codecarbon_csv(path)
    assert (a.gpu_model, a.gpu_count, a.cpu_model) == (
        "NVIDIA A100-SXM4-80GB",
        4,
        "Intel(R) Xeon(R) Gold 6148",
    )
    assert (b.gpu_model, b.gpu_count) == ("NVIDIA A100-SXM4-80GB; Tesla T4", 3)  # kinds written end to end
    assert (c.gpu_model, c.gpu_count, c.gpu_hours) == ("", None, None)
    assert a.method.startswith("tracking_mode process, CodeCarbon 2.8.3: CPU energy from RAPL")
    assert a.uncertainty_pct is None  # CodeCarbon states none


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("job_id,start,end,energy_kwh\na,0,1,5\n",
         "row 1: column 'timestamp': not a CodeCarbon emissions.csv: column is missing; for our own"),
        (CODECARBON_HEADER + "2024-06-01T10:00:00,p,r,e,10,0,0,0,0,0,1,2,3,5,France,FRA,,,\n",
         "row 2: column 'energy_consumed': value '5': below cpu + gpu + ram energy = 6"),
        (CODECARBON_HEADER + "June 1st,p,r,e,10,0,0,0,0,0,1,2,3,6,France,FRA,,,\n",
         "row 2: column 'timestamp': value 'June 1st': not a date"),
        (CODECARBON_HEADER + "2024-06-01T10:00:00,p,r,e,10,0,0,0,0,0,1,2,3,6,France,FRA,,,0.5\n",
         "row 2: column 'pue': value '0.5': PUE is facility"),
    ],
)  # fmt: skip
def test_bad_codecarbon_csv_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text, "emissions.csv")
    with pytest.raises(ImportFileError) as caught:
        parse_codecarbon_csv(path)
    assert "\n" not in str(caught.value)
    assert f"{path}: {expected}" in str(caught.value)


# ---- bounds: dates, duration, energy, file size ----

CC_HEAD = "timestamp,run_id,duration,emissions,cpu_energy,gpu_energy,ram_energy,energy_consumed\n"


def cc_error(path: Path) -> str:
    with pytest.raises(ImportFileError) as caught:
        parse_codecarbon_csv(path)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (
            "0001-01-01",
            "9999-12-31",
            "column 'start': value '0001-01-01': date out of range; runs must lie between 1970 and 2100",
        ),
        ("2024-01-01", "2100-01-01", "column 'end': value '2100-01-01': date out of range"),
        (
            "1969-12-31T23:59:59Z",
            "2024-01-01",
            "column 'start': value '1969-12-31T23:59:59Z': date out of range",
        ),
        ("-1", "10", "column 'start': value '-1': epoch seconds out of range (1970 to 2100)"),
        (
            "0",
            "4102444800",
            "column 'end': value '4102444800': epoch seconds out of range (1970 to 2100); in milliseconds?",
        ),
        (
            "2020-01-01",
            "2024-01-01",
            "column 'end': value '2024-01-01': the run would last 1,461 days, more than the 732 allowed",
        ),
    ],
)
def test_dates_and_duration_are_bounded(tmp_path: Path, start: str, end: str, expected: str) -> None:
    assert expected in error(write(tmp_path, f"job_id,start,end,energy_kwh\na,{start},{end},1\n"))


def test_two_years_is_the_longest_run(tmp_path: Path) -> None:
    run = one_run(tmp_path, "job_id,start,end,energy_kwh\na,2022-01-01,2024-01-01,1\n")
    assert run.end - run.start == 730 * 86400


@pytest.mark.parametrize(
    ("columns", "cells", "expected"),
    [
        ("energy_kwh", "1e308", "column 'energy_kwh': value '1e308': too large (more than 1e+15)"),
        (
            "energy_kwh",
            "2e9",
            "column 'energy_kwh': value '2e9': more than 1,000,000,000 kWh (1 TWh) in one run",
        ),
        (
            "gpu_kwh,cpu_kwh",
            "6e8,6e8",
            "column 'energy_kwh': value 'cpu_kwh + gpu_kwh + dram_kwh': more than",
        ),
        ("energy_kwh,tokens", "1,1e20", "column 'tokens': value '1e20': too large"),
        ("energy_kwh,gpu_hours", "1,inf", "column 'gpu_hours': value 'inf': not a number"),
    ],
)
def test_energy_and_numbers_are_bounded(tmp_path: Path, columns: str, cells: str, expected: str) -> None:
    text = f"job_id,start,end,{columns}\na,2024-01-01,2024-01-02,{cells}\n"
    assert expected in error(write(tmp_path, text))


def test_a_whole_terawatt_hour_is_the_largest_run(tmp_path: Path) -> None:
    assert one_run(tmp_path, "job_id,start,end,energy_kwh\na,2024-01-01,2024-01-02,1e9\n").energy_kwh == 1e9


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "2024-01-01T00:00:00,r,1e12,1,1,0,0,1",
            "column 'duration': value '1e12': the run would last 11,574,074 days",
        ),
        ("2024-01-01T00:00:00,r,10,1,1e308,0,0,1e308", "column 'cpu_energy': value '1e308': too large"),
        (
            "2024-01-01T00:00:00,r,10,1,2e9,0,0,2e9",
            "column 'cpu_energy': value '2e9': more than 1,000,000,000 kWh",
        ),
        (
            "1971-01-01T00:00:00,r,4e7,1,1,0,0,1",
            "column 'duration': value '4e7': the run would start before 1970",
        ),
        (
            "2101-01-01T00:00:00,r,10,1,1,0,0,1",
            "column 'timestamp': value '2101-01-01T00:00:00': date out of range",
        ),
    ],
)
def test_codecarbon_rows_are_bounded(tmp_path: Path, row: str, expected: str) -> None:
    assert expected in cc_error(write(tmp_path, CC_HEAD + row + "\n", "emissions.csv"))


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "job_id,start,end,energy_kwh\n" + "".join(f"{i},2024-01-01,2024-01-02,1\n" for i in range(9)),
    )
    with pytest.raises(ImportFileError) as caught:
        parse_runs_csv(path, max_bytes=100)
    assert str(caught.value) == (
        f"{path}: larger than the limit of 100 bytes; split the file, or raise the limit with --max-bytes"
    )
    assert len(parse_runs_csv(path, max_bytes=path.stat().st_size)) == 9


def test_an_endless_device_stops_at_the_limit(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ImportFileError, match="larger than the limit of 209,715,200 bytes"):
        parse_runs_csv("/dev/zero")
    with pytest.raises(ImportFileError, match="larger than the limit of 1,000 bytes"):
        parse_codecarbon_csv("/dev/zero", max_bytes=1000)
    assert time.monotonic() - started < 10
