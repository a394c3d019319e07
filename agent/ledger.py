"""The durable per-job energy ledger: joules per job x UTC hour x component x source, in SQLite (WAL).

The sampling loop calls `Ledger.record()` every interval; that only adds to sums in memory. A writer
thread writes them every `flush_seconds` in one transaction that adds to the stored sums (UPSERT
`joules = joules + excluded.joules`). A failed write (disk full, database locked, read-only file, I/O
error) keeps the sums in memory, merged with newer ones, and is retried at the next flush: only what
was committed is cleared, so nothing is lost or counted twice. After `kill -9` at most the unflushed
window is lost.

Hour bucketing: an interval is booked whole to the UTC hour its end falls in, hours being (h, h+3600]
(an interval ending exactly at 14:00:00 belongs to 13:00). With a 1 s sampling interval that misplaces
at most one interval's energy per hour boundary, and jobs, unattributed and node energy alike, so the
per-hour balance jobs + unattributed = node still holds.

Totals: `platform` (RAPL psys) contains the CPU package and DRAM, so it is reported on its own and not
added to a job's total; every other component is.

Readers (`open_readonly`, the CLI, the agent's HTTP API through `Ledger.live_jobs`) see one consistent
snapshot and never block the writer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from collectors.workloads import SCHEDULERS, JobInfo, JobKey

log = logging.getLogger("greenai.ledger")
T = TypeVar("T")

HOUR_SECONDS = 3600
JOULES_PER_KWH = 3.6e6
NOT_IN_TOTAL = frozenset({"platform"})
"""Components that overlap others (psys includes package and dram), so a total would count them twice."""
FILE_MODE = 0o600
SCHEDULER_ALIASES = {"k8s": "kubernetes"}

# Each migration is the list of statements that takes the schema from version i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            scheduler TEXT NOT NULL, job_id TEXT NOT NULL, node TEXT NOT NULL,
            user TEXT NOT NULL DEFAULT '', uid INTEGER, name TEXT NOT NULL DEFAULT '',
            account TEXT NOT NULL DEFAULT '', "partition" TEXT NOT NULL DEFAULT '',
            start REAL NOT NULL, "end" REAL, last_seen REAL NOT NULL,
            UNIQUE (scheduler, job_id, node))""",
        """CREATE TABLE energy (
            job INTEGER NOT NULL REFERENCES jobs (id), hour INTEGER NOT NULL,
            component TEXT NOT NULL, source TEXT NOT NULL, joules REAL NOT NULL,
            PRIMARY KEY (job, hour, component, source)) WITHOUT ROWID""",
        """CREATE TABLE usage (
            job INTEGER NOT NULL REFERENCES jobs (id), hour INTEGER NOT NULL,
            cpu_seconds REAL NOT NULL DEFAULT 0, gpu_seconds REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (job, hour)) WITHOUT ROWID""",
        """CREATE TABLE node_energy (
            node TEXT NOT NULL, hour INTEGER NOT NULL, component TEXT NOT NULL, source TEXT NOT NULL,
            joules REAL NOT NULL, PRIMARY KEY (node, hour, component, source)) WITHOUT ROWID""",
        """CREATE TABLE unattributed (
            node TEXT NOT NULL, hour INTEGER NOT NULL, component TEXT NOT NULL, source TEXT NOT NULL,
            joules REAL NOT NULL, PRIMARY KEY (node, hour, component, source)) WITHOUT ROWID""",
    ),
    # v2: indexes for the CLI's filters (--running, --since, --user).
    (
        'CREATE INDEX jobs_by_end ON jobs ("end")',
        "CREATE INDEX jobs_by_user ON jobs (user)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class LedgerError(Exception):
    """The ledger cannot be opened or read; the message is one line for the user."""


class LedgerMissing(LedgerError):
    """There is no ledger file yet."""


class JobNotFound(LedgerError):
    """No job in the ledger matches the id."""


class AmbiguousJob(LedgerError):
    """Several jobs match a bare id; the message lists them."""


def hour_of(t: float) -> int:
    """The UTC hour (epoch seconds of its start) that an interval ending at `t` is booked to."""
    return (math.ceil(t / HOUR_SECONDS) - 1) * HOUR_SECONDS


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC to the second, e.g. 2024-05-01T13:00:00Z."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def storable(text: str) -> str:
    """Text SQLite can hold: bytes that were not UTF-8 (lone surrogates) become `\\xNN`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


# ---- what is pending in memory --------------------------------------------------------------------


@dataclass
class JobState:
    """A job's metadata as last reported; `ended` is None (unchanged), False (running) or True."""

    info: JobInfo
    start: float
    last_seen: float
    ended: bool | None = None
    end: float | None = None

    def absorb(self, newer: JobState) -> None:
        """Take a later report's news, keeping the earliest start and the latest sighting."""
        self.info = _merge_info(self.info, newer.info)
        self.start = min(self.start, newer.start)
        self.last_seen = max(self.last_seen, newer.last_seen)
        if newer.ended is not None:
            self.ended, self.end = newer.ended, newer.end


def _merge_info(old: JobInfo, new: JobInfo) -> JobInfo:
    return JobInfo(
        user=new.user or old.user,
        uid=new.uid if new.uid is not None else old.uid,
        name=new.name or old.name,
        account=new.account or old.account,
        partition=new.partition or old.partition,
    )


EnergyKey = tuple[JobKey, int, str, str]
NodeKey = tuple[int, str, str]


@dataclass
class Pending:
    """Sums not yet committed: joules per (job, hour, component, source), usage, node side, metadata."""

    jobs: dict[JobKey, JobState] = field(default_factory=dict)
    energy: dict[EnergyKey, float] = field(default_factory=dict)
    usage: dict[tuple[JobKey, int], tuple[float, float]] = field(default_factory=dict)
    """(job, hour) -> (cpu_seconds, gpu_seconds)."""
    node: dict[NodeKey, float] = field(default_factory=dict)
    unattributed: dict[NodeKey, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.energy) + len(self.usage) + len(self.node) + len(self.unattributed)

    def __bool__(self) -> bool:
        return bool(self.jobs) or self.rows > 0

    def absorb(self, newer: Pending) -> None:
        """Add a later batch to this one."""
        for key, state in newer.jobs.items():
            if key in self.jobs:
                self.jobs[key].absorb(state)
            else:
                self.jobs[key] = replace(state)
        for target, source in (
            (self.energy, newer.energy),
            (self.node, newer.node),
            (self.unattributed, newer.unattributed),
        ):
            _add_all(target, source)
        for ukey, (cpu, gpu) in newer.usage.items():
            old_cpu, old_gpu = self.usage.get(ukey, (0.0, 0.0))
            self.usage[ukey] = (old_cpu + cpu, old_gpu + gpu)

    def copy(self) -> Pending:
        out = Pending()
        out.absorb(self)
        return out


def _add_all(target: dict[Any, float], source: Mapping[Any, float]) -> None:
    for key, value in source.items():
        target[key] = target.get(key, 0.0) + value


# ---- reading ---------------------------------------------------------------------------------------


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

    @property
    def key(self) -> JobKey:
        return JobKey(self.scheduler, self.job_id)

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
        return {
            "scheduler": self.scheduler,
            "job_id": self.job_id,
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
        }


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


_JOB_COLUMNS = 'id, scheduler, job_id, node, user, uid, name, account, "partition", start, "end", last_seen'


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
    out: dict[tuple[str, str, str], JobSummary] = {}
    for row in rows:
        (rid, scheduler, job_id, node, user, uid, name, account, partition, start, end, last_seen) = row
        cpu, gpu = seconds.get(rid, (0.0, 0.0))
        out[(scheduler, job_id, node)] = JobSummary(
            scheduler, job_id, node, JobInfo(user, uid, name, account, partition),
            start, end, last_seen, joules.get(rid, {}), cpu, gpu,
        )  # fmt: skip
    if pending:
        _add_pending(out, pending, pending_node)
    found = [s for s in out.values() if where.keeps(s)]
    return sorted(found, key=lambda s: (s.start, s.scheduler, s.job_id, s.node))


def _add_pending(out: dict[tuple[str, str, str], JobSummary], pending: Pending, node: str) -> None:
    energy: dict[JobKey, dict[tuple[str, str], float]] = {}
    for (key, _hour, component, source), joules in pending.energy.items():
        per = energy.setdefault(key, {})
        per[(component, source)] = per.get((component, source), 0.0) + joules
    usage: dict[JobKey, tuple[float, float]] = {}
    for (key, _hour), (cpu, gpu) in pending.usage.items():
        cpu_so_far, gpu_so_far = usage.get(key, (0.0, 0.0))
        usage[key] = (cpu_so_far + cpu, gpu_so_far + gpu)
    for key, state in pending.jobs.items():
        ident = (key.scheduler, key.job_id, node)
        old = out.get(ident)
        if old is None:
            old = JobSummary(
                key.scheduler, key.job_id, node, JobInfo(), state.start, None, state.last_seen, {}
            )
        end = old.end if state.ended is None else state.end
        merged_energy = dict(old.energy_j)
        _add_all(merged_energy, energy.get(key, {}))
        cpu, gpu = usage.get(key, (0.0, 0.0))
        out[ident] = replace(
            old,
            info=_merge_info(old.info, state.info),
            start=min(old.start, state.start),
            end=end,
            last_seen=max(old.last_seen, state.last_seen),
            energy_j=merged_energy,
            cpu_seconds=old.cpu_seconds + cpu,
            gpu_seconds=old.gpu_seconds + gpu,
        )


def find_job(summaries: Iterable[JobSummary], key_or_id: str, node: str | None = None) -> JobSummary:
    """The one job that `4242` or `slurm:4242` names (on `node`, if given)."""
    scheduler, sep, rest = key_or_id.partition(":")
    candidates = [s for s in summaries if node is None or s.node == node]
    scheduler = SCHEDULER_ALIASES.get(scheduler, scheduler)
    if sep and scheduler in SCHEDULERS:
        matches = [s for s in candidates if s.scheduler == scheduler and s.job_id == rest]
    else:
        matches = [s for s in candidates if s.job_id == key_or_id]
    if not matches:
        raise JobNotFound(f"no job {key_or_id!r} in the ledger; `greenai jobs` lists the jobs it has")
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
            raise LedgerError(f"cannot open ledger {path}: permission denied; {_READERS}") from None
        except OSError:
            raise LedgerMissing(
                f"no ledger at {path}; the agent (`greenai agent`) creates it when it first runs, "
                "or pass --ledger PATH"
            ) from None
        try:
            self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
            version = _schema_version(self._conn, path)
        except sqlite3.Error as e:
            raise LedgerError(_open_problem(path, e)) from None
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

    def balance(self) -> list[HourBalance]:
        return self._read(lambda: query_balance(self._conn))

    def _read(self, query: Callable[[], T]) -> T:
        try:
            return query()
        except sqlite3.Error as e:
            raise LedgerError(_open_problem(self.path, e)) from None

    def close(self) -> None:
        self._conn.close()


def open_readonly(path: Path) -> LedgerReader:
    """Open a ledger for reading; raises LedgerError (one line) when it cannot."""
    return LedgerReader(Path(path))


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise LedgerError(
            f"{path} is an SQLite database but not a greenai ledger; point ledger.path elsewhere"
        )
    return version


_READERS = "the ledger is for the agent's user only: run this as that user or root"


def _open_problem(path: Path, e: sqlite3.Error) -> str:
    reason = error_reason(e)
    if reason == "corrupt":
        return f"{path} is not a readable SQLite ledger ({e}); move it aside or point ledger.path elsewhere"
    if reason in ("read_only", "cannot_open"):
        return f"cannot open ledger {path}: {e}; {_READERS}"
    return f"cannot read ledger {path}: {e}"


def error_reason(e: BaseException) -> str:
    """A short label for why a database operation failed, for errors_total{reason=...}."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text or "database or disk is full" in text:
        return "disk_full"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "locked"
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return "read_only"
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in text or isinstance(e, OSError):
        return "io_error"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "not a database" in text:
        return "corrupt"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return "cannot_open"
    return "other"


# ---- writing ---------------------------------------------------------------------------------------

_UPSERT_JOB = """
INSERT INTO jobs (scheduler, job_id, node, user, uid, name, account, "partition", start, "end", last_seen)
VALUES (:scheduler, :job_id, :node, :user, :uid, :name, :account, :partition, :start, :end, :last_seen)
ON CONFLICT (scheduler, job_id, node) DO UPDATE SET
    user = CASE WHEN excluded.user != '' THEN excluded.user ELSE user END,
    uid = COALESCE(excluded.uid, uid),
    name = CASE WHEN excluded.name != '' THEN excluded.name ELSE name END,
    account = CASE WHEN excluded.account != '' THEN excluded.account ELSE account END,
    "partition" = CASE WHEN excluded."partition" != '' THEN excluded."partition" ELSE "partition" END,
    start = MIN(start, excluded.start),
    "end" = CASE :ended WHEN 1 THEN excluded."end" WHEN 0 THEN NULL ELSE "end" END,
    last_seen = MAX(last_seen, excluded.last_seen)
RETURNING id
"""
_UPSERT_ENERGY = """
INSERT INTO energy (job, hour, component, source, joules) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (job, hour, component, source) DO UPDATE SET joules = joules + excluded.joules
"""
_UPSERT_USAGE = """
INSERT INTO usage (job, hour, cpu_seconds, gpu_seconds) VALUES (?, ?, ?, ?)
ON CONFLICT (job, hour) DO UPDATE SET
    cpu_seconds = cpu_seconds + excluded.cpu_seconds, gpu_seconds = gpu_seconds + excluded.gpu_seconds
"""
_UPSERT_NODE = """
INSERT INTO {table} (node, hour, component, source, joules) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (node, hour, component, source) DO UPDATE SET joules = joules + excluded.joules
"""

Energy = Mapping[tuple[str, str], float]
"""(component, source) -> joules of one interval."""


class Ledger:
    """The agent's writer: `record()` adds in memory and never touches the database; a thread flushes.

    `background=False` leaves flushing to whoever calls `flush()` (tests, one-shot tools).
    """

    def __init__(
        self,
        path: Path,
        node: str,
        clock: Callable[[], float] = time.time,
        flush_seconds: float = 5.0,
        *,
        busy_timeout_s: float = 0.5,
        background: bool = True,
    ) -> None:
        self.path = Path(path)
        self.node = node
        self._clock = clock
        self._flush_seconds = flush_seconds
        self._conn = _open_for_writing(self.path, busy_timeout_s)
        self._lock = threading.Lock()  # guards _pending and the counters; held only for dict work
        self._flush_lock = threading.Lock()  # one flush at a time; live readers wait for a flush to end
        self._pending = Pending()
        self._errors: dict[str, int] = {}
        self.last_flush_ok = True
        self.last_error = ""
        self._failing = ""
        self.last_flush_at: float | None = None
        """Wall-clock time of the last flush that committed."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="greenai-ledger", daemon=True)
            self._thread.start()

    # -- the sampling loop's side: memory only --

    def record(
        self,
        interval_end: float,
        jobs: Mapping[JobKey, tuple[JobInfo, Energy]],
        unattributed: Energy,
        node: Energy,
        gpu_seconds: Mapping[JobKey, float] | None = None,
        cpu_seconds: Mapping[JobKey, float] | None = None,
    ) -> None:
        """Add one interval's joules (per job, unattributed, whole node) and usage seconds to the sums."""
        hour = hour_of(interval_end)
        with self._lock:
            p = self._pending
            for key, (info, energy) in jobs.items():
                self._note_job(key, info, interval_end, None)
                for (component, source), joules in energy.items():
                    if self._valid(joules):
                        ekey = (key, hour, component, source)
                        p.energy[ekey] = p.energy.get(ekey, 0.0) + joules
            for table, energy in ((p.unattributed, unattributed), (p.node, node)):
                for (component, source), joules in energy.items():
                    if self._valid(joules):
                        table[(hour, component, source)] = table.get((hour, component, source), 0.0) + joules
            for index, seconds in ((0, cpu_seconds or {}), (1, gpu_seconds or {})):
                for key, value in seconds.items():
                    if self._valid(value):
                        if key not in jobs:  # noted above already
                            self._note_job(key, JobInfo(), interval_end, None)
                        pair = list(p.usage.get((key, hour), (0.0, 0.0)))
                        pair[index] += value
                        p.usage[(key, hour)] = (pair[0], pair[1])

    def job_seen(self, key: JobKey, info: JobInfo, t: float) -> None:
        """The job runs at `t`: create its record, refresh metadata and last_seen, clear any end."""
        with self._lock:
            self._note_job(key, info, t, False)

    def job_ended(self, key: JobKey, t: float) -> None:
        """The job ended at `t`."""
        with self._lock:
            self._note_job(key, JobInfo(), t, True)

    def _note_job(self, key: JobKey, info: JobInfo, t: float, ended: bool | None) -> None:
        news = JobState(info, start=t, last_seen=t, ended=ended, end=t if ended else None)
        state = self._pending.jobs.get(key)
        if state is None:
            self._pending.jobs[key] = news
        else:
            state.absorb(news)

    def _valid(self, value: float) -> bool:
        """Keep NaN and infinities out of the sums, where they would stick forever (caller holds _lock)."""
        if math.isfinite(value):
            return True
        self._errors["invalid_value"] = self._errors.get("invalid_value", 0) + 1
        if self._errors["invalid_value"] == 1:
            log.warning(
                "ledger %s: ignored a non-finite figure (%r); attribution has a bug", self.path, value
            )
        return False

    # -- the writer's side --

    def flush(self) -> bool:
        """Write the pending sums in one transaction; on failure keep them for the next try."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, Pending()
            if not batch:
                return self.last_flush_ok
            try:
                self._write(batch)
            except Exception as e:  # any failure must keep the sums, and the thread alive
                with self._lock:
                    batch.absorb(self._pending)
                    self._pending = batch
                    self._failed(error_reason(e), f"{type(e).__name__}: {e}")
                return False
            with self._lock:
                if not self.last_flush_ok:
                    log.info("ledger %s: writing again; the pending sums are stored", self.path)
                self.last_flush_ok = True
                self.last_flush_at = self._clock()
            return True

    def _write(self, batch: Pending) -> None:
        conn = self._conn
        if conn.in_transaction:  # a ROLLBACK that failed last time
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = {key: self._upsert_job(key, state) for key, state in batch.jobs.items()}
            conn.executemany(
                _UPSERT_ENERGY, [(ids[k], h, c, s, j) for (k, h, c, s), j in batch.energy.items()]
            )
            conn.executemany(
                _UPSERT_USAGE, [(ids[k], h, cpu, gpu) for (k, h), (cpu, gpu) in batch.usage.items()]
            )
            for table, sums in (("node_energy", batch.node), ("unattributed", batch.unattributed)):
                conn.executemany(
                    _UPSERT_NODE.format(table=table),
                    [(self.node, h, c, s, j) for (h, c, s), j in sums.items()],
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _upsert_job(self, key: JobKey, state: JobState) -> int:
        row = self._conn.execute(
            _UPSERT_JOB,
            {
                "scheduler": storable(key.scheduler),
                "job_id": storable(key.job_id),
                "node": storable(self.node),
                "user": storable(state.info.user),
                "uid": state.info.uid,
                "name": storable(state.info.name),
                "account": storable(state.info.account),
                "partition": storable(state.info.partition),
                "start": state.start,
                "end": state.end,
                "last_seen": state.last_seen,
                "ended": None if state.ended is None else int(state.ended),
            },
        ).fetchone()
        return int(row[0])

    def _failed(self, reason: str, message: str) -> None:
        """Count a failed flush (caller holds _lock); log when the state changes, not on every retry."""
        self._errors[reason] = self._errors.get(reason, 0) + 1
        if self.last_flush_ok or reason != self._failing:
            log.warning(
                "ledger %s: cannot write (%s): %s; keeping %d rows in memory, retrying every %gs",
                self.path, reason, message, self._pending.rows, self._flush_seconds,
            )  # fmt: skip
        self.last_flush_ok = False
        self._failing = reason
        self.last_error = f"{reason}: {message}"

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()
        self.flush()

    # -- what /metrics and the HTTP API read --

    @property
    def errors(self) -> Mapping[str, int]:
        """Failed flushes by reason (disk_full, locked, read_only, io_error, corrupt, other), and
        invalid_value: non-finite figures ignored."""
        with self._lock:
            return dict(self._errors)

    @property
    def pending_rows(self) -> int:
        with self._lock:
            return self._pending.rows

    def live_jobs(
        self, since: float | None = None, user: str | None = None, running: bool | None = None
    ) -> list[JobSummary]:
        """Like LedgerReader.jobs, with the sums not yet written added: the figures as of now."""
        with self._flush_lock:
            with self._lock:
                pending = self._pending.copy()
            return query_jobs(self._conn, Filter(since, user, running), pending, self.node)

    def live_job(self, key_or_id: str) -> JobSummary:
        return find_job(self.live_jobs(), key_or_id)

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush once more and stop the thread, waiting at most about `timeout_s`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("ledger %s: the last write did not finish in %gs; giving up", self.path, timeout_s)
                return
        else:
            self.flush()
        if self._pending:
            log.error(
                "ledger %s: %d rows could not be written: %s", self.path, self.pending_rows, self.last_error
            )
        with self._flush_lock:
            self._conn.close()


def _open_for_writing(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Create (0600, parent 0700) or open the ledger, switch it to WAL and bring its schema up to date."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # SQLite gives -wal and -shm the main file's mode, so creating that 0600 covers all three.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        _tighten(path)
    except OSError as e:
        raise LedgerError(f"cannot create ledger {path}: {e.strerror or e}; check ledger.path") from None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn, path)
    except sqlite3.Error as e:
        raise LedgerError(_open_problem(path, e)) from None
    for suffix in ("-wal", "-shm"):
        _tighten(path.with_name(path.name + suffix))
    return conn


def _tighten(path: Path) -> None:
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        pass


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations this file lacks, all in one transaction."""
    if _schema_version(conn, path) == SCHEMA_VERSION:
        return  # nothing to do, and no write lock needed to find that out
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(conn, path)
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {path} has schema version {version}, newer than this greenai knows "
                f"({SCHEMA_VERSION}); upgrade greenai or point ledger.path at another file"
            )
        for steps in MIGRATIONS[version:]:
            for statement in steps:
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            log.info("ledger %s: schema upgraded from version %d to %d", path, version, SCHEMA_VERSION)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
