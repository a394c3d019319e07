"""Live CO2e: each interval priced at its own hour, jobs leaving /metrics taking their grams along.

A site with an hourly CSV (100 g/kWh and 40% carbon-free, then 200 g/kWh and 10%), PUE 1.5, a 20%
carbon-free contract and a 300 g/kWh supplier, so that the location and market bases differ and every
factor shows in the figures. One IT kWh costs 150 g (location) and 360 g (market) in the first hour,
300 g and 360 g in the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.carbon.data import CodecarbonData
from agent.carbon.model import UNASSIGNED, CarbonModel
from agent.config.settings import load
from agent.live.carbon import LiveCarbon
from agent.live.snapshot import CarbonTotals, JobSeries, JobsSnapshot, Snapshot
from collectors.workloads import JobInfo, JobKey

KWH = 3.6e6
H0 = int(datetime(2024, 1, 15, tzinfo=timezone.utc).timestamp()) // 3600 * 3600
H1 = H0 + 3600
A, B = JobKey("slurm", "101"), JobKey("slurm", "102")


class WallClock:
    def __init__(self) -> None:
        self.now = float(H0 + 600)

    def __call__(self) -> float:
        return self.now


def _model(tmp_path: Path, warned: list[str] | None = None) -> CarbonModel:
    csv = tmp_path / "ci.csv"
    csv.write_text(f"timestamp,g_per_kwh,cfe_pct\n{H0},100,40\n{H1},200,10\n", encoding="utf-8")
    config = tmp_path / "agent.yaml"
    config.write_text(
        "carbon:\n  sites:\n    lab:\n      location: FRA\n"
        f"      intensity_csv: {csv}\n      pue: 1.5\n      cfe_contract_pct: 20\n"
        "      supplier_g_per_kwh: 300\n"
    )
    sink = warned if warned is not None else []
    return CarbonModel.from_config(load(config).carbon, warn=sink.append)


def _sample(t: float, **kwh: float) -> Snapshot:
    """One interval's node energy: `cpu=1.0` is 1 kWh on the CPU package."""
    devices = {"cpu": "package-0", "gpu": "gpu0", "dram": "dram-0", "platform": "psys"}
    source = {"gpu": "nvml"}
    interval = {(c, devices[c], source.get(c, "rapl")): v * KWH for c, v in kwh.items()}
    return Snapshot(time=t, samples=1, interval_j=interval)


def _joules(kwh: Mapping[str, float]) -> dict[str, float]:
    return {component: v * KWH for component, v in kwh.items()}


def _jobs(
    jobs: Mapping[JobKey, Mapping[str, float]],
    unattributed: Mapping[str, float] | None = None,
    unexported: Mapping[str, float] | None = None,
) -> JobsSnapshot:
    """Job totals since start, in kWh per component."""
    return JobsSnapshot(
        jobs=tuple(JobSeries(k, JobInfo(), _joules(e), None) for k, e in jobs.items()),
        unattributed_j=_joules(unattributed or {}),
        unexported_j=_joules(unexported or {}),
    )


def _balance(totals: CarbonTotals, basis: str) -> float:
    """Node grams minus everything it is split into: zero when CO2e conserves."""
    jobs = sum(g[basis] for g in totals.jobs_g.values())
    return totals.node_g[basis] - jobs - totals.unexported_g[basis] - totals.unattributed_g[basis]


