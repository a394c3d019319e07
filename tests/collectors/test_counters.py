"""The one counter helper: its properties, and the faults it stops, on a generated powercap tree with
the real RAPL collector and sampler."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from agent.export.registry import make_exposition
from agent.live.sampler import Sampler
from agent.live.snapshot import Published, Snapshot
from collectors.base import (
    MARGIN,
    CollectorError,
    Outcome,
    Status,
    Step,
    ceiling,
    counter_delta,
    counter_step,
    is_outage,
    max_delta,
    outage_source,
)
from collectors.rapl import RaplCollector
from tests.support.clock import FakeClock
from tests.support.powercap import DEFAULT_RANGE_UJ, PowercapTree, Zone

PATIENT = settings(deadline=None)
"""No time limit per example: a busy 2-core machine must not fail a property."""
RANGE = st.integers(min_value=2, max_value=2**64)


@st.composite
def readings(draw: st.DrawFn) -> tuple[int, int, int | None, int | None, int | None]:
    """(previous, current, wrap, most, top): any reading after a valid baseline, bounds or none."""
    wrap = draw(st.none() | RANGE)
    top = None if wrap is not None else draw(st.none() | RANGE)
    limit = wrap if wrap is not None else top
    previous = draw(st.integers(0, limit if limit is not None else 2**64))
    current = draw(st.integers(-(2**20), 2**90) | st.integers(0, limit if limit is not None else 2**64))
    most = draw(st.none() | st.integers(0, 2**64))
    return previous, current, wrap, most, top


@PATIENT
@given(readings())
def test_a_step_is_never_negative_nor_above_the_most_the_device_can_draw(
    r: tuple[int, int, int | None, int | None, int | None],
) -> None:
    previous, current, wrap, most, top = r
    step = counter_step(previous, current, wrap, most, top)
    assert step.delta >= 0
    if most is not None:
        assert step.delta <= most
    if step.outcome not in (Outcome.MOVED, Outcome.WRAPPED):
        assert step.delta == 0 and step.reason == step.outcome.value  # not booked, and counted
    assert counter_delta(previous, current, wrap, most) == counter_step(previous, current, wrap, most).delta


@PATIENT
@given(readings())
def test_a_still_counter_gives_zero(r: tuple[int, int, int | None, int | None, int | None]) -> None:
    previous, _, wrap, most, top = r
    step = counter_step(previous, previous, wrap, most, top)
    assert (step.delta, step.outcome, step.reason) == (0, Outcome.MOVED, None)


@PATIENT
@given(st.data(), RANGE, st.floats(1.0, 5000.0), st.floats(0.001, 3600.0))
def test_a_wrap_within_range_is_recovered_exactly(
    data: st.DataObject, wrap: int, max_power_w: float, seconds: float
) -> None:
    most = max_delta(max_power_w, seconds)
    assert most is not None
    previous = data.draw(st.integers(0, wrap - 1))
    used = data.draw(st.integers(0, min(wrap - 1, most)))
    step = counter_step(previous, (previous + used) % wrap, wrap, most)
    assert step.delta == used
    assert step.outcome is (Outcome.WRAPPED if previous + used >= wrap else Outcome.MOVED)


@PATIENT
@given(readings())
def test_a_reset_never_books_energy_and_rebaselines(
    r: tuple[int, int, int | None, int | None, int | None],
) -> None:
    previous, current, wrap, most, top = r
    step = counter_step(previous, current, wrap, most, top)
    if 0 <= current < previous and (wrap is None or (most is not None and wrap - previous + current > most)):
        assert (step.delta, step.outcome, step.rebaseline) == (0, Outcome.RESET, True)


@PATIENT
@given(readings())
def test_a_reading_above_the_range_is_a_failed_read(
    r: tuple[int, int, int | None, int | None, int | None],
) -> None:
    previous, current, wrap, most, top = r
    step = counter_step(previous, current, wrap, most, top)
    limit = wrap if wrap is not None else top
    out = current < 0 or (limit is not None and current > limit)
    assert (step.outcome is Outcome.OUT_OF_RANGE) == out
    if out:
        assert step.delta == 0 and not step.rebaseline and step.reason == "counter_out_of_range"


def test_bounds_are_the_maximum_power_with_the_margin() -> None:
    assert MARGIN == 2.0
    assert max_delta(100.0, 0.5) == 100_000_000  # 100 W x 2 x 0.5 s in microjoules
    assert max_delta(100.0, -1.0) == 0 and max_delta(None, 1.0) is None
    assert ceiling(700.0) == max_delta(700.0, 10 * 365 * 24 * 3600.0)
    # One microjoule more than the bound is rejected, the bound itself is not.
    assert counter_step(0, 100_000_000, None, 100_000_000).outcome is Outcome.MOVED
    assert counter_step(0, 100_000_001, None, 100_000_000).outcome is Outcome.IMPLAUSIBLE
    assert counter_step(0, 0, None, 0).outcome is Outcome.MOVED


# ---- on a generated powercap tree ------------------------------------------------------------------

PACKAGE = Zone((0,), "package-0", 100.0, energy_uj=5_000_000_000)
OTHER = Zone((1,), "package-1", 50.0)
DRAM = Zone((0, 0), "dram", 10.0, max_power_w=0)  # no constraint files: bounded by the dram fallback
PACKAGE_KEY = ("cpu", "package-0", "rapl")


@pytest.fixture
def tree(sysfs: Path) -> Iterator[PowercapTree]:
    with PowercapTree(sysfs, [PACKAGE, OTHER, DRAM]) as t:
        yield t


@pytest.fixture
def sampled(tree: PowercapTree) -> Iterator[tuple[PowercapTree, Sampler, FakeClock]]:
    collector = RaplCollector(tree.root)
    assert collector.probe().status is Status.OK
    clock = FakeClock(0.0)
    sampler = Sampler([collector], clock)
    sampler.tick()  # the baseline at t = 0
    yield tree, sampler, clock
    sampler.close()


def step(tree: PowercapTree, sampler: Sampler, clock: FakeClock, seconds: float = 1.0) -> Snapshot:
    tree.advance(seconds)
    clock.advance(seconds)
    return sampler.tick()


def energy(snap: Snapshot, device: str = "package-0", outage: bool | None = False) -> float:
    """A CPU package's energy in joules; outage=None: with its outage energy, True: that alone."""
    return sum(
        row.energy_j
        for row in snap.energy
        if (row.component, row.device) == ("cpu", device)
        and (outage is None or is_outage(row.source) == outage)
    )


