"""The writer's job records: each job's row of its latest run updated at a flush, or a new run's made.

A flush touches every job that ran since the last one (thousands on a busy node, every few seconds),
so what does not change between flushes is prepared once per job: the storable text of its metadata,
made again only when the metadata is another object. The updates of one flush go to SQLite together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from agent.ledger.files import storable
from agent.ledger.pending import JobState, new_run
from collectors.workloads import JobInfo, JobKey

_LATEST_RUN = """
SELECT id, run, "end" FROM jobs WHERE scheduler = ? AND job_id = ? AND node = ? ORDER BY run DESC LIMIT 1
"""
_INSERT_JOB = """
INSERT INTO jobs (scheduler, job_id, node, run, user, uid, name, account, "partition", start, "end",
                  last_seen, project, phase, model, gpu_model, gpu_count, cpu_model)
VALUES (:scheduler, :job_id, :node, :run, :user, :uid, :name, :account, :partition, :start, :end,
        :last_seen, :project, :phase, :model, :gpu_model, :gpu_count, :cpu_model)
RETURNING id
"""
_UPDATE_JOB = """
UPDATE jobs SET
    user = CASE WHEN :user != '' THEN :user ELSE user END,
    uid = COALESCE(:uid, uid),
    name = CASE WHEN :name != '' THEN :name ELSE name END,
    account = CASE WHEN :account != '' THEN :account ELSE account END,
    "partition" = CASE WHEN :partition != '' THEN :partition ELSE "partition" END,
    start = MIN(start, :start),
    "end" = CASE :ended WHEN 1 THEN :end WHEN 0 THEN NULL ELSE "end" END,
    last_seen = MAX(last_seen, :last_seen),
    project = CASE WHEN :project != '' THEN :project ELSE project END,
    phase = CASE WHEN :phase != '' THEN :phase ELSE phase END,
    model = CASE WHEN :model != '' THEN :model ELSE model END,
    gpu_model = CASE WHEN :gpu_model != '' THEN :gpu_model ELSE gpu_model END,
    gpu_count = CASE WHEN gpu_count IS NULL OR :gpu_count > gpu_count THEN COALESCE(:gpu_count, gpu_count)
                ELSE gpu_count END,
    cpu_model = CASE WHEN :cpu_model != '' THEN :cpu_model ELSE cpu_model END
WHERE id = :id
"""


class JobRows:
    """Writes the job records of one node's flushes; `upsert()` inside the flush's transaction."""

    def __init__(self, node: str) -> None:
        self._node = storable(node)
        self._prepared: dict[JobKey, tuple[JobInfo, dict[str, Any]]] = {}
        """Per job: the metadata last written, and its columns as SQLite gets them."""

    def upsert(self, conn: sqlite3.Connection, jobs: Mapping[JobKey, JobState]) -> dict[JobKey, int]:
        """The row id of each job's latest run, updated with its news; a new run's row where the latest
        run ended before this news began (the id was reused: a new job)."""
        ids: dict[JobKey, int] = {}
        updates: list[dict[str, Any]] = []
        prepared: dict[JobKey, tuple[JobInfo, dict[str, Any]]] = {}
        for key, state in jobs.items():
            last = self._prepared.get(key)
            if last is None or last[0] is not state.info:
                last = (state.info, self._columns(key, state.info))
            prepared[key] = last
            values = {
                **last[1],
                "start": state.start,
                "end": state.end,
                "last_seen": state.last_seen,
                "ended": None if state.ended is None else int(state.ended),
            }
            latest = conn.execute(_LATEST_RUN, (values["scheduler"], values["job_id"], self._node)).fetchone()
            if latest is not None and not new_run(latest[2], state):
                updates.append({**values, "id": latest[0]})
                ids[key] = int(latest[0])
            else:  # each job's latest run is looked up apart: updating the others first changes none
                run = 1 if latest is None else int(latest[1]) + 1
                ids[key] = int(conn.execute(_INSERT_JOB, {**values, "run": run}).fetchone()[0])
        conn.executemany(_UPDATE_JOB, updates)
        self._prepared = prepared  # the jobs of this flush: those of the next are mostly the same
        return ids

    def _columns(self, key: JobKey, info: JobInfo) -> dict[str, Any]:
        return {
            "scheduler": storable(key.scheduler),
            "job_id": storable(key.job_id),
            "node": self._node,
            "user": storable(info.user),
            "uid": info.uid,
            "name": storable(info.name),
            "account": storable(info.account),
            "partition": storable(info.partition),
            "project": storable(info.project),
            "phase": storable(info.phase),
            "model": storable(info.model),
            "gpu_model": storable(info.gpu_model),
            "gpu_count": info.gpu_count,
            "cpu_model": storable(info.cpu_model),
        }
