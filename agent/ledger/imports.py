"""Storing imported runs (read by import_files) in the ledger: one job row each, energy spread over hours.

A run's kWh per component is spread uniformly over [start, end] across the UTC hours it overlaps
(hour = epoch seconds of the hour's start, as the agent books), under source `import:csv` or
`import:codecarbon`; `unsplit_kwh` is its own component, `unsplit`. The same rows go to
`node_energy` of the run's node, so jobs + unattributed = node holds per node and hour here too.
Runs are upserted by `origin`: an unchanged `digest` writes nothing; a changed one replaces the run's
rows. All runs of a file go in one transaction: all or nothing (docs/import.md).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.ledger.files import open_for_writing, storable
from agent.ledger.import_files import ImportedRun, ImportFileError
from agent.ledger.schema import READERS_HINT, LedgerError
from agent.units import HOUR_SECONDS, JOULES_PER_KWH, energy_text, hour_of

IMPORTED_NODE = "imported"
"""The node of a run whose file names none."""
SOURCE_PREFIX = "import:"
UNSPLIT = "unsplit"
"""SQLite's page cache for an import: a large file's rows go in one transaction."""
"""The component of energy a file gave only as a total."""
INSERT_JOB = (
    'INSERT INTO jobs (scheduler, job_id, node, user, start, "end", last_seen, project, phase, model, '
    "tokens, origin, location, pue, intensity_g_per_kwh, digest, name, gpu_model, gpu_count, cpu_model, "
    "method, uncertainty_pct) VALUES (:scheduler, :job_id, :node, :user, :start, :end, :end, :project, "
    ":phase, :model, :tokens, :origin, :location, :pue, :intensity, :digest, :name, :gpu_model, "
    ":gpu_count, :cpu_model, :method, :uncertainty_pct) RETURNING id"
)


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: runs new to the ledger, unchanged, replaced; the file's IT kWh."""

    imported: int
    unchanged: int
    updated: int
    kwh: float

    def line(self) -> str:
        return (
            f"{self.imported} runs imported, {self.unchanged} unchanged, {self.updated} updated, "
            f"{energy_text(self.kwh)} in the file"
        )


def hour_shares(start: float, end: float) -> list[tuple[int, float]]:
    """(UTC hour start, share of [start, end] in it) for each hour the run overlaps; shares sum to 1.

    A run of no length is booked whole to the hour its end falls in, as the agent books an interval.
    """
    if end <= start:
        return [(hour_of(end), 1.0)]
    shares = []
    hour = math.floor(start / HOUR_SECONDS) * HOUR_SECONDS
    while hour < end:
        overlap = min(end, hour + HOUR_SECONDS) - max(start, hour)
        if overlap > 0:
            shares.append((hour, overlap / (end - start)))
        hour += HOUR_SECONDS
    return shares


