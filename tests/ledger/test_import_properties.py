"""Properties of the importers over generated input: a file's energy is kept exactly, spread over the
hours a run overlaps without a joule lost, and any cell text is either read or refused in one line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.ledger.import_csv import parse_runs_csv
from agent.ledger.import_files import ImportedRun, ImportFileError
from agent.ledger.imports import hour_shares, spread
from agent.units import HOUR_SECONDS

PATIENT = settings(deadline=None, max_examples=60)
"""No time limit per example: a busy 2-core machine must not fail a property."""
T_2000, T_2090, YEAR_2100 = 946_684_800, 3_786_912_000, 4_102_444_800
starts = st.integers(T_2000, T_2090)
durations = st.integers(0, 700 * 24 * HOUR_SECONDS)  # within the 2-year bound
kwh = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)


@PATIENT
@given(starts, durations, kwh)
def test_a_run_is_spread_over_its_hours_and_nothing_is_lost(start: int, length: int, total: float) -> None:
    shares = hour_shares(start, start + length)
    hours = [h for h, _ in shares]
    assert hours == sorted(set(hours)) and all(h % HOUR_SECONDS == 0 for h in hours)
    assert sum(s for _, s in shares) == pytest.approx(1.0, rel=1e-9)
    assert all(0 < s <= 1 for _, s in shares)
    parts = spread(total, shares)
    assert sum(p for _, p in parts) == pytest.approx(total, rel=1e-12, abs=1e-9)


def _parse(text: str) -> list[ImportedRun]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "runs.csv"
        path.write_text(text, encoding="utf-8")
        return list(parse_runs_csv(path))


@PATIENT
@given(st.lists(st.tuples(starts, durations, kwh, kwh, kwh), min_size=1, max_size=8))
def test_every_runs_energy_is_read_as_written(rows: list[tuple[int, int, float, float, float]]) -> None:
    lines = ["job_id,start,end,cpu_kwh,gpu_kwh,dram_kwh"]
    lines += [f"j{i},{s},{s + d},{c!r},{g!r},{m!r}" for i, (s, d, c, g, m) in enumerate(rows)]
    runs = _parse("\n".join(lines) + "\n")
    assert [r.energy_kwh for r in runs] == [
        pytest.approx(c + g + m, rel=1e-12, abs=1e-12) for _, _, c, g, m in rows
    ]


@PATIENT
@given(st.sampled_from(["start", "end", "cpu_kwh", "gpu_hours", "tokens", "pue"]), st.text(max_size=30))
def test_any_text_in_a_cell_is_read_or_refused_in_one_line(column: str, cell: str) -> None:
    values = {"job_id": "j1", "start": "2024-05-01T00:00Z", "end": "2024-05-01T02:00Z", "cpu_kwh": "1.5"}
    values[column] = cell.replace(",", " ").replace('"', " ").replace("\n", " ").replace("\r", " ")
    header = [
        "job_id",
        "start",
        "end",
        "cpu_kwh",
        *([column] if column not in ("start", "end", "cpu_kwh") else []),
    ]
    text = ",".join(header) + "\n" + ",".join(values.get(h, "") for h in header) + "\n"
    try:
        runs = _parse(text)
    except ImportFileError as e:
        assert "\n" not in str(e) and str(e)
        return
    (run,) = runs
    assert 0 <= run.energy_kwh <= 1e9 and 0 <= run.start <= run.end < YEAR_2100
