"""`greenai card`: an Energy Card for a model (its runs, filtered by phase and time) or one job.

`select` finds and prices the runs; `totals` sums them (energy, CO2e, ranges, kinds, time, places);
`standards` makes Hugging Face's `co2_eq_emissions` block and the EU AI Act Annex XI figures;
`figures` makes every figure (the JSON form) and the energy impact statement; `markdown` writes the
Markdown card, whose YAML front matter is the `co2_eq_emissions` block. Layout and field meanings:
docs/cards.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from agent.carbon.data import CodecarbonData
from agent.carbon.model import CarbonModel
from agent.commands.card.figures import card_fields
from agent.commands.card.markdown import markdown
from agent.commands.card.select import Selection, Subject, embodied_covers, priced_runs, selection
from agent.commands.failures import EXIT_OK
from agent.config.checks import ArgumentError
from agent.config.work import PHASES
from agent.units import json_text

__all__ = ["PHASES", "Selection", "Subject", "run", "selection"]


def run(
    paths: Sequence[Path],
    subject: Subject,
    fmt: str,
    model: CarbonModel,
    out: TextIO,
    data: CodecarbonData | None = None,
    chosen: Selection | None = None,
) -> int:
    """`greenai card`: writes the card to `out`; raises LedgerError (JobNotFound, AmbiguousJob ...), and
    ArgumentError for filters with a job."""
    chosen = chosen if chosen is not None else Selection()
    if subject.kind == "job" and not chosen.empty:
        raise ArgumentError(
            "--phase, --year, --since and --until choose among a model's runs; not with --job"
        )
    runs = priced_runs(paths, subject, chosen, model, data)
    fields = card_fields(subject, runs, chosen, embodied_covers(runs), data)
    out.write(json_text(fields, indent=2) + "\n" if fmt == "json" else markdown(fields))
    return EXIT_OK
