"""A fleet for the report's tests: a real Prometheus, with the rules loaded, scrapes three agents (three
simulated nodes, each with its own generated powercap tree on real time, its own fake GPU whose process
belongs to a real cgroups job, its own ledger and node name), and may write on to a long-term store.

Window alignment: both sides count from each agent's start (its counters start at 0, its ledger is
new). At the end the simulated hardware is frozen (the powercap clocks stop, the GPUs' counters stop),
every agent samples it and Prometheus scrapes the final values, and only then are the agents stopped
with SIGTERM, so the ledgers' last rows and Prometheus's last samples hold the same energy.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from agent.report.prometheus import IN_TOTAL
from tests.support.cgroups import RealCgroups
from tests.support.hwmon import FakeHwmon, acpi_node_meter
from tests.support.nvml import FakeGpu, FakeProcess, write_state
from tests.support.powercap import PowercapTree, server_zones
from tests.support.processes import REPO, AgentProcess, PrometheusServer, run_greenai, wait_for

NVML_UNKNOWN = 999
NODES = ("node-a", "node-b", "node-c")
RULES = REPO / "dashboards" / "greenai.rules.yml"
HISTORY_S = 12
SCRAPE_JOB = "greenai"
RATE_INTERVAL_S = 10
"""Grafana's $__rate_interval in the dashboards' queries."""
FROZEN_SAMPLES = 3
"""Samples each agent takes of the frozen hardware before the last scrape that counts: the first may
have begun before the freeze, and a power meter's energy lags its reading by one interval."""

JOB_J = f"sum by (instance) (greenai_job_energy_joules_total{{{IN_TOTAL}}})"
UNATTRIBUTED_J = f"sum by (instance) (greenai_node_unattributed_energy_joules_total{{{IN_TOTAL}}})"


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
    final_at: float
    """A time after Prometheus scraped the frozen counters and before the agents stopped."""
    out: Path
    prom_job_j: dict[str, float] = field(default_factory=dict)
    """Job energy per node in Prometheus at `final_at`, in joules."""
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


def by_node(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["instance"]: float(r["value"][1]) for r in rows}


def _nodes(
    tmp: Path, cgroups: RealCgroups, stack: contextlib.ExitStack, clocks: contextlib.ExitStack
) -> list[Node]:
    nodes: list[Node] = []
    for i, name in enumerate(NODES):
        home = tmp / name
        home.mkdir()
        job_id = str(9101 + i)
        job = cgroups.start(f"slurm/uid_0/job_{job_id}/step_0", "sleeper")
        tree = stack.enter_context(PowercapTree(home / "sys", server_zones(1 + i % 2, 100.0 + 20 * i, 12.0)))
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
    return nodes


def _errors_scraped(prom: PrometheusServer) -> float | None:
    """A time at which Prometheus holds two scrapes or more of the error counters the trouble raised
    within the health panels' rate window, or None while it does not."""
    at = time.time() - 0.5
    for counter in ("greenai_ledger_errors_total", "greenai_collector_errors_total"):
        if not prom.query(f"count_over_time({counter}[{RATE_INTERVAL_S}s]) >= 2", at):
            return None
    return at


