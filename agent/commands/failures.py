"""Expected failures, in one table: which of our exceptions a command may end with, and its exit code.

0 done; 1 nothing to show, or what to read is unreachable (no ledger, no such job, Prometheus down,
a node that cannot be measured as configured); 2 bad input (the config, a flag, a file to import,
an id that names several jobs). Each is printed as one line, `greenai: <message>`, with the
message's control characters escaped. An exception not in the table is a bug and keeps its
traceback.
"""

from __future__ import annotations

from typing import TextIO

from agent.commands.dashboards import DashboardError
from agent.commands.text import escape
from agent.config.checks import ArgumentError, ConfigError
from agent.ledger.import_files import ImportFileError
from agent.ledger.schema import AmbiguousJob, LedgerError
from agent.live.sources import SourceMissing
from agent.report.prometheus import PromError, PromUrlError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

EXIT_CODES: tuple[tuple[type[Exception], int], ...] = (
    (ConfigError, EXIT_BAD_INPUT),  # the config file, carbon data, an intensity CSV
    (ArgumentError, EXIT_BAD_INPUT),  # a command-line flag or argument
    (ImportFileError, EXIT_BAD_INPUT),  # a file to import
    (DashboardError, EXIT_BAD_INPUT),  # a dashboard source
    (AmbiguousJob, EXIT_BAD_INPUT),  # before LedgerError, of which it is one: the user picks a job
    (LedgerError, EXIT_FAILED),  # no ledger, no such job, a ledger that cannot be read or written
    (PromUrlError, EXIT_BAD_INPUT),  # before PromError, of which it is one
    (PromError, EXIT_FAILED),  # Prometheus unreachable or refusing
    (SourceMissing, EXIT_FAILED),  # the agent cannot measure this node as configured
)
"""First match wins, so a subclass comes before its base."""

EXPECTED: tuple[type[Exception], ...] = tuple(kind for kind, _ in EXIT_CODES)
"""Catch these around a command, then `report()`."""


def exit_code(error: Exception) -> int:
    """The exit code of an expected failure; raises `error` again if it is not one."""
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    raise error


def report(error: Exception, err: TextIO) -> int:
    """Print `error` as one `greenai: ...` line on `err`; its exit code."""
    code = exit_code(error)
    err.write(f"greenai: {escape(str(error))}\n")
    return code
