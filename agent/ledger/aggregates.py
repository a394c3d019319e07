"""What a report streams out of one ledger for a window [lo, hi) of hours, aggregated in SQLite.

Energy is summed per job x hour (or node x hour) over the components in the total, with the parts
of each kind alongside (estimated: source `estimate`; imported: sources `import:...`; measured: the
rest), and per job (or node) x source for the meters and tools behind them (agent.ledger.provenance).
Rows come one at a time, so a large ledger never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent.ledger.read import LedgerReader
from collectors.base import NOT_IN_TOTAL

_EXCLUDED = ", ".join(f"'{c}'" for c in sorted(NOT_IN_TOTAL))
_KINDS = """SUM(joules), SUM(CASE WHEN source = 'estimate' THEN joules ELSE 0 END),
       SUM(CASE WHEN source LIKE 'import:%' THEN joules ELSE 0 END)"""
_JOB_HOURS = f"""
SELECT job, hour, {_KINDS}
  FROM energy WHERE hour >= ? AND hour < ? AND component NOT IN ({_EXCLUDED}) GROUP BY job, hour
"""
_UNATTRIBUTED = f"""
SELECT node, hour, {_KINDS}
  FROM unattributed WHERE hour >= ? AND hour < ? AND component NOT IN ({_EXCLUDED}) GROUP BY node, hour
"""
_JOB_SOURCES = f"""
SELECT job, source, SUM(joules)
  FROM energy WHERE hour >= ? AND hour < ? AND component NOT IN ({_EXCLUDED}) GROUP BY job, source
"""
_UNATTRIBUTED_SOURCES = f"""
SELECT node, source, SUM(joules)
  FROM unattributed WHERE hour >= ? AND hour < ? AND component NOT IN ({_EXCLUDED}) GROUP BY node, source
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

# The wall meters: the energy the agent read at each node's wall (component `node`), and in how many hours.
_WALL_HOURS = (
    "SELECT node, source, COUNT(DISTINCT hour), SUM(joules) FROM node_energy "
    "WHERE hour >= ? AND hour < ? AND component = 'node' GROUP BY node, source"
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
    """(job rowid, hour, joules, of which estimated, of which imported) per job and hour."""
    return reader.stream(_JOB_HOURS, (lo, hi))


def unattributed_hours(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(node, hour, joules, of which estimated, of which imported) of the energy no job was charged for."""
    return reader.stream(_UNATTRIBUTED, (lo, hi))


def job_sources(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(job rowid, source, joules) per job and source over the window."""
    return reader.stream(_JOB_SOURCES, (lo, hi))


def unattributed_sources(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(node, source, joules) of the energy no job was charged for, per node and source."""
    return reader.stream(_UNATTRIBUTED_SOURCES, (lo, hi))


def node_coverage(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(node, hours with the agent's own samples, first hour, last hour); imported rows not counted."""
    return reader.stream(_NODE_HOURS, (lo, hi))


def wall_meters(reader: LedgerReader, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    """(node, source, hours with a wall reading, joules read at the wall) per node and wall meter."""
    return reader.stream(_WALL_HOURS, (lo, hi))
