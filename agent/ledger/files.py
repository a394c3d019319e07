"""Opening the ledger for writing: created private (0600, folder 0700), WAL, its schema brought up to date;
and text made storable. Shared by the agent's writer, `greenai annotate` and `greenai import`.

The agent also takes `writer_lock`, so that one agent at a time writes a ledger (two would add each
other's sums); `annotate` and `import` are short transactions and need no lock of their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from typing import IO

from agent.ledger.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    LedgerError,
    LedgerLocked,
    open_problem,
    schema_version,
)

log = logging.getLogger("greenai.ledger")

FILE_MODE = 0o600


def storable(text: str) -> str:
    """Text SQLite can hold: bytes that were not UTF-8 (lone surrogates) become `\\xNN`."""
    if text.isascii():  # nearly all text, told at once, without encoding it
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def open_for_writing(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
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
        raise LedgerError(open_problem(path, e)) from None
    for suffix in SIDECARS:
        _tighten(path.with_name(path.name + suffix))
    return conn


def lock_path(path: Path) -> Path:
    """The lock file beside the ledger, held by the agent that writes it."""
    return path.with_name(path.name + ".lock")


def writer_lock(path: Path) -> IO[str]:
    """Lock `path` for this process until the returned file is closed (or the process ends, kill -9
    included); raises LedgerLocked naming the holder's pid when another agent has it."""
    where = lock_path(path)
    try:
        where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(where, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as e:
        raise LedgerError(
            f"cannot create ledger lock {where}: {e.strerror or e}; check ledger.path"
        ) from None
    lock = os.fdopen(fd, "r+", encoding="ascii")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise LedgerLocked(
            f"ledger {path} is in use by another greenai agent (pid {holder}); stop it, or give this one "
            "another ledger.path"
        ) from None
    except OSError as e:  # a file system without locks: say so rather than write unguarded
        lock.close()
        raise LedgerError(
            f"cannot lock ledger {where}: {e.strerror or e}; put ledger.path on a local disk"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    _tighten(where)
    return lock


FileId = tuple[int, int]
"""(st_dev, st_ino): which file a path names."""


def file_id(path: Path) -> FileId | None:
    """The identity of the file at `path`; None when there is none."""
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    return None


SIDECARS = ("-wal", "-shm")


def sidecar_ids(path: Path) -> dict[str, FileId | None]:
    """The identities of the ledger's -wal and -shm files."""
    return {suffix: file_id(path.with_name(path.name + suffix)) for suffix in SIDECARS}


def remove_sidecars(path: Path, ids: dict[str, FileId | None]) -> None:
    """Remove the -wal and -shm files that are still the ones in `ids`: left by a ledger that was
    deleted or replaced, SQLite would replay that log onto whatever file now has the name."""
    for suffix, known in ids.items():
        side = path.with_name(path.name + suffix)
        if known is not None and file_id(side) == known:
            with contextlib.suppress(FileNotFoundError):
                side.unlink()


def _tighten(path: Path) -> None:
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        pass


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations this file lacks, all in one transaction."""
    if schema_version(conn, path) == SCHEMA_VERSION:
        return  # nothing to do, and no write lock needed to find that out
    # A migration may rebuild a table that others reference: SQLite's documented way needs foreign
    # keys off (a pragma that only takes effect outside a transaction); the ids are kept.
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn, path)
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
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise LedgerError(f"ledger {path}: upgrade left {len(problems)} broken references; not upgraded")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    conn.execute("PRAGMA foreign_keys = ON")