def test_each_interval_is_priced_at_its_hour_and_the_split_conserves(tmp_path: Path) -> None:
    clock = WallClock()
    live = LiveCarbon(_model(tmp_path), "gpu-1", clock)

    # Hour 0: 3 IT kWh (the psys kWh overlaps cpu and dram: not counted); job A 2.5, unattributed 0.5.
    first = live.update(
        _sample(clock.now, cpu=1.0, gpu=2.0, platform=1.0),
        _jobs({A: {"cpu": 0.5, "gpu": 2.0}}, unattributed={"cpu": 0.5, "platform": 1.0}),
    )
    assert (first.site, first.location) == ("lab", "FRA")
    assert first.intensity_g_per_kwh == pytest.approx(100.0)  # the grid's, before PUE
    assert first.pue == pytest.approx(1.5)
    assert first.cfe_ratio == pytest.approx(0.2 + 0.8 * 0.4)
    assert dict(first.node_g) == pytest.approx({"location": 3 * 150.0, "market": 3 * 360.0})
    assert dict(first.jobs_g[A]) == pytest.approx({"location": 2.5 * 150.0, "market": 2.5 * 360.0})
    assert dict(first.unattributed_g) == pytest.approx({"location": 0.5 * 150.0, "market": 0.5 * 360.0})
    assert dict(first.unexported_g) == {"location": 0.0, "market": 0.0}

    # Hour 1: 1 IT kWh; A's total grows by 0.5, B appears with 0.25, unattributed grows by 0.25.
    clock.now = H1 + 10
    second = live.update(
        _sample(clock.now, dram=1.0),
        _jobs({A: {"cpu": 1.0, "gpu": 2.0}, B: {"dram": 0.25}}, unattributed={"cpu": 0.75, "platform": 1.0}),
    )
    assert second.intensity_g_per_kwh == pytest.approx(200.0)
    assert second.cfe_ratio == pytest.approx(0.2 + 0.8 * 0.1)
    assert dict(second.node_g) == pytest.approx({"location": 450.0 + 300.0, "market": 1080.0 + 360.0})
    assert dict(second.jobs_g[A]) == pytest.approx({"location": 375.0 + 150.0, "market": 900.0 + 180.0})
    assert dict(second.jobs_g[B]) == pytest.approx({"location": 75.0, "market": 90.0})
    assert dict(second.unattributed_g) == pytest.approx({"location": 150.0, "market": 270.0})
    # What an earlier update returned stays as it was.
    assert first.node_g["location"] == pytest.approx(450.0)
    assert set(first.jobs_g) == {A}

    # A leaves /metrics: its 3 kWh move to the unexported total, and its grams with them, unpriced again.
    third = live.update(
        _sample(clock.now + 1, cpu=1.0),
        _jobs(
            {B: {"dram": 0.25, "cpu": 1.0}}, unattributed={"cpu": 0.75}, unexported={"cpu": 1.0, "gpu": 2.0}
        ),
    )
    assert set(third.jobs_g) == {B}
    assert dict(third.unexported_g) == pytest.approx({"location": 525.0, "market": 1080.0})
    assert dict(third.jobs_g[B]) == pytest.approx({"location": 75.0 + 300.0, "market": 90.0 + 360.0})

    # A job that never reached /metrics (over max_job_series) books its 0.5 kWh as unexported directly.
    fourth = live.update(
        _sample(clock.now + 2, gpu=0.5),
        _jobs(
            {B: {"dram": 0.25, "cpu": 1.0}}, unattributed={"cpu": 0.75}, unexported={"cpu": 1.0, "gpu": 2.5}
        ),
    )
    assert dict(fourth.unexported_g) == pytest.approx({"location": 525.0 + 150.0, "market": 1080.0 + 180.0})
    assert dict(fourth.node_g) == pytest.approx({"location": 1200.0, "market": 1980.0})
    for totals in (first, second, third, fourth):
        for basis in ("location", "market"):
            assert _balance(totals, basis) == pytest.approx(0.0, abs=1e-9)


def test_a_job_that_returns_to_metrics_starts_again_from_its_published_total(tmp_path: Path) -> None:
    clock = WallClock()
    live = LiveCarbon(_model(tmp_path), "gpu-1", clock)
    live.update(_sample(clock.now, cpu=1.0), _jobs({A: {"cpu": 1.0}}))
    gone = live.update(_sample(clock.now, cpu=0.0), _jobs({}, unexported={"cpu": 1.0}))
    assert dict(gone.unexported_g) == pytest.approx({"location": 150.0, "market": 360.0})
    # Its total is new to live carbon: priced whole, as the node's energy had been.
    back = live.update(_sample(clock.now, cpu=0.5), _jobs({A: {"cpu": 0.5}}, unexported={"cpu": 1.0}))
    assert dict(back.jobs_g[A]) == pytest.approx({"location": 75.0, "market": 180.0})
    assert _balance(back, "location") == pytest.approx(0.0, abs=1e-9)


def test_a_node_no_site_claims_is_priced_at_the_world_average_and_named_unassigned(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "carbon:\n  sites:\n    a: {location: FRA, nodes: ['gpu-.*']}\n"
        "    b: {location: DEU, nodes: ['cpu-.*']}\n"
    )
    warned: list[str] = []
    model = CarbonModel.from_config(load(config).carbon, warn=warned.append)
    clock = WallClock()
    live = LiveCarbon(model, "login-1", clock)
    totals = live.update(_sample(clock.now, cpu=2.0), _jobs({A: {"cpu": 2.0}}))
    world = CodecarbonData().world().g_per_kwh
    assert (totals.site, totals.location) == (UNASSIGNED, "world")
    assert totals.intensity_g_per_kwh == pytest.approx(world)
    assert dict(totals.node_g) == pytest.approx({"location": 2 * world, "market": 2 * world})
    assert dict(totals.jobs_g[A]) == pytest.approx({"location": 2 * world, "market": 2 * world})
    live.update(_sample(clock.now, cpu=1.0), _jobs({A: {"cpu": 3.0}}))
    assert len(warned) == 1 and "login-1" in warned[0] and "carbon.default_site" in warned[0]


