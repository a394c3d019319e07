"""Reading a ledger file's rows directly, as a check beside what the CLI and the API show."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """All rows of `sql` on the SQLite file at `path`, read on a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()
