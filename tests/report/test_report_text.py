"""The report's words and figures: md, html and json agree; every JSON key is documented; a few large
pretraining runs move the headline training-task figure; energy is never called measured when it
was imported or estimated. Real ledgers, written by `greenai import csv` or the Ledger writer."""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.ledger.writer import Ledger
from agent.report.numbers import tidy_range
from agent.units import ENERGY_UNITS, MASS_UNITS, range_text, share_text, sig
from collectors.workloads import JobInfo, JobKey
from tests.support.clock import FakeClock
from tests.support.processes import REPO

KWH = 3.6e6
HEADER = "job_id,start,end,energy_kwh,phase,model,intensity_g_per_kwh,tokens\n"
BIG_KWH = 250_000.0
SMALL_KWH = 40.0
NOT_MEASURED = re.compile(r"(?<!not )\b(measured|metered)\b", re.I)
"""`measured` or `metered`, except in `not measured`."""

Table = list[list[str]]


def history(year: int, small: int, big_kwh: float) -> str:
    """Two large pretraining runs and `small` fine-tuning runs in `year`, at 100 g/kWh."""
    rows = [
        f"pt-{year}-{n},{year}-02-0{n + 1}T00:00:00Z,{year}-02-0{n + 1}T20:00:00Z,{big_kwh},pretraining,big,"
        f"100,{10**11}\n"
        for n in range(2)
    ]
    rows += [
        f"ft-{year}-{n},{year}-05-01T{n % 24:02d}:00:00Z,{year}-05-01T{n % 24:02d}:30:00Z,{SMALL_KWH},"
        f"fine-tuning,small,100,\n"
        for n in range(small)
    ]
    return HEADER + "".join(rows)


def report(ledger: Path, out: Path, year: int, baseline: int | None = None) -> dict[str, Any]:
    args = [
        "report",
        "--year",
        str(year),
        "--ledger",
        str(ledger),
        "--out",
        str(out),
        "--format",
        "json,md,html",
    ]
    if baseline is not None:
        args += ["--baseline-year", str(baseline)]
    assert main(args) == 0
    doc: dict[str, Any] = json.loads((out / "report.json").read_text())
    return doc


def imported(tmp: Path, small: int, name: str = "runs") -> Path:
    """A ledger with 2023 (the baseline) and 2024, the large runs halved in 2024, via `greenai import csv`."""
    ledger = tmp / f"{name}.db"
    for year, big in ((2023, BIG_KWH), (2024, BIG_KWH / 2)):
        runs = tmp / f"{name}-{year}.csv"
        runs.write_text(history(year, small, big))
        assert main(["import", "csv", str(runs), "--ledger", str(ledger)]) == 0
    return ledger


@pytest.mark.parametrize("small", [60, 600])
def test_halving_the_large_runs_halves_the_headline_whatever_the_small_runs(
    tmp_path: Path, small: int
) -> None:
    doc = report(imported(tmp_path, small), tmp_path / "out", 2024, baseline=2023)
    co2 = doc["targets"]["co2_per_training_task"]
    assert co2["headline_phase"] == "pretraining"
    assert co2["baseline"] == pytest.approx(BIG_KWH * 100 / 1000)  # 25 t per run
    assert co2["actual"] == pytest.approx(co2["baseline"] / 2)
    assert co2["change"] == pytest.approx(-0.5)
    phases = co2["by_phase"]
    # Pretraining beat its path (-12.9 % a year); fine-tuning stayed flat: off track, and so overall.
    assert phases["pretraining"]["on_track"] is True and phases["fine-tuning"]["on_track"] is False
    assert co2["on_track"] is False
    assert phases["pretraining"]["change"] == pytest.approx(-0.5)
    assert phases["fine-tuning"]["change"] == pytest.approx(0.0)
    # The pooled median, the old headline, is a fine-tune's and did not move at all.
    tasks = doc["jobs"]["training_tasks"]
    base_tasks = doc["year_over_year"][0]
    assert tasks["location_kg_median"] == pytest.approx(SMALL_KWH * 100 / 1000)
    assert base_tasks["by_phase"]["pretraining"]["location_kg_total"] == pytest.approx(2 * BIG_KWH * 0.1)
    assert tasks["by_phase"]["pretraining"]["location_kg_total"] == pytest.approx(BIG_KWH * 0.1)
    assert tasks["by_phase"]["fine-tuning"]["count"] == small
    # The report says so: the per-phase trend and the year-over-year rows.
    md = (tmp_path / "out" / "report.md").read_text()
    trend = table_after(md, "| Phase | Tasks 2023")
    assert trend[0][0] == "pretraining" and trend[0][5] == "-50.0 %" and trend[0][8] == "-50.0 %"
    assert trend[1][0] == "fine-tuning" and trend[1][5] == "0.0 %"
    yoy = {r[0]: r for r in table_after(md, "| Figure | 2023 (baseline) | 2024 | Change |")}
    assert yoy["CO2e per pretraining task, mean (t)"][1:] == ["25.0", "12.5", "-50.0 %"]