def metrics(snap: Snapshot) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = make_exposition(lambda: Published(snap), "node-1", {"rapl": Status.OK}).render()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_probe_reads_the_maximum_power_from_the_constraints(tree: PowercapTree) -> None:
    collector = RaplCollector(tree.root)
    devices = {(d.component, d.device): d for d in collector.probe().devices}
    assert devices["cpu", "package-0"].details["max_power_w"] == "200"  # the tree's TDP: twice its draw
    assert "max_power_w" not in devices["dram", "package-0"].details
    reading = collector.read()
    by_device = {(c.component, c.device): c for c in reading.counters}
    assert by_device["cpu", "package-0"].max_power_w == 200.0
    assert by_device["dram", "package-0"].max_power_w is None
    assert by_device["dram", "package-0"].bound_w == 500.0
    collector.close()


def test_case_2_a_value_above_the_range_is_a_failed_read_and_the_counter_keeps_moving(
    sampled: tuple[PowercapTree, Sampler, FakeClock],
) -> None:
    tree, sampler, clock = sampled
    assert energy(step(tree, sampler, clock)) == pytest.approx(100.0)

    tree.advance(1)
    clock.advance(1)
    tree.write_raw(PACKAGE, "99999999999999999999999999")
    snap = sampler.tick()  # t = 2
    assert energy(snap, outage=None) == pytest.approx(100.0)  # nothing booked for it
    assert snap.interval_j.get(PACKAGE_KEY, 0.0) == 0.0
    assert snap.errors == {("rapl", "counter_out_of_range"): 1}
    assert snap.devices_up[("cpu", "package-0")] is False
    assert snap.devices_up[("cpu", "package-1")] is True
    assert snap.collectors_up == {"rapl": True}
    assert energy(snap, "package-1") == pytest.approx(100.0)
    samples = metrics(snap)
    assert samples[("greenai_device_up", frozenset({("component", "cpu"), ("device", "package-0")}))] == 0.0
    assert samples[("greenai_device_up", frozenset({("component", "cpu"), ("device", "package-1")}))] == 1.0
    reason = frozenset({("collector", "rapl"), ("reason", "counter_out_of_range")})
    assert samples[("greenai_collector_errors_total", reason)] == 1
    assert samples[("greenai_collector_up", frozenset({("collector", "rapl")}))] == 1.0

    snap = step(tree, sampler, clock)  # t = 3: a valid reading again, measured from the last good one
    assert snap.devices_up[("cpu", "package-0")] is True
    assert snap.interval_j[PACKAGE_KEY] == pytest.approx(100.0)  # this interval's share, as usual
    assert energy(snap, outage=True) == pytest.approx(100.0)  # the failed interval's, set apart
    assert energy(snap, outage=None) == pytest.approx(tree.true_joules(PACKAGE))  # nothing lost
    for _ in range(3):
        snap = step(tree, sampler, clock)
    assert energy(snap) == pytest.approx(500.0)  # still moving, by small steps
    assert snap.errors == {("rapl", "counter_out_of_range"): 1}


def test_case_2_a_value_above_the_range_is_never_a_baseline(tree: PowercapTree) -> None:
    collector = RaplCollector(tree.root)
    collector.probe()
    clock = FakeClock(0.0)
    sampler = Sampler([collector], clock)
    tree.write_raw(PACKAGE, str(DEFAULT_RANGE_UJ + 1))
    snap = sampler.tick()
    assert snap.errors == {("rapl", "counter_out_of_range"): 1}
    snap = step(tree, sampler, clock)  # the first valid value is the baseline
    assert energy(snap) == 0.0
    snap = step(tree, sampler, clock)
    assert energy(snap) == pytest.approx(100.0)
    sampler.close()


