"""The BMC counter's arithmetic (collectors/bmc/track.py) on hand-picked times: what the HTTP tests
in test_bmc.py cannot stage exactly (a meter reset, a failure between polls)."""

from __future__ import annotations

from collectors.bmc.track import Integrator


def test_power_is_held_until_a_failure_and_resumes_from_the_next_good_reading() -> None:
    counter = Integrator(horizon_s=30.0)
    counter.power(0.0, 100.0)
    assert counter.value(10.0) == 1000 * 10**6
    counter.stop(12.0)  # the poll at 12 s failed
    assert counter.value(50.0) == 1200 * 10**6
    counter.power(60.0, 50.0)
    assert counter.value(62.0) == 1300 * 10**6  # nothing for 12..60 s


def test_power_stops_rising_at_the_horizon() -> None:
    counter = Integrator(horizon_s=30.0)
    counter.power(0.0, 10.0)
    assert counter.value(100.0) == 300 * 10**6


def test_a_meter_counts_from_its_first_move_and_a_reset_is_a_new_start() -> None:
    counter = Integrator(horizon_s=1e9)
    counter.meter(0.0, 5000.0)
    counter.meter(10.0, 5000.0)
    counter.meter(20.0, 6000.0)  # first move: only a start, its step began before we watched
    assert counter.value(30.0) == 0
    counter.meter(30.0, 7000.0)  # 1000 J in 10 s: spread at 100 W from here
    assert counter.value(35.0) == 500 * 10**6
    assert counter.value(50.0) == 1000 * 10**6  # never past what the meter measured
    counter.meter(60.0, 100.0)  # the meter was reset
    counter.meter(70.0, 400.0)
    counter.meter(80.0, 700.0)
    assert counter.value(80.0) == 1000 * 10**6
    assert counter.value(90.0) == 1300 * 10**6
    assert counter.value(200.0) == 1300 * 10**6
