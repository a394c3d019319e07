"""What a report streams out of one ledger for a window [lo, hi) of hours, aggregated in SQLite.

Energy is summed per job x hour (or node x hour) over the components in the total, with the part
whose source is `estimate` alongside; rows come one at a time, so a large ledger never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent.ledger.read import LedgerReader
from collectors.base import NOT_IN_TOTAL

_EXCLUDED = ", ".join(f"'{c}'" for c in sorted(NOT_IN_TOTAL))
_JOB_HOURS = f"""
SELECT job, hour, SUM(joules), SUM(CASE WHEN source = 'estimate' THEN joules ELSE 0 END)
  FROM energy WHERE hour >= ? AND hour < ? AND component NOT IN ({_EXCLUDED}) GROUP BY job, hour
"""
_UNATTRIBUTED = f"""
SELECT node, hour, SUM(joules), SUM(CASE WHEN source = 'estimate' THEN joules ELSE 0 END)
  FROM unattributed WHERE hour >= ? AND hour < ? AND component NOT IN ({_EXCLUDED}) GROUP BY node, hour
"""
_JOBS = """
SELECT id, scheduler, job_id, node, user, name, start, "end", project, phase, model, tokens, samples,
       origin, location, pue, intensity_g_per_kwh, run, method, uncertainty_pct, gpu_model, gpu_count,
       cpu_model
  FROM jobs WHERE id IN (SELECT DISTINCT job FROM energy WHERE hour >= ? AND hour < ?)
"""
_USAGE = "SELECT job, SUM(gpu_seconds) FROM usage WHERE hour >= ? AND hour < ? GROUP BY job"
# Coverage is about the agent's own sampling: the node rows that imports book (import:...) are not.
_NODE_HOURS = (
    "SELECT node, COUNT(DISTINCT hour), MIN(hour), MAX(hour) FROM node_energy "
    "WHERE hour >= ? AND hour < ? AND source NOT LIKE 'import:%' GROUP BY node"
)


def jobs(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """Each job with energy in the window: (rowid, scheduler, job_id, node, user, name, start, end,
    project, phase, model, tokens, samples, origin, location, pue, intensity_g_per_kwh, run, method,
    uncertainty_pct, gpu_model, gpu_count, cpu_model)."""
    return reader.stream(_JOBS, (lo, hi))


def gpu_seconds(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(job rowid, GPU seconds in the window)."""
    return reader.stream(_USAGE, (lo, hi))


def job_hours(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(job rowid, hour, joules, of which estimated) per job and hour."""
    return reader.stream(_JOB_HOURS, (lo, hi))


def unattributed_hours(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(node, hour, joules, of which estimated) of the energy no job was charged for."""
    return reader.stream(_UNATTRIBUTED, (lo, hi))


def node_coverage(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(node, hours with the agent's own samples, first hour, last hour); imported rows not counted."""
    return reader.stream(_NODE_HOURS, (lo, hi))
