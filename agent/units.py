"""Units every layer shares, defined once: seconds per hour, joules per kWh, and the hour a figure is
booked to.

Level 1: imports nothing of the project.
"""

from __future__ import annotations

import math

HOUR_SECONDS = 3600
DAY_SECONDS = 24 * HOUR_SECONDS
HOURS_PER_YEAR = 8760
"""SCI's expected lifespan is in years of 365 days."""
SECONDS_PER_YEAR = HOURS_PER_YEAR * HOUR_SECONDS
JOULES_PER_KWH = 3.6e6


def hour_of(t: float) -> int:
    """The UTC hour (epoch seconds of its start) that an interval ending at `t` is booked to.

    Hours are (h, h + 3600]: an interval ending exactly at 14:00:00 belongs to 13:00.
    """
    return (math.ceil(t / HOUR_SECONDS) - 1) * HOUR_SECONDS
