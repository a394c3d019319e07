"""The ledger file's format and failures: schema migrations, the hour unit, the errors it raises.

Shared by the writer (`writer`), the read side (`read`), `files`, `annotate` and `imports`.

Version 3 adds to `jobs`:
- `project`, `phase`, `model`: what the work was ('' when unknown; agent.live.work).
- `tokens`, `samples`: useful work reported with `greenai annotate` or the HTTP API; NULL until
  some is reported, so that "unknown" and "zero" differ.
- For runs imported from other tools rather than measured here: `origin` ('agent' for the agent's
  own jobs; for an import, the importer's identity of the run, naming its source, so that importing
  the same file again finds the runs it stored and changes nothing), `location` (where the energy
  was used, e.g. an ISO 3166 alpha-3 code or a cloud region; '' means the site's configured one),
  `pue` and `intensity_g_per_kwh` (the run's own figures, overriding the site's; NULL: none given).
  An import books its IT energy in `energy` and its GPU-hours in `usage`, as measured jobs are.

Version 4 adds `jobs.digest`: for an imported run, the hash of what the file said about it
(`ImportedRun.digest`), so that a re-import can tell an unchanged run from an edited one; NULL for
the agent's own jobs (agent.ledger.imports).

Version 5 rebuilds `jobs` (same ids, so `energy` and `usage` still point at them) with:
- `run`: a job id seen again after its record ended (slurmctld state reset, ids reused) is a new job,
  run 2, 3 ...; the unique key is (scheduler, job_id, node, run). `slurm:4242#2` names run 2.
- `gpu_model`, `gpu_count`, `cpu_model`: the hardware the job ran on ('' / NULL: unknown); the GPU
  count is the most GPUs it used at once.
- For imports: `method` (how the other tool obtained the energy, as its file says; '' unknown) and
  `uncertainty_pct` (its stated relative accuracy; NULL unknown). agent.ledger.provenance.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_V4_COLUMNS = (
    'id, scheduler, job_id, node, user, uid, name, account, "partition", start, "end", last_seen, '
    "project, phase, model, tokens, samples, origin, location, pue, intensity_g_per_kwh, digest"
)

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
    # v3: what the work was, useful work, and what imported runs need (see the module docstring).
    (
        "ALTER TABLE jobs ADD COLUMN project TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN model TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN tokens INTEGER",
        "ALTER TABLE jobs ADD COLUMN samples INTEGER",
        "ALTER TABLE jobs ADD COLUMN origin TEXT NOT NULL DEFAULT 'agent'",
        "ALTER TABLE jobs ADD COLUMN location TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN pue REAL",
        "ALTER TABLE jobs ADD COLUMN intensity_g_per_kwh REAL",
        "CREATE INDEX jobs_by_origin ON jobs (origin)",
    ),
    # v4: the imported run's content hash (see the module docstring).
    ("ALTER TABLE jobs ADD COLUMN digest TEXT",),
    # v5: runs of a reused id, hardware, imports' method and accuracy (see the module docstring).
    # The table is rebuilt to change its unique key; foreign keys are off while files._migrate runs.
    (
        """CREATE TABLE jobs_v5 (
            id INTEGER PRIMARY KEY,
            scheduler TEXT NOT NULL, job_id TEXT NOT NULL, node TEXT NOT NULL,
            run INTEGER NOT NULL DEFAULT 1,
            user TEXT NOT NULL DEFAULT '', uid INTEGER, name TEXT NOT NULL DEFAULT '',
            account TEXT NOT NULL DEFAULT '', "partition" TEXT NOT NULL DEFAULT '',
            start REAL NOT NULL, "end" REAL, last_seen REAL NOT NULL,
            project TEXT NOT NULL DEFAULT '', phase TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',
            tokens INTEGER, samples INTEGER,
            origin TEXT NOT NULL DEFAULT 'agent', location TEXT NOT NULL DEFAULT '', pue REAL,
            intensity_g_per_kwh REAL, digest TEXT,
            gpu_model TEXT NOT NULL DEFAULT '', gpu_count INTEGER, cpu_model TEXT NOT NULL DEFAULT '',
            method TEXT NOT NULL DEFAULT '', uncertainty_pct REAL,
            UNIQUE (scheduler, job_id, node, run))""",
        f"INSERT INTO jobs_v5 ({_V4_COLUMNS}) SELECT {_V4_COLUMNS} FROM jobs",
        "DROP TABLE jobs",
        "ALTER TABLE jobs_v5 RENAME TO jobs",
        'CREATE INDEX jobs_by_end ON jobs ("end")',
        "CREATE INDEX jobs_by_user ON jobs (user)",
        "CREATE INDEX jobs_by_origin ON jobs (origin)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

ADD_USEFUL = """
UPDATE jobs SET
    tokens = CASE WHEN ?1 IS NULL THEN tokens ELSE COALESCE(tokens, 0) + ?1 END,
    samples = CASE WHEN ?2 IS NULL THEN samples ELSE COALESCE(samples, 0) + ?2 END
WHERE id = (SELECT id FROM jobs WHERE scheduler = ?3 AND job_id = ?4 AND node = ?5 ORDER BY run DESC LIMIT 1)
"""
"""Add annotated tokens and samples to a job's latest run (NULL stays NULL until some are given)."""


class LedgerError(Exception):
    """The ledger cannot be opened or read; the message is one line for the user."""


class LedgerMissing(LedgerError):
    """There is no ledger file yet."""


class LedgerLocked(LedgerError):
    """Another agent writes this ledger."""


class JobNotFound(LedgerError):
    """No job in the ledger matches the id."""


class AmbiguousJob(LedgerError):
    """Several jobs match a bare id; the message lists them."""


def schema_version(conn: sqlite3.Connection, path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise LedgerError(
            f"{path} is an SQLite database but not a greenai ledger; point ledger.path elsewhere"
        )
    return version


READERS_HINT = "the ledger is for the agent's user only: run this as that user or root"


def open_problem(path: Path, e: sqlite3.Error) -> str:
    reason = error_reason(e)
    if reason == "corrupt":
        return corrupt_problem(path, e)
    if reason in ("read_only", "cannot_open"):
        return f"cannot open ledger {path}: {e}; {READERS_HINT}"
    return f"cannot read ledger {path}: {e}"


def corrupt_problem(path: Path, e: object) -> str:
    """One line for a damaged ledger: what SQLite said, and the command that saves what can be read."""
    if "not a database" in str(e):  # no SQLite header: nothing to recover
        return f"{path} is not a readable SQLite ledger ({e}); move it aside or point ledger.path elsewhere"
    return (
        f"ledger {path} is damaged ({e}); save what can be read with `greenai ledger recover {path}`, "
        "or move it aside"
    )


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
