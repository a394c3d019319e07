"""`greenai report --format pdf` and the `report:` front block: a history imported with `greenai import
csv` (two years, every phase, a baseline), reported through the CLI, the PDF read back with poppler
(`pdftoppm` pages as PNG, `pdftotext` text)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from tests.support.processes import run_greenai

RUNS = """job_id,start,end,gpu_kwh,cpu_kwh,phase,project,model,user,location,gpu_hours,tokens
pt-23,2023-03-01T00:00:00Z,2023-03-21T00:00:00Z,30000,3000,pretraining,atlas,atlas-70b,alice,FRA,48000,80000000000
ft-23,2023-06-02T08:00:00Z,2023-06-02T20:00:00Z,300,40,fine-tuning,atlas,atlas-8b,bob,FRA,480,900000000
inf-23,2023-09-05T00:00:00Z,2023-09-06T00:00:00Z,120,20,inference,beacon,atlas-8b,carol,US-VA,200,
pt-24,2024-02-01T00:00:00Z,2024-02-15T00:00:00Z,20000,2000,pretraining,atlas,atlas-70b,alice,FRA,32000,80000000000
ft-24a,2024-04-10T08:00:00Z,2024-04-10T20:00:00Z,250,30,fine-tuning,atlas,atlas-8b,bob,FRA,400,900000000
ft-24b,2024-05-12T08:00:00Z,2024-05-12T16:00:00Z,180,20,fine-tuning,comet,comet-3b,bob,FRA,300,500000000
inf-24,2024-07-01T00:00:00Z,2024-07-03T00:00:00Z,150,25,inference,beacon,atlas-8b,carol,US-VA,240,
eval-24,2024-10-20T09:00:00Z,2024-10-20T13:00:00Z,40,5,evaluation,atlas,atlas-70b,alice,FRA,64,
"""
ORGANISATION = "Institut Exemple de Recherche"
CONFIG = f"""report:
  organisation: {ORGANISATION}
  contact: {{name: Office of Sustainability, email: energy@example.org}}
  reporting_boundary:
    description: >-
      The institute's GPU clusters in Paris and Virginia,
      and past runs imported from the teams' records.
    sites: [paris, virginia]
    included: [GPU and CPU nodes, cooling through PUE]
    excluded: [office IT, business travel]
"""
FRONT_TEXTS = (
    ORGANISATION,
    "energy@example.org",
    "The institute's GPU clusters in Paris and Virginia, and past runs imported from the teams' records.",
    "business travel",
    "1 January 2024 to 31 December 2024",
)
CAN_PDF = importlib.util.find_spec("weasyprint") is not None and shutil.which("pdftoppm") is not None
needs_pdf = pytest.mark.skipif(
    not CAN_PDF, reason="needs the pdf extra (pip install '.[pdf]') and poppler-utils (pdftoppm, pdftotext)"
)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh ledger holding only imported runs, and a config with a `report:` section."""
    tmp = tmp_path_factory.mktemp("pdf")
    (tmp / "runs.csv").write_text(RUNS)
    ledger = tmp / "ledger.db"
    assert main(["import", "csv", str(tmp / "runs.csv"), "--ledger", str(ledger)]) == 0
    config = tmp / "agent.yaml"
    config.write_text(CONFIG)
    return {"tmp": tmp, "ledger": ledger, "config": config}


def report(history: dict[str, Path], out: Path, formats: str) -> subprocess.CompletedProcess[str]:
    return run_greenai(
        "report", "--year", "2024", "--baseline-year", "2023", "--config", str(history["config"]),
        "--ledger", str(history["ledger"]), "--format", formats, "--out", str(out),
    )  # fmt: skip


