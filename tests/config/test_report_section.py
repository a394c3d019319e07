"""The `report:` section (who publishes the annual report, whom to ask, what it covers): parsed, and
every likely mistake a one-line error naming the file and the key, with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.config import settings
from tests.support.processes import REPO

BAD_REPORT_SECTIONS = [
    # (the section's content, key the message must name, words it must contain)
    ("report: yes\n", "report", "must be a mapping"),
    ("report:\n  organization: X\n", "report.organization", "unknown key"),
    ("report:\n  period: 2024\n", "report.period", "unknown key"),
    ("report:\n  organisation: ''\n", "report.organisation", "non-empty"),
    ("report:\n  organisation: [a, b]\n", "report.organisation", "non-empty string"),
    ("report:\n  contact: {email: energy.example.org}\n", "report.contact.email", "email address"),
    ("report:\n  contact: {phone: 123}\n", "report.contact.phone", "unknown key"),
    ("report:\n  contact: {}\n", "report.contact", "must give a name and an email, or a text"),
    ("report:\n  contact: 42\n", "report.contact", "must be a mapping"),
    ("report:\n  reporting_boundary: {sites: []}\n", "report.reporting_boundary.sites", "text or a list"),
    (
        "report:\n  reporting_boundary: {excluded: [travel, 3]}\n",
        "report.reporting_boundary.excluded[1]",
        "string",
    ),
    ("report:\n  reporting_boundary: {scope: all}\n", "report.reporting_boundary.scope", "unknown key"),
    ("report:\n  reporting_boundary: '  '\n", "report.reporting_boundary", "non-empty"),
]


@pytest.mark.parametrize(("content", "key", "words"), BAD_REPORT_SECTIONS)
def test_a_bad_report_section_is_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, key: str, words: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(content)
    code = main(["report", "--year", "2024", "--config", str(path), "--ledger", str(tmp_path / "l.db")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"greenai: {path}: "), err
    assert f"'{key}'" in err and words in err, err


def test_every_key_of_the_report_section(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "report:\n"
        "  organisation: '  Example Institute '\n"
        "  contact: {name: Energy office, email: energy@example.org, text: Room 12}\n"
        "  reporting_boundary:\n"
        "    description: |\n"
        "      Both clusters,\n"
        "      all their jobs.\n"
        "    sites: paris\n"
        "    included: [GPU nodes, CPU nodes]\n"
        "    excluded: [office IT]\n"
    )
    report = settings.load(path).report
    assert report == settings.ReportConfig(
        organisation="Example Institute",
        contact=settings.ReportContact(name="Energy office", email="energy@example.org", text="Room 12"),
        reporting_boundary=settings.ReportBoundary(
            description="Both clusters, all their jobs.",
            sites=("paris",),
            included=("GPU nodes", "CPU nodes"),
            excluded=("office IT",),
        ),
    )


def test_free_text_contact_and_boundary_and_no_section(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "report:\n  contact: The energy office, +33 1 23 45 67 89\n  reporting_boundary: All of it\n"
    )
    report = settings.load(path).report
    assert report.contact == settings.ReportContact(text="The energy office, +33 1 23 45 67 89")
    assert report.reporting_boundary == settings.ReportBoundary(description="All of it")
    path.write_text("report:\n")
    assert settings.load(path).report == settings.ReportConfig()
    assert settings.load(None).report == settings.ReportConfig()


def test_the_documented_example_loads(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "report-schema.md").read_text()
    example = doc.split("## `report`", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "agent.yaml"
    path.write_text(example)
    report = settings.load(path).report
    assert report.organisation and report.contact and report.contact.email
    assert report.reporting_boundary and report.reporting_boundary.excluded
