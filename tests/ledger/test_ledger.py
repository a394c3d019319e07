"""The ledger on real SQLite: hour buckets, sums across flushes and restarts, crashes, a full disk, a
locked database, schema migrations and file permissions."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger import schema as ledger_schema
from agent.ledger.read import open_readonly
from agent.ledger.schema import JobNotFound, LedgerError
from agent.ledger.writer import Ledger
from agent.units import hour_of
from collectors.workloads import JobInfo, JobKey
from tests.support.clock import FakeClock
from tests.support.processes import REPO, wait_for
from tests.support.sqlite_rows import rows

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z, an hour start
JOB = JobKey("slurm", "4242")
ALICE = JobInfo(user="alice", uid=1000, name="train", account="proj", partition="gpu")
CPU, GPU, DRAM = ("cpu", "rapl"), ("gpu", "nvml"), ("dram", "estimate")


def tick(ledger: Ledger, t: float, job_j: float = 2.0, idle_j: float = 1.0, key: JobKey = JOB) -> None:
    """One interval: the job gets `job_j` CPU and GPU joules, `idle_j` CPU joules stay unattributed."""
    ledger.record(
        t,
        {key: (ALICE, {CPU: job_j, GPU: job_j})},
        unattributed={CPU: idle_j},
        node={CPU: job_j + idle_j, GPU: job_j},
        gpu_seconds={key: 1.0},
        cpu_seconds={key: 0.5},
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "ledger.db"


@pytest.fixture
def ledger(path: Path, clock: FakeClock) -> Iterator[Ledger]:
    led = Ledger(path, "node1", clock, background=False, busy_timeout_s=0.05)
    yield led
    led.close()


def test_an_interval_is_booked_to_the_hour_its_end_falls_in() -> None:
    assert hour_of(T0 + 0.5) == T0
    assert hour_of(T0 + 3600) == T0  # hours are (h, h + 3600]: the interval ending at 01:00 is 00:00's
    assert hour_of(T0 + 3600.5) == T0 + 3600


def test_hours_components_and_sources_are_separate_rows(ledger: Ledger, path: Path) -> None:
    tick(ledger, T0 + 3599)
    tick(ledger, T0 + 3600)
    tick(ledger, T0 + 3601)
    assert ledger.flush()
    energy = rows(path, "SELECT hour, component, source, joules FROM energy ORDER BY hour, component")
    assert energy == [
        (T0, "cpu", "rapl", 4.0),
        (T0, "gpu", "nvml", 4.0),
        (T0 + 3600, "cpu", "rapl", 2.0),
        (T0 + 3600, "gpu", "nvml", 2.0),
    ]
    assert rows(path, "SELECT hour, cpu_seconds, gpu_seconds FROM usage ORDER BY hour") == [
        (T0, 1.0, 2.0),
        (T0 + 3600, 0.5, 1.0),
    ]


def test_flushes_add_to_the_stored_sums_and_clear_only_what_they_wrote(
    ledger: Ledger, path: Path, clock: FakeClock
) -> None:
    for i in range(3):
        tick(ledger, T0 + i + 1)
    assert ledger.pending_rows == 6  # energy x2, usage, node x2, unattributed
    clock.advance(5)
    assert ledger.flush() and ledger.pending_rows == 0 and ledger.last_flush_at == T0 + 5
    tick(ledger, T0 + 4, job_j=10.0)
    assert ledger.flush()
    assert ledger.flush()  # nothing pending: nothing written twice
    summary = open_readonly(path).job("4242").as_dict()
    assert summary["energy_joules"] == {"cpu": 16.0, "dram": 0.0, "gpu": 16.0, "total": 32.0}
    assert summary["gpu_hours"] == 4 / 3600 and summary["cpu_hours"] == 2 / 3600
    assert rows(path, "SELECT count(*) FROM jobs") == [(1,)]
    assert ledger.errors == {} and ledger.last_flush_ok


def test_the_ledger_balances_jobs_plus_unattributed_against_the_node(ledger: Ledger, path: Path) -> None:
    for i in range(5):
        tick(ledger, T0 + 1800 * i + 1, job_j=i, idle_j=0.25)
    assert ledger.flush()
    balance = open_readonly(path).balance()
    assert {b.hour for b in balance} == {T0, T0 + 3600, T0 + 7200}
    for b in balance:
        assert b.jobs_j + b.unattributed_j == pytest.approx(b.node_j, abs=1e-9), b


def test_summary_fields(ledger: Ledger, path: Path) -> None:
    ledger.job_seen(JOB, ALICE, T0)
    ledger.record(
        T0 + 60,
        {JOB: (ALICE, {CPU: 300.0, GPU: 600.0, DRAM: 100.0, ("platform", "rapl"): 500.0})},
        {},
        {},
        gpu_seconds={JOB: 120.0},
    )
    ledger.job_ended(JOB, T0 + 90)
    assert ledger.flush()
    d = open_readonly(path).job("slurm:4242").as_dict()
    assert d["scheduler"] == "slurm" and d["job_id"] == "4242" and d["node"] == "node1"
    assert (d["user"], d["uid"], d["name"], d["account"], d["partition"]) == (
        "alice",
        1000,
        "train",
        "proj",
        "gpu",
    )
    assert d["start"] == "2024-05-01T00:00:00Z" and d["end"] == "2024-05-01T00:01:30Z"
    assert d["running"] is False and d["duration_seconds"] == 90.0
    # platform (psys) contains cpu and dram, so it is shown but not added
    assert d["energy_joules"] == {
        "cpu": 300.0,
        "dram": 100.0,
        "gpu": 600.0,
        "platform": 500.0,
        "total": 1000.0,
    }
    assert d["energy_kwh"] == 1000.0 / 3.6e6
    assert d["sources"] == {"estimate": 100.0, "nvml": 600.0, "rapl": 300.0}
    assert d["estimated_share"] == 0.1 and d["gpu_hours"] == 120 / 3600


def test_live_figures_add_what_is_pending_without_counting_it_twice(ledger: Ledger) -> None:
    tick(ledger, T0 + 1)
    assert ledger.flush()
    tick(ledger, T0 + 2)
    other = JobKey("docker", "abc")
    tick(ledger, T0 + 2, key=other)  # only in memory so far
    live = {str(s.key): s.as_dict() for s in ledger.live_jobs()}
    assert live["slurm:4242"]["energy_joules"]["total"] == 8.0
    assert live["docker:abc"]["energy_joules"]["total"] == 4.0 and live["docker:abc"]["user"] == "alice"
    ledger.job_ended(JOB, T0 + 3)
    assert [str(s.key) for s in ledger.live_jobs(running=True)] == ["docker:abc"]
    assert ledger.flush()
    again = {str(s.key): s.as_dict() for s in ledger.live_jobs()}
    assert again["slurm:4242"]["energy_joules"]["total"] == 8.0
    assert ledger.live_job("abc").as_dict()["energy_joules"]["total"] == 4.0


def test_a_restarted_agent_continues_the_same_record(path: Path, clock: FakeClock) -> None:
    first = Ledger(path, "node1", clock, background=False)
    first.job_seen(JOB, ALICE, T0)
    tick(first, T0 + 1)
    first.close()  # close flushes
    second = Ledger(path, "node1", clock, background=False)
    second.job_seen(JOB, JobInfo(user="alice"), T0 + 100)  # metadata it cannot see now is kept
    tick(second, T0 + 101)
    second.job_ended(JOB, T0 + 102)
    tick(second, T0 + 102)  # the last interval's energy, recorded after the end: the job stays ended
    second.close()
    assert rows(path, 'SELECT count(*), min(start), max("end"), max(last_seen), max(name) FROM jobs') == [
        (1, T0, T0 + 102, T0 + 102, "train")
    ]
    third = Ledger(path, "node1", clock, background=False)
    third.job_seen(JOB, ALICE, T0 + 130)  # seen again within a minute of its end: a wrong end, running again
    third.close()
    s = open_readonly(path).job("4242")
    assert s.end is None and s.start == T0 and s.by_component()["total"] == 12.0 and s.run == 1


def test_a_reused_job_id_after_the_end_is_a_new_job(path: Path, clock: FakeClock) -> None:
    first = Ledger(path, "node1", clock, background=False)
    first.job_seen(JOB, ALICE, T0)
    tick(first, T0 + 1)
    first.job_ended(JOB, T0 + 10)
    first.close()
    # slurmctld's state was reset: the same id comes back an hour later for another user's job
    second = Ledger(path, "node1", clock, background=False)
    bob = JobInfo(user="bob", uid=1001, name="eval")
    second.job_seen(JOB, bob, T0 + 3600)
    second.record(T0 + 3601, {JOB: (bob, {GPU: 4.0})}, unattributed={}, node={GPU: 4.0})
    live = {s.ref: s for s in second.live_jobs()}  # before the flush, the pending news is the new run
    assert sorted(live) == ["slurm:4242", "slurm:4242#2"]
    assert live["slurm:4242#2"].start == T0 + 3600 and live["slurm:4242#2"].total_j == 4.0
    assert second.live_job_hours(live["slurm:4242"]).energy_j == {hour_of(T0 + 1): {CPU: 2.0, GPU: 2.0}}
    assert second.live_job_hours(live["slurm:4242#2"]).energy_j == {hour_of(T0 + 3601): {GPU: 4.0}}
    second.close()
    reader = open_readonly(path)
    old, new = reader.job("slurm:4242#1"), reader.job("4242")  # a bare id names the latest run
    assert (old.run, old.info.user, old.start, old.end, old.total_j) == (1, "alice", T0, T0 + 10, 4.0)
    assert (new.run, new.info.user, new.start, new.end, new.total_j) == (2, "bob", T0 + 3600, None, 4.0)
    assert new.as_dict()["ref"] == "slurm:4242#2"
    assert reader.job_hours(new).energy_j == {hour_of(T0 + 3601): {GPU: 4.0}}
    with pytest.raises(JobNotFound, match=r"no run 3.*its runs: 1, 2"):
        reader.job("4242#3")


CRASH_SCRIPT = """
import sys, time
from pathlib import Path
from agent.ledger.writer import Ledger
from collectors.workloads import JobInfo, JobKey
from tests.ledger.test_ledger import tick, T0

