"""A damaged ledger: `check` (SQLite's integrity check and our invariants) and `recover` (copy what can
be read into a new file, leaving the old one untouched).

SQLite's own `.recover` lives in its command-line shell, not in the Python module, so `recover` copies
table by table in key order; where a page cannot be read it seeks past it (larger and larger steps
along the key) and goes on, noting each stretch it skipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.checks import ArgumentError
from agent.ledger.files import open_for_writing
from agent.ledger.read import connect_readonly, on_read_only_fs
from agent.ledger.schema import SCHEMA_VERSION, LedgerError, LedgerMissing

TABLES = ("jobs", "energy", "usage", "node_energy", "unattributed")
"""The ledger's tables, parents first."""

_MAX_PROBLEMS = 20
_BATCH = 1000
_MAX_STEP = 1 << 62


def _open_source(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise LedgerMissing(f"no ledger at {path}; pass --ledger PATH or --config FILE")
    try:
        return connect_readonly(path)[0]
    except LedgerError:
        if on_read_only_fs(path):
            raise
    # Damage in the first page, or a file that is not a ledger: the checks below say which.
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


def check(path: Path) -> list[str]:
    """What is wrong with the ledger at `path`, one line each; empty when nothing is."""
    conn = _open_source(path)
    try:
        return _problems(conn)
    finally:
        conn.close()


def _problems(conn: sqlite3.Connection) -> list[str]:
    try:
        found = [str(r[0]) for r in conn.execute(f"PRAGMA integrity_check({_MAX_PROBLEMS})")]
    except sqlite3.DatabaseError as e:
        return [f"SQLite cannot check it: {e}"]
    if found != ["ok"]:
        return [f"SQLite: {line}" for line in found]
    out: list[str] = []
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version != SCHEMA_VERSION:
        out.append(f"schema version {version}, this greenai's is {SCHEMA_VERSION}")
        return out  # the queries below assume the current schema
    orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
    if orphans:
        out.append(f"{len(orphans)} rows point at jobs that are not in the ledger")
    for table in ("energy", "node_energy", "unattributed"):
        bad = conn.execute(
            f"SELECT count(*) FROM {table} WHERE joules IS NULL OR joules < 0 OR abs(joules) > 1e300"
        ).fetchone()[0]
        if bad:
            out.append(f"{table}: {bad} rows with negative or non-finite joules")
    bad = conn.execute('SELECT count(*) FROM jobs WHERE "end" < start OR last_seen < start').fetchone()[0]
    if bad:
        out.append(f"jobs: {bad} jobs that end or were last seen before they start")
    return out


@dataclass
class TableCopy:
    """One table's rescue: the rows copied, and each stretch skipped (the key read last before it,
    or None at the table's start, and the key where reading went on, or None: the rest was lost)."""

    table: str
    copied: int = 0
    skipped: list[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]] = field(default_factory=list)
    error: str = ""
    """Why rows were skipped, as SQLite said."""
    orphans: int = 0
    """Rows copied but dropped because their job was lost."""

    @property
    def complete(self) -> bool:
        return not self.skipped and not self.orphans


@dataclass
class Recovery:
    out: Path
    tables: list[TableCopy]

    @property
    def complete(self) -> bool:
        return all(t.complete for t in self.tables)


def default_out(path: Path) -> Path:
    return path.with_name(f"{path.stem}-recovered{path.suffix or '.db'}")


def recover(path: Path, out: Path | None = None) -> Recovery:
    """Copy what can be read of the ledger at `path` into a new ledger `out`; `path` is only read."""
    out = out or default_out(path)
    if out.exists():
        raise ArgumentError(f"{out} exists; remove it or pass --out NEW")
    source = _open_source(path)
    try:
        target = open_for_writing(out, busy_timeout_s=1.0)
    except BaseException:
        source.close()
        raise
    try:
        target.execute("PRAGMA foreign_keys = OFF")
        target.execute("BEGIN IMMEDIATE")
        copies = [_copy_table(source, target, table) for table in TABLES]
        _drop_orphans(target, copies)
        target.execute("COMMIT")
    finally:
        source.close()
        target.close()
    return Recovery(out, copies)


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, int]]:
    """(name, position in the primary key, 0 if none) of a table's columns; empty if unreadable."""
    try:
        return [(str(r[1]), int(r[5])) for r in conn.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return []


def _copy_table(source: sqlite3.Connection, target: sqlite3.Connection, table: str) -> TableCopy:
    copy = TableCopy(table)
    theirs = _columns(source, table)
    ours = {name for name, _ in _columns(target, table)}
    if not theirs:
        copy.skipped.append((None, None))
        copy.error = "the table's definition cannot be read"
        return copy
    names = [n for n, _ in theirs if n in ours]
    key = [n for n, pk in sorted(theirs, key=lambda c: c[1]) if pk] or ["rowid"]
    if key == ["id"] or key == ["rowid"]:
        key = ["rowid"]
    wanted = ", ".join(_q(n) for n in (*key, *names))
    columns, marks = ", ".join(_q(n) for n in names), ", ".join("?" * len(names))
    insert = f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})"
    after: tuple[Any, ...] | None = None
    inclusive = False
    rows: list[tuple[Any, ...]] = []
    while True:
        try:
            # Row by row: a failure mid-way keeps every row read before it.
            for row in _rows(source, table, wanted, key, after, inclusive):
                rows.append(row[len(key) :])
                after, inclusive = tuple(row[: len(key)]), False
                if len(rows) >= _BATCH:
                    copy.copied += _insert(target, insert, rows)
            copy.copied += _insert(target, insert, rows)
            return copy
        except sqlite3.DatabaseError as e:
            copy.copied += _insert(target, insert, rows)
            copy.error = copy.error or str(e)
            resumed = _seek_past(source, table, key, after)
            copy.skipped.append((after, resumed))
            if resumed is None:
                return copy
            after, inclusive = resumed, True


