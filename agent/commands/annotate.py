"""`greenai annotate JOB --tokens N --samples N`: add useful work to a job, for kWh per token or sample."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from agent.commands.failures import EXIT_OK
from agent.config.checks import ArgumentError
from agent.config.work import parse_count
from agent.ledger.annotate import annotate_file
from agent.units import json_text


def run(
    path: Path, job: str, node: str | None, tokens_text: str | None, samples_text: str | None, as_json: bool,
    out: TextIO,
) -> int:  # fmt: skip
    """Add the counts to `job` in the ledger at `path` and print its counts after; raises ArgumentError
    or LedgerError."""
    if tokens_text is None and samples_text is None:
        raise ArgumentError("give --tokens N, --samples N or both")
    tokens = None if tokens_text is None else parse_count(tokens_text, "--tokens", text=True)
    samples = None if samples_text is None else parse_count(samples_text, "--samples", text=True)
    summary = annotate_file(path, job, node, tokens, samples)
    if as_json:
        print(json_text(summary.as_dict(), indent=2), file=out)
    else:
        counts = {"tokens": summary.tokens, "samples": summary.samples}
        print(
            f"{summary.key}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v is not None), file=out
        )
    return EXIT_OK
