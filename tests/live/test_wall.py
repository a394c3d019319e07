"""`other`: the wall energy less the counted components, on running sums (agent.live.wall)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.live.wall import Remainder, meter_source

CPU = ("cpu", "package-0", "rapl")
GPU = ("gpu", "gpu0", "nvml")
PSYS = ("platform", "psys", "rapl")
WALL = ("node", "chassis1", "redfish")
ACPI = ("node", "hwmon3", "hwmon")


def test_other_is_the_wall_less_the_counted_components_and_ignores_overlapping_meters() -> None:
    r = Remainder("redfish")
    assert r.key == ("other", "node", "redfish")
    other = r.other_j({CPU: 100.0, GPU: 300.0, PSYS: 150.0, ACPI: 520.0, WALL: 500.0})
    assert other == pytest.approx(100.0)


def test_a_lagging_meter_is_evened_out_over_the_intervals() -> None:
    # The wall is polled every third interval and held: 0 J, 0 J, then all of it at once.
    r = Remainder("redfish")
    counted = {CPU: 100.0}
    others = [r.other_j({**counted, WALL: wall}) for wall in (0.0, 0.0, 360.0, 0.0, 0.0, 360.0)]
    assert others == pytest.approx([0.0, 0.0, 60.0, 0.0, 0.0, 60.0])
    assert sum(o for o in others if o is not None) == pytest.approx(720.0 - 600.0)
    assert r.shortfall_j == pytest.approx(0.0)


def test_a_wall_below_the_counters_adds_nothing_and_is_carried_forward() -> None:
    r = Remainder("redfish")
    assert r.other_j({CPU: 100.0, WALL: 80.0}) == 0.0
    assert r.shortfall_j == pytest.approx(20.0)
    assert r.other_j({CPU: 100.0, WALL: 130.0}) == pytest.approx(10.0)
    assert r.shortfall_j == pytest.approx(0.0)


def test_intervals_without_a_wall_reading_count_nowhere() -> None:
    r = Remainder("redfish")
    assert r.other_j({CPU: 100.0}) is None  # the meter is down: no `other`, and no debt either
    assert r.other_j({CPU: 100.0, WALL: 150.0}) == pytest.approx(50.0)


def test_the_bmc_is_preferred_to_an_acpi_meter() -> None:
    assert meter_source({"hwmon", "redfish"}) == "redfish"
    assert meter_source({"hwmon"}) == "hwmon"
    assert meter_source(set()) is None


@settings(deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1e5), st.floats(0.0, 1e5), st.booleans()), min_size=1, max_size=50))
def test_counted_plus_other_is_the_wall_whenever_the_wall_is_ahead(
    steps: list[tuple[float, float, bool]],
) -> None:
    """Over the intervals with a reading, `other` so far is the most the wall has ever been ahead of
    the counters (0 if never): so counted + other is the wall whenever the wall is ahead, and never
    less than the counters."""
    r = Remainder("redfish")
    wall = counted = other = ahead = 0.0
    for wall_j, counted_j, read in steps:
        got = r.other_j({CPU: counted_j, **({WALL: wall_j} if read else {})})
        if not read:
            assert got is None
            continue
        assert got is not None and got >= 0.0
        wall, counted, other = wall + wall_j, counted + counted_j, other + got
        ahead = max(ahead, wall - counted)
        assert other == pytest.approx(ahead, rel=1e-9, abs=1e-6)
        if wall >= counted + other - 1e-6 * max(1.0, wall):
            assert counted + other == pytest.approx(wall, rel=1e-9, abs=1e-6)
