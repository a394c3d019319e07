"""End to end, a fleet on a long-term store: the fleet of tests/report/fleet.py (a real Prometheus, with
the rules loaded, scraping three agents), its Prometheus writing on to a real VictoriaMetrics with the
remote_write block docs/deploy.md gives, and everything read back from VictoriaMetrics:

- `greenai report --prometheus` and `greenai jobs --prometheus` at VictoriaMetrics' URL give the
  ledgers' totals within 1%;
- every query of every dashboard panel returns data from it, and so does every recorded series (the
  rules run in Prometheus; what they record reaches the store like any other sample).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.report.fleet import (
    HISTORY_S,
    JOB_J,
    NODES,
    UNATTRIBUTED_J,
    Fleet,
    by_node,
    dashboard_queries,
    ledger_job_energy,
    ledgers,
    listed_jobs,
    recorded_series,
    report,
    running_fleet,
)
from tests.support.cgroups import real_cgroups_missing
from tests.support.processes import REPO, wait_for
from tests.support.victoria import VictoriaMetrics, victoria_missing

missing = real_cgroups_missing() or victoria_missing()
pytestmark = pytest.mark.skipif(bool(missing), reason=missing or "ok")

DEPLOY = REPO / "docs" / "deploy.md"


@dataclass
class Stored:
    fleet: Fleet
    vm: VictoriaMetrics


def documented_remote_write(url: str) -> dict[str, Any]:
    """The remote_write entry docs/deploy.md gives for VictoriaMetrics, sending to `url`."""
    entries = []
    for block in re.findall(r"```yaml\n(.*?)```", DEPLOY.read_text(), re.DOTALL):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict):
            entries += [e for e in doc.get("remote_write") or [] if e["url"].endswith(":8428/api/v1/write")]
    assert len(entries) == 1, f"{DEPLOY.name}: one remote_write entry for VictoriaMetrics, not {entries}"
    # Prometheus sends what it has every 5 s by default; every second here, as it scrapes.
    queue = {**entries[0].get("queue_config", {}), "batch_send_deadline": "1s"}
    return {**entries[0], "url": url, "queue_config": queue}


def _caught_up(fleet: Fleet, vm: VictoriaMetrics) -> bool:
    """VictoriaMetrics holds the final values Prometheus scraped, and the staleness markers Prometheus
    wrote when the agents stopped (without them every job would still look running)."""
    vm.flush()
    for query, want in ((JOB_J, fleet.prom_job_j), (UNATTRIBUTED_J, fleet.prom_unattributed_j)):
        got = by_node(vm.query(query, fleet.final_at))
        if set(got) != set(want) or any(got[n] != pytest.approx(want[n], rel=1e-9) for n in want):
            return False
    return not vm.query("greenai_agent_samples_total")


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, fake_nvml_lib: Path) -> Iterator[Stored]:
    tmp = tmp_path_factory.mktemp("victoria")
    with VictoriaMetrics(tmp / "victoria-metrics") as vm:
        vm.wait_ready()
        with running_fleet(tmp, fake_nvml_lib, remote_write=documented_remote_write(vm.write_url)) as fleet:
            wait_for(lambda: _caught_up(fleet, vm), 30, "victoria-metrics to catch up", poll=0.5)
            yield Stored(fleet, vm)


def test_report_and_jobs_from_victoria_match_the_ledgers(stored: Stored) -> None:
    fleet, vm = stored.fleet, stored.vm
    ledger_jobs = ledger_job_energy(fleet)
    assert sum(ledger_jobs.values()) > 3 * 250 * HISTORY_S  # the GPUs' energy is the jobs'
    # A direct query: job energy per node.
    stored_jobs = by_node(vm.query(JOB_J, fleet.final_at))
    assert stored_jobs == pytest.approx(ledger_jobs, rel=0.01)

    # The yearly report from VictoriaMetrics and from the three ledgers.
    from_ledgers = report(fleet, "ledgers", "--ledger", *ledgers(fleet))
    from_vm = report(fleet, "victoria", "--prometheus", vm.url)
    for figure in ("it_kwh", "unattributed_kwh", "facility_kwh"):
        assert from_vm["energy"][figure] == pytest.approx(from_ledgers["energy"][figure], rel=0.01), figure
    co2_kg = from_ledgers["emissions"]["location_kg"]
    assert from_vm["emissions"]["location_kg"] == pytest.approx(co2_kg, rel=0.01)
    assert from_vm["jobs"]["count"] == from_ledgers["jobs"]["count"]
    assert {n["node"] for n in from_vm["data_quality"]["nodes"]} == set(NODES)

    # `greenai jobs --prometheus`: the same jobs on the same nodes, with the same energy, none running.
    from_vm_jobs: dict[str, float] = {}
    for job in listed_jobs(vm.url):
        from_vm_jobs[job["node"]] = from_vm_jobs.get(job["node"], 0.0) + job["energy_joules"]["total"]
        assert job["running"] is False, job
    assert from_vm_jobs == pytest.approx(ledger_jobs, rel=0.01)


def test_every_dashboard_query_returns_data_from_victoria(stored: Stored) -> None:
    checked, empty = 0, []
    for where, expr in dashboard_queries(stored.fleet):
        rows = stored.vm.query(expr, at=stored.fleet.live_at)  # asserts status success
        checked += 1
        if not rows:
            empty.append(f"{where}: {expr}")
    assert checked > 0
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_recorded_series_reach_victoria(stored: Stored) -> None:
    recorded = recorded_series()
    assert recorded, "no recording rules"
    without = [name for name in recorded if not stored.vm.query(name, at=stored.fleet.live_at)]
    assert not without, without
