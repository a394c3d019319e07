"""A node with a wall meter: RAPL counters (a generated powercap tree) and an ACPI power meter (a
generated hwmon tree), found by `probe_sources`, sampled and attributed to jobs in real cgroups as
the agent wires them. `other` is the wall less the counters, and energy is conserved with it."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.config.settings import (
    AmdSmiConfig,
    AttributionConfig,
    CollectorsConfig,
    Config,
    HostPaths,
    LedgerConfig,
    NvmlConfig,
)
from agent.daemon import JobAccounting
from agent.live.sampler import Sampler
from agent.live.snapshot import JobsSnapshot, Snapshot
from agent.live.sources import devices, probe_sources, require
from collectors.base import NOT_IN_TOTAL
from tests.live.nodes import run_jobs, start_jobs
from tests.support.cgroups import GeneratedCgroups
from tests.support.clock import FakeClock
from tests.support.hwmon import FakeHwmon, acpi_node_meter
from tests.support.powercap import PowercapTree, server_zones
from tests.support.procfs import FakeProcfs

PACKAGE_W, DRAM_W, WALL_W = 100.0, 10.0, 160.0
SECONDS = 8
JOBS = {"41": (701, 0.6), "42": (702, 0.2)}
"""Job id -> its process's pid, and the CPU-seconds it uses per second (0.2 more run outside jobs)."""
START = 1_714_521_600.0
"""The sampling clock's start; the ledger books by the wall clock, as the agent does."""


def run_node(root: Path, other_policy: str) -> tuple[Snapshot, JobsSnapshot, Path]:
    clock = FakeClock(START)
    procfs = FakeProcfs(root / "proc", sockets=1, threads=4)
    cgroups = GeneratedCgroups(root / "cg")
    start_jobs(JOBS, procfs.root, cgroups)
    ledger = root / "ledger.db"
    with PowercapTree(root / "sys", server_zones(1, PACKAGE_W, DRAM_W), mmio=False) as tree:
        hwmon = FakeHwmon(root / "sys")
        acpi_node_meter(hwmon, power_uw=round(WALL_W * 1e6))
        config = Config(
            node_name="n1",
            host=HostPaths(sysfs=tree.root, procfs=procfs.root, cgroupfs=cgroups.root),
            ledger=LedgerConfig(path=ledger),
            collectors=CollectorsConfig(
                nvml=NvmlConfig(enabled="false"), amdsmi=AmdSmiConfig(enabled="false")
            ),
            attribution=AttributionConfig(other_policy=other_policy),
        )
        sources = probe_sources(config, clock)
        sampler = Sampler(require(sources), clock, devices(sources))
        jobs = JobAccounting.open(config, sources, clock)
        try:
            accounted = jobs.accountant.account(sampler.tick())
            for second in range(1, SECONDS + 1):
                clock.advance(1.0)
                tree.advance(1.0)
                procfs.run(1.0, 1.0 / procfs.threads)  # one busy CPU-second per second
                run_jobs(JOBS, cgroups, second)
                accounted = jobs.accountant.account(sampler.tick())
        finally:
            jobs.close()
            sampler.close()
    return sampler.snapshot, accounted, ledger


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Snapshot, JobsSnapshot, Path]:
    return run_node(tmp_path, "share")


def test_other_is_what_the_wall_saw_beyond_the_counters(shared: tuple[Snapshot, JobsSnapshot, Path]) -> None:
    node, _, _ = shared
    by_key = {(r.component, r.device, r.source): r.energy_j for r in node.energy}
    wall = by_key[("node", "power_meter0", "hwmon")]
    assert wall == pytest.approx(SECONDS * WALL_W)
    assert by_key[("other", "node", "hwmon")] == pytest.approx(SECONDS * (WALL_W - PACKAGE_W - DRAM_W))
    # The node's IT total is the wall figure: counters + other, the meter itself not added.
    it = sum(j for (c, _, _), j in by_key.items() if c not in NOT_IN_TOTAL)
    assert it == pytest.approx(wall, rel=1e-9)


def conserved(node: Snapshot, jobs: JobsSnapshot, component: str) -> None:
    # The first interval is every counter's baseline and the accountant's first scan: no energy then.
    booked = sum(r.energy_j for r in node.energy if r.component == component)
    given = sum(s.energy_j.get(component, 0.0) for s in jobs.jobs)
    assert given + jobs.unattributed_j.get(component, 0.0) == pytest.approx(booked, rel=1e-9)


def test_other_goes_to_jobs_by_their_share_of_the_counted_energy(
    shared: tuple[Snapshot, JobsSnapshot, Path],
) -> None:
    node, jobs, _ = shared
    for component in ("cpu", "dram", "other", "node"):
        conserved(node, jobs, component)
    energy = {s.key.job_id: s.energy_j for s in jobs.jobs}
    for job_id in JOBS:
        counted = energy[job_id]["cpu"] + energy[job_id].get("dram", 0.0)
        share = counted / (SECONDS * (PACKAGE_W + DRAM_W))
        assert energy[job_id]["other"] == pytest.approx(share * SECONDS * (WALL_W - PACKAGE_W - DRAM_W))
        assert "node" not in energy[job_id]
    assert energy["41"]["other"] > 2.5 * energy["42"]["other"]  # 0.6 against 0.2 CPU-seconds
    assert jobs.unattributed_j["node"] == pytest.approx(SECONDS * WALL_W)


def test_other_policy_node_leaves_it_all_unattributed(tmp_path: Path) -> None:
    node, jobs, _ = run_node(tmp_path, "node")
    conserved(node, jobs, "other")
    assert all("other" not in s.energy_j for s in jobs.jobs)
    assert jobs.unattributed_j["other"] == pytest.approx(SECONDS * (WALL_W - PACKAGE_W - DRAM_W))


def test_the_ledger_and_the_report_use_the_wall_figure(
    shared: tuple[Snapshot, JobsSnapshot, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, ledger = shared
    with sqlite3.connect(ledger) as conn:
        (it_j,) = conn.execute(
            "SELECT SUM(joules) FROM node_energy WHERE component NOT IN ('platform', 'node', 'grace')"
        ).fetchone()
        (hour,) = conn.execute("SELECT MIN(hour) FROM node_energy").fetchone()
    assert it_j == pytest.approx(SECONDS * WALL_W, rel=1e-6)
    out = tmp_path / "report"
    assert (
        main(
            [
                "report",
                "--year",
                str(time.gmtime(hour).tm_year),
                "--ledger",
                str(ledger),
                "--format",
                "json",
                "--out",
                str(out),
            ]
        )
        == 0
    )

    doc: dict[str, Any] = json.loads((out / "report.json").read_text())
    wall = doc["method"]["wall"]
    assert [(n["node"], n["sources"]) for n in wall["nodes"]] == [("n1", ["hwmon"])]
    assert wall["nodes"][0]["kwh"] == pytest.approx(SECONDS * WALL_W / 3.6e6, rel=1e-6)
    assert "ISO/IEC 30134-2" in wall["pue_definition"]
    assert doc["energy"]["it_kwh"] == pytest.approx(SECONDS * WALL_W / 3.6e6, rel=1e-6)


def test_the_jobs_list_says_its_total_includes_other(
    shared: tuple[Snapshot, JobsSnapshot, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, ledger = shared
    assert main(["jobs", "--ledger", str(ledger)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "Wh includes other, the wall power beyond the counters: `greenai job ID` shows it"
    assert all(len(line) <= 100 for line in lines)
    assert main(["job", "41", "--ledger", str(ledger)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")] == [
        "cpu",
        "dram",
        "gpu",
        "other",
    ]
