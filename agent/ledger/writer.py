"""The durable per-job energy ledger: joules per job x UTC hour x component x source, in SQLite (WAL).

The sampling loop calls `Ledger.record()` every interval; that only adds to sums in memory. A writer
thread writes them every `flush_seconds` in one transaction that adds to the stored sums (UPSERT
`joules = joules + excluded.joules`). A failed write (disk full, database locked, read-only file, I/O
error) keeps the sums in memory, merged with newer ones, and is retried at the next flush: only what
was committed is cleared, so nothing is lost or counted twice. After `kill -9` at most the unflushed
window is lost.

One agent writes a ledger: the writer holds `files.writer_lock` for its life. Each flush first checks
that the path still names the file it opened; a ledger deleted or replaced under it is re-created (or
the replacement opened), the change logged and counted (errors `deleted`, `replaced`), and the
pending sums written there. A damaged file (a corrupt page) is refused at start with the command that
saves what can be read (`greenai ledger recover`, agent.ledger.repair).

Hour bucketing: an interval is booked whole to the UTC hour its end falls in (agent.units.hour_of),
hours being (h, h+3600]: an interval ending exactly at 14:00:00 belongs to 13:00. With a 1 s sampling
interval that misplaces at most one interval's energy per hour boundary, and jobs, unattributed and
node energy alike, so the per-hour balance jobs + unattributed = node still holds.

The read side (job summaries, `open_readonly`) is `read`; the schema, its migrations and the errors
are `schema`; opening the file for writing is `files`; the sums pending in memory are `pending`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from agent.ledger.files import file_id, open_for_writing, remove_sidecars, sidecar_ids, writer_lock
from agent.ledger.job_rows import JobRows
from agent.ledger.pending import JobState, Pending, add_counts
from agent.ledger.read import Filter, JobHours, query_job_hours, query_jobs
from agent.ledger.schema import ADD_USEFUL, LedgerError, corrupt_problem, error_reason
from agent.ledger.summary import JobSummary, find_job
from agent.units import hour_of
from collectors.workloads import JobInfo, JobKey

log = logging.getLogger("greenai.ledger")

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
        self._busy_timeout_s = busy_timeout_s
        self._writer_lock = writer_lock(self.path)
        try:
            self._conn = open_for_writing(self.path, busy_timeout_s)
            self._file = file_id(self.path)
            _require_intact(self._conn, self.path)
            self._sidecars = sidecar_ids(self.path)
        except BaseException:
            self._writer_lock.close()
            raise
        self._moved = False  # the file was found deleted or replaced, and is not open again yet
        self._lock = threading.Lock()  # guards _pending and the counters; held only for dict work
        self._flush_lock = threading.Lock()  # one flush at a time; live readers wait for a flush to end
        self._pending = Pending()
        self._job_rows = JobRows(node)
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
        finite = math.isfinite
        with self._lock:
            p = self._pending
            states, sums = p.jobs, p.energy
            for key, (info, energy) in jobs.items():
                state = states.get(key)
                if state is not None and state.info is info:  # the metadata of last time: a sighting
                    if interval_end < state.start:
                        state.start = interval_end
                    if interval_end > state.last_seen:
                        state.last_seen = interval_end
                else:
                    self._note_job(key, info, interval_end, None)
                for (component, source), joules in energy.items():
                    if finite(joules) or self._valid(joules):
                        ekey = (key, hour, component, source)
                        sums[ekey] = sums.get(ekey, 0.0) + joules
            for table, energy in ((p.unattributed, unattributed), (p.node, node)):
                for (component, source), joules in energy.items():
                    if self._valid(joules):
                        table[(hour, component, source)] = table.get((hour, component, source), 0.0) + joules
            usage = p.usage
            for index, seconds in ((0, cpu_seconds or {}), (1, gpu_seconds or {})):
                for key, value in seconds.items():
                    if finite(value) or self._valid(value):
                        if key not in jobs:  # noted above already
                            self._note_job(key, JobInfo(), interval_end, None)
                        cpu, gpu = usage.get((key, hour), (0.0, 0.0))
                        usage[(key, hour)] = (cpu + value, gpu) if index == 0 else (cpu, gpu + value)

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
                self._follow_file(batch)
                self._write(batch)
            except Exception as e:  # any failure must keep the sums, and the thread alive
                with self._lock:
                    batch.absorb(self._pending)
                    self._pending = batch
                    reason = error_reason(e)
                    said = (
                        str(e) if isinstance(e, LedgerError)  # already one line for the user
                        else corrupt_problem(self.path, e) if reason == "corrupt"
                        else f"{type(e).__name__}: {e}"
                    )  # fmt: skip
                    self._failed(reason, said)
                return False
            with self._lock:
                if not self.last_flush_ok:
                    log.info("ledger %s: writing again; the pending sums are stored", self.path)
                self.last_flush_ok = True
                self.last_flush_at = self._clock()
            return True

    def _follow_file(self, batch: Pending) -> None:
        """Open the file the path names now, when it is not the one open: a ledger deleted or replaced
        under the agent would otherwise take the writes to an unlinked inode, lost at exit."""
        now = file_id(self.path)
        if now == self._file and not self._moved:
            return
        if not self._moved:
            what = "deleted" if now is None else "replaced"
            with self._lock:
                self._errors[what] = self._errors.get(what, 0) + 1
            log.warning(
                "ledger %s was %s while the agent wrote it; what it held before is not in the new file; "
                "opening the file now at that path and writing the %d pending rows there",
                self.path, what, batch.rows,
            )  # fmt: skip
            self._moved = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            remove_sidecars(self.path, self._sidecars)
        self._conn = open_for_writing(self.path, self._busy_timeout_s)
        self._file = file_id(self.path)
        self._sidecars = sidecar_ids(self.path)
        self._moved = False

    def _write(self, batch: Pending) -> None:
        conn = self._conn
        if conn.in_transaction:  # a ROLLBACK that failed last time
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = self._job_rows.upsert(conn, batch.jobs)
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
            conn.executemany(
                ADD_USEFUL,
                [(t, n, k.scheduler, k.job_id, self.node) for k, (t, n) in batch.useful.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

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
        """Failed flushes by reason (disk_full, locked, read_only, io_error, corrupt, other);
        invalid_value: non-finite figures ignored; deleted, replaced: the file was, under the agent."""
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

    def live_job_hours(self, job: JobSummary) -> JobHours:
        """`job`'s joules per hour, the sums not yet written added (for CO2e priced hour by hour)."""
        with self._flush_lock:
            with self._lock:
                pending = self._pending.copy()
            return query_job_hours(self._conn, job, pending, self.node)

    def annotate(self, key_or_id: str, tokens: int | None, samples: int | None) -> JobSummary:
        """Queue useful work (tokens, samples; None: not given) for a job of this node; the figures after."""
        job = find_job(self.live_jobs(), key_or_id, self.node)
        with self._lock:
            useful = self._pending.useful
            old_tokens, old_samples = useful.get(job.key, (None, None))
            useful[job.key] = (add_counts(old_tokens, tokens), add_counts(old_samples, samples))
            if job.key not in self._pending.jobs:  # so that a failed flush keeps it, like any row
                self._pending.jobs[job.key] = JobState(JobInfo(), job.start, job.last_seen)
        return find_job(self.live_jobs(), str(job.key), self.node)

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
        self._writer_lock.close()


def _require_intact(conn: sqlite3.Connection, path: Path) -> None:
    """Raise LedgerError, naming the recovery command, when SQLite finds the file damaged.

    `quick_check` reads every page once (about a second per GB), so a corrupt page stops the agent at
    start in one line rather than failing every flush, or a query, later.
    """
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(1)")]
    except sqlite3.DatabaseError as e:
        conn.close()
        raise LedgerError(corrupt_problem(path, e)) from None
    if problems != ["ok"]:
        conn.close()
        raise LedgerError(corrupt_problem(path, " ".join(problems[0].split())))
