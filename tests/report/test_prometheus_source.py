"""End to end, a fleet: a real Prometheus, with the rules loaded, scrapes three agents (three simulated
nodes, each with its own generated powercap tree on real time, its own fake GPU whose process belongs
to a real cgroups job, its own ledger and node name).

- every query of every dashboard panel runs against that Prometheus and returns data;
- the fleet totals read back from Prometheus (a direct query, `greenai report --prometheus`,
  `greenai jobs --prometheus`) match the sum of the three ledgers within 1%.

Window alignment: both sides count from each agent's start (its counters start at 0, its ledger is
new). At the end the simulated hardware is frozen (the powercap clocks stop, the GPUs' counters stop),
Prometheus scrapes the final values, and only then are the agents stopped with SIGTERM, so the
ledgers' last rows and Prometheus's last samples hold the same energy.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.report.prometheus import IN_TOTAL, PromClient, hourly
from tests.support.cgroups import RealCgroups, real_cgroups_missing
from tests.support.hwmon import FakeHwmon, acpi_node_meter
from tests.support.nvml import FakeGpu, FakeProcess, write_state
from tests.support.powercap import PowercapTree, server_zones
from tests.support.processes import REPO, AgentProcess, PrometheusServer, run_greenai, wait_for

real = pytest.mark.skipif(bool(real_cgroups_missing()), reason=real_cgroups_missing() or "ok")

NVML_UNKNOWN = 999
NODES = ("node-a", "node-b", "node-c")
RULES = REPO / "dashboards" / "greenai.rules.yml"
HISTORY_S = 12
SCRAPE_JOB = "greenai"


@dataclass
class Node:
    name: str
    job_id: str
    ledger: Path
    config: Path
    state: Path
    gpus: list[FakeGpu]
    tree: PowercapTree
    agent: AgentProcess | None = None
    wall: tuple[FakeHwmon, str] | None = None
    """The node's ACPI power meter (a generated hwmon tree) and its entry, on the first node only."""


@dataclass
class Fleet:
    prom: PrometheusServer
    nodes: list[Node]
    live_at: float
    """A time while every agent ran and had history: the dashboards' queries are evaluated there."""
    out: Path
    prom_job_j: dict[str, float] = field(default_factory=dict)
    prom_unattributed_j: dict[str, float] = field(default_factory=dict)


def _frozen(gpu: FakeGpu) -> FakeGpu:
    """The GPU with its counter stopped a little ahead of where it is now (never backwards)."""
    energy_mj = gpu.energy_mj + int(gpu.power_mw * (time.time() + 0.2 - gpu.t0))
    return replace(gpu, live=False, energy_mj=energy_mj, power_mw=0)


def _trouble(node: Node) -> None:
    """A GPU read failing for a second, and the ledger locked past the agent's busy timeout (0.5 s):
    the rows wait in memory and reach the ledger after, so no energy is lost."""
    write_state(node.state, [node.gpus[0], replace(node.gpus[1], power_rc=NVML_UNKNOWN)])
    lock = sqlite3.connect(node.ledger, timeout=5)
    try:
        lock.execute("BEGIN IMMEDIATE")
        time.sleep(1.5)
        lock.rollback()
    finally:
        lock.close()
    write_state(node.state, node.gpus)
    assert node.agent is not None
    wait_for(
        lambda: node.agent is not None and node.agent.value("greenai_ledger_errors_total"),
        5,
        "a ledger error",
    )


def _rules_copy(workdir: Path) -> list[Path]:
    """The project's rules, evaluated every second (scrapes are every second here) instead of their
    production interval, so that the recording rules have data within the test."""
    if not RULES.exists():
        return []
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / RULES.name
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return [copy]