@contextlib.contextmanager
def running_fleet(
    tmp: Path, fake_nvml_lib: Path, remote_write: str | Mapping[str, Any] | None = None
) -> Iterator[Fleet]:
    """The fleet, its agents stopped and their final values scraped; Prometheus runs until exit."""
    with contextlib.ExitStack() as stack:
        cgroups = stack.enter_context(RealCgroups())
        clocks = stack.enter_context(contextlib.ExitStack())
        nodes = _nodes(tmp, cgroups, stack, clocks)
        for node in nodes:
            env = {"LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(node.state)}
            args = ["--config", str(node.config), "--interval", "0.25", "--sysfs", str(node.tree.root)]
            node.agent = stack.enter_context(AgentProcess([*args, "--node-name", node.name], env=env))
        agents = [node.agent for node in nodes if node.agent is not None]
        for agent in agents:
            agent.wait_ready()
        targets = {f"127.0.0.1:{n.agent.port}": n.name for n in nodes if n.agent is not None}
        prom = stack.enter_context(
            PrometheusServer(
                tmp / "prometheus",
                list(targets),
                labels={t: {"instance": name} for t, name in targets.items()},
                rule_files=_rules_copy(tmp / "rules"),
                remote_write=remote_write,
            )
        )
        prom.wait_ready()

        def history() -> bool:
            got = by_node(prom.query("count_over_time(greenai_agent_samples_total[5m])"))
            return len(got) == len(NODES) and min(got.values()) >= HISTORY_S

        wait_for(history, HISTORY_S + 30, "prometheus to hold the fleet's history", poll=0.5)
        _trouble(nodes[-1])  # so that the health panels' error series have data too
        live_at = wait_for(lambda: _errors_scraped(prom), 30, "the errors to be scraped", poll=0.2)

        # Freeze the hardware, let the agents sample it and Prometheus scrape them, then stop them.
        clocks.close()
        for node in nodes:
            write_state(node.state, [_frozen(gpu) for gpu in node.gpus])
            if node.wall is not None:
                node.wall[0].set(node.wall[1], "power1_average", 0)
        wanted = {
            n.name: (a.value("greenai_agent_samples_total") or 0) + FROZEN_SAMPLES
            for n, a in zip(nodes, agents, strict=True)
        }

        def scraped_frozen() -> float | None:
            at = time.time()
            got = by_node(prom.query("greenai_agent_samples_total", at))
            return at if all(got.get(name, 0) >= count for name, count in wanted.items()) else None

        final_at = wait_for(scraped_frozen, 15, "a scrape of the frozen counters", poll=0.2)
        fleet = Fleet(prom, nodes, live_at, final_at, tmp / "out")
        fleet.prom_job_j = by_node(prom.query(JOB_J, final_at))
        fleet.prom_unattributed_j = by_node(prom.query(UNATTRIBUTED_J, final_at))
        for agent in agents:
            code, _ = agent.stop()
            assert code == 0, agent.log
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


def dashboard_queries(fleet: Fleet) -> Iterator[tuple[str, str]]:
    """(where, expr) for every query of every dashboard panel, its variables set for this fleet."""
    dashboards = sorted((REPO / "dashboards").glob("*.json"))
    assert dashboards, "no dashboards/*.json"
    values = {
        "job": SCRAPE_JOB,
        "instance": NODES[0],
        "node": NODES[0],
        "job_id": fleet.nodes[0].job_id,
        "scheduler": "slurm",
        "basis": "location",
        "__rate_interval": f"{RATE_INTERVAL_S}s",
        "__interval": "2s",
        "__range": "15s",
        "__range_s": "15",
        "DS_PROMETHEUS": "prometheus",
    }
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
                if target.get("expr"):
                    yield f"{path.name}: {panel.get('title')!r}", _substitute(target["expr"], chosen)


def recorded_series() -> list[str]:
    """The names the recording rules record."""
    if not RULES.exists():
        return []
    doc = yaml.safe_load(RULES.read_text())
    return [rule["record"] for group in doc["groups"] for rule in group["rules"] if "record" in rule]


def ledger_job_energy(fleet: Fleet) -> dict[str, float]:
    """Joules of the jobs in each node's ledger, as `greenai jobs --ledger` lists them."""
    out = {}
    for node in fleet.nodes:
        listed = run_greenai("jobs", "--json", "--ledger", str(node.ledger))
        assert listed.returncode == 0, listed.stderr
        jobs = json.loads(listed.stdout)
        assert any(j["job_id"] == node.job_id for j in jobs), jobs
        out[node.name] = sum(j["energy_joules"]["total"] for j in jobs)
    return out


def report(fleet: Fleet, name: str, *source: str) -> dict[str, Any]:
    """`greenai report --format json` of this year from `source` (--ledger ... or --prometheus URL)."""
    out = fleet.out / name
    year = time.gmtime(fleet.live_at).tm_year
    done = run_greenai(
        "report", "--year", str(year), "--format", "json", "--out", str(out),
        "--config", str(fleet.nodes[0].config), *source,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads((out / "report.json").read_text()))


def ledgers(fleet: Fleet) -> list[str]:
    return [str(n.ledger) for n in fleet.nodes]


def listed_jobs(url: str) -> list[dict[str, Any]]:
    """`greenai jobs --json --prometheus URL`."""
    listed = run_greenai("jobs", "--json", "--prometheus", url)
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout))