ledger = Ledger(Path(sys.argv[1]), "node1", background=sys.argv[2] == "thread", flush_seconds=0.01)
if sys.argv[2] == "manual":
    for i in range(10):
        tick(ledger, T0 + i + 1)
    assert ledger.flush()
    for i in range(10, 15):
        tick(ledger, T0 + i + 1)
    print("ready", flush=True)
    time.sleep(60)
else:
    i, printed = 0, False
    while True:
        i += 1
        tick(ledger, T0 + 97 * i)  # crosses an hour every ~37 intervals
        if i >= 2000 and ledger.last_flush_at is not None and not printed:
            printed = print("ready", flush=True) or True
"""


def _run_until_killed(path: Path, mode: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(path), mode], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_after_kill_9_exactly_what_was_flushed_is_there_and_counting_goes_on(path: Path) -> None:
    _run_until_killed(path, "manual")
    s = open_readonly(path).job("4242")
    assert s.by_component()["total"] == 40.0 and s.gpu_seconds == 10.0 and s.last_seen == T0 + 10
    after = Ledger(path, "node1", background=False)
    tick(after, T0 + 100)
    after.close()
    assert rows(path, "SELECT count(*) FROM jobs") == [(1,)]
    assert open_readonly(path).job("4242").by_component()["total"] == 44.0


def test_kill_9_during_background_flushes_leaves_whole_transactions(path: Path) -> None:
    _run_until_killed(path, "thread")
    s = open_readonly(path).job("4242")
    intervals = s.gpu_seconds
    assert intervals >= 1 and intervals == int(intervals)
    assert s.by_component() == {
        "cpu": 2 * intervals,
        "dram": 0.0,
        "gpu": 2 * intervals,
        "total": 4 * intervals,
    }
    for b in open_readonly(path).balance():
        assert b.jobs_j + b.unattributed_j == b.node_j, b


# ---- failures: nothing lost, nothing counted twice --------------------------------------------------


def test_a_locked_database_fails_fast_keeps_the_sums_and_writes_them_after(
    ledger: Ledger, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tick(ledger, T0 + 1)
    assert ledger.flush()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO node_energy VALUES ('other', 0, 'cpu', 'rapl', 1.0)")
    with caplog.at_level(logging.INFO, logger="greenai.ledger"):
        tick(ledger, T0 + 2)
        assert not ledger.flush()
        tick(ledger, T0 + 3)  # sampling goes on
        assert not ledger.flush()
        assert ledger.errors == {"locked": 2} and not ledger.last_flush_ok
        assert ledger.last_error.startswith("locked: ") and ledger.pending_rows == 6
        # readers are not blocked by the writer's lock
        assert open_readonly(path).job("4242").by_component()["total"] == 4.0
        assert ledger.live_job("4242").by_component()["total"] == 12.0
        holder.execute("COMMIT")
        holder.close()
        assert ledger.flush() and ledger.last_flush_ok and ledger.pending_rows == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "locked" in warnings[0].getMessage()
    assert any("writing again" in r.getMessage() for r in caplog.records)
    assert open_readonly(path).job("4242").by_component()["total"] == 12.0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that really fills up (needs root, or the test is skipped)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_keeps_the_sums_until_there_is_space(small_fs: Path, clock: FakeClock) -> None:
    path = small_fs / "ledger.db"
    led = Ledger(path, "node1", clock, background=False)
    tick(led, T0 + 1)
    assert led.flush()
    filler = _fill(small_fs)
    for i in range(2, 200):
        tick(led, T0 + i, key=JobKey("slurm", str(i)))  # many new rows: the WAL must grow
        if i % 50 == 0:
            assert not led.flush()
    assert led.errors.keys() == {"disk_full"} and led.pending_rows > 0
    filler.unlink()
    assert led.flush() and led.pending_rows == 0
    led.close()
    jobs = open_readonly(path).jobs()
    assert len(jobs) == 199 and sum(s.by_component()["total"] for s in jobs) == 4.0 * 199


def test_failures_are_counted_by_reason(path: Path) -> None:
    Ledger(path, "node1", background=False).close()
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as e:
        conn.execute("INSERT INTO node_energy VALUES ('n', 0, 'cpu', 'rapl', 1.0)")
    conn.close()
    assert ledger_schema.error_reason(e.value) == "read_only"
    assert ledger_schema.error_reason(OSError(5, "Input/output error")) == "io_error"


def test_non_finite_figures_are_ignored_and_counted(ledger: Ledger) -> None:
    ledger.record(T0 + 1, {JOB: (ALICE, {CPU: float("nan"), GPU: 1.0})}, {CPU: float("inf")}, {GPU: 1.0})
    assert ledger.flush()
    assert ledger.errors == {"invalid_value": 2} and ledger.last_flush_ok
    assert ledger.live_job("4242").by_component()["total"] == 1.0


def test_text_that_is_not_utf8_is_stored_escaped(ledger: Ledger, path: Path) -> None:
    name = b"bad\xffname".decode("utf-8", "surrogateescape")
    ledger.job_seen(JOB, JobInfo(name=name, user="a\0b"), T0)
    assert ledger.flush()
    s = open_readonly(path).job("4242")
    assert s.info.name == "bad\\xffname" and s.info.user == "a\0b"


def test_the_writer_thread_flushes_while_recording_never_waits_for_the_database(path: Path) -> None:
    Ledger(path, "node1", background=False).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    led = Ledger(path, "node1", flush_seconds=0.01, busy_timeout_s=1.0)
    try:
        started = time.monotonic()
        for i in range(1000):  # meanwhile the thread waits up to 1 s for the lock, again and again
            tick(led, T0 + i + 1)
        assert time.monotonic() - started < 0.5
        wait_for(lambda: led.errors.get("locked"), 10, "a flush to fail on the lock")
        holder.execute("COMMIT")
        wait_for(lambda: led.last_flush_ok and led.pending_rows == 0, 10, "the thread to flush")
    finally:
        holder.close()
        led.close()
    assert open_readonly(path).job("4242").by_component()["total"] == 4000.0


def test_close_stops_the_writer_thread_after_a_last_flush(path: Path) -> None:
    led = Ledger(path, "node1", flush_seconds=3600)
    tick(led, T0 + 1)
    led.close(timeout_s=5)
    assert open_readonly(path).job("4242").by_component()["total"] == 4.0


# ---- the file: schema versions and permissions ------------------------------------------------------


def test_an_older_schema_is_upgraded_in_place(path: Path) -> None:
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in ledger_schema.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO jobs VALUES (7, 'slurm', '4242', 'node1', 'alice', NULL, 'old', '', '', ?, NULL, ?)",
        (T0, T0),
    )
    conn.execute("INSERT INTO energy VALUES (7, ?, 'cpu', 'rapl', 5.0)", (T0,))
    conn.close()
    with pytest.raises(LedgerError, match="older than"):
        open_readonly(path)
    led = Ledger(path, "node1", background=False)
    tick(led, T0 + 1)
    led.close()
    assert rows(path, "PRAGMA user_version") == [(ledger_schema.SCHEMA_VERSION,)]
    assert ("jobs_by_user",) in rows(path, "SELECT name FROM sqlite_master WHERE type = 'index'")
    assert rows(path, "SELECT id, run, gpu_count, method FROM jobs") == [(7, 1, None, "")]  # v5 rebuilt jobs
    assert rows(path, "PRAGMA foreign_key_check") == []
    s = open_readonly(path).job("4242")
    assert s.by_component()["cpu"] == 7.0 and s.info.name == "train"


@pytest.mark.parametrize("opener", [Ledger, open_readonly])
def test_a_newer_schema_is_refused_in_one_line(path: Path, opener: object) -> None:
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(LedgerError) as e:
        Ledger(path, "node1", background=False) if opener is Ledger else open_readonly(path)
    assert "schema version 99" in str(e.value) and "newer" in str(e.value) and "\n" not in str(e.value)


def test_a_file_that_is_not_a_ledger_is_refused_in_one_line(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database at all" * 100)
    for open_it in (lambda: Ledger(path, "n", background=False), lambda: open_readonly(path)):
        with pytest.raises(LedgerError, match="not a readable SQLite ledger"):
            open_it()
    other = path.with_name("other.db")
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(LedgerError, match="not a greenai ledger"):
        Ledger(other, "n", background=False)


def test_the_ledger_and_its_wal_files_are_readable_by_the_owner_only(path: Path) -> None:
    old = os.umask(0)
    try:
        led = Ledger(path, "node1", background=False)
        tick(led, T0 + 1)
        assert led.flush()
        for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
            assert (path.parent / name).stat().st_mode & 0o777 == 0o600, name
        assert path.parent.stat().st_mode & 0o077 == 0
        led.close()
    finally:
        os.umask(old)


def test_a_ledger_left_world_readable_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path, "node1", background=False).close()
    path.chmod(0o644)
    Ledger(path, "node1", background=False).close()
    assert path.stat().st_mode & 0o777 == 0o600
