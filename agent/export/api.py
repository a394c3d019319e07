"""/api/v1/jobs: the running agent's jobs as JSON, from its ledger plus the rows not written yet.

Errors follow the server's JobsApi contract: LookupError (404) for no such job, ValueError (400)
for a request the ledger refuses.

`redact` (api.redact) nulls the fields that name people (user, uid, account, job name) in every
answer, and refuses to filter by user, which would tell whose jobs these are just the same.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from agent.carbon.model import CarbonModel
from agent.ledger.job_carbon import job_carbon
from agent.ledger.schema import JobNotFound, LedgerError
from agent.ledger.writer import Ledger


class LedgerApi:
    """/api/v1/jobs over the running agent's ledger, unwritten rows included."""

    def __init__(
        self, ledger: Ledger, carbon: CarbonModel | None = None, redact: Collection[str] = ()
    ) -> None:
        self._ledger = ledger
        self._carbon = carbon
        self._redact = frozenset(redact)

    def _shown(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: None if k in self._redact else v for k, v in job.items()}

    def list_jobs(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        running = query.get("running")
        user = query.get("user") or None
        if user is not None and "user" in self._redact:
            raise ValueError("filtering by user is off on this agent (api.redact hides users)")
        summaries = self._ledger.live_jobs(
            since=since_seconds(query.get("since")),
            user=user,
            running=None if running is None else running.lower() in ("1", "true", "yes"),
        )
        return [self._shown(s.as_dict()) for s in summaries]

    def annotate(self, job_id: str, tokens: int | None, samples: int | None) -> dict[str, Any]:
        try:
            return self._shown(self._ledger.annotate(job_id, tokens, samples).as_dict())
        except JobNotFound as e:
            raise LookupError(str(e)) from None
        except LedgerError as e:
            raise ValueError(str(e)) from None

    def get_job(self, job_id: str) -> dict[str, Any]:
        try:
            job = self._ledger.live_job(job_id)
            if self._carbon is None:
                return self._shown(job.as_dict())
            priced = job_carbon(job, self._ledger.live_job_hours(job), self._carbon)
            return self._shown({**job.as_dict(), **priced.as_dict()})
        except JobNotFound as e:
            raise LookupError(str(e)) from None
        except LedgerError as e:
            raise ValueError(str(e)) from None


def since_seconds(text: str | None) -> float | None:
    """`since` as Unix seconds (None when not given); ValueError for anything but a finite number."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"since must be Unix seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"since must be a finite number of Unix seconds, got {text!r}")
    return value