def _by_node(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["instance"]: float(r["value"][1]) for r in rows}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, fake_nvml_lib: Path) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    with contextlib.ExitStack() as stack:
        cgroups = stack.enter_context(RealCgroups())
        clocks = stack.enter_context(contextlib.ExitStack())
        nodes: list[Node] = []
        for i, name in enumerate(NODES):
            home = tmp / name
            home.mkdir()
            job_id = str(9101 + i)
            job = cgroups.start(f"slurm/uid_0/job_{job_id}/step_0", "sleeper")
            tree = stack.enter_context(
                PowercapTree(home / "sys", server_zones(1 + i % 2, 100.0 + 20 * i, 12.0))
            )
            clocks.enter_context(tree.following_real_time())
            gpu = FakeGpu(
                0,
                power_mw=(250 + 50 * i) * 1000,
                energy_mj=1_000_000 * (i + 1),
                live=True,
                t0=time.time(),
                processes=(FakeProcess(job.pid, 1000, sm=60),),
            )
            gpus = [gpu]
            if i == len(NODES) - 1:  # a power-only GPU whose process list cannot be read
                gpus.append(FakeGpu(1, power_mw=120_000, counter=False, live=True, processes_rc=NVML_UNKNOWN))
            state = home / "nvml.state"
            write_state(state, gpus)
            config = home / "agent.yaml"
            ledger = home / "ledger.db"
            config.write_text(
                f"ledger: {{path: {ledger}, flush_seconds: 0.5}}\n"
                "slurm: {scontrol: ''}\n"
                "jobs: {labels: [user, project, phase]}\n"
                "carbon: {location: FRA}\n"
            )
            nodes.append(Node(name, job_id, ledger, config, state, gpus, tree))
            if i == 0:  # a wall meter, well above the counters: `other` is on the dashboards too
                hwmon = FakeHwmon(tree.root)
                nodes[-1].wall = (hwmon, acpi_node_meter(hwmon, power_uw=900_000_000))
        for node in nodes:
            env = {"LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(node.state)}
            args = ["--config", str(node.config), "--interval", "0.25", "--sysfs", str(node.tree.root)]
            node.agent = stack.enter_context(AgentProcess([*args, "--node-name", node.name], env=env))
        for node in nodes:
            assert node.agent is not None
            node.agent.wait_ready()
        targets = {f"127.0.0.1:{n.agent.port}": n.name for n in nodes if n.agent is not None}
        prom = stack.enter_context(
            PrometheusServer(
                tmp / "prometheus",
                list(targets),
                labels={t: {"instance": name} for t, name in targets.items()},
                rule_files=_rules_copy(tmp / "rules"),
            )
        )
        prom.wait_ready()

        def history() -> bool:
            got = _by_node(prom.query(f"count_over_time(greenai_agent_samples_total[{HISTORY_S + 5}s])"))
            return len(got) == len(NODES) and min(got.values()) >= HISTORY_S

        wait_for(history, HISTORY_S + 30, "prometheus to hold the fleet's history", poll=0.5)
        _trouble(nodes[-1])  # so that the health panels' error series have data too
        time.sleep(2.0)
        live_at = time.time() - 0.5

        # Freeze the hardware, let the agents sample it and Prometheus scrape them, then stop them.
        clocks.close()
        for node in nodes:
            write_state(node.state, [_frozen(gpu) for gpu in node.gpus])
            if node.wall is not None:
                node.wall[0].set(node.wall[1], "power1_average", 0)
        frozen_at = time.time()
        time.sleep(1.0)  # a few agent intervals: the last energy is in the counters

        def scraped_after_freeze() -> bool:
            got = _by_node(prom.query("timestamp(greenai_agent_samples_total)"))
            return len(got) == len(NODES) and min(got.values()) > frozen_at + 1.0

        wait_for(scraped_after_freeze, 10, "a scrape of the frozen counters", poll=0.2)
        fleet = Fleet(prom, nodes, live_at, tmp / "out")
        fleet.prom_job_j = _by_node(
            prom.query(f"sum by (instance) (greenai_job_energy_joules_total{{{IN_TOTAL}}})")
        )
        fleet.prom_unattributed_j = _by_node(
            prom.query(f"sum by (instance) (greenai_node_unattributed_energy_joules_total{{{IN_TOTAL}}})")
        )
        for node in nodes:
            assert node.agent is not None
            code, _ = node.agent.stop()
            assert code == 0, node.agent.log
        yield fleet


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _substitute(expr: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError(f"no test value for ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


@real
def test_every_dashboard_query_returns_data(fleet: Fleet) -> None:
    dashboards = sorted((REPO / "dashboards").glob("*.json"))
    assert dashboards, "no dashboards/*.json"
    values = {
        "job": SCRAPE_JOB,
        "instance": NODES[0],
        "node": NODES[0],
        "job_id": fleet.nodes[0].job_id,
        "scheduler": "slurm",
        "basis": "location",
        "__rate_interval": "10s",
        "__interval": "2s",
        "__range": "15s",
        "__range_s": "15",
        "DS_PROMETHEUS": "prometheus",
    }
    checked, empty = 0, []
    for path in dashboards:
        doc = json.loads(path.read_text())
        # Multi-value variables as Grafana's "All" sends them: the whole fleet.
        chosen = {
            **values,
            **{
                v["name"]: v["allValue"]
                for v in doc.get("templating", {}).get("list", [])
                if v.get("includeAll") and v.get("allValue")
            },
        }
        for panel in _panels(doc.get("panels", [])):
            for target in panel.get("targets", []):
                if not target.get("expr"):
                    continue
                expr = _substitute(target["expr"], chosen)
                rows = fleet.prom.query(expr, at=fleet.live_at)  # asserts status success
                checked += 1
                if not rows:
                    empty.append(f"{path.name}: {panel.get('title')!r}: {expr}")
    assert checked > 0
    assert not empty, "panels without data:\n" + "\n".join(empty)


@real
def test_rules_are_loaded_and_healthy(fleet: Fleet) -> None:
    if not RULES.exists():
        pytest.skip(f"{RULES.relative_to(REPO)} does not exist yet")
    groups = json.loads(
        __import__("urllib.request").request.urlopen(f"{fleet.prom.url}/api/v1/rules").read()
    )["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert rules
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    recorded = [r["name"] for r in rules if r["type"] == "recording"]
    assert all(fleet.prom.query(name, at=fleet.live_at) for name in recorded), recorded


def _ledgers(fleet: Fleet) -> list[str]:
    return [str(n.ledger) for n in fleet.nodes]


def _report(fleet: Fleet, name: str, *source: str) -> dict[str, Any]:
    out = fleet.out / name
    year = time.gmtime(fleet.live_at).tm_year
    done = run_greenai(
        "report", "--year", str(year), "--format", "json", "--out", str(out),
        "--config", str(fleet.nodes[0].config), *source,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads((out / "report.json").read_text()))


@real
def test_fleet_totals_match_the_ledgers(fleet: Fleet) -> None:
    ledger_jobs: dict[str, float] = {}
    for node in fleet.nodes:
        listed = run_greenai("jobs", "--json", "--ledger", str(node.ledger))
        assert listed.returncode == 0, listed.stderr
        ledger_jobs[node.name] = sum(j["energy_joules"]["total"] for j in json.loads(listed.stdout))
        assert any(j["job_id"] == node.job_id for j in json.loads(listed.stdout))
    # A direct query: job energy summed over the fleet, and per node.
    assert set(fleet.prom_job_j) == set(NODES)
    for name in NODES:
        assert fleet.prom_job_j[name] == pytest.approx(ledger_jobs[name], rel=0.01), name
    assert sum(fleet.prom_job_j.values()) == pytest.approx(sum(ledger_jobs.values()), rel=0.01)
    assert sum(ledger_jobs.values()) > 3 * 250 * HISTORY_S  # the GPUs' energy is the jobs'

    # The yearly report from Prometheus and from the three ledgers.
    from_ledgers = _report(fleet, "ledgers", "--ledger", *_ledgers(fleet))
    from_prom = _report(fleet, "prometheus", "--prometheus", fleet.prom.url)
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
    listed = run_greenai("jobs", "--json", "--prometheus", fleet.prom.url)
    assert listed.returncode == 0, listed.stderr
    from_prom_jobs: dict[str, float] = {}
    for job in json.loads(listed.stdout):
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
