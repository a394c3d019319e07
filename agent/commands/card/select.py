"""Which runs a card is about: a model's (filtered by phase and start time) or one job's, priced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.carbon.data import CodecarbonData
from agent.carbon.model import CarbonModel
from agent.commands.dates import parse_when
from agent.config.checks import ArgumentError
from agent.ledger.job_carbon import JobCarbon, job_carbon
from agent.ledger.read import LedgerReader
from agent.ledger.schema import JobNotFound
from agent.ledger.summary import JobSummary, find_job, iso

FIRST_YEAR, LAST_YEAR = 1970, 9998


@dataclass(frozen=True)
class Subject:
    """What the card is about: `model` NAME or `job` ID."""

    kind: str
    name: str


@dataclass(frozen=True)
class Selection:
    """Which of a model's runs a card takes: its phases, and a run's start in [since, until) (epoch s).

    A run is taken whole or not at all, by its start, so each run counts once, in one year."""

    phases: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    year: int | None = None

    @property
    def empty(self) -> bool:
        return not self.phases and self.since is None and self.until is None

    def keeps(self, job: JobSummary) -> bool:
        if self.phases and job.info.phase not in self.phases:
            return False
        if self.since is not None and job.start < self.since:
            return False
        return self.until is None or job.start < self.until

    def words(self) -> str:
        """`phase pretraining, started in 2024`; "" for no filter."""
        parts = [f"phase {' or '.join(self.phases)}"] if self.phases else []
        whole_year = self.year is not None and (self.since, self.until) == (
            year_start(self.year),
            year_start(self.year + 1),
        )
        if whole_year:
            parts.append(f"started in {self.year}")
        else:
            if self.since is not None:
                parts.append(f"started at or after {iso(self.since)}")
            if self.until is not None:
                parts.append(f"started before {iso(self.until)}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "phases": list(self.phases) or None,
            "year": self.year,
            "since": iso(self.since),
            "until": iso(self.until),
        }


def selection(
    phases: Sequence[str] | None, year: int | None, since: str | None, until: str | None
) -> Selection:
    """The card's filters from the flags; raises ArgumentError (exit 2) for a bad date or an empty window.

    `--until` with a bare date takes that whole day; with a time, the runs that started before it."""
    low = parse_when("--since", since) if since is not None else None
    high = parse_when("--until", until, end_of_day=True) if until is not None else None
    if year is not None:
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise ArgumentError(f"--year {year}: not a year a ledger holds; give YYYY, e.g. 2024")
        low = max(low, year_start(year)) if low is not None else year_start(year)
        high = min(high, year_start(year + 1)) if high is not None else year_start(year + 1)
    if low is not None and high is not None and low >= high:
        raise ArgumentError(
            f"no time is both at or after {iso(low)} and before {iso(high)}; check --year, --since, --until"
        )
    return Selection(tuple(dict.fromkeys(phases or ())), low, high, year)


def year_start(year: int) -> float:
    """1 January of `year`, 00:00 UTC, in epoch seconds."""
    return datetime(year, 1, 1, tzinfo=timezone.utc).timestamp()


def priced_runs(
    paths: Sequence[Path],
    subject: Subject,
    chosen: Selection,
    model: CarbonModel,
    data: CodecarbonData | None,
) -> list[JobCarbon]:
    """The subject's runs over every ledger, priced; raises JobNotFound when there are none."""
    readers = [LedgerReader(Path(p).absolute()) for p in paths]
    try:
        found = [(reader, job) for reader in readers for job in reader.jobs()]
        if subject.kind == "job":
            one = find_job((job for _, job in found), subject.name)
            found = [(reader, job) for reader, job in found if job is one]
        else:
            found = [(reader, job) for reader, job in found if job.info.model == subject.name]
            if not found:
                raise JobNotFound(
                    f"no job of model {subject.name!r} in the ledger; "
                    "`greenai jobs --json` shows each job's model"
                )
            found = [(reader, job) for reader, job in found if chosen.keeps(job)]
            if not found:
                raise JobNotFound(f"no run of model {subject.name!r} matches the filters: {chosen.words()}")
        return [job_carbon(job, reader.job_hours(job), model, data) for reader, job in found]
    finally:
        for reader in readers:
            reader.close()


def embodied_covers(runs: Sequence[JobCarbon]) -> bool:
    """Whether any `carbon.embodied` item covers a node the runs used."""
    return any(r.embodied_configured for r in runs)
