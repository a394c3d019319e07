"""`greenai annotate`: add useful work (tokens, samples) to a job straight in the ledger file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.ledger.files import open_for_writing
from agent.ledger.read import Filter, query_jobs
from agent.ledger.schema import ADD_USEFUL, READERS_HINT, LedgerError, LedgerMissing
from agent.ledger.summary import JobSummary, find_job


def annotate_file(
    path: Path, key_or_id: str, node: str | None, tokens: int | None, samples: int | None,
    busy_timeout_s: float = 5.0,
) -> JobSummary:  # fmt: skip
    """Add useful work to a job straight in the ledger file, the job's figures after; raises LedgerError.

    Works whether the agent runs or not: the write is one short transaction that waits up to
    `busy_timeout_s` for the agent's flush, and the agent never writes these columns but to add to them.
    """
    if not path.exists():
        raise LedgerMissing(f"no ledger at {path}; pass --ledger PATH or the agent's --config")
    conn = open_for_writing(path, busy_timeout_s)  # also upgrades an older schema
    try:
        job = find_job(query_jobs(conn, Filter()), key_or_id, node)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(ADD_USEFUL, (tokens, samples, job.scheduler, job.job_id, job.node))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return find_job(query_jobs(conn, Filter()), f"{job.scheduler}:{job.job_id}", job.node)
    except sqlite3.Error as e:
        raise LedgerError(f"cannot annotate in ledger {path}: {e}; {READERS_HINT}") from None
    finally:
        conn.close()