def test_jobs_leaving_together_all_take_their_grams_to_the_unexported_total(tmp_path: Path) -> None:
    clock = WallClock()
    live = LiveCarbon(_model(tmp_path), "gpu-1", clock)
    # 0.5 kWh of a job never published, then A and B on /metrics.
    live.update(_sample(clock.now, cpu=0.5), _jobs({}, unexported={"cpu": 0.5}))
    live.update(
        _sample(clock.now, cpu=3.0), _jobs({A: {"cpu": 1.0}, B: {"gpu": 2.0}}, unexported={"cpu": 0.5})
    )
    # Both leave in the same interval, which adds nothing: their 3 kWh join the 0.5 already unexported.
    gone = live.update(_sample(clock.now, cpu=0.0), _jobs({}, unexported={"cpu": 1.5, "gpu": 2.0}))
    assert gone.jobs_g == {}
    assert dict(gone.unexported_g) == pytest.approx({"location": 3.5 * 150.0, "market": 3.5 * 360.0})
    assert _balance(gone, "location") == pytest.approx(0.0, abs=1e-9)


# Live CO2e when the accountant hands over the same series object for an unchanged job: the totals
# are exactly those of fresh series every sample, each job's grams are its energy increases at their
# hour's price, and totals already returned never change.


KEYS = [JobKey("slurm", str(i)) for i in range(6)]
PRICE = {0: {"location": 150.0, "market": 360.0}, 1: {"location": 300.0, "market": 360.0}}
"""Grams per IT kWh in each hour of the test's site (tests/live/test_live_carbon.py)."""


def _figures(totals: CarbonTotals) -> tuple[object, ...]:
    return (
        dict(totals.node_g),
        [(key, dict(grams)) for key, grams in totals.jobs_g.items()],
        dict(totals.unexported_g),
        dict(totals.unattributed_g),
    )


def test_an_unchanged_series_handed_over_again_is_priced_as_a_fresh_copy_of_it(tmp_path: Path) -> None:
    clock_same, clock_fresh = WallClock(), WallClock()
    same = LiveCarbon(_model(tmp_path), "gpu-1", clock_same)
    fresh = LiveCarbon(_model(tmp_path), "gpu-1", clock_fresh)
    series = {k: JobSeries(k, JobInfo(), {"cpu": 0.1 * KWH * (i + 1)}, None) for i, k in enumerate(KEYS)}
    expected = {k: {b: 0.1 * (i + 1) * g for b, g in PRICE[0].items()} for i, k in enumerate(KEYS)}
    returned: list[tuple[CarbonTotals, tuple[object, ...]]] = []
    left = series[KEYS[2]]
    for step in range(12):
        hour = 1 if step >= 6 else 0
        if step == 6:  # a new hour: unchanged jobs add nothing at its price either
            clock_same.now = clock_fresh.now = H1 + 5
        if step == 4:  # leaves /metrics, with the series priced last
            left = series.pop(KEYS[2])
            del expected[KEYS[2]]
        for i, key in enumerate(KEYS):
            if step and key in series and (step + i) % 3 == 0:  # a third of the jobs move each sample
                old = series[key]
                series[key] = JobSeries(key, old.info, {"cpu": old.energy_j["cpu"] + 0.01 * KWH * i}, None)
                expected[key] = {b: g + 0.01 * i * PRICE[hour][b] for b, g in expected[key].items()}
        if step == 8:  # and comes back with the very series it left with: priced whole again
            series[KEYS[2]] = left
            expected[KEYS[2]] = {b: left.energy_j["cpu"] / KWH * g for b, g in PRICE[1].items()}
        unexported = {"cpu": left.energy_j["cpu"] if 4 <= step < 8 else 0.0}
        node_j = {("cpu", "package-0", "rapl"): 0.2 * KWH}
        sample = Snapshot(time=clock_same.now, samples=1, interval_j=node_j)
        mine = JobsSnapshot(jobs=tuple(series.values()), unattributed_j={}, unexported_j=unexported)
        copies = JobsSnapshot(
            jobs=tuple(JobSeries(s.key, s.info, dict(s.energy_j), s.ended) for s in series.values()),
            unattributed_j={},
            unexported_j=dict(unexported),
        )
        got, want = same.update(sample, mine), fresh.update(sample, copies)
        assert _figures(got) == _figures(want)
        assert set(got.jobs_g) == set(expected)
        for key, grams in expected.items():
            assert dict(got.jobs_g[key]) == pytest.approx(grams, rel=1e-12), (step, key)
        returned.append((got, _figures(got)))
    for totals, figures in returned:  # what an update returned stays as it was
        assert _figures(totals) == figures
