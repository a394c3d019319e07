"""The ledger's read side: job summaries, filters, the hourly balance, and a read-only reader.

Totals: `platform` (RAPL psys) contains the CPU package and DRAM, so it is reported on its own and not
added to a job's total; every other component is.

Readers (`open_readonly`, the CLI, the agent's HTTP API through `Ledger.live_jobs`) see one consistent
snapshot and never block the writer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from agent.ledger.pending import JobState, Pending, add_all, add_counts, merge_info, new_run
from agent.ledger.provenance import Tally
from agent.ledger.schema import (
    READERS_HINT,
    SCHEMA_VERSION,
    AmbiguousJob,
    JobNotFound,
    LedgerError,
    LedgerMissing,
    open_problem,
    schema_version,
)
from agent.units import HOUR_SECONDS, JOULES_PER_KWH
from collectors.base import NOT_IN_TOTAL
from collectors.workloads import JobInfo, JobKey

T = TypeVar("T")

SCHEDULER_ALIASES = {"k8s": "kubernetes"}


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC to the second, e.g. 2024-05-01T13:00:00Z."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobSummary:
    """One job's record on one node: metadata, joules by (component, source), CPU and GPU seconds."""

    scheduler: str
    job_id: str
    node: str
    info: JobInfo
    start: float
    end: float | None
    last_seen: float
    energy_j: Mapping[tuple[str, str], float]
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    tokens: int | None = None
    samples: int | None = None
    """Useful work reported for the job (`greenai annotate`); None when none was."""
    run: int = 1
    """1 for the first job with this id on this node; 2, 3 ... when the id was used again later."""
    origin: str = "agent"
    """`agent` for the agent's own jobs; for an imported run, the importer's identity of it."""
    method: str = ""
    """For an imported run: how the other tool obtained the energy, as its file says."""
    uncertainty_pct: float | None = None
    """For an imported run: its stated accuracy, percent; None unknown."""

    @property
    def key(self) -> JobKey:
        return JobKey(self.scheduler, self.job_id)

    @property
    def ref(self) -> str:
        """How the CLI names this job: `slurm:4242`, or `slurm:4242#2` for a later run of the id."""
        return str(self.key) if self.run == 1 else f"{self.key}#{self.run}"

    @property
    def imported(self) -> bool:
        return self.origin != "agent"

    def provenance(self) -> Tally:
        """The job's energy by kind (measured, estimated, imported) with its range."""
        return tally_joules(self.by_source(), self.uncertainty_pct, self.method)

    @property
    def running(self) -> bool:
        return self.end is None

    @property
    def duration_seconds(self) -> float:
        """Start to end, or to the last sighting while it runs."""
        return max(0.0, (self.end if self.end is not None else self.last_seen) - self.start)

    def by_component(self) -> dict[str, float]:
        """Joules per component, cpu, dram and gpu always present, plus `total` (without platform)."""
        out = {"cpu": 0.0, "dram": 0.0, "gpu": 0.0}
        for (component, _source), joules in self.energy_j.items():
            out[component] = out.get(component, 0.0) + joules
        out["total"] = sum(j for c, j in out.items() if c not in NOT_IN_TOTAL)
        return out

    def by_source(self) -> dict[str, float]:
        """Joules per source over the components in the total."""
        out: dict[str, float] = {}
        for (component, source), joules in sorted(self.energy_j.items()):
            if component not in NOT_IN_TOTAL:
                out[source] = out.get(source, 0.0) + joules
        return out

    @property
    def total_j(self) -> float:
        return self.by_component()["total"]

    @property
    def estimated_share(self) -> float:
        total = self.total_j
        return self.by_source().get("estimate", 0.0) / total if total > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the CLI and the HTTP API; times are ISO 8601 UTC, energy in joules and kWh."""
        energy = self.by_component()
        provenance = self.provenance()
        return {
            "scheduler": self.scheduler,
            "job_id": self.job_id,
            "run": self.run,
            "ref": self.ref,
            "node": self.node,
            "user": self.info.user,
            "uid": self.info.uid,
            "name": self.info.name,
            "account": self.info.account,
            "partition": self.info.partition,
            "start": iso(self.start),
            "end": iso(self.end),
            "last_seen": iso(self.last_seen),
            "running": self.running,
            "duration_seconds": self.duration_seconds,
            "energy_joules": energy,
            "energy_kwh": energy["total"] / JOULES_PER_KWH,
            "gpu_hours": self.gpu_seconds / HOUR_SECONDS,
            "cpu_hours": self.cpu_seconds / HOUR_SECONDS,
            "sources": self.by_source(),
            "estimated_share": self.estimated_share,
            "project": self.info.project or None,
            "phase": self.info.phase or None,
            "model": self.info.model or None,
            "tokens": self.tokens,
            "samples": self.samples,
            "kwh_per_million_tokens": self.kwh_per(self.tokens, 1e6),
            "kwh_per_sample": self.kwh_per(self.samples, 1),
            "hardware": {
                "gpu_model": self.info.gpu_model or None,
                "gpu_count": self.info.gpu_count,
                "cpu_model": self.info.cpu_model or None,
            },
            "origin": self.origin,
            "provenance": provenance.as_dict(),
            "energy_kwh_range": provenance.range_dict(),
        }

    def kwh_per(self, count: int | None, unit: float) -> float | None:
        """kWh per `unit` of `count` (tokens, samples); None when the count is unknown or zero."""
        if not count:
            return None
        return self.total_j / JOULES_PER_KWH / (count / unit)


@dataclass(frozen=True)
class Filter:
    """Which jobs to list: overlapping `since` (epoch seconds), of `user`, running or finished."""

    since: float | None = None
    user: str | None = None
    running: bool | None = None

    def keeps(self, s: JobSummary) -> bool:
        if self.since is not None and s.end is not None and s.end < self.since:
            return False
        if self.user is not None and s.info.user != self.user:
            return False
        return self.running is None or s.running == self.running

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["1"]
        params: list[Any] = []
        if self.since is not None:
            clauses.append('("end" IS NULL OR "end" >= ?)')
            params.append(self.since)
        if self.user is not None:
            clauses.append("user = ?")
            params.append(self.user)
        if self.running is not None:
            clauses.append('"end" IS NULL' if self.running else '"end" IS NOT NULL')
        return " AND ".join(clauses), params


def tally_joules(by_source_j: Mapping[str, float], uncertainty_pct: float | None, method: str) -> Tally:
    out = Tally()
    out.add_joules(by_source_j, uncertainty_pct, method)
    return out


_JOB_COLUMNS = (
    'id, scheduler, job_id, node, user, uid, name, account, "partition", start, "end", last_seen, '
    "project, phase, model, tokens, samples, run, gpu_model, gpu_count, cpu_model, origin, method, "
    "uncertainty_pct"
)
JobIdent = tuple[str, str, str, int]
"""(scheduler, job_id, node, run)."""


def query_jobs(
    conn: sqlite3.Connection, where: Filter, pending: Pending | None = None, pending_node: str = ""
) -> list[JobSummary]:
    """The jobs matching `where`, with `pending` (of node `pending_node`) added, ordered by start."""
    sql_filter = Filter() if pending else where  # pending news can change whether a job matches
    clause, params = sql_filter.where()
    conn.execute("BEGIN")
    try:
        rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {clause}", params).fetchall()
        energy = conn.execute(
            f"SELECT job, component, source, SUM(joules) FROM energy WHERE job IN "
            f"(SELECT id FROM jobs WHERE {clause}) GROUP BY job, component, source",
            params,
        ).fetchall()
        usage = conn.execute(
            f"SELECT job, SUM(cpu_seconds), SUM(gpu_seconds) FROM usage WHERE job IN "
            f"(SELECT id FROM jobs WHERE {clause}) GROUP BY job",
            params,
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    joules: dict[int, dict[tuple[str, str], float]] = {}
    for job, component, source, total in energy:
        joules.setdefault(job, {})[(component, source)] = total
    seconds = {job: (cpu, gpu) for job, cpu, gpu in usage}
    out: dict[JobIdent, JobSummary] = {}
    for row in rows:
        (rid, scheduler, job_id, node, user, uid, name, account, partition, start, end, last_seen) = row[:12]
        project, phase, model, tokens, samples, run, gpu_model, gpu_count, cpu_model = row[12:21]
        origin, method, uncertainty_pct = row[21:]
        cpu, gpu = seconds.get(rid, (0.0, 0.0))
        info = JobInfo(
            user, uid, name, account, partition, project, phase, model, gpu_model, gpu_count, cpu_model
        )
        out[(scheduler, job_id, node, run)] = JobSummary(
            scheduler, job_id, node, info, start, end, last_seen, joules.get(rid, {}), cpu, gpu, tokens,
            samples, run, origin, method, uncertainty_pct,
        )  # fmt: skip
    if pending:
        _add_pending(out, pending, pending_node)
    found = [s for s in out.values() if where.keeps(s)]
    return sorted(found, key=lambda s: (s.start, s.scheduler, s.job_id, s.node))


def latest_runs(out: Mapping[JobIdent, JobSummary]) -> dict[tuple[str, str, str], JobSummary]:
    """The latest run of each (scheduler, job_id, node)."""
    latest: dict[tuple[str, str, str], JobSummary] = {}
    for (scheduler, job_id, node, run), s in out.items():
        old = latest.get((scheduler, job_id, node))
        if old is None or run > old.run:
            latest[(scheduler, job_id, node)] = s
    return latest


def pending_run(latest: tuple[int, float | None] | None, state: JobState) -> int:
    """The run that pending news of a job goes to: the latest stored one (run, end), or the next."""
    if latest is None:
        return 1
    run, end = latest
    return run + 1 if new_run(end, state) else run


def _add_pending(out: dict[JobIdent, JobSummary], pending: Pending, node: str) -> None:
    energy: dict[JobKey, dict[tuple[str, str], float]] = {}
    for (key, _hour, component, source), joules in pending.energy.items():
        per = energy.setdefault(key, {})
        per[(component, source)] = per.get((component, source), 0.0) + joules
    usage: dict[JobKey, tuple[float, float]] = {}
    for (key, _hour), (cpu, gpu) in pending.usage.items():
        cpu_so_far, gpu_so_far = usage.get(key, (0.0, 0.0))
        usage[key] = (cpu_so_far + cpu, gpu_so_far + gpu)
    latest = latest_runs(out)
    for key, state in pending.jobs.items():
        last = latest.get((key.scheduler, key.job_id, node))
        run = pending_run(None if last is None else (last.run, last.end), state)
        ident = (key.scheduler, key.job_id, node, run)
        old = out.get(ident)
        if old is None:
            old = JobSummary(
                key.scheduler, key.job_id, node, JobInfo(), state.start, None, state.last_seen, {}, run=run
            )
        end = old.end if state.ended is None else state.end
        merged_energy = dict(old.energy_j)
        add_all(merged_energy, energy.get(key, {}))
        cpu, gpu = usage.get(key, (0.0, 0.0))
        tokens, samples = pending.useful.get(key, (None, None))
        out[ident] = replace(
            old,
            info=merge_info(old.info, state.info),
            start=min(old.start, state.start),
            end=end,
            last_seen=max(old.last_seen, state.last_seen),
            energy_j=merged_energy,
            cpu_seconds=old.cpu_seconds + cpu,
            gpu_seconds=old.gpu_seconds + gpu,
            tokens=add_counts(old.tokens, tokens),
            samples=add_counts(old.samples, samples),
        )


def find_job(summaries: Iterable[JobSummary], key_or_id: str, node: str | None = None) -> JobSummary:
    """The one job that `4242`, `slurm:4242` or `slurm:4242#2` (run 2 of a reused id) names (on `node`,
    if given). Without `#N`, an id used several times names its latest run."""
    text, run = split_run(key_or_id)
    scheduler, sep, rest = text.partition(":")
    candidates = [s for s in summaries if node is None or s.node == node]
    scheduler = SCHEDULER_ALIASES.get(scheduler, scheduler)
    matches = [s for s in candidates if sep and s.scheduler == scheduler and s.job_id == rest]
    if not matches:  # a bare id, or an id that itself holds a colon
        matches = [s for s in candidates if s.job_id == text]
    if not matches:
        raise JobNotFound(f"no job {key_or_id!r} in the ledger; `greenai jobs` lists the jobs it has")
    if run is not None:
        runs = sorted({s.run for s in matches})
        matches = [s for s in matches if s.run == run]
        if not matches:
            raise JobNotFound(
                f"job {text!r} has no run {run} in the ledger; its runs: {', '.join(map(str, runs))}"
            )
    else:
        latest = latest_runs({(s.scheduler, s.job_id, s.node, s.run): s for s in matches})
        matches = list(latest.values())
    if len(matches) > 1:
        nodes = {s.node for s in matches}
        if len({s.key for s in matches}) == 1:
            raise AmbiguousJob(
                f"job {key_or_id!r} is in the ledger under several node names ({', '.join(sorted(nodes))}); "
                "pick one with --node"
            )
        names = ", ".join(sorted(str(s.key) for s in matches))
        raise AmbiguousJob(f"job id {key_or_id!r} is ambiguous ({names}); use scheduler:id")
    return matches[0]


def split_run(key_or_id: str) -> tuple[str, int | None]:
    """`slurm:4242#2` -> ('slurm:4242', 2); an id without `#N` -> (id, None)."""
    text, sep, number = key_or_id.rpartition("#")
    if sep and number.isdigit() and int(number) >= 1 and text:
        return text, int(number)
    return key_or_id, None


@dataclass(frozen=True)
class JobHours:
    """One job's joules per UTC hour start (epoch s) and (component, source), and the run's own carbon
    figures from an import ('' / None: use the site's)."""

    energy_j: Mapping[int, Mapping[tuple[str, str], float]]
    location: str = ""
    pue: float | None = None
    intensity_g_per_kwh: float | None = None


def query_job_hours(
    conn: sqlite3.Connection, job: JobSummary, pending: Pending | None = None, pending_node: str = ""
) -> JobHours:
    """`job`'s hourly joules (with `pending`, of node `pending_node`, added) and its carbon overrides."""
    ident = (job.scheduler, job.job_id, job.node, job.run)
    own = not conn.in_transaction  # inside a caller's snapshot, its transaction already holds one state
    if own:
        conn.execute("BEGIN")
    try:
        row = conn.execute(
            "SELECT id, location, pue, intensity_g_per_kwh FROM jobs WHERE scheduler = ? AND job_id = ? "
            "AND node = ? AND run = ?",
            ident,
        ).fetchone()
        stored_latest = conn.execute(
            'SELECT run, "end" FROM jobs WHERE scheduler = ? AND job_id = ? AND node = ? ORDER BY run DESC '
            "LIMIT 1",
            ident[:3],
        ).fetchone()
        rows = (
            conn.execute(
                "SELECT hour, component, source, joules FROM energy WHERE job = ?", (row[0],)
            ).fetchall()
            if row
            else []
        )
    finally:
        if own:
            conn.execute("COMMIT")
    hours: dict[int, dict[tuple[str, str], float]] = {}
    for hour, component, source, joules in rows:
        hours.setdefault(hour, {})[(component, source)] = joules
    state = pending.jobs.get(job.key) if pending and job.node == pending_node else None
    if pending and state is not None:
        latest = None if stored_latest is None else (int(stored_latest[0]), stored_latest[1])
        if pending_run(latest, state) == job.run:
            for (key, hour, component, source), joules in pending.energy.items():
                if key == job.key:
                    add_all(hours.setdefault(hour, {}), {(component, source): joules})
    if row is None:
        return JobHours(hours)
    return JobHours(hours, row[1] or "", row[2], row[3])


@dataclass(frozen=True)
class HourBalance:
    """One node's joules in one hour for one component: attributed to jobs, unattributed, measured."""

    node: str
    hour: int
    component: str
    jobs_j: float
    unattributed_j: float
    node_j: float


def query_balance(conn: sqlite3.Connection) -> list[HourBalance]:
    """Per node, hour and component: jobs + unattributed, next to the node's energy (conservation)."""
    rows = conn.execute(
        """
        WITH parts AS (
            SELECT j.node AS node, e.hour AS hour, e.component AS component,
                   e.joules AS jobs_j, 0.0 AS un_j, 0.0 AS node_j
              FROM energy e JOIN jobs j ON j.id = e.job
            UNION ALL SELECT node, hour, component, 0.0, joules, 0.0 FROM unattributed
            UNION ALL SELECT node, hour, component, 0.0, 0.0, joules FROM node_energy)
        SELECT node, hour, component, SUM(jobs_j), SUM(un_j), SUM(node_j)
          FROM parts GROUP BY node, hour, component ORDER BY node, hour, component
        """
    ).fetchall()
    return [HourBalance(*row) for row in rows]


class LedgerReader:
    """A read-only view of a ledger file, for the CLI and reports; works with or without the agent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            os.stat(path)
        except PermissionError:
            raise LedgerError(f"cannot open ledger {path}: permission denied; {READERS_HINT}") from None
        except OSError:
            raise LedgerMissing(
                f"no ledger at {path}; the agent (`greenai agent`) creates it when it first runs, "
                "or pass --ledger PATH"
            ) from None
        try:
            self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
            version = schema_version(self._conn, path)
        except sqlite3.Error as e:
            raise LedgerError(open_problem(path, e)) from None
        if version == 0:
            self._conn.close()
            raise LedgerError(f"ledger {path} is empty; the agent sets it up when it starts")
        if version != SCHEMA_VERSION:
            self._conn.close()
            newer = version > SCHEMA_VERSION
            raise LedgerError(
                f"ledger {path} has schema version {version}, "
                + ("newer than this greenai knows; upgrade greenai" if newer else
                   f"older than this greenai's {SCHEMA_VERSION}; run the agent once to upgrade it")
            )  # fmt: skip

    def jobs(
        self, since: float | None = None, user: str | None = None, running: bool | None = None
    ) -> list[JobSummary]:
        return self._read(lambda: query_jobs(self._conn, Filter(since, user, running)))

    def job(self, key_or_id: str, node: str | None = None) -> JobSummary:
        return find_job(self.jobs(), key_or_id, node)

    def job_hours(self, job: JobSummary) -> JobHours:
        return self._read(lambda: query_job_hours(self._conn, job))

    def balance(self) -> list[HourBalance]:
        return self._read(lambda: query_balance(self._conn))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Queries made inside see one consistent state of the ledger (for reports of many queries)."""
        self._read(lambda: self._conn.execute("BEGIN"))
        try:
            yield
        finally:
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a read-only query, one at a time (reports aggregate large ledgers in SQL)."""
        try:
            yield from self._conn.execute(sql, params)
        except sqlite3.Error as e:
            raise LedgerError(open_problem(self.path, e)) from None

    def _read(self, query: Callable[[], T]) -> T:
        try:
            return query()
        except sqlite3.Error as e:
            raise LedgerError(open_problem(self.path, e)) from None

    def close(self) -> None:
        self._conn.close()


def open_readonly(path: Path) -> LedgerReader:
    """Open a ledger for reading; raises LedgerError (one line) when it cannot."""
    return LedgerReader(Path(path))