def _insert(target: sqlite3.Connection, insert: str, rows: list[tuple[Any, ...]]) -> int:
    """Write `rows` and empty the list; how many there were."""
    target.executemany(insert, rows)
    done = len(rows)
    rows.clear()
    return done


def _rows(
    conn: sqlite3.Connection,
    table: str,
    wanted: str,
    key: Sequence[str],
    after: tuple[Any, ...] | None,
    inclusive: bool,
) -> Iterator[tuple[Any, ...]]:
    """The rows in key order, from the key after `after` (or `after` itself, if `inclusive`)."""
    order = ", ".join(_q(k) for k in key)
    where, params = "", ()
    if after is not None:
        where = f"WHERE ({order}) {'>=' if inclusive else '>'} ({', '.join('?' * len(after))})"
        params = after
    yield from conn.execute(f"SELECT {wanted} FROM {table} {where} ORDER BY {order}", params)


def _seek_past(
    conn: sqlite3.Connection, table: str, key: Sequence[str], after: tuple[Any, ...] | None
) -> tuple[Any, ...] | None:
    """The first readable key past a damaged stretch that begins after `after`; None if none is found.

    Tried from the last integer column of the key to the first: a seek reads only the pages on the way
    to the first key above a bound, so the bound is raised in doubling steps until a seek succeeds,
    then lowered by bisection to the least bound that does (losing no readable row to the overshoot).
    A text column is skipped past whole.
    """
    if after is None:
        return None  # the table's first page is unreadable: nowhere known to seek from
    for i in reversed(range(len(key))):
        value = after[i]
        if not isinstance(value, int):
            found = _seek(conn, table, key, i, after, value)
            if found is not _FAILED:
                return found if isinstance(found, tuple) else None
            continue
        failed, step = -1, 0
        while step < _MAX_STEP:
            found = _seek(conn, table, key, i, after, value + step)
            if found is not _FAILED:
                break
            failed, step = step, max(1, step * 2)
        else:
            continue
        if found is None:
            continue  # nothing past this bound at this level: try a shorter prefix
        while step - failed > 1:  # found at `step`, failed at `failed`: the least step that reads
            middle = (failed + step) // 2
            there = _seek(conn, table, key, i, after, value + middle)
            if there is _FAILED:
                failed = middle
            else:
                step, found = middle, there
        return found if isinstance(found, tuple) else None
    return None


_FAILED = object()


def _seek(
    conn: sqlite3.Connection, table: str, key: Sequence[str], i: int, after: tuple[Any, ...], bound: Any
) -> object:
    """The first key whose first i + 1 columns are above (after[:i], bound): a tuple, None if there is
    none, or _FAILED if the pages on the way cannot be read."""
    order = ", ".join(_q(k) for k in key)
    prefix = ", ".join(_q(k) for k in key[: i + 1])
    params = (*after[:i], bound)
    sql = (
        f"SELECT {order} FROM {table} WHERE ({prefix}) > ({', '.join('?' * len(params))}) "
        f"ORDER BY {order} LIMIT 1"
    )
    try:
        row = conn.execute(sql, params).fetchone()
    except sqlite3.DatabaseError:
        return _FAILED
    return None if row is None else tuple(row)


def _drop_orphans(target: sqlite3.Connection, copies: list[TableCopy]) -> None:
    """Remove copied rows whose job was lost: readers join them to jobs, so they would never show."""
    for copy in copies:
        if copy.table in ("energy", "usage"):
            copy.orphans = target.execute(
                f"DELETE FROM {copy.table} WHERE job NOT IN (SELECT id FROM jobs)"
            ).rowcount
            copy.copied -= copy.orphans


def _q(name: str) -> str:
    return name if name == "rowid" else '"' + name.replace('"', '""') + '"'
