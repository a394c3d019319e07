"""The ledger against the unlucky and the careless: two agents on one file, a file deleted or replaced
under the agent, a corrupt page; and the sums recorded while a write fails."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger.files import lock_path
from agent.ledger.pending import Pending, add_counts
from agent.ledger.read import open_readonly
from agent.ledger.schema import LedgerError, LedgerLocked
from agent.ledger.writer import Ledger
from collectors.workloads import JobInfo, JobKey
from tests.support.clock import FakeClock
from tests.support.processes import REPO, AgentProcess, run_greenai, wait_for
from tests.support.sqlite_rows import rows

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z, an hour start
JOB, OTHER = JobKey("slurm", "4242"), JobKey("slurm", "77")
ALICE = JobInfo(user="alice", uid=1000, name="train")
CPU, GPU = ("cpu", "rapl"), ("gpu", "nvml")
HOST_ROOTS = ["--sysfs", "/nonexistent-sys"]
ESTIMATE_ONLY = {"LD_LIBRARY_PATH": "/nonexistent"}


def tick(ledger: Ledger, t: float, joules: float, key: JobKey = JOB) -> None:
    """One interval: `joules` of GPU energy for `key`, as much for the node."""
    ledger.record(t, {key: (ALICE, {GPU: joules})}, unattributed={}, node={GPU: joules})


def node_rows(path: Path) -> int | None:
    """How many node_energy rows the file has; None while it is missing or being set up."""
    try:
        return int(rows(path, "SELECT count(*) FROM node_energy")[0][0]) if path.exists() else None
    except sqlite3.Error:
        return None


def stored_job_joules(path: Path) -> dict[str, float]:
    return dict(
        rows(path, "SELECT j.job_id, SUM(e.joules) FROM energy e JOIN jobs j ON j.id = e.job GROUP BY 1")
    )  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "ledger.db"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    led = Ledger(path, "node1", FakeClock(T0), background=False, busy_timeout_s=0.05)
    yield led
    led.close()


# ---- one writer per ledger ----------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_first_ones_pid(ledger: Ledger, path: Path) -> None:
    lock = lock_path(path)
    assert lock.read_text().strip() == str(os.getpid())
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    with pytest.raises(LedgerLocked, match=rf"in use by another greenai agent \(pid {os.getpid()}\)"):
        Ledger(path, "node1", background=False)
    tick(ledger, T0 + 1, 5.0)  # the first one goes on as before
    assert ledger.flush() and stored_job_joules(path) == {"4242": 5.0}


def test_the_lock_is_released_on_close_and_by_a_dead_process(path: Path) -> None:
    Ledger(path, "node1", background=False).close()
    Ledger(path, "node1", background=False).close()  # not refused: the first one closed
    script = (
        "import sys, time; from pathlib import Path; from agent.ledger.writer import Ledger; "
        "led = Ledger(Path(sys.argv[1]), 'node1', background=False); "
        "print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LedgerLocked, match=rf"pid {holder.pid}\)"):
            Ledger(path, "node1", background=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    Ledger(path, "node1", background=False).close()  # kill -9 frees it


def test_a_second_agent_on_the_same_ledger_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"ledger: {{path: {tmp_path / 'ledger.db'}}}\n")
    with AgentProcess(["--config", str(cfg), "--interval", "0.2", *HOST_ROOTS], env=ESTIMATE_ONLY) as first:
        first.wait_ready()
        second = run_greenai(
            "agent", "--config", str(cfg), "--listen", "127.0.0.1:0", *HOST_ROOTS, env=ESTIMATE_ONLY
        )
        assert second.returncode == 2, second.stderr
        errors = [line for line in second.stderr.splitlines() if line.startswith("greenai:")]
        assert len(errors) == 1 and f"pid {first.proc.pid}" in errors[0], second.stderr
        assert "Traceback" not in second.stderr
        # short writers are not agents: they still work while it runs
        assert run_greenai("jobs", "--ledger", str(tmp_path / "ledger.db")).returncode in (0, 1)
        code, _ = first.stop(signal.SIGTERM)
    assert code == 0, first.log


# ---- a ledger deleted or replaced under the agent -----------------------------------------------------


def test_a_deleted_ledger_is_re_created_with_what_was_recorded_after(ledger: Ledger, path: Path) -> None:
    tick(ledger, T0 + 1, 5.0)
    assert ledger.flush()
    path.unlink()  # `rm ledger.db`: the -wal and -shm stay behind
    tick(ledger, T0 + 2, 7.0)
    tick(ledger, T0 + 3, 1.0, key=OTHER)
    assert ledger.flush() and ledger.last_flush_ok
    assert path.exists()
    assert stored_job_joules(path) == {"4242": 7.0, "77": 1.0}
    assert rows(path, "SELECT SUM(joules) FROM node_energy") == [(8.0,)]
    assert ledger.errors == {"deleted": 1}  # greenai_ledger_errors_total{reason="deleted"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tick(ledger, T0 + 4, 2.0)
    assert ledger.flush() and ledger.errors == {"deleted": 1}  # said once
    assert stored_job_joules(path) == {"4242": 9.0, "77": 1.0}
    assert open_readonly(path).job("4242").by_component()["gpu"] == 9.0


def test_a_replaced_ledger_gets_the_pending_rows(ledger: Ledger, path: Path, tmp_path: Path) -> None:
    tick(ledger, T0 + 1, 5.0)
    assert ledger.flush()
    backup = tmp_path / "backup.db"
    with sqlite3.connect(path) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)  # a backup holding the 5 J
    ledger_rows = stored_job_joules(backup)
    tick(ledger, T0 + 2, 7.0)
    assert ledger.flush() and stored_job_joules(path) == {"4242": 12.0}
    os.replace(backup, path)  # an operator restores yesterday's file
    tick(ledger, T0 + 3, 3.0)
    assert ledger.flush()
    assert ledger.errors == {"replaced": 1}
    assert stored_job_joules(path) == {"4242": ledger_rows.get("4242", 0.0) + 3.0}


def test_a_replacement_that_is_not_a_ledger_keeps_the_rows_in_memory(ledger: Ledger, path: Path) -> None:
    tick(ledger, T0 + 1, 5.0)
    assert ledger.flush()
    path.unlink()
    path.write_bytes(b"not a database at all" * 100)
    tick(ledger, T0 + 2, 7.0)
    assert not ledger.flush()
    assert ledger.errors["replaced"] == 1 and ledger.pending_rows > 0
    path.unlink()  # the operator removes it: the next flush creates the ledger and writes everything
    assert ledger.flush()
    assert stored_job_joules(path) == {"4242": 7.0} and ledger.errors["replaced"] == 1


def test_a_ledger_deleted_under_a_running_agent_is_re_created_and_counted(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"ledger: {{path: {db}, flush_seconds: 0.2}}\n")
    with AgentProcess(["--config", str(cfg), "--interval", "0.1", *HOST_ROOTS], env=ESTIMATE_ONLY) as agent:
        agent.wait_ready()
        wait_for(lambda: node_rows(db) or None, 10, "a flush")
        db.unlink()
        wait_for(lambda: agent.value("greenai_ledger_errors_total", reason="deleted"), 10, "the metric")
        wait_for(lambda: node_rows(db) or None, 10, "rows in the new file")
        code, _ = agent.stop(signal.SIGTERM)
    assert code == 0 and "was deleted while the agent wrote it" in agent.log, agent.log
    assert rows(db, "SELECT SUM(joules) > 0 FROM node_energy") == [(1,)]


# ---- a corrupt page -----------------------------------------------------------------------------------


def corrupt_a_page(path: Path, table: str) -> None:
    """Overwrite the middle of the last page of `table`'s b-tree (never the file header)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    conn.close()
    assert root > 1
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * 64)  # the page header: its type and cell counts become nonsense