@pytest.fixture(scope="module")
def pdf_pages(history: dict[str, Path]) -> dict[str, Any]:
    """report.pdf through the CLI, its pages as text (pdftotext) and as PNG files (pdftoppm)."""
    if not CAN_PDF:
        pytest.skip("needs the pdf extra and poppler-utils")
    out = history["tmp"] / "out-pdf"
    done = report(history, out, "pdf")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / "report.pdf")]
    assert sorted(p.name for p in out.iterdir()) == ["report.pdf"]  # the charts are inside it
    text = subprocess.run(
        ["pdftotext", "-layout", str(out / "report.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(out / "report.pdf"), str(out / "page")], check=True)
    pngs = sorted(out.glob("page-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return {"pdf": out / "report.pdf", "pages": text.split("\f")[: len(pngs)], "pngs": pngs}


@needs_pdf
def test_every_page_has_content_and_a_page_number(pdf_pages: dict[str, Any]) -> None:
    from PIL import Image

    pngs, pages = pdf_pages["pngs"], pdf_pages["pages"]
    assert 4 <= len(pngs) <= 20, f"{len(pngs)} pages"
    for n, png in enumerate(pngs, 1):
        with Image.open(png) as image:
            gray = image.convert("L")
            width, height = gray.size
            assert (width, height) == pytest.approx((331, 468), abs=2)  # A4 at 40 dpi, portrait
            dark = sum(gray.histogram()[:200])
        assert dark > 0.01 * width * height, f"page {n} is (nearly) blank: {dark} dark pixels"
        assert f"page {n} of {len(pngs)}" in pages[n - 1], pages[n - 1][-300:]


@needs_pdf
def test_the_front_block_heads_the_pdf(pdf_pages: dict[str, Any]) -> None:
    first = " ".join(pdf_pages["pages"][0].split())
    assert "AI Energy Impact Report 2024" in first
    for words in FRONT_TEXTS:
        assert words in first, words
    assert "Baseline year 2023" in first
    # Every later page names the report and its publisher at the top.
    assert all(f"AI Energy Impact Report 2024 · {ORGANISATION}" in p for p in pdf_pages["pages"][1:])


def claims_of_measurement(text: str) -> list[str]:
    """Sentences that call energy measured or metered, unless they deny it or give it a share of 0."""
    found = []
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    for sentence in (s for p in paragraphs for s in re.split(r"(?<=[.;])\s+", p)):
        for m in re.finditer(r"\b(metered|measured|metering|measurement)\b", sentence, re.IGNORECASE):
            before, after = sentence[: m.start()].lower(), sentence[m.end() :]
            if before.endswith(("not ", "no ", "never ")):
                continue
            share = re.match(r"[^%\d]{0,40}?(\d+(?:\.\d+)?) ?%", after)
            if m.group(1).lower() == "measured" and share and float(share.group(1)) == 0.0:
                continue
            found.append(sentence)
    return found


@needs_pdf
def test_imported_energy_is_never_called_measured(pdf_pages: dict[str, Any]) -> None:
    assert claims_of_measurement("\n".join(pdf_pages["pages"])) == []


def test_the_claims_check_tells_a_claim_from_a_denial() -> None:
    assert claims_of_measurement("The AI work measured here used 3 MWh.") != []
    assert claims_of_measurement("Energy was metered per job.") != []
    assert claims_of_measurement("Measured share of IT energy: 100.0 %.") != []
    assert claims_of_measurement("Measured share of IT energy: 0.0 %; imported 100.0 %.") == []
    assert claims_of_measurement("Imported, not measured by the agent.") == []


def test_the_front_block_in_json_markdown_and_html(history: dict[str, Path]) -> None:
    out = history["tmp"] / "out-text"
    done = report(history, out, "json,md,html")
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "report.json").read_text())
    assert list(doc)[:2] == ["schema", "report"]
    assert doc["report"] == {
        "organisation": ORGANISATION,
        "contact": {"name": "Office of Sustainability", "email": "energy@example.org", "text": None},
        "reporting_boundary": {
            "description": FRONT_TEXTS[2],
            "sites": ["paris", "virginia"],
            "included": ["GPU and CPU nodes", "cooling through PUE"],
            "excluded": ["office IT", "business travel"],
        },
        "period": {
            "start": "2024-01-01T00:00:00Z",
            "end": "2025-01-01T00:00:00Z",
            "basis": "calendar year, UTC",
        },
    }
    md = (out / "report.md").read_text()
    head = md.split("\n## ", 1)[0]
    assert f"- **Organisation**: {ORGANISATION}" in head
    assert "- **Out of scope**: office IT; business travel" in head
    # Text from the config is escaped: it renders as written, not as a link.
    assert "- **Contact**: Office of Sustainability &lt;energy@example.org&gt;" in head
    page = (out / "report.html").read_text()
    front = page.split("<header class='front'>", 1)[1].split("</header>", 1)[0]
    for words in FRONT_TEXTS:
        assert words.replace("'", "&#x27;") in front, words
    assert "<li>business travel</li>" in front


def test_without_a_report_section_the_front_block_gives_the_period(history: dict[str, Path]) -> None:
    out = history["tmp"] / "out-bare"
    assert main(["report", "--year", "2024", "--ledger", str(history["ledger"]), "--out", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["report"]["organisation"] is None and doc["report"]["contact"] is None
    assert doc["report"]["period"]["start"] == "2024-01-01T00:00:00Z"
    head = (out / "report.md").read_text().split("\n## ", 1)[0]
    assert "- **Reporting period**: 1 January 2024 to 31 December 2024 (calendar year, UTC)" in head
    assert "- **Baseline year**: none" in head


def test_pdf_without_weasyprint_is_one_line_naming_the_install(
    history: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # what `import weasyprint` meets when absent
    out = history["tmp"] / "out-none"
    argv = ["report", "--year", "2024", "--ledger", str(history["ledger"]), "--format", "html,pdf"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("greenai: --format pdf needs WeasyPrint"), err
    assert f"{sys.executable} -m pip install 'weasyprint>=" in err
    assert not out.exists()  # refused before anything was read or written


def test_an_unknown_format_names_the_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["report", "--year", "2024", "--format", "docx", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "greenai: --format: unknown docx; choose from html,md,json,pdf"
