"""What the operator reads from the ledger writer: its health before and after a failure, the log
lines (once per state, naming the file, the reason and what is kept), and annotations in the live view."""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger.writer import Ledger
from collectors.workloads import JobInfo, JobKey
from tests.support.clock import FakeClock
from tests.support.sqlite_rows import rows

T0 = 1_714_521_600.0
JOB = JobKey("slurm", "4242")
ALICE = JobInfo(user="alice", uid=1000, name="train")
GPU = ("gpu", "nvml")
LOCKED = "locked: OperationalError: database is locked"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    led = Ledger(path, "node1", FakeClock(T0), background=False, busy_timeout_s=0.05)
    yield led
    led.close()


def tick(ledger: Ledger, t: float, joules: float = 2.0) -> None:
    ledger.record(t, {JOB: (ALICE, {GPU: joules})}, unattributed={}, node={GPU: joules})


def held(path: Path) -> sqlite3.Connection:
    """Another writer holding the ledger's write lock until its ROLLBACK."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "greenai.ledger" and r.levelno == level]


def test_a_new_ledger_is_healthy_before_its_first_flush(ledger: Ledger) -> None:
    assert (ledger.last_flush_ok, ledger.last_error, ledger.last_flush_at, ledger.errors) == (
        True,
        "",
        None,
        {},
    )
    assert ledger.flush() is True  # nothing to write is no failure


def test_a_failing_write_is_said_once_with_its_reason_and_what_is_kept(
    ledger: Ledger, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="greenai.ledger")
    tick(ledger, T0 + 1)
    holder = held(path)
    assert ledger.flush() is False
    assert (ledger.last_flush_ok, ledger.last_error) == (False, LOCKED)
    tick(ledger, T0 + 2)
    assert ledger.flush() is False  # the same failure again: counted, not said again
    assert ledger.errors == {"locked": 2}
    assert lines(caplog, logging.WARNING) == [
        f"ledger {path}: cannot write (locked): OperationalError: database is locked; "
        "keeping 2 rows in memory, retrying every 5s"
    ]
    holder.execute("ROLLBACK")
    holder.close()
    assert ledger.flush() is True and ledger.last_flush_ok and ledger.last_flush_at == T0
    assert lines(caplog, logging.INFO)[-1] == f"ledger {path}: writing again; the pending sums are stored"
    assert rows(path, "SELECT SUM(joules) FROM energy") == [(4.0,)]


def test_rows_that_cannot_be_written_at_close_are_named(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    led = Ledger(path, "node1", FakeClock(T0), background=False, busy_timeout_s=0.05)
    tick(led, T0 + 1)
    holder = held(path)
    led.close()
    holder.execute("ROLLBACK")
    holder.close()
    assert lines(caplog, logging.ERROR) == [f"ledger {path}: 2 rows could not be written: {LOCKED}"]


def test_a_non_finite_figure_is_said_once_and_counted_each_time(
    ledger: Ledger, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tick(ledger, T0 + 1, math.nan)
    tick(ledger, T0 + 2, math.inf)
    tick(ledger, T0 + 3, 2.0)
    assert ledger.errors == {"invalid_value": 4}  # the job's and the node's figure, twice
    assert lines(caplog, logging.WARNING) == [
        f"ledger {path}: ignored a non-finite figure (nan); attribution has a bug"
    ]
    assert ledger.flush()
    assert rows(path, "SELECT SUM(joules) FROM energy") == [(2.0,)]


def test_an_annotation_shows_at_once_and_adds_up_before_the_flush(ledger: Ledger, path: Path) -> None:
    ledger.job_seen(JOB, ALICE, T0)
    tick(ledger, T0 + 1)
    assert ledger.flush()  # the job is stored: no news of it is pending
    first = ledger.annotate("4242", 1000, 3)
    second = ledger.annotate("slurm:4242", None, 4)
    assert (first.tokens, first.samples, second.tokens, second.samples) == (1000, 3, 1000, 7)
    assert ledger.flush()
    assert rows(path, "SELECT tokens, samples FROM jobs") == [(1000, 7)]


def test_every_deletion_of_the_file_is_counted(ledger: Ledger, path: Path) -> None:
    for n in (1, 2):
        tick(ledger, T0 + n)
        path.unlink()
        assert ledger.flush()
        assert ledger.errors == {"deleted": n}
        assert rows(path, "SELECT SUM(joules) FROM energy") == [(2.0,)]