def test_a_reimport_with_half_the_energy_moves_the_headline(tmp_path: Path) -> None:
    ledger, runs = tmp_path / "l.db", tmp_path / "runs.csv"
    runs.write_text(history(2024, 60, BIG_KWH))
    assert main(["import", "csv", str(runs), "--ledger", str(ledger)]) == 0
    before = report(ledger, tmp_path / "a", 2024)["targets"]["co2_per_training_task"]
    runs.write_text(history(2024, 60, BIG_KWH / 2))  # the same runs, edited: re-imported in place
    assert main(["import", "csv", str(runs), "--ledger", str(ledger)]) == 0
    after = report(ledger, tmp_path / "b", 2024)["targets"]["co2_per_training_task"]
    assert after["actual"] == pytest.approx(before["actual"] / 2)
    assert before["actual"] == pytest.approx(25_000.0)


def strings(value: Any) -> Iterator[str]:
    """Every string value in a JSON document (not its keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def test_imported_energy_is_never_called_measured(tmp_path: Path) -> None:
    out = tmp_path / "out"
    doc = report(imported(tmp_path, 3), out, 2024, baseline=2023)
    assert doc["energy"]["provenance"]["shares"] == {"measured": 0.0, "estimated": 0.0, "imported": 1.0}
    for text in [*strings(doc), (out / "report.md").read_text(), (out / "report.html").read_text()]:
        assert not NOT_MEASURED.search(text), NOT_MEASURED.search(text)
    md = (out / "report.md").read_text()
    assert "imported from a CSV file" in md and "the AI work in this report" in md
    # Of unknown accuracy: the range is not pretended, and the report says why.
    assert doc["energy"]["unquantified_kwh"] == pytest.approx(doc["energy"]["it_kwh"])
    assert doc["energy"]["it_kwh_low"] is None and doc["emissions"]["location_kg_high"] is None
    assert "None of it has a stated accuracy, so no range is given." in md


def test_estimated_energy_is_never_called_measured(tmp_path: Path) -> None:
    ledger = tmp_path / "est.db"
    led = Ledger(ledger, "cpu-1", FakeClock(1_709_287_200), background=False)
    info = JobInfo(user="u", name="ft", project="p", phase="fine-tuning", model="m")
    for h in range(3):
        led.record(
            1_709_287_200 + 3600 * h + 1800,
            {JobKey("slurm", "7"): (info, {("gpu", "estimate"): 2 * KWH})},
            unattributed={("cpu", "estimate"): 0.5 * KWH},
            node={("gpu", "estimate"): 2.5 * KWH},
            gpu_seconds={},
        )
    led.flush()
    led.close()
    out = tmp_path / "out"
    doc = report(ledger, out, 2024)
    assert doc["data_quality"]["estimated_share"] == pytest.approx(1.0)
    assert doc["energy"]["it_kwh_low"] == pytest.approx(7.5 * 0.4)
    assert doc["energy"]["it_kwh_high"] == pytest.approx(7.5 * 2.9)
    for text in [*strings(doc), (out / "report.md").read_text(), (out / "report.html").read_text()]:
        assert not NOT_MEASURED.search(text), NOT_MEASURED.search(text)
    assert "7.50 kWh (3.00-21.8)" in (out / "report.md").read_text()


# ---- md, html and json agree ----


class _Html(HTMLParser):
    """The tables and paragraphs of report.html, by section (h2)."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, list[Any]]] = {}
        self._section = ""
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._text: list[str] | None = None
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "p"):
            self._text, self._tag = [], tag
        elif tag == "table" and self._section:
            self.sections[self._section]["tables"].append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._text is not None:
            self._section = "".join(self._text)
            self.sections[self._section] = {"tables": [], "p": []}
            self._text = None
        elif tag == "p" and self._text is not None:
            if self._section:
                self.sections[self._section]["p"].append("".join(self._text))
            self._text = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._section:
            self.sections[self._section]["tables"][-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        for into in (self._cell, self._text):
            if into is not None:
                into.append(data)


def md_sections(md: str) -> dict[str, dict[str, list[Any]]]:
    """The tables (header row included) and paragraphs of report.md, by section."""
    out: dict[str, dict[str, list[Any]]] = {}
    for chunk in re.split(r"^## ", md, flags=re.M)[1:]:
        title, _, body = chunk.partition("\n")
        title = md_plain(title)
        tables: list[Table] = []
        paragraphs = []
        for block in body.strip().split("\n\n"):
            lines = block.strip().splitlines()
            if lines and lines[0].startswith("|"):
                rows = [_md_cells(line) for line in lines if not line.startswith("| ---")]
                tables.append(rows)
            elif lines and not lines[0].startswith("!["):
                paragraphs.append(md_plain(" ".join(lines)))
        out[title] = {"tables": tables, "p": paragraphs}
    return out


def _md_cells(line: str) -> list[str]:
    return [md_plain(c.strip()) for c in line.strip().strip("|").split(" | ")]


def md_plain(text: str) -> str:
    """What escaped Markdown text reads as: backslash escapes and HTML entities undone."""
    return html_lib.unescape(re.sub(r"\\(.)", r"\1", text))


def table_after(md: str, header_start: str) -> Table:
    """The body rows of the markdown table whose header starts with `header_start`."""
    lines = md[md.index(header_start) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append(_md_cells(line))
    return rows


def _unit(label: str) -> str:
    return str(re.findall(r"\(([^()]+)\)", label)[0]).split(",")[0]


def _in(unit: str, value: float, mass_kg: bool = False) -> str:
    per = dict(MASS_UNITS if mass_kg else ENERGY_UNITS)[unit]
    return sig(value * (1000.0 if mass_kg else 1.0) / per)


def _row(table: Table, label: str) -> list[str]:
    return next(r for r in table if r[0] == label)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("agree")
    ledger = imported(tmp, 20)
    # And measured energy beside it, from the agent, in the reporting year.
    led = Ledger(tmp / "agent.db", "gpu-1", FakeClock(1_717_200_000), background=False)
    info = JobInfo(user="ann", name="", project="p", phase="pretraining", model="big")
    led.record(
        1_717_200_000 + 1800,
        {JobKey("slurm", "42"): (info, {("gpu", "nvml"): 30 * KWH, ("cpu", "rapl"): 5 * KWH})},
        unattributed={("cpu", "rapl"): KWH},
        node={("gpu", "nvml"): 30 * KWH, ("cpu", "rapl"): 6 * KWH},
        gpu_seconds={JobKey("slurm", "42"): 7200.0},
    )
    led.flush()
    led.close()
    out = tmp / "out"
    args = ["report", "--year", "2024", "--baseline-year", "2023", "--out", str(out)]
    assert main([*args, "--ledger", str(ledger), str(tmp / "agent.db"), "--format", "json,md,html"]) == 0
    md = (out / "report.md").read_text()
    parser = _Html()
    parser.feed((out / "report.html").read_text())
    return {
        "doc": json.loads((out / "report.json").read_text()),
        "md": md_sections(md),
        "html": parser.sections,
    }


def test_markdown_and_html_say_the_same(written: dict[str, Any]) -> None:
    md, page = written["md"], written["html"]
    assert list(md) == list(page)
    for title in md:
        assert md[title]["tables"] == page[title]["tables"], title
        assert md[title]["p"] == [html_lib.unescape(p) for p in page[title]["p"]], title


def test_headline_figures_are_report_json_s(written: dict[str, Any]) -> None:
    doc, md = written["doc"], written["md"]
    e, c = doc["energy"], doc["emissions"]
    summary = " ".join(md["Summary"]["p"])
    energy_text = tidy_range(range_text(e["it_kwh"], e["it_kwh_low"], e["it_kwh_high"], ENERGY_UNITS))
    assert f"used {energy_text} of IT energy" in summary
    for key in ("location", "market"):
        low, high = (None if v is None else v * 1000 for v in (c[f"{key}_kg_low"], c[f"{key}_kg_high"]))
        text = tidy_range(range_text(c[f"{key}_kg"] * 1000, low, high, MASS_UNITS))
        assert (
            f"{text} CO2e location-based" in summary
            if key == "location"
            else f"{text} market-based" in summary
        )
    assert "embodied emissions are not configured" in summary
    # Kinds: the summary, the method and the data-quality appendix give the same shares.
    shares = e["provenance"]["shares"]
    quality = md["Appendix: data quality"]["tables"][0]
    for kind in ("measured", "imported"):
        assert shares[kind] > 0
        assert _row(quality, f"{kind.capitalize()} share of IT energy")[1] == share_text(shares[kind])
        assert f"{share_text(shares[kind])} was {kind}" in summary
        assert doc["method"][f"{kind}_share"] == doc["data_quality"][f"{kind}_share"] == shares[kind]
    assert "Estimated share of IT energy" not in [r[0] for r in quality]  # no estimated energy: not named
    # Per phase.
    tasks = doc["jobs"]["training_tasks"]
    phases = md["CO2 per training task and targets"]["tables"][0]
    assert phases[0] == ["Figure", "Pretraining", "Fine-tuning", "All training tasks"]
    groups = [tasks["by_phase"]["pretraining"], tasks["by_phase"]["fine-tuning"], tasks]
    assert _row(phases, "Tasks")[1:] == [str(g["count"]) for g in groups]
    for label, key in (
        ("mean", "location_kg_mean"),
        ("median", "location_kg_median"),
        ("p90", "location_kg_p90"),
    ):
        row = next(r for r in phases if r[0].startswith(f"CO2e per task, {label}"))
        assert row[1:] == [_in(_unit(row[0]), g[key], mass_kg=True) for g in groups]
    total = next(r for r in phases if r[0].startswith("CO2e, total"))
    unit = _unit(total[0])
    for cell, g in zip(total[1:], groups, strict=True):
        value = _in(unit, g["location_kg_total"], mass_kg=True)
        if g["location_kg_low"] is None:  # none of its energy has a stated accuracy
            assert cell == value
            continue
        low, high = (_in(unit, g[k], mass_kg=True) for k in ("location_kg_low", "location_kg_high"))
        assert cell == f"{value} ({low}-{high})"
    kwh_mtok = _row(phases, "kWh per million tokens")
    assert kwh_mtok[1] == sig(tasks["by_phase"]["pretraining"]["kwh_per_million_tokens"])
    # Year over year.
    yoy = md["Year over year"]["tables"][0]
    rows = doc["year_over_year"]
    assert yoy[0] == ["Figure", "2023 (baseline)", "2024", "Change"] and [r["year"] for r in rows] == [
        2023,
        2024,
    ]
    it_row = next(r for r in yoy if r[0].startswith("IT energy"))
    assert it_row[1:3] == [_in(_unit(it_row[0]), r["it_kwh"]) for r in rows]
    loc_row = next(r for r in yoy if r[0].startswith("CO2e location-based"))
    assert loc_row[1:3] == [_in(_unit(loc_row[0]), r["location_kg"], mass_kg=True) for r in rows]
    assert _row(yoy, "Training tasks")[1:3] == [str(r["training_tasks"]) for r in rows]
    mean_row = next(r for r in yoy if r[0].startswith("CO2e per pretraining task"))
    means = [r["by_phase"]["pretraining"]["location_kg_mean"] for r in rows]
    assert mean_row[1:3] == [_in(_unit(mean_row[0]), m, mass_kg=True) for m in means]
    # Targets: the baseline column is the baseline year's figure.
    targets = md["Summary"]["tables"][0]
    assert targets[0][:3] == ["Target", "Baseline 2023", "2024"]
    co2 = doc["targets"]["co2_per_training_task"]["by_phase"]["pretraining"]
    row = next(r for r in targets if r[0].startswith("CO2e per pretraining task"))
    assert row[1:3] == [_in(_unit(row[0]), co2[k], mass_kg=True) for k in ("baseline", "actual")]


def test_top_jobs_say_where_their_energy_came_from(written: dict[str, Any]) -> None:
    doc, md = written["doc"], written["md"]
    top = md["Top jobs and models"]["tables"][0]
    assert top[0][:2] == ["Job", "User"]  # no job has a name: no empty Name column
    by_job = {r[0]: r for r in top[1:]}
    assert by_job["slurm:42"][4] == "measured (NVML, RAPL)"
    for job in doc["jobs"]["top"]:
        row = by_job[job["job"]]
        if job["origin"] != "agent":
            assert row[4] == "imported (CSV file)" and not NOT_MEASURED.search(" ".join(row))
    sites = md["Energy"]["tables"][1]
    assert all(r[6] != "-" for r in sites[1:])  # GPU-hours per site


def documented_keys() -> set[str]:
    return set(re.findall(r"`([A-Za-z0-9_\-]+)`", (REPO / "docs" / "report-schema.md").read_text()))


DATA_KEYED = {"embodied_by_node", "kwh_by_source", "methods"}
"""Objects whose keys are data (node names, ledger sources), not fields."""


def keys(value: Any, parent: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if parent not in DATA_KEYED:
                yield k
            yield from keys(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from keys(v, parent)


def test_every_key_of_report_json_is_in_the_schema_doc(written: dict[str, Any]) -> None:
    missing = sorted(set(keys(written["doc"])) - documented_keys())
    assert not missing, f"docs/report-schema.md lacks {missing}"


def test_a_reused_id_is_two_jobs_and_every_year_between_is_read(tmp_path: Path) -> None:
    ledger = tmp_path / "node.db"
    t0 = 1_686_218_400  # 2023-06-08T10:00:00Z
    key = JobKey("slurm", "4242")
    first, second = JobInfo(user="alice", name="train"), JobInfo(user="bob", name="eval")
    led = Ledger(ledger, "node1", FakeClock(t0), background=False)
    led.job_seen(key, first, t0)
    led.record(
        t0 + 1800,
        {key: (first, {("gpu", "nvml"): 2 * KWH})},
        unattributed={},
        node={("gpu", "nvml"): 2 * KWH},
    )
    led.job_ended(key, t0 + 3000)
    led.flush()
    led.close()
    led = Ledger(ledger, "node1", FakeClock(t0), background=False)
    later = t0 + 2 * 365 * 86400  # 2025, the same id again
    for when, info, kwh in ((t0 + 365 * 86400, second, 3.0), (later, second, 1.0)):
        led.job_seen(key, info, when)
        led.record(when + 1800, {key: (info, {("gpu", "nvml"): kwh * KWH})}, unattributed={},
                   node={("gpu", "nvml"): kwh * KWH})  # fmt: skip
        led.flush()  # the sighting first: news that says only "ended" never starts a run
        led.job_ended(key, when + 3000)
        led.flush()
    led.close()
    doc = report(ledger, tmp_path / "out", 2025, baseline=2023)
    assert [(r["year"], r["role"]) for r in doc["year_over_year"]] == [
        (2023, "baseline"),
        (2024, "between"),
        (2025, "reporting"),
    ]
    assert [r["it_kwh"] for r in doc["year_over_year"]] == pytest.approx([2.0, 3.0, 1.0])
    assert doc["jobs"]["top"][0]["job"] == "slurm:4242#3" and doc["jobs"]["top"][0]["run"] == 3
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| slurm:4242#3 |" in md
    yoy = table_after(md, "| Figure | 2023 (baseline) | 2024 | 2025 | Change |")
    assert next(r for r in yoy if r[0].startswith("IT energy"))[1:] == ["2.00", "3.00", "1.00", "-50.0 %"]
