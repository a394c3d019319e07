"""`greenai ledger check` and `greenai ledger recover`: a ledger's health, and what to do when it is damaged.

check: exit 0 when SQLite's integrity check and our invariants find nothing, else 1, one line per problem.
recover: exit 0 once the new file is written, whatever could not be saved (said line by line).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from agent.commands.failures import EXIT_FAILED, EXIT_OK
from agent.commands.text import escape
from agent.ledger.repair import TableCopy, check, recover


def run_check(path: Path, out: IO[str]) -> int:
    problems = check(path)
    if not problems:
        print(f"ledger {escape(str(path))}: ok", file=out)
        return EXIT_OK
    for problem in problems:
        print(f"ledger {escape(str(path))}: {escape(problem)}", file=out)
    print(
        f"save what can be read with `greenai ledger recover {escape(str(path))}`; the file stays as it is",
        file=out,
    )
    return EXIT_FAILED


def run_recover(path: Path, new: Path | None, out: IO[str]) -> int:
    done = recover(path, new)
    for table in done.tables:
        print(_said(table), file=out)
    target = escape(str(done.out))
    if done.complete:
        print(f"everything readable was saved in {target}", file=out)
    else:
        print(f"what could be read was saved in {target}; the rest is lost", file=out)
    print(
        f"check it with `greenai ledger check --ledger {target}`, then stop the agent, move "
        f"{escape(str(path))} aside and put {target} in its place",
        file=out,
    )
    return EXIT_OK


def _said(copy: TableCopy) -> str:
    line = f"{copy.table}: {copy.copied} rows saved"
    if copy.skipped:
        shown = copy.skipped if len(copy.skipped) <= 3 else [copy.skipped[0], copy.skipped[-1]]
        stretches = "; ".join(f"after {_key(a)} up to {_key(b, end=True)}" for a, b in shown)
        if len(copy.skipped) > 3:
            stretches = f"{len(copy.skipped)} stretches, the first and last: {stretches}"
        line += f"; lost: unreadable rows {stretches} ({escape(copy.error)})"
    if copy.orphans:
        line += f"; lost: {copy.orphans} rows of jobs that could not be read"
    return line


def _key(key: tuple[Any, ...] | None, end: bool = False) -> str:
    if key is None:
        return "the end" if end else "the start"
    return escape(", ".join(str(part) for part in key))
