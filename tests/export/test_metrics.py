"""The exposition itself: names, labels, collector states, and label values that must not break it."""

from __future__ import annotations

import subprocess

from prometheus_client.parser import text_string_to_metric_families

from agent.export.job_metrics import JobFamilies
from agent.export.registry import make_exposition
from agent.live.snapshot import CarbonTotals, EnergyRow, JobSeries, JobsSnapshot, Published, Snapshot
from collectors.base import Device, Status
from collectors.workloads import JobInfo, JobKey
from tests.support.metrics import as_metric

STATUSES = {
    "rapl": Status.PERMISSION_DENIED,
    "nvml": Status.NOT_FOUND,
    "estimate": Status.ESTIMATE,
}


def _snapshot() -> Snapshot:
    return Snapshot(
        time=5.0,
        samples=3,
        energy=(
            EnergyRow("cpu", "node", "estimate", 12.5, 2.5),
            EnergyRow("dram", "node", "estimate", 40.0, None),
        ),
        collectors_up={"estimate": True},
        errors={("estimate", "read_failed"): 2},
        devices=(Device("cpu", "node", "estimate", "tdp-utilisation", {"model": 'Evil "CPU"\\\n\x00'}),),
        sample_duration_s=0.001,
    )


def _published() -> Published:
    return Published(_snapshot())


def _samples(node_name: str = "node-1") -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = make_exposition(_published, node_name, STATUSES).render()
    assert content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_energy_power_and_errors() -> None:
    samples = _samples()
    labels = frozenset({("component", "cpu"), ("device", "node"), ("source", "estimate")})
    assert samples[("greenai_node_energy_joules_total", labels)] == 12.5
    assert samples[("greenai_node_power_watts", labels)] == 2.5
    dram = frozenset({("component", "dram"), ("device", "node"), ("source", "estimate")})
    assert ("greenai_node_power_watts", dram) not in samples  # no interval measured yet
    reason = frozenset({("collector", "estimate"), ("reason", "read_failed")})
    assert samples[("greenai_collector_errors_total", reason)] == 2
    assert samples[("greenai_agent_samples_total", frozenset())] == 3


def test_a_broken_collector_is_down_and_an_absent_one_has_no_up_series() -> None:
    samples = _samples()
    up = {dict(k[1])["collector"]: v for k, v in samples.items() if k[0] == "greenai_collector_up"}
    assert up == {"rapl": 0.0, "estimate": 1.0}
    status = {
        dict(k[1])["collector"]: dict(k[1])["status"] for k in samples if k[0] == "greenai_collector_status"
    }
    assert status == {"rapl": "permission_denied", "nvml": "not_found", "estimate": "estimate"}


def test_hostile_label_values_keep_the_exposition_valid() -> None:
    node = 'n"o\\de\nname'
    body, _ = make_exposition(_published, node, STATUSES).render()
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    samples = _samples(node)
    assert samples[("greenai_node_info", frozenset({("node", node)}))] == 1.0


def test_openmetrics_when_asked() -> None:
    body, content_type = make_exposition(_published, "n", STATUSES).render(
        "application/openmetrics-text; version=1.0.0"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_project_and_phase_labels_and_the_site_gauges() -> None:
    key = JobKey("slurm", "42")
    jobs = JobsSnapshot(
        jobs=(JobSeries(key, JobInfo(project="llm", phase="pretraining"), {"gpu": 10.0}, None),),
    )
    co2 = CarbonTotals("main", "DE", 300.0, pue=1.4, cfe_ratio=0.25, jobs_g={key: {"location": 2.0}})
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in JobFamilies(labels=("project", "phase")).families(jobs, co2)
        for s in as_metric(family).samples
    }
    work = {("job_id", "42"), ("scheduler", "slurm"), ("project", "llm"), ("phase", "pretraining")}
    assert samples[("greenai_job_energy_joules_total", frozenset({*work, ("component", "gpu")}))] == 10.0
    assert samples[("greenai_job_co2_grams_total", frozenset({*work, ("basis", "location")}))] == 2.0
    site = frozenset({("site", "main"), ("location", "DE")})
    assert samples[("greenai_site_pue", site)] == 1.4
    assert samples[("greenai_site_cfe_ratio", site)] == 0.25
