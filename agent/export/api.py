"""/api/v1/jobs: the running agent's jobs as JSON, from its ledger plus the rows not written yet.

Errors follow the server's JobsApi contract: LookupError (404) for no such job, ValueError (400)
for a request the ledger refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.carbon.model import CarbonModel
from agent.ledger.job_carbon import job_carbon
from agent.ledger.schema import JobNotFound, LedgerError
from agent.ledger.writer import Ledger


class LedgerApi:
    """/api/v1/jobs over the running agent's ledger, unwritten rows included."""

    def __init__(self, ledger: Ledger, carbon: CarbonModel | None = None) -> None:
        self._ledger = ledger
        self._carbon = carbon

    def list_jobs(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        since = query.get("since")
        running = query.get("running")
        summaries = self._ledger.live_jobs(
            since=float(since) if since else None,
            user=query.get("user") or None,
            running=None if running is None else running.lower() in ("1", "true", "yes"),
        )
        return [s.as_dict() for s in summaries]

    def annotate(self, job_id: str, tokens: int | None, samples: int | None) -> dict[str, Any]:
        try:
            return self._ledger.annotate(job_id, tokens, samples).as_dict()
        except JobNotFound as e:
            raise LookupError(str(e)) from None
        except LedgerError as e:
            raise ValueError(str(e)) from None

    def get_job(self, job_id: str) -> dict[str, Any]:
        try:
            job = self._ledger.live_job(job_id)
            if self._carbon is None:
                return job.as_dict()
            priced = job_carbon(job, self._ledger.live_job_hours(job), self._carbon)
            return {**job.as_dict(), **priced.as_dict()}
        except JobNotFound as e:
            raise LookupError(str(e)) from None
        except LedgerError as e:
            raise ValueError(str(e)) from None
