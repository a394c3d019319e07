"""Live CO2e when the accountant hands over the same series object for an unchanged job: the totals
are exactly those of fresh series every sample, each job's grams are its energy increases at their
hour's price, and totals already returned never change."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.live.carbon import LiveCarbon
from agent.live.snapshot import CarbonTotals, JobSeries, JobsSnapshot, Snapshot
from collectors.workloads import JobInfo, JobKey
from tests.live.test_live_carbon import H1, KWH, WallClock, _model

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
