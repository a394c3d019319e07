"""The ledger's read side: the queries behind job summaries (`summary`), filters, the hourly
balance, and a read-only reader.

Readers (`open_readonly`, the CLI, the agent's HTTP API through `Ledger.live_jobs`) see one consistent
snapshot and never block the writer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from agent.ledger.pending import JobState, Pending, add_all, add_counts, merge_info, new_run
from agent.ledger.schema import (
    READERS_HINT,
    SCHEMA_VERSION,
    LedgerError,
    LedgerMissing,
    error_reason,
    open_problem,
    schema_version,
)
from agent.ledger.summary import JobIdent, JobSummary, find_job, latest_runs
from collectors.workloads import JobInfo, JobKey

T = TypeVar("T")


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


_JOB_COLUMNS = (
    'id, scheduler, job_id, node, user, uid, name, account, "partition", start, "end", last_seen, '
    "project, phase, model, tokens, samples, run, gpu_model, gpu_count, cpu_model, origin, method, "
    "uncertainty_pct"
)


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
        self._conn, version = connect_readonly(path)
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
            if self._conn.in_transaction:  # a read: ending it cannot lose anything, so never raises
                with contextlib.suppress(sqlite3.Error):
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


def connect_readonly(path: Path) -> tuple[sqlite3.Connection, int]:
    """A read-only connection to the ledger at `path`, and its schema version; raises LedgerError.

    A WAL database is read through its -shm file, which SQLite creates when missing: on a read-only
    file system that fails. With no write-ahead log to read (the agent stopped cleanly, or none was
    ever left), the file alone is the ledger and opens as immutable; otherwise the user is told why.
    """
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        return conn, schema_version(conn, path)
    except sqlite3.Error as e:
        if error_reason(e) not in ("read_only", "cannot_open") or not on_read_only_fs(path):
            raise LedgerError(open_problem(path, e)) from None
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    if _size(wal) and not shm.exists():
        raise LedgerError(
            f"cannot read ledger {path}: it is on a read-only file system and SQLite needs to create "
            f"{shm.name} to read its write-ahead log ({wal.name}); mount it read-write, or stop the agent "
            "(which folds the log into the file) before reading it read-only"
        )
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
        return conn, schema_version(conn, path)
    except sqlite3.Error as e:
        raise LedgerError(open_problem(path, e)) from None


def on_read_only_fs(path: Path) -> bool:
    """Whether `path`'s folder is on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def open_readonly(path: Path) -> LedgerReader:
    """Open a ledger for reading; raises LedgerError (one line) when it cannot."""
    return LedgerReader(Path(path))