def test_case_3_a_counter_500_j_lower_is_a_reset_not_a_262_kj_wrap(
    sampled: tuple[PowercapTree, Sampler, FakeClock],
) -> None:
    tree, sampler, clock = sampled
    step(tree, sampler, clock)
    tree.shift(PACKAGE, -500.0)  # what a driver reload or a reset looks like
    snap = step(tree, sampler, clock, 0.5)
    assert energy(snap, outage=None) == pytest.approx(100.0)  # nothing booked for the interval
    assert snap.interval_j[PACKAGE_KEY] == 0.0
    assert snap.errors == {("rapl", "counter_reset"): 1}
    assert snap.devices_up[("cpu", "package-0")] is True  # the reading is fine: the new baseline
    snap = step(tree, sampler, clock, 0.5)
    assert snap.interval_j[PACKAGE_KEY] == pytest.approx(50.0)  # counting again from it
    assert energy(snap) == pytest.approx(150.0)


def test_a_real_wrap_is_still_a_wrap(sampled: tuple[PowercapTree, Sampler, FakeClock]) -> None:
    tree, sampler, clock = sampled
    # The counter jumps to 30 J below the top of its range: far more than 1 s can hold, so refused...
    tree.shift(PACKAGE, (DEFAULT_RANGE_UJ - PACKAGE.energy_uj) / 1e6 - 30.0 - 100.0)
    snap = step(tree, sampler, clock)
    assert snap.errors == {("rapl", "counter_implausible"): 1}
    assert snap.devices_up[("cpu", "package-0")] is False
    assert snap.interval_j[PACKAGE_KEY] == 0.0
    snap = step(tree, sampler, clock)  # ...and from there it wraps through the top: 100 J, exactly
    assert snap.interval_j[PACKAGE_KEY] == pytest.approx(100.0)
    assert snap.devices_up[("cpu", "package-0")] is True
    assert snap.errors == {("rapl", "counter_implausible"): 1}


def test_a_jump_above_the_maximum_power_is_rejected_and_counted(
    sampled: tuple[PowercapTree, Sampler, FakeClock],
) -> None:
    tree, sampler, clock = sampled
    tree.shift(PACKAGE, 301.0)  # 401 J in 1 s: twice the 200 W maximum, and a joule more
    tree.shift(DRAM, 1000.0)  # 1,010 J in 1 s: DRAM reports no limit, its fallback is 500 W
    snap = step(tree, sampler, clock)
    assert snap.interval_j[PACKAGE_KEY] == 0.0
    assert snap.interval_j[("dram", "package-0", "rapl")] == 0.0
    assert snap.errors == {("rapl", "counter_implausible"): 2}
    snap = step(tree, sampler, clock)  # from the new baseline on, counted as usual
    assert snap.interval_j[PACKAGE_KEY] == pytest.approx(100.0)


def test_a_zone_that_cannot_be_read_is_down_and_its_energy_set_apart(
    sampled: tuple[PowercapTree, Sampler, FakeClock],
) -> None:
    tree, sampler, clock = sampled
    tree.advance(2)
    clock.advance(2)
    tree.write_raw(OTHER, "not a number")
    snap = sampler.tick()
    assert snap.devices_up[("cpu", "package-1")] is False
    assert snap.errors == {("rapl", "read_failed"): 1}
    snap = step(tree, sampler, clock, 1)
    assert snap.interval_j[("cpu", "package-1", "rapl")] == pytest.approx(50.0)
    assert snap.interval_j[("cpu", "package-1", "rapl_outage")] == pytest.approx(100.0)
    assert sum(snap.interval_j.values()) == pytest.approx(100.0 + 150.0 + 10.0)


def test_the_bounds_themselves() -> None:
    assert counter_step(1_000, 250, wrap=1_000) == Step(250, Outcome.WRAPPED)  # from the very top
    assert counter_step(0, 400, most=400) == Step(400, Outcome.MOVED)  # exactly the most: plausible
    assert counter_step(0, 401, most=400) == Step(0, Outcome.IMPLAUSIBLE)
    assert counter_step(900, 300, wrap=1_000, most=400) == Step(400, Outcome.WRAPPED)
    assert counter_step(900, 301, wrap=1_000, most=400) == Step(0, Outcome.RESET)


def test_only_measured_sources_have_an_outage_label() -> None:
    assert outage_source("nvml") == "nvml_outage" and outage_source("rapl") == "rapl_outage"
    assert outage_source("estimate") is None  # the model covers a gap from its next reading


def test_a_collector_error_says_what_failed() -> None:
    error = CollectorError("read_failed", "rapl: all 2 energy_uj reads failed")
    assert str(error) == "rapl: all 2 energy_uj reads failed" and error.reason == "read_failed"
