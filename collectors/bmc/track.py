"""The BMC's energy counter, in microjoules: polled power held between polls, or a BMC energy meter
followed smoothly. Pure arithmetic on times the caller passes in; the collector guards it with a lock.

Step-hold: a poll that reads P watts at time t makes the counter rise at P from t until the next
poll, so it never goes backwards and every sample in between sees it move smoothly. Growth stops
`horizon_s` after the last good poll (a BMC silent for that long is stale) and at once when a poll
fails: the energy of a gap is unknown and is never invented; the next good reading restarts the
rise from where the counter stood.

A meter (EnergyJoules, EnergykWh) moves in steps of its resolution, only when the BMC updates it;
booked as it is, each step would land in one sample as a burst of power. Instead each increase is
spread over the following time at the rate of the one before (the increase divided by the time
since the meter last moved), and the counter never passes what the meter has measured: it trails
the meter by about one step and never gets ahead of it. The meter's first move only marks a start:
how much of that first step fell before the agent was watching is unknown, so it is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Track:
    """The counter from `since` on: `energy_uj` then, rising at `power_w` for at most `horizon_s`,
    never above `limit_uj` (None: no limit)."""

    energy_uj: float = 0.0
    since: float = 0.0
    power_w: float = 0.0
    horizon_s: float = 0.0
    limit_uj: float | None = None

    def at(self, now: float) -> float:
        """The counter's value at `now`, in microjoules."""
        seconds = min(max(0.0, now - self.since), self.horizon_s)
        grown = self.energy_uj + self.power_w * 1e6 * seconds
        if self.limit_uj is None:
            return grown
        return max(self.energy_uj, min(grown, self.limit_uj))


class Integrator:
    """The counter of one BMC power or energy reading, in microjoules, starting at 0."""

    def __init__(self, horizon_s: float) -> None:
        self._horizon_s = horizon_s
        self._track = Track()
        self._meter_j: float | None = None
        """The meter's last reading; None before the first or after a reset."""
        self._mark: tuple[float, float] | None = None
        """(meter joules, time) of the meter's last move."""
        self._rate_w = 0.0
        self._limit_uj = 0.0
        """The most the counter may reach: what the meter has measured since the agent watched."""

    def value(self, now: float) -> int:
        """The counter at `now`, whole microjoules."""
        return int(self._track.at(now))

    def power(self, now: float, watts: float) -> None:
        """A polled power reading: hold it from `now`."""
        self._track = Track(self._track.at(now), now, watts, self._horizon_s)

    def stop(self, now: float) -> None:
        """A failed poll: the counter stays where it is until the next good reading."""
        self._track = Track(self._track.at(now), now, 0.0, 0.0, self._track.limit_uj)

    def meter(self, now: float, joules: float) -> None:
        """A polled energy meter reading, in joules."""
        value = self._track.at(now)
        last = self._meter_j
        if last is None or joules < last:  # the first reading, or the meter was reset: a new start
            self._mark, self._rate_w, self._limit_uj = None, 0.0, value
        elif joules > last:
            if self._mark is not None:
                mark_j, mark_t = self._mark
                self._limit_uj += (joules - last) * 1e6
                if now > mark_t:
                    self._rate_w = (joules - mark_j) / (now - mark_t)
            self._mark = (joules, now)
        self._meter_j = joules
        self._track = Track(value, now, self._rate_w, self._horizon_s, max(value, self._limit_uj))
