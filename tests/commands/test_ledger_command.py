"""`greenai ledger check` and `recover` on real damaged files, readers of a damaged ledger, report years
out of range, and a ledger on a read-only mount; all through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger.writer import Ledger
from collectors.workloads import JobInfo, JobKey
from tests.support.clock import FakeClock
from tests.support.processes import run_greenai

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z
GPU = ("gpu", "nvml")
JOBS, HOURS = 40, 60


def make_ledger(path: Path) -> None:
    """JOBS jobs of 1 J per hour for HOURS hours: enough rows for the energy table to span many pages."""
    led = Ledger(path, "node1", FakeClock(T0), background=False)
    for h in range(HOURS):
        t = T0 + 3600 * h + 1
        led.record(
            t,
            {JobKey("slurm", str(j)): (JobInfo(user="alice", model="m"), {GPU: 1.0}) for j in range(JOBS)},
            unattributed={},
            node={GPU: float(JOBS)},
            gpu_seconds={JobKey("slurm", str(j)): 1.0 for j in range(JOBS)},
        )
    led.close()


def leaf_pages(path: Path, table: str) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,)
            )
        ]
    finally:
        conn.close()


def smash(path: Path, page: int) -> None:
    """Overwrite a page's header with garbage (never the file's header, on page 1)."""
    assert page > 1
    page_size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(b"\xff" * 64)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A ledger with one leaf page of `energy` in the middle smashed."""
    path = tmp_path / "ledger.db"
    make_ledger(path)
    pages = leaf_pages(path, "energy")
    assert len(pages) > 5
    smash(path, pages[len(pages) // 2])
    return path


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("greenai: ") and "Traceback" not in done.stderr, (
        done.stderr
    )
    return lines[0]


def test_check_says_ok_for_a_sound_ledger_through_the_config(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    make_ledger(path)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"ledger: {{path: {path}}}\n")
    done = run_greenai("ledger", "check", "--config", str(cfg))
    assert (done.returncode, done.stdout) == (0, f"ledger {path}: ok\n"), done.stderr
    assert run_greenai("ledger", "check", "--ledger", str(tmp_path / "none.db")).returncode == 1


def test_check_finds_a_corrupt_page_and_names_the_recovery(damaged: Path) -> None:
    before = digest(damaged)
    done = run_greenai("ledger", "check", "--ledger", str(damaged))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"ledger {damaged}: SQLite")
    assert lines[-1].startswith(f"save what can be read with `greenai ledger recover {damaged}`")
    assert digest(damaged) == before


def test_check_finds_broken_invariants(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    make_ledger(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE energy SET joules = -1 WHERE (job, hour) IN (SELECT job, hour FROM energy LIMIT 2)"
        )
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("INSERT INTO usage VALUES (9999, 0, 1.0, 1.0)")
    done = run_greenai("ledger", "check", "--ledger", str(path))
    assert done.returncode == 1
    assert f"ledger {path}: energy: 2 rows with negative or non-finite joules" in done.stdout.splitlines()
    assert f"ledger {path}: 1 rows point at jobs that are not in the ledger" in done.stdout.splitlines()


def test_recover_saves_what_can_be_read_and_leaves_the_old_file_alone(damaged: Path) -> None:
    before = digest(damaged)
    done = run_greenai("ledger", "recover", str(damaged))
    assert done.returncode == 0, done.stderr
    new = damaged.with_name("ledger-recovered.db")
    assert digest(damaged) == before and new.exists()
    said = dict(line.split(": ", 1) for line in done.stdout.splitlines()[:5])
    assert said["jobs"] == f"{JOBS} rows saved"
    assert said["usage"] == f"{JOBS * HOURS} rows saved" and said["node_energy"] == f"{HOURS} rows saved"
    assert said["energy"].startswith("") and "lost: unreadable rows after " in said["energy"]
    saved = int(said["energy"].split(" rows saved")[0])
    stored = sqlite3.connect(new).execute("SELECT count(*), SUM(joules) FROM energy").fetchone()
    assert stored == (saved, float(saved))
    assert JOBS * HOURS - 2 * 200 < saved < JOBS * HOURS  # one page of a few dozen rows lost, not more
    assert "the rest is lost" in done.stdout and f"greenai ledger check --ledger {new}" in done.stdout
    assert run_greenai("ledger", "check", "--ledger", str(new)).returncode == 0
    listed = run_greenai("jobs", "--ledger", str(new), "--json")
    assert listed.returncode == 0
    total = sum(j["energy_joules"]["total"] for j in json.loads(listed.stdout))
    assert total == saved
    again = run_greenai("ledger", "recover", str(damaged))  # never overwrites
    assert again.returncode == 2 and "exists" in one_line(again)


def test_recover_of_a_sound_ledger_saves_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    make_ledger(path)
    new = tmp_path / "copy.db"
    done = run_greenai("ledger", "recover", str(path), "--out", str(new))
    assert done.returncode == 0 and f"everything readable was saved in {new}" in done.stdout
    query = "SELECT count(*), SUM(joules) FROM energy"
    assert sqlite3.connect(new).execute(query).fetchone() == sqlite3.connect(path).execute(query).fetchone()


@pytest.mark.parametrize("table", ["jobs", "energy"])
def test_readers_of_a_damaged_ledger_say_so_in_one_line(tmp_path: Path, table: str) -> None:
    path = tmp_path / "ledger.db"
    make_ledger(path)
    pages = leaf_pages(path, table)
    smash(path, pages[len(pages) // 2])
    out = tmp_path / "report"
    for args in (
        ["jobs", "--ledger", str(path)],
        ["job", "7", "--ledger", str(path)],
        ["report", "--year", "2024", "--ledger", str(path), "--out", str(out), "--format", "json"],
        ["card", "--model", "m", "--ledger", str(path), "--format", "json"],
    ):
        done = run_greenai(*args)
        assert done.returncode == 1 and "Traceback" not in done.stderr, (args, done.stderr)
        about = [line for line in done.stderr.splitlines() if str(path) in line]  # (card: a carbon note too)
        assert len(about) == 1 and f"greenai ledger recover {path}" in about[0], (args, done.stderr)


@pytest.mark.parametrize("year", ["99999", "0", "-5", "10000"])
def test_a_report_year_out_of_range_is_one_line_naming_the_range(tmp_path: Path, year: str) -> None:
    path = tmp_path / "ledger.db"
    make_ledger(path)
    done = run_greenai("report", "--year", year, "--ledger", str(path), "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    assert one_line(done) == f"greenai: --year {year}: a report covers a year from 1970 to 9998"


# ---- a read-only mount ---------------------------------------------------------------------------------


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(source folder, the same folder mounted read-only); skipped where bind mounts are not allowed."""
    source, mounted = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    bind = subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bind.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], check=True, capture_output=True)
        yield source, mounted
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


def test_a_ledger_on_a_read_only_mount_is_read(read_only_mount: tuple[Path, Path]) -> None:
    source, mounted = read_only_mount
    make_ledger(source / "ledger.db")  # closed: the log is folded in, only the file remains
    for side in ("-wal", "-shm"):
        (source / f"ledger.db{side}").unlink(missing_ok=True)
    done = run_greenai("jobs", "--ledger", str(mounted / "ledger.db"), "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == JOBS
    assert run_greenai("ledger", "check", "--ledger", str(mounted / "ledger.db")).returncode == 0


def test_a_write_ahead_log_on_a_read_only_mount_is_explained_not_blamed_on_permissions(
    read_only_mount: tuple[Path, Path],
) -> None:
    source, mounted = read_only_mount
    make_ledger(source / "ledger.db")
    script = (
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('PRAGMA wal_autocheckpoint = 0'); "
        "c.execute(\"INSERT INTO node_energy VALUES ('n', 0, 'cpu', 'x', 1.0)\"); "
        "os._exit(0)"  # as a running agent leaves it: rows in the log, not yet in the file
    )
    subprocess.run([sys.executable, "-c", script, str(source / "ledger.db")], check=True)
    (source / "ledger.db-shm").unlink()
    done = run_greenai("jobs", "--ledger", str(mounted / "ledger.db"))
    assert done.returncode == 1
    line = one_line(done)
    assert "read-only file system" in line and "ledger.db-shm" in line and "run this as" not in line
