"""End to end, a fleet (tests/report/fleet.py): a real Prometheus, with the rules loaded, scrapes three
agents (three simulated nodes, each with its own generated powercap tree on real time, its own fake GPU
whose process belongs to a real cgroups job, its own ledger and node name).

- every query of every dashboard panel runs against that Prometheus and returns data;
- the fleet totals read back from Prometheus (a direct query, `greenai report --prometheus`,
  `greenai jobs --prometheus`) match the sum of the three ledgers within 1%.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.report.prometheus import PromClient, hourly
from tests.report.fleet import (
    HISTORY_S,
    NODES,
    RULES,
    Fleet,
    dashboard_queries,
    ledger_job_energy,
    ledgers,
    listed_jobs,
    report,
    running_fleet,
)
from tests.support.cgroups import real_cgroups_missing
from tests.support.processes import REPO, run_greenai

real = pytest.mark.skipif(bool(real_cgroups_missing()), reason=real_cgroups_missing() or "ok")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, fake_nvml_lib: Path) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("fleet"), fake_nvml_lib) as fleet:
        yield fleet


@real
def test_every_dashboard_query_returns_data(fleet: Fleet) -> None:
    checked, empty = 0, []
    for where, expr in dashboard_queries(fleet):
        rows = fleet.prom.query(expr, at=fleet.live_at)  # asserts status success
        checked += 1
        if not rows:
            empty.append(f"{where}: {expr}")
    assert checked > 0
    assert not empty, "panels without data:\n" + "\n".join(empty)


@real
def test_rules_are_loaded_and_healthy(fleet: Fleet) -> None:
    if not RULES.exists():
        pytest.skip(f"{RULES.relative_to(REPO)} does not exist yet")
    groups = json.loads(urllib.request.urlopen(f"{fleet.prom.url}/api/v1/rules").read())["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert rules
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    recorded = [r["name"] for r in rules if r["type"] == "recording"]
    assert all(fleet.prom.query(name, at=fleet.live_at) for name in recorded), recorded


@real
def test_fleet_totals_match_the_ledgers(fleet: Fleet) -> None:
    ledger_jobs = ledger_job_energy(fleet)
    # A direct query: job energy summed over the fleet, and per node.
    assert set(fleet.prom_job_j) == set(NODES)
    for name in NODES:
        assert fleet.prom_job_j[name] == pytest.approx(ledger_jobs[name], rel=0.01), name
    assert sum(fleet.prom_job_j.values()) == pytest.approx(sum(ledger_jobs.values()), rel=0.01)
    assert sum(ledger_jobs.values()) > 3 * 250 * HISTORY_S  # the GPUs' energy is the jobs'

    # The yearly report from Prometheus and from the three ledgers.
    from_ledgers = report(fleet, "ledgers", "--ledger", *ledgers(fleet))
    from_prom = report(fleet, "prometheus", "--prometheus", fleet.prom.url)
    for figure in ("it_kwh", "unattributed_kwh", "facility_kwh"):
        assert from_prom["energy"][figure] == pytest.approx(from_ledgers["energy"][figure], rel=0.01), figure
    assert from_prom["emissions"]["location_kg"] == pytest.approx(
        from_ledgers["emissions"]["location_kg"], rel=0.01
    )
    assert from_ledgers["energy"]["it_kwh"] * 3.6e6 == pytest.approx(
        sum(fleet.prom_job_j.values()) + sum(fleet.prom_unattributed_j.values()), rel=0.01
    )
    assert from_prom["jobs"]["count"] == from_ledgers["jobs"]["count"]
    prom_nodes = {n["node"] for n in from_prom["data_quality"]["nodes"]}
    assert prom_nodes == set(NODES)

    # `greenai jobs --prometheus`: the same jobs on the same nodes, with the same energy.
    from_prom_jobs: dict[str, float] = {}
    for job in listed_jobs(fleet.prom.url):
        from_prom_jobs[job["node"]] = from_prom_jobs.get(job["node"], 0.0) + job["energy_joules"]["total"]
        assert job["running"] is False  # the agents stopped
    for name in NODES:
        assert from_prom_jobs[name] == pytest.approx(ledger_jobs[name], rel=0.01), name


def test_unreachable_or_bad_prometheus_is_one_line() -> None:
    bad = run_greenai("jobs", "--prometheus", "not a url")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    down = run_greenai(
        "report", "--year", "2025", "--prometheus", "http://127.0.0.1:9", "--out", "/nonexistent"
    )
    assert down.returncode == 1 and down.stderr.count("\n") == 1, down.stderr


class StubProm(PromClient):
    """Answers range queries from canned series: {expr prefix: [(labels, [(t, value)])]}."""

    def __init__(self, series: dict[str, list[tuple[dict[str, str], list[tuple[float, float]]]]]) -> None:
        super().__init__("http://stub:9090")
        self.series = series

    def range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        kind = "increase" if "increase(" in expr else "last_over_time"
        return [
            (labels, [(t, v) for t, v in points if start <= t <= end]) for labels, points in self.series[kind]
        ]


def test_hourly_energy_is_the_difference_of_last_values_and_survives_restarts() -> None:
    h = 3600
    base = 1000 * h
    node = {"instance": "n1"}
    # Last values at the end of each hour: 100 before the window, 400, a gap, 900, then a restart (50).
    last = [(base, 100.0), (base + h, 400.0), (base + 3 * h, 900.0), (base + 4 * h, 50.0)]
    inc = [(base + 4 * h, 180.0)]  # Prometheus's reset-aware increase over the restart hour
    client = StubProm({"last_over_time": [(node, last)], "increase": [(node, inc)]})
    got = hourly(client, "x", ["instance"], base, base + 5 * h)
    assert got == {(("instance", "n1"),): {base: 300.0, base + 2 * h: 500.0, base + 3 * h: 180.0}}