def spread(total: float, shares: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """`total` split by `shares`; the last hour takes the rest, so the parts add up to `total`."""
    parts = [(hour, total * share) for hour, share in shares[:-1]]
    parts.append((shares[-1][0], total - sum(p for _, p in parts)))
    return parts


def store_runs(
    path: Path, runs: Iterable[ImportedRun], file: str, busy_timeout_s: float = 10.0
) -> ImportSummary:
    """Upsert `runs` (read from `file`) into the ledger at `path` in one transaction.

    Raises ImportFileError when a run's job is already in the ledger from elsewhere, LedgerError when
    the ledger cannot be written; either way nothing is written.
    """
    runs = list(runs)
    conn = open_for_writing(path, busy_timeout_s)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored = _stored_imports(conn)
            dirty: dict[str, set[int]] = {}
            counts = [_store(conn, run, file, stored, dirty) for run in runs]
            rebook_nodes(conn, dirty)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as e:
        raise LedgerError(f"cannot import into ledger {path}: {e}; {READERS_HINT}") from None
    finally:
        conn.close()
    return ImportSummary(
        imported=counts.count("imported"),
        unchanged=counts.count("unchanged"),
        updated=counts.count("updated"),
        kwh=sum(run.energy_kwh for run in runs),
    )


def _stored_imports(conn: sqlite3.Connection) -> dict[str, tuple[int, str | None]]:
    """origin -> (job id, digest) of every imported run in the ledger: one query, not one per run."""
    return {
        origin: (job, digest)
        for origin, job, digest in conn.execute("SELECT origin, id, digest FROM jobs WHERE origin != 'agent'")
    }


def _store(
    conn: sqlite3.Connection, run: ImportedRun, file: str, stored: dict[str, tuple[int, str | None]],
    dirty: dict[str, set[int]],
) -> str:  # fmt: skip
    """Store one run; what happened: "imported", "unchanged" or "updated". Keeps `stored` (origin ->
    job id, digest) up to date, and adds the node's hours whose node rows must be recomputed to `dirty`."""
    node = storable(run.node or IMPORTED_NODE)
    ident = (storable(run.key.scheduler), storable(run.key.job_id), node)
    found = stored.get(run.origin)
    digest = run.digest
    if found is not None and found[1] == digest:
        return "unchanged"
    fields = {
        "user": storable(run.user), "start": run.start, "end": run.end, "project": storable(run.project),
        "phase": run.phase, "model": storable(run.model), "tokens": run.tokens,
        "location": storable(run.location), "pue": run.pue, "intensity": run.intensity_g_per_kwh,
        "digest": digest, "name": storable(run.name), "gpu_model": storable(run.gpu_model),
        "gpu_count": run.gpu_count, "cpu_model": storable(run.cpu_model), "method": storable(run.method),
        "uncertainty_pct": run.uncertainty_pct,
    }  # fmt: skip
    if found is None:
        try:
            values = {**fields, "scheduler": ident[0], "job_id": ident[1], "node": node, "origin": run.origin}
            job = int(conn.execute(INSERT_JOB, values).fetchone()[0])
        except sqlite3.IntegrityError:
            other = conn.execute(
                "SELECT origin FROM jobs WHERE scheduler = ? AND job_id = ? AND node = ?", ident
            ).fetchone()
            if other is None:
                raise
            raise ImportFileError(
                file,
                f"job {run.key} on node {node} is already in the ledger from {other[0]}; "
                "give it another job_id, scheduler or node",
                run.row or None, "job_id", run.key.job_id,
            ) from None  # fmt: skip
        stored[run.origin] = (job, digest)
        old_hours: list[int] = []
    else:
        job = found[0]
        stored[run.origin] = (job, digest)
        conn.execute(
            'UPDATE jobs SET user = :user, start = :start, "end" = :end, last_seen = :end, '
            "project = :project, phase = :phase, model = :model, tokens = :tokens, location = :location, "
            "pue = :pue, intensity_g_per_kwh = :intensity, digest = :digest, name = :name, "
            "gpu_model = :gpu_model, gpu_count = :gpu_count, cpu_model = :cpu_model, method = :method, "
            "uncertainty_pct = :uncertainty_pct WHERE id = :id",
            {**fields, "id": job},
        )
        old_hours = [h for (h,) in conn.execute("SELECT DISTINCT hour FROM energy WHERE job = ?", (job,))]
        conn.execute("DELETE FROM energy WHERE job = ?", (job,))
        conn.execute("DELETE FROM usage WHERE job = ?", (job,))
    shares = hour_shares(run.start, run.end)
    source = SOURCE_PREFIX + run.source
    components = {"cpu": run.cpu_kwh, "gpu": run.gpu_kwh, "dram": run.dram_kwh, UNSPLIT: run.unsplit_kwh}
    conn.executemany(
        "INSERT INTO energy (job, hour, component, source, joules) VALUES (?, ?, ?, ?, ?)",
        [
            (job, hour, component, source, joules)
            for component, kwh in components.items()
            if kwh > 0
            for hour, joules in spread(kwh * JOULES_PER_KWH, shares)
        ],
    )
    if run.gpu_hours:
        conn.executemany(
            "INSERT INTO usage (job, hour, cpu_seconds, gpu_seconds) VALUES (?, ?, 0, ?)",
            [(job, hour, seconds) for hour, seconds in spread(run.gpu_hours * HOUR_SECONDS, shares)],
        )
    dirty.setdefault(node, set()).update(old_hours, (hour for hour, _ in shares))
    return "imported" if found is None else "updated"


def rebook_nodes(conn: sqlite3.Connection, hours: Mapping[str, set[int]]) -> None:
    """Recompute the imported node_energy rows of each node's `hours` from its jobs' imported energy.

    One pass for the whole file, not one per run or hour, so an import takes time linear in its rows:
    `energy` has no index by hour, so the jobs that can have rows in these hours are found by their
    time span (`jobs_by_end`), and each one's rows by its key.
    """
    wanted = [(node, hour) for node, node_hours in hours.items() for hour in node_hours]
    if not wanted:
        return
    like = SOURCE_PREFIX + "%"
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS rebook (node TEXT, hour INTEGER, PRIMARY KEY (node, hour))")
    conn.execute("DELETE FROM temp.rebook")
    conn.executemany("INSERT INTO temp.rebook VALUES (?, ?)", wanted)
    conn.execute(
        "DELETE FROM node_energy WHERE source LIKE ? "
        "AND (node, hour) IN (SELECT node, hour FROM temp.rebook)",
        (like,),
    )
    first, last = min(h for _, h in wanted), max(h for _, h in wanted)
    # A job has rows only in hours h with start - 3600 < h <= end (a run of no length: hour_of(end)).
    # `+e.hour`: read each job's rows by its key and look the hour up, not each hour of the file per job.
    conn.execute(
        "INSERT INTO node_energy (node, hour, component, source, joules) "
        "SELECT j.node, e.hour, e.component, e.source, SUM(e.joules) FROM jobs j "
        "JOIN energy e ON e.job = j.id "
        'WHERE j."end" >= ? AND j.start < ? AND e.source LIKE ? '
        "AND EXISTS (SELECT 1 FROM temp.rebook r WHERE r.node = j.node AND r.hour = +e.hour) "
        "GROUP BY j.node, e.hour, e.component, e.source",
        (first, last + HOUR_SECONDS, like),
    )
    conn.execute("DELETE FROM temp.rebook")
