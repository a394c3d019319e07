"""No non-finite number is stored or emitted: a huge import is refused, and a ledger row holding a huge
but finite figure gives strict JSON (null where a sum overflowed), never `Infinity` or `NaN`."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.units import json_text


def strict(text: str) -> Any:
    """JSON as RFC 8259 has it: `Infinity`, `-Infinity` and `NaN` are errors."""

    def refuse(token: str) -> Any:
        raise ValueError(f"non-finite number in JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_json_text_writes_null_for_what_overflowed() -> None:
    value = {"a": math.inf, "b": [1.5, -math.inf, (math.nan, 2)], "c": "x", "d": None, "e": 3}
    assert strict(json_text(value)) == {"a": None, "b": [1.5, None, [None, 2]], "c": "x", "d": None, "e": 3}
    with pytest.raises(ValueError):
        strict('{"a": Infinity}')


def test_importing_1e308_kwh_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs.csv"
    runs.write_text("job_id,start,end,energy_kwh\na,2024-03-01T00:00:00Z,2024-03-01T02:00:00Z,1e308\n")
    assert main(["import", "csv", str(runs), "--ledger", str(tmp_path / "l.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row 2: column 'energy_kwh': value '1e308': too large" in err
    assert (
        not (tmp_path / "l.db").exists()
        or not sqlite3.connect(tmp_path / "l.db").execute("SELECT COUNT(*) FROM energy").fetchone()[0]
    )


@pytest.fixture
def huge(tmp_path: Path) -> Path:
    """A ledger with two runs, whose energy rows are then raised to 1e308 J each: finite, but their sum,
    and every figure made from it, is not."""
    runs = tmp_path / "runs.csv"
    runs.write_text(
        "job_id,start,end,energy_kwh,model,phase,tokens\n"
        "a,2024-03-01T00:00:00Z,2024-03-01T02:00:00Z,10,m,pretraining,1000\n"
        "b,2024-03-02T00:00:00Z,2024-03-02T02:00:00Z,10,m,pretraining,1000\n"
    )
    ledger = tmp_path / "l.db"
    assert main(["import", "csv", str(runs), "--ledger", str(ledger)]) == 0
    with sqlite3.connect(ledger) as conn:
        conn.execute("UPDATE energy SET joules = 1e308")
        conn.execute("UPDATE node_energy SET joules = 1e308")
    return ledger


def test_job_and_jobs_json_stay_strict(huge: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["job", "imported:a", "--ledger", str(huge), "--json"]) == 0
    job = strict(capsys.readouterr().out)
    assert job["job_id"] == "a"
    assert main(["jobs", "--ledger", str(huge), "--json"]) == 0
    assert len(strict(capsys.readouterr().out)) == 2


def test_report_and_card_json_stay_strict(
    huge: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert (
        main(["report", "--year", "2024", "--ledger", str(huge), "--out", str(out), "--format", "json"]) == 0
    )
    text = (out / "report.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    strict(text)
    capsys.readouterr()
    assert main(["card", "--model", "m", "--ledger", str(huge), "--format", "json"]) == 0
    strict(capsys.readouterr().out)
