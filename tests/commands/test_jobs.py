"""`greenai jobs` and `greenai job ID` over a real ledger file, with the agent stopped or writing."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest

from agent.cli import main
from agent.commands import jobs as jobs_command
from agent.ledger.summary import JobSummary
from agent.ledger.writer import Ledger
from collectors.workloads import JobInfo, JobKey
from tests.support.privileges import unprivileged
from tests.support.processes import run_greenai

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
POD = "0e7f5c1a-9d2b-4c3e-8f6a-1b2c3d4e5f60"
HOSTILE = [
    "quote \" and ' and \\ backslash",
    "new\nline\r\n and\ttab",
    "\x1b[31mred\x1b[0m \x1b]0;title\x07 \x9b2J",
    "bidi \u202egnp.exe zero\u200bwidth",
    "wide 漢字漢字漢字漢字 e\u0301",
    "x" * 10_000,
]


def _seed(path: Path, names: list[str] | None = None) -> None:
    """alice's finished slurm:4242, bob's running slurm:4243, docker:4242 and an estimated k8s pod."""
    led = Ledger(path, "node1", background=False)
    jobs = [
        (JobKey("slurm", "4242"), JobInfo("alice", 1000, "train-llm", "proj", "gpu"), T0, T0 + 7200),
        (JobKey("slurm", "4243"), JobInfo("bob", 1001, "eval", "proj", "gpu"), T0 + 86400, None),
        (JobKey("docker", "4242"), JobInfo("carol", None, "notebook"), T0 + 2 * 86400, T0 + 2 * 86400 + 30),
        (JobKey("kubernetes", POD), JobInfo("dave", None, "infer", "ml"),
         T0 + 3 * 86400, None),
    ]  # fmt: skip
    for i, name in enumerate(names or []):
        jobs.append((JobKey("slurm", str(9000 + i)), JobInfo("eve", None, name), T0 + 4 * 86400, None))
    for key, info, start, end in jobs:
        led.job_seen(key, info, start)
        estimated = key.scheduler == "kubernetes"
        energy = {("cpu", "estimate" if estimated else "rapl"): 0.36e6, ("gpu", "nvml"): 3.24e6}
        if not estimated:
            energy[("dram", "rapl")] = 0.0
        led.record(start + 60, {key: (info, energy)}, {}, {}, gpu_seconds={key: 7200.0})
        if end is not None:
            led.job_ended(key, end)
    led.close()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    _seed(path)
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_jobs_lists_every_job_in_a_table_of_100_columns(
    ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "jobs", "--ledger", str(ledger_path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [h for h, _, _ in jobs_command.COLUMNS]
    assert len(lines) == 5 and all(len(line) <= 100 for line in lines), out
    alice = next(line for line in lines if "alice" in line).split()
    assert alice == [
        "4242", "slurm", "alice", "train-llm", "05-01", "00:00", "02:00", "2h00m",
        "1.00", "0.100", "0", "0.900", "2.00", "0%",
    ]  # fmt: skip
    bob = next(line for line in lines if "bob" in line)
    assert "running" in bob
    dave = next(line for line in lines if "dave" in line).split()
    assert dave[0] == "0e7f5c1a…" and dave[1] == "k8s" and dave[-1] == "10%"
    docker = next(line for line in lines if "carol" in line).split()
    assert docker[6:8] == ["00:00", "0m30s"]


def test_jobs_json_has_the_summary_fields(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "jobs", "--ledger", str(ledger_path), "--json")
    assert code == 0
    jobs = json.loads(out)
    assert [(j["scheduler"], j["job_id"]) for j in jobs] == [
        ("slurm", "4242"),
        ("slurm", "4243"),
        ("docker", "4242"),
        ("kubernetes", POD),
    ]
    alice = jobs[0]
    assert alice["start"] == "2024-05-01T00:00:00Z" and alice["end"] == "2024-05-01T02:00:00Z"
    assert alice["duration_seconds"] == 7200 and alice["energy_kwh"] == 1.0 and alice["gpu_hours"] == 2.0
    assert alice["energy_joules"] == {"cpu": 0.36e6, "dram": 0.0, "gpu": 3.24e6, "total": 3.6e6}
    assert alice["sources"] == {"rapl": 0.36e6, "nvml": 3.24e6} and alice["estimated_share"] == 0
    assert jobs[1]["end"] is None and jobs[1]["running"] is True
    assert jobs[3]["estimated_share"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--running"], ["4243", POD]),
        (["--user", "alice"], ["4242"]),
        (["--user", "nobody"], []),
        # --since keeps what ran at or after the time: finished after it, or still running
        (["--since", "2024-05-01T01:00:00Z"], ["4242", "4243", "4242", POD]),
        (["--since", "2024-05-02"], ["4243", "4242", POD]),
        (["--since", "2024-05-03T00:01:00"], ["4243", POD]),
        (["--since", "2024-05-03T02:00:00+02:00"], ["4243", "4242", POD]),
        (["--running", "--user", "bob"], ["4243"]),
    ],
)
def test_jobs_filters(
    ledger_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: list[str]
) -> None:
    code, out, err = cli(capsys, "jobs", "--ledger", str(ledger_path), "--json", *flags)
    assert code == 0, err
    assert [j["job_id"] for j in json.loads(out)] == expected


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01", "2024-05-01T25:00", ""])
def test_a_bad_since_is_one_line_and_exit_2(
    ledger_path: Path, capsys: pytest.CaptureFixture[str], since: str
) -> None:
    code, out, err = cli(capsys, "jobs", "--ledger", str(ledger_path), "--since", since)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--since" in err and "YYYY-MM-DD" in err, err


@pytest.mark.parametrize("job_id", ["4243", "slurm:4243"])
def test_job_by_id_or_scheduler_and_id(ledger_path: Path, job_id: str) -> None:
    done = run_greenai("job", job_id, "--ledger", str(ledger_path))
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(None, 1) for line in done.stdout.splitlines() if not line.startswith(" "))
    assert fields["job"] == "slurm:4243" and fields["user"] == "bob (uid 1001)"
    assert fields["end"].startswith("running") and fields["energy"].startswith("1.00 kWh (0.950-1.05")
    assert fields["kinds"] == "measured 100 % (NVML, RAPL)"
    assert fields["gpu-hours"] == "2.00" and fields["hardware"] == "not recorded"


def test_job_json(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "job", "docker:4242", "--ledger", str(ledger_path), "--json")
    assert code == 0
    job = json.loads(out)
    assert job["user"] == "carol" and job["duration_seconds"] == 30 and job["end"] == "2024-05-03T00:00:30Z"
    code, out, _ = cli(capsys, "job", f"k8s:{POD}", "--ledger", str(ledger_path))
    assert code == 0 and "dave" in out


def test_an_ambiguous_id_lists_the_candidates(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "job", "4242", "--ledger", str(ledger_path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "ambiguous" in err and "docker:4242, slurm:4242" in err, err


def test_an_unknown_job_is_one_line_and_exit_1(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for job_id in ("999", "slurm:999", "pbs:4242"):
        code, out, err = cli(capsys, "job", job_id, "--ledger", str(ledger_path))
        assert code == 1 and out == "" and err.count("\n") == 1 and "no job" in err, err


def test_without_a_ledger_it_says_where_it_looked(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    missing = tmp_path / "nowhere" / "ledger.db"
    config.write_text(f"ledger:\n  path: {missing}\n")
    for args in (["jobs"], ["job", "4242"]):
        done = run_greenai(*args, "--config", str(config))
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and str(missing) in done.stderr and "greenai agent" in done.stderr
    assert not missing.parent.exists()  # looking does not create it


def test_a_ledger_the_user_may_not_read_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    ledger_path = Path(tempfile.mkdtemp(prefix="greenai-ledger-")) / "ledger.db"
    ledger_path.parent.chmod(0o755)  # pytest's tmp_path is 0700: nobody could not even look
    _seed(ledger_path)
    with unprivileged():
        code, out, err = cli(capsys, "jobs", "--ledger", str(ledger_path))
    assert code == 1 and out == "" and err.count("\n") == 1, err
    shutil.rmtree(ledger_path.parent)
    assert str(ledger_path) in err and "agent's user" in err


def test_the_config_names_the_ledger(ledger_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"ledger:\n  path: {ledger_path}\n")
    done = run_greenai("jobs", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 4


def test_it_reads_while_the_agent_holds_the_write_lock(ledger_path: Path) -> None:
    writer = sqlite3.connect(ledger_path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE energy SET joules = joules * 2")
    try:
        done = run_greenai("jobs", "--ledger", str(ledger_path), "--json")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["energy_kwh"] == 1.0  # the last committed figures


def test_hostile_names_keep_the_table_to_one_line_per_job(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _seed(path, HOSTILE)
    done = run_greenai("jobs", "--ledger", str(path), "--user", "eve")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 2 + len(HOSTILE)
    for line in lines[:-1]:
        assert len(line) <= 100 and not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in line), line
        assert "\u202e" not in line and "\u200b" not in line
    assert " \\x1b[31mr… " in done.stdout and " bidi \\u20… " in done.stdout  # escaped, then cut
    done = run_greenai("jobs", "--ledger", str(path), "--user", "eve", "--json")
    assert [j["name"] for j in json.loads(done.stdout)] == HOSTILE
    assert all(ch.isascii() and (ch.isprintable() or ch == "\n") for ch in done.stdout)
    done = run_greenai("job", "9001", "--ledger", str(path))
    assert done.returncode == 0 and done.stdout.count("\n") == len(done.stdout.splitlines())
    assert "name       new\\x0aline\\x0d\\x0a and\\x09tab\n" in done.stdout


def test_end_is_utc_time_of_day_with_the_days_after_the_start() -> None:
    def end(start: float, stop: float | None) -> str:
        job = JobSummary("slurm", "1", "n", JobInfo(), start, stop, stop or start, {})
        return jobs_command.end_column(job)

    assert end(T0 + 3600, T0 + 7200) == "02:00"
    assert end(T0 + 23 * 3600, T0 + 25 * 3600) == "01:00+1d"
    assert end(T0, None) == "running"


def test_cells_are_cut_and_padded_by_terminal_columns() -> None:
    assert jobs_command.cell("漢字漢字", 5) == "漢字…"
    assert jobs_command.cell("e\u0301", 3) == "e\u0301  "
    assert jobs_command.cell("12", 5, right=True) == "   12"
    later = JobSummary("kubernetes", POD, "n", JobInfo(), T0, None, T0, {}, run=3)
    assert jobs_command.job_column(later, 9) == "0e7f5c…#3"  # the run is never cut off
    assert jobs_command.number(1234.5, 5) == "1.23k" and jobs_command.number(123456, 5) == "123k"
    assert [jobs_command.duration(s) for s in (59, 3599, 7260, 360000, 9_000_000)] == [
        "0m59s",
        "59m59s",
        "2h01m",
        "4d04h",
        "104d",
    ]


def test_table_numbers_never_hide_a_small_figure() -> None:
    from agent.commands.jobs import number

    assert [number(v, 5) for v in (0.0, 0.0001, 0.0007, 0.0123, 12.3456, 999.96, 123456.0, 5e10)] == [
        "0",
        "<.001",
        "0.001",
        "0.012",
        "12.3",
        "1.00k",
        "123k",
        "50.0G",
    ]


def _ledger_of(path: Path, jobs: list[tuple[str, JobInfo, dict[tuple[str, str], float], float]]) -> Path:
    """One finished job per (id, info, joules by (component, source), GPU-seconds), an hour each."""
    led = Ledger(path, "node1", background=False)
    for i, (job_id, info, energy, gpu_s) in enumerate(jobs):
        key, start = JobKey("slurm", job_id), T0 + i * 7200
        led.job_seen(key, info, start)
        led.record(start + 60, {key: (info, energy)}, {}, {}, gpu_seconds={key: gpu_s})
        led.job_ended(key, start + 3600)
    led.close()
    return path


def test_small_jobs_are_in_wh_not_lost_in_kwh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = _ledger_of(
        tmp_path / "ledger.db",
        [
            ("1", JobInfo("ann"), {("cpu", "rapl"): 5400.0, ("gpu", "nvml"): 0.0}, 0.0),  # 1.5 Wh
            ("2", JobInfo("ben"), {("cpu", "rapl"): 720.0, ("dram", "rapl"): 36.0}, 0.0),  # 0.21 Wh
        ],
    )
    code, out, err = cli(capsys, "jobs", "--ledger", str(ledger))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[7:11] == ["Wh", "CPU", "DRAM", "GPU"]  # one unit, named in the header
    assert lines[1].split()[7:11] == ["1.50", "1.50", "0", "0"]
    assert lines[2].split()[7:11] == ["0.210", "0.200", "0.010", "0"]
    assert "<.001" not in out


def test_a_large_job_reads_in_mwh_and_tonnes_with_its_range_kinds_and_hardware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kwh = 50_400.0
    info = JobInfo(
        "alice", None, "pretrain", gpu_model="NVIDIA H100 80GB HBM3", gpu_count=8,
        cpu_model="AMD EPYC 9654 96-Core Processor",
    )  # fmt: skip
    energy = {("gpu", "nvml"): 0.88 * kwh * 3.6e6, ("cpu", "estimate"): 0.12 * kwh * 3.6e6}
    ledger = _ledger_of(tmp_path / "ledger.db", [("4242", info, energy, 8 * 3600.0)])
    config = tmp_path / "agent.yaml"
    config.write_text(f"ledger: {{path: {ledger}}}\ncarbon: {{location: FRA}}\n")
    code, out, err = cli(capsys, "job", "4242", "--config", str(config))
    assert code == 0, err
    pairs = [line.split(None, 1) for line in out.splitlines() if not line.startswith(" ")]
    fields = dict(pair for pair in pairs if len(pair) == 2)
    low, high = kwh * (0.88 * 0.95 + 0.12 * 0.40), kwh * (0.88 * 1.05 + 0.12 * 2.90)
    assert (
        fields["energy"] == f"50.4 MWh ({low / 1000:.1f}-{high / 1000:.1f} by the sources' stated accuracy)"
    )
    assert fields["kinds"] == (
        "measured 88 % (NVML), estimated 12 % (the agent's power model, TDP x utilisation)"
    )
    assert fields["hardware"] == "8 x NVIDIA H100 80GB HBM3; CPU AMD EPYC 9654 96-Core Processor"
    assert fields["gpu-hours"] == "8.00"
    co2e = fields["co2e"]
    assert co2e.startswith("location-based ") and " t (" in co2e and "market-based " in co2e, co2e
    assert "e+" not in out and "000000" not in out  # no exponents, no six-decimal kWh
    assert fields["sci"].endswith("location-based (embodied: not configured)"), fields["sci"]  # not "0 g"
    assert main(["jobs", "--ledger", str(ledger)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[7] == "MWh" and table[1].split()[8:12] == ["50.4", "6.05", "0", "44.4"]
    # JSON keeps raw SI numbers.
    code, out, _ = cli(capsys, "job", "4242", "--config", str(config), "--json")
    record = json.loads(out)
    assert record["energy_kwh"] == pytest.approx(kwh) and record["co2e_grams"]["location"] > 1e6
    assert record["energy_kwh_range"] == {"value": pytest.approx(kwh), "low": pytest.approx(low),
                                          "high": pytest.approx(high)}  # fmt: skip
    assert record["hardware"]["gpu_count"] == 8 and record["other_runs"] == []
    assert record["carbon"]["embodied_g"] is None and record["carbon"]["embodied_configured"] is False
    config.write_text(
        f"ledger: {{path: {ledger}}}\ncarbon:\n  location: FRA\n"
        "  embodied: [{name: server, total_kg: 2500, lifetime_years: 5}]\n"
    )
    code, out, _ = cli(capsys, "job", "4242", "--config", str(config), "--json")
    job = json.loads(out)  # one hour of the whole node: 2.5 t over 5 years of 8,760 h
    assert job["carbon"]["embodied_g"] == pytest.approx(2500e3 * job["duration_seconds"] / 3600 / (5 * 8760))
