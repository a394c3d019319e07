"""Dates on the command line: `--since 2024-05-01`, `--until 2024-05-01T13:00Z`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from agent.config.checks import ArgumentError

DATE_LENGTH = len("2024-05-01")


def parse_when(flag: str, text: str, end_of_day: bool = False) -> float:
    """YYYY-MM-DD or an ISO 8601 date-time (UTC unless it says otherwise) as epoch seconds; a bare date
    is its start, or with `end_of_day` the start of the next day. Raises ArgumentError naming `flag`."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read Z
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ArgumentError(
            f"{flag} {text!r} is not a date; use YYYY-MM-DD or a time such as 2024-05-01T13:00Z (UTC)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if end_of_day and len(value) == DATE_LENGTH:
        when += timedelta(days=1)
    return when.timestamp()
