"""What the work was: rules, self-declaration through a real process's environment, useful work
(`greenai annotate` and the HTTP API), efficiency figures, and the ledger's upgrade to schema 3."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.config import settings
from agent.config.work import WorkRule, parse_rules
from agent.export.api import LedgerApi
from agent.export.exposition import Exposition
from agent.export.server import MetricsServer
from agent.ledger.read import open_readonly
from agent.ledger.schema import MIGRATIONS, SCHEMA_VERSION
from agent.ledger.writer import Ledger
from agent.live.accounting import Accountant
from agent.live.sampler import Sampler
from agent.live.work import Work, WorkClassifier, classify
from agent.units import JOULES_PER_KWH
from collectors.estimate import EstimateCollector
from collectors.jobs.cgroups import JobDiscovery
from collectors.workloads import JobInfo, JobKey
from tests.support.cgroups import RealCgroups, real_cgroups_missing
from tests.support.processes import AgentProcess, run_greenai, wait_for

real = pytest.mark.skipif(bool(real_cgroups_missing()), reason=real_cgroups_missing() or "ok")
PROC, CGROUPFS = Path("/proc"), Path("/sys/fs/cgroup")
NO_RAPL = ["--sysfs", "/nonexistent-sys"]
T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z

RULES = parse_rules(
    [
        {"match": {"name": "^llama-pt", "account": "^ml$"}, "project": "llm", "phase": "pretraining",
         "model": "llama-7b"},
        {"match": {"name": "llama"}, "project": "llm-misc", "model": "llama"},
        {"match": {"namespace": "^serving$"}, "project": "chat", "phase": "inference"},
        {"match": {"user": "^alice$", "scheduler": "docker"}, "project": "notebooks", "phase": "other"},
        {"project": "unassigned"},
    ]
)  # fmt: skip
SLURM, K8S, DOCKER = JobKey("slurm", "1"), JobKey("kubernetes", "pod"), JobKey("docker", "abc")


# ---- rules ----


@pytest.mark.parametrize(
    ("key", "info", "expected"),
    [
        (
            SLURM,
            JobInfo(name="llama-pt-run3", account="ml"),
            Work("llm", "pretraining", "llama-7b", "rule 0"),
        ),
        # the first rule needs both its keys; the next that matches wins entirely (no phase of its own)
        (SLURM, JobInfo(name="llama-pt-run3", account="other"), Work("llm-misc", "", "llama", "rule 1")),
        (K8S, JobInfo(name="api", account="serving"), Work("chat", "inference", "", "rule 2")),
        # namespace is a pod's, account a Slurm job's: a Slurm account "serving" is no namespace
        (SLURM, JobInfo(name="api", account="serving"), Work("unassigned", "", "", "rule 4")),
        (DOCKER, JobInfo(user="alice"), Work("notebooks", "other", "", "rule 3")),
        (SLURM, JobInfo(user="alice"), Work("unassigned", "", "", "rule 4")),
    ],
)
def test_the_first_matching_rule_wins(key: JobKey, info: JobInfo, expected: Work) -> None:
    assert classify(key, info, RULES, {}) == expected


def test_a_declaration_wins_per_field_over_the_rules() -> None:
    info = JobInfo(name="llama-pt-run3", account="ml")
    got = classify(SLURM, info, RULES, {"model": "llama-13b"})
    assert got == Work("llm", "pretraining", "llama-13b", "env+rule 0")
    assert classify(SLURM, info, (), {"phase": "evaluation"}) == Work("", "evaluation", "", "env")
    assert classify(SLURM, info, (), {}) == Work()


def _load(tmp_path: Path, text: str) -> settings.Config:
    path = tmp_path / "greenai.yaml"
    path.write_text(text)
    return settings.load(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("work: {rules: [{project: a}, {match: {name: '(unclosed'}, project: b}]}",
         "key 'work.rules[1].match.name' is not a valid regular expression"),
        ("work: {rules: [{match: {labels: x}, project: b}]}", "key 'work.rules[0].match.labels' cannot be"),
        ("work: {rules: [{project: a, phase: training}]}", "key 'work.rules[0].phase' must be one of"),
        ("work: {rules: [{match: {name: x}}]}", "key 'work.rules[0]' sets none of project"),
        ("work: {rules: [{project: a, colour: red}]}", "key 'work.rules[0].colour' is not a rule key"),
        ("work: {rules: {project: a}}", "key 'work.rules' must be a list"),
        ("api: {allow_annotate: 'yes'}", "key 'api.allow_annotate' must be true or false"),
    ],
)  # fmt: skip
def test_bad_rules_are_one_line_errors_naming_the_entry(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(settings.ConfigError) as e:
        _load(tmp_path, text + "\n")
    assert problem in str(e.value)
    assert "\n" not in str(e.value)


def test_rules_load_from_the_config(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "work: {rules: [{match: {name: '^bert'}, project: nlp, phase: fine-tuning}]}\n")
    (rule,) = cfg.work.rules
    assert isinstance(rule, WorkRule) and rule.project == "nlp" and rule.phase == "fine-tuning"
    assert cfg.api.allow_annotate is False


# ---- self-declaration, through a real process in a real cgroup ----


@real
def test_a_job_declares_its_work_in_its_environment(
    cgroups: RealCgroups, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    declared = {"GREENAI_MODEL": "mistral-7b", "GREENAI_PROJECT": "assistant"}
    cgroups.start("slurm/uid_0/job_7101/step_0", "sleeper", env=declared)
    cgroups.start("slurm/uid_0/job_7102/step_0", "sleeper", env={"GREENAI_PHASE": "training"})
    cgroups.start("slurm/uid_0/job_7103/step_0", "sleeper", env={"GREENAI_PHASE": "training"})
    cgroups.start("slurm/uid_0/job_7104/step_0", "sleeper")  # declares nothing: the rules say
    rules = parse_rules([{"match": {"scheduler": "slurm"}, "phase": "fine-tuning", "project": "default"}])

    estimate = EstimateCollector(PROC, time.monotonic)
    probe = estimate.probe()
    sampler = Sampler([estimate], time.monotonic, probe.devices)
    discovery = JobDiscovery(PROC, CGROUPFS, "vm", environ_fallback=False)
    reads: list[JobKey] = []

    def job_pids(key: JobKey, limit: int) -> list[int]:
        reads.append(key)
        return discovery.job_pids(key, limit)

    ledger = Ledger(tmp_path / "ledger.db", "vm", background=False)
    work = WorkClassifier(rules, str(PROC), job_pids)
    accountant = Accountant(discovery, time.time, probe.devices, ledger=ledger, work=work)
    with caplog.at_level(logging.WARNING, logger="greenai.work"):
        for _ in range(40):
            accountant.account(sampler.tick())
    ledger.close()
    discovery.close()

    jobs = {s.job_id: s for s in open_readonly(tmp_path / "ledger.db").jobs()}
    first = jobs["7101"].as_dict()
    assert (first["project"], first["phase"], first["model"]) == ("assistant", "fine-tuning", "mistral-7b")
    assert (jobs["7102"].info.phase, jobs["7102"].info.project) == ("other", "default")  # invalid phase
    assert (jobs["7104"].info.project, jobs["7104"].info.phase, jobs["7104"].info.model) == (
        "default", "fine-tuning", "",
    )  # fmt: skip
    # A declaring job's environment is read once; a silent one's on a few scans only, not on every one.
    assert reads.count(JobKey("slurm", "7101")) == 1
    assert 1 < reads.count(JobKey("slurm", "7104")) <= 6
    warnings = [r for r in caplog.records if "GREENAI_PHASE='training'" in r.getMessage()]
    assert len(warnings) == 1


# ---- useful work: greenai annotate with the agent stopped ----


def _seed(path: Path) -> None:
    """slurm:4242 used 2 kWh (finished), slurm:4243 is running."""
    led = Ledger(path, "node1", background=False)
    for key, start in ((JobKey("slurm", "4242"), T0), (JobKey("slurm", "4243"), T0 + 100)):
        info = JobInfo("alice", 1000, "train", "ml")
        led.job_seen(key, info, start)
        led.record(
            start + 60,
            {key: (info, {("cpu", "rapl"): 1.6 * JOULES_PER_KWH, ("gpu", "nvml"): 0.4 * JOULES_PER_KWH})},
            {},
            {},
        )
    led.job_ended(JobKey("slurm", "4242"), T0 + 3600)
    led.close()


def _job(path: Path, job: str) -> dict[str, Any]:
    result = run_greenai("job", job, "--json", "--ledger", str(path))
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_annotate_adds_useful_work_and_gives_kwh_per_million_tokens(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _seed(path)
    before = _job(path, "4242")
    assert before["tokens"] is None and before["kwh_per_million_tokens"] is None
    assert before["project"] is None and before["kwh_per_sample"] is None
    for args in (["--tokens", "3000000"], ["--tokens", "1000000", "--samples", "500"]):
        result = run_greenai("annotate", "4242", *args, "--ledger", str(path))
        assert result.returncode == 0, result.stderr
    after = _job(path, "slurm:4242")
    assert after["tokens"] == 4_000_000 and after["samples"] == 500
    assert after["energy_kwh"] == pytest.approx(2.0)
    assert after["kwh_per_million_tokens"] == pytest.approx(0.5)
    assert after["kwh_per_sample"] == pytest.approx(0.004)
    listed = json.loads(run_greenai("jobs", "--json", "--ledger", str(path)).stdout)
    assert [j["tokens"] for j in listed] == [4_000_000, None]
    shown = run_greenai("job", "4242", "--ledger", str(path)).stdout
    assert "tokens     4,000,000 (500 Wh per million tokens)" in shown, shown
    assert "samples    500 (4.00 Wh per sample)" in shown, shown


@pytest.mark.parametrize(
    "args", [["--tokens", "-5"], ["--tokens", "1.5"], ["--samples", "many"], ["--tokens", "1e6"], []]
)
def test_annotate_rejects_bad_counts_in_one_line(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "ledger.db"
    _seed(path)
    result = run_greenai("annotate", "4242", *args, "--ledger", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("greenai: ") and result.stderr.count("\n") == 1, result.stderr
    assert _job(path, "4242")["tokens"] is None


def test_annotate_an_unknown_job_or_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    result = run_greenai("annotate", "4242", "--tokens", "5", "--ledger", str(path))
    assert (result.returncode, result.stderr.count("\n")) == (1, 1)
    assert not path.exists()
    _seed(path)
    result = run_greenai("annotate", "999", "--tokens", "5", "--ledger", str(path))
    assert result.returncode == 1 and "no job '999'" in result.stderr


# ---- the ledger's schema 2 -> 3 ----


def test_a_version_2_ledger_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for steps in MIGRATIONS[:2]:  # the schema as version 2 of this code made it
        for statement in steps:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        'INSERT INTO jobs (scheduler, job_id, node, user, name, start, "end", last_seen) '
        "VALUES ('slurm', '77', 'node1', 'bob', 'old', ?, ?, ?)",
        (T0, T0 + 60, T0 + 60),
    )
    conn.execute("INSERT INTO energy VALUES (1, ?, 'cpu', 'rapl', ?)", (T0, 0.9 * JOULES_PER_KWH))
    conn.close()

    result = run_greenai("annotate", "77", "--samples", "90", "--ledger", str(path))
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    row = conn.execute("SELECT name, origin, project, tokens, samples, pue FROM jobs").fetchone()
    conn.close()
    assert row == ("old", "agent", "", None, 90, None)
    job = _job(path, "77")
    assert job["energy_kwh"] == pytest.approx(0.9) and job["kwh_per_sample"] == pytest.approx(0.01)


# ---- useful work through the running agent's HTTP API ----


def _post(url: str, body: object, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@real
def test_annotate_through_the_running_agent(cgroups: RealCgroups, tmp_path: Path) -> None:
    cgroups.start("slurm/uid_0/job_7201/step_0", "sleeper", env={"GREENAI_MODEL": "gpt-mini"})
    ledger = tmp_path / "ledger.db"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"ledger: {{path: {ledger}, flush_seconds: 0.2}}\nslurm: {{scontrol: ''}}\n"
        "work: {rules: [{match: {name: ''}, project: research, phase: pretraining}]}\n"
    )
    with AgentProcess(["--config", str(cfg), "--interval", "0.1", *NO_RAPL]) as agent:
        agent.wait_ready()
        url = f"{agent.url}/api/v1/jobs/slurm:7201/annotate"
        wait_for(lambda: _post(url, {"tokens": 0})[0] == 200, 15, "the job in the agent's ledger")
        status, job = _post(url, {"tokens": 2_000_000})
        assert status == 200 and job["tokens"] == 2_000_000
        assert (job["model"], job["project"], job["phase"]) == ("gpt-mini", "research", "pretraining")
        for body in ({"tokens": -1}, {"tokens": 1.5}, {"tokens": "7"}, {"tokens": True}, {"watts": 3}, [1]):
            code, reply = _post(url, body)
            assert code == 400, body
            assert "\n" not in reply["error"]
        assert _post(url, {"samples": 1}, content_type="text/plain")[0] == 400
        assert _post(f"{agent.url}/api/v1/jobs/9999/annotate", {"tokens": 1})[0] == 404
        # a second writer while the agent runs: the CLI goes straight to the file, once the job is there
        wait_for(lambda: run_greenai("job", "7201", "--ledger", str(ledger)).returncode == 0, 10, "a flush")
        result = run_greenai("annotate", "7201", "--samples", "10", "--ledger", str(ledger))
        assert result.returncode == 0, result.stderr
        wait_for(lambda: _job(ledger, "7201")["tokens"] == 2_000_000, 10, "the agent's flush")
        _post(url, {"samples": 5})
        agent.stop()
    job = _job(ledger, "7201")
    assert (job["tokens"], job["samples"]) == (2_000_000, 15)
    assert job["model"] == "gpt-mini" and job["kwh_per_million_tokens"] is not None


@pytest.mark.parametrize(("listen", "allow", "expected"), [("0.0.0.0", False, 403), ("0.0.0.0", True, 200)])
def test_annotating_beyond_loopback_needs_the_config_flag(
    tmp_path: Path, listen: str, allow: bool, expected: int
) -> None:
    path = tmp_path / "ledger.db"
    _seed(path)
    ledger = Ledger(path, "node1", background=False)
    server = MetricsServer(listen, 0, Exposition(list), LedgerApi(ledger), allow_annotate=allow)
    server.start()
    try:
        status, reply = _post(f"http://127.0.0.1:{server.port}/api/v1/jobs/4243/annotate", {"samples": 3})
    finally:
        server.stop()
        ledger.close()
    assert status == expected, reply
    assert _job(path, "4243")["samples"] == (3 if expected == 200 else None)