def filled(path: Path, jobs: int = 5) -> None:
    led = Ledger(path, "node1", FakeClock(T0), background=False)
    for i in range(jobs):
        tick(led, T0 + 1 + i, 1.0, key=JobKey("slurm", str(i)))
    led.close()


def test_a_corrupt_ledger_is_refused_at_start_with_the_recovery_command(path: Path) -> None:
    filled(path)
    corrupt_a_page(path, "energy")
    with pytest.raises(LedgerError) as refused:
        Ledger(path, "node1", background=False)
    said = str(refused.value)
    assert "\n" not in said and str(path) in said and f"greenai ledger recover {path}" in said
    Ledger(path.with_name("other.db"), "node1", background=False).close()  # the lock was let go


def test_a_corrupt_ledger_stops_the_agent_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    filled(db)
    corrupt_a_page(db, "jobs")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"ledger: {{path: {db}}}\n")
    out = run_greenai(
        "agent", "--config", str(cfg), "--listen", "127.0.0.1:0", *HOST_ROOTS, env=ESTIMATE_ONLY
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("greenai:")]
    assert len(errors) == 1 and f"greenai ledger recover {db}" in errors[0]


# ---- sums recorded while a write fails (mutants: absorb dropped, add_all's + as -) --------------------


def test_sums_recorded_during_a_failed_flush_survive_and_the_live_view_adds_them_once(path: Path) -> None:
    led = Ledger(path, "node1", FakeClock(T0), background=False, busy_timeout_s=2.0)
    try:
        tick(led, T0 + 1, 5.0)
        assert led.flush()  # stored: 5 J
        tick(led, T0 + 2, 7.0)  # pending: the batch the failing flush takes
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the flush waits, then fails
        flusher = threading.Thread(target=led.flush)
        flusher.start()
        wait_for(lambda: led.pending_rows == 0 or None, 5, "the flush to take its batch")
        tick(led, T0 + 3, 3.0)  # recorded while the write is failing (same job, same hour)
        tick(led, T0 + 3, 2.0, key=OTHER)
        assert flusher.is_alive()  # so these really were recorded during the flush
        flusher.join()
        holder.execute("ROLLBACK")
        holder.close()
        assert not led.last_flush_ok and led.errors == {"locked": 1}
        # two batches now wait merged: the live view shows stored + both, exactly
        live = {s.job_id: s.by_component()["gpu"] for s in led.live_jobs()}
        assert live == {"4242": 15.0, "77": 2.0}
        hours = led.live_job_hours(led.live_job("4242")).energy_j
        assert {h: dict(v) for h, v in hours.items()} == {T0: {GPU: 15.0}}
        assert led.flush()
        assert stored_job_joules(path) == {"4242": 15.0, "77": 2.0}
        assert rows(path, "SELECT SUM(joules) FROM node_energy") == [(17.0,)]
    finally:
        led.close()
    listed = run_greenai("jobs", "--ledger", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    shown = {j["job_id"]: j["energy_joules"]["gpu"] for j in json.loads(listed.stdout)}
    assert shown == {"4242": 15.0, "77": 2.0}


# ---- usage without energy (the KeyError mutant in _write) ---------------------------------------------


def test_usage_of_a_job_without_energy_that_interval_is_stored_and_later_flushes_work(
    ledger: Ledger, path: Path
) -> None:
    tick(ledger, T0 + 1, 5.0)
    ledger.record(T0 + 2, {}, unattributed={}, node={}, cpu_seconds={OTHER: 0.5}, gpu_seconds={OTHER: 1.0})
    assert ledger.flush() and ledger.last_flush_ok
    ledger.record(T0 + 3, {}, unattributed={}, node={}, gpu_seconds={OTHER: 1.0})
    tick(ledger, T0 + 4, 2.0)
    assert ledger.flush() and ledger.errors == {}
    assert stored_job_joules(path) == {"4242": 7.0}
    assert rows(
        path, "SELECT j.job_id, u.cpu_seconds, u.gpu_seconds FROM usage u JOIN jobs j ON j.id = u.job"
    ) == [("77", 0.5, 2.0)]
    other = open_readonly(path).job("77")
    assert (other.cpu_seconds, other.gpu_seconds, other.by_component()["total"]) == (0.5, 2.0, 0.0)


# ---- what the pending sums must keep: metadata of two reports, usage and useful work through a failure --


def test_two_reports_of_a_job_in_one_batch_keep_what_each_knew(ledger: Ledger) -> None:
    ledger.job_seen(JOB, JobInfo(user="alice", uid=1000, gpu_model="NVIDIA H100 80GB HBM3", gpu_count=4), T0)
    ledger.record(
        T0 + 1, {JOB: (JobInfo(name="train", account="ml", gpu_count=2), {GPU: 1.0})}, {}, {GPU: 1.0}
    )
    ledger.job_seen(JOB, JobInfo(uid=None, gpu_count=None, cpu_model="AMD EPYC 9654"), T0 + 2)
    for view in (ledger.live_job("4242"), None):
        if view is None:
            assert ledger.flush()
            view = ledger.live_job("4242")
        info = view.info
        assert (info.user, info.uid, info.name, info.account) == ("alice", 1000, "train", "ml")
        assert (info.gpu_model, info.gpu_count, info.cpu_model) == (
            "NVIDIA H100 80GB HBM3",
            4,
            "AMD EPYC 9654",
        )
        assert view.start == T0 and view.last_seen == T0 + 2


def test_a_job_seen_again_a_minute_after_its_end_is_the_same_job_and_later_a_new_one(ledger: Ledger) -> None:
    ledger.job_seen(JOB, ALICE, T0)
    ledger.job_ended(JOB, T0 + 10)
    assert ledger.flush()
    ledger.job_seen(JOB, ALICE, T0 + 70)  # exactly REUSE_GAP_SECONDS after the end: the same job
    assert ledger.flush()
    assert [(s.run, s.end) for s in ledger.live_jobs()] == [(1, None)]
    ledger.job_ended(JOB, T0 + 80)
    assert ledger.flush()
    ledger.job_seen(JOB, ALICE, T0 + 140.5)  # just over a minute after: the id was reused
    assert ledger.flush()
    assert [(s.run, s.start) for s in ledger.live_jobs()] == [(1, T0), (2, T0 + 140.5)]


def test_usage_and_useful_work_recorded_during_a_failed_flush_survive(path: Path) -> None:
    led = Ledger(path, "node1", FakeClock(T0), background=False, busy_timeout_s=2.0)
    try:
        led.record(
            T0 + 1, {JOB: (ALICE, {GPU: 1.0})}, {}, {GPU: 1.0}, gpu_seconds={JOB: 2.0}, cpu_seconds={JOB: 1.0}
        )
        led.annotate("4242", 1000, None)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        flusher = threading.Thread(target=led.flush)
        flusher.start()
        wait_for(lambda: led.pending_rows == 0 or None, 5, "the flush to take its batch")
        led.record(T0 + 2, {}, {}, {}, gpu_seconds={JOB: 3.0}, cpu_seconds={JOB: 0.5})
        assert flusher.is_alive()  # so that usage was recorded while the write failed
        flusher.join()
        holder.execute("ROLLBACK")
        holder.close()
        assert not led.last_flush_ok
        led.annotate("4242", 500, 7)  # onto the failed batch's 1000 tokens; samples start from none
        live = led.live_job("4242")
        assert (live.gpu_seconds, live.cpu_seconds, live.tokens, live.samples) == (5.0, 1.5, 1500, 7)
        assert led.flush()
    finally:
        led.close()
    stored = open_readonly(path).job("4242")
    assert (stored.gpu_seconds, stored.cpu_seconds, stored.tokens, stored.samples) == (5.0, 1.5, 1500, 7)


def test_the_live_view_filters_as_the_reader_does(ledger: Ledger, path: Path) -> None:
    ledger.job_seen(JOB, ALICE, T0)
    ledger.job_ended(JOB, T0 + 100)
    ledger.job_seen(OTHER, JobInfo(user="bob"), T0 + 200)
    for _ in range(2):  # the pending news, then the same once stored
        assert [s.job_id for s in ledger.live_jobs(user="bob")] == ["77"]
        assert [s.job_id for s in ledger.live_jobs(since=T0 + 150)] == ["77"]
        assert [s.job_id for s in ledger.live_jobs(running=False)] == ["4242"]
        assert ledger.flush()
    reader = open_readonly(path)
    assert [s.job_id for s in reader.jobs(user="bob")] == ["77"]
    assert [s.job_id for s in reader.jobs(since=T0 + 150)] == ["77"]


def test_later_news_of_what_the_work_was_wins_and_the_gpu_count_only_grows(ledger: Ledger) -> None:
    ledger.job_seen(JOB, JobInfo(project="llm", phase="pretraining", model="m1", gpu_count=2), T0)
    ledger.job_seen(JOB, JobInfo(phase="fine-tuning", gpu_count=8), T0 + 1)  # reclassified, more GPUs
    ledger.job_seen(JOB, JobInfo(gpu_count=4), T0 + 2)
    for _ in range(2):  # pending, then stored
        info = ledger.live_job("4242").info
        assert (info.project, info.phase, info.model, info.gpu_count) == ("llm", "fine-tuning", "m1", 8)
        assert ledger.flush()


def test_a_batch_of_one_unattributed_row_is_written(ledger: Ledger, path: Path) -> None:
    ledger.record(T0 + 1, {}, unattributed={CPU: 3.0}, node={})  # no job at all this interval
    assert ledger.flush()
    assert rows(path, "SELECT component, joules FROM unattributed") == [("cpu", 3.0)]


def test_pending_useful_work_adds_where_both_batches_have_some() -> None:
    older, newer = Pending(), Pending()
    older.useful[JOB], older.useful[OTHER] = (1000, None), (None, 3)
    newer.useful[JOB], newer.useful[OTHER] = (500, 7), (None, 4)
    older.absorb(newer)
    assert older.useful == {JOB: (1500, 7), OTHER: (None, 7)}
    assert add_counts(3, None) == 3 and add_counts(None, 4) == 4 and add_counts(None, None) is None
