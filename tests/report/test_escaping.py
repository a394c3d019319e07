"""Text from jobs, users and files in report.md and cards renders as itself: no HTML, link or emphasis.

The runs come in through `greenai import csv` with hostile names, users, projects, models and nodes;
report.md and the card are rendered by a CommonMark renderer (markdown-it-py, with GitHub's tables),
and the HTML it makes is searched for anything that came from the data.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from agent.cli import main
from agent.report.escape import markdown_text

SCRIPT = "<script>alert(4)</script>"
BOLD = "*bold*|pipe"
LINK = "[x](javascript:alert(1))"
MODEL = "<img src=x onerror=alert(1)>"
NODE = "node-<b>1</b>"
HOSTILE = (SCRIPT, BOLD, LINK, MODEL, NODE)
OURS = {"html", "head", "body", "p", "h1", "h2", "h3", "ul", "ol", "li", "strong", "em", "code", "pre",
        "table", "thead", "tbody", "tr", "th", "td", "hr", "img", "a", "br"}  # fmt: skip


def render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").enable("strikethrough").render(markdown)


class Elements(HTMLParser):
    """Every element and its attributes in rendered HTML, and the text it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check(markdown: str) -> str:
    """The text rendered HTML shows, after checking it has no element or link from the data."""
    html = render(markdown)
    assert "<em>bold</em>" not in html and "<strong>bold" not in html
    parsed = Elements()
    parsed.feed(html)
    for tag, attrs in parsed.tags:
        assert tag in OURS, tag
        assert not any(k.startswith("on") for k in attrs), attrs
        assert not any("javascript:" in (v or "") for v in attrs.values()), attrs
        if tag == "img":
            assert attrs.get("src", "").endswith(".png"), attrs  # the report's own charts
        assert tag != "a", attrs  # neither report.md nor a card links anywhere
    return "".join(parsed.text)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("escaping")
    runs = folder / "runs.csv"
    runs.write_text(
        "job_id,start,end,energy_kwh,name,model,project,user,node,phase\n"
        f'1,2024-03-01T00:00:00Z,2024-03-01T05:00:00Z,120,{SCRIPT},{MODEL},"{BOLD}","{LINK}",{NODE},pretraining\n'
        f'2,2024-03-02T00:00:00Z,2024-03-02T05:00:00Z,80,"{BOLD}",{MODEL},"{LINK}",u2,n2,fine-tuning\n'
        f'3,2024-03-03T00:00:00Z,2024-03-03T01:00:00Z,8,"{LINK}",other,p,u3,n3,inference\n'
    )
    path = folder / "ledger.db"
    assert main(["import", "csv", str(runs), "--ledger", str(path)]) == 0
    return path


def test_report_md_renders_data_as_text(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["report", "--year", "2024", "--ledger", str(ledger), "--out", str(out), "--format", "md"])
    assert code == 0
    markdown = (out / "report.md").read_text()
    shown = check(markdown)
    for text in (SCRIPT, BOLD, MODEL):
        assert text in shown  # it reads as it was written
    assert "<script" not in render(markdown) and "<img src=x" not in render(markdown)


@pytest.mark.parametrize("fmt", ["md"])
def test_card_renders_data_as_text(ledger: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    assert main(["card", "--model", MODEL, "--ledger", str(ledger), "--format", fmt]) == 0
    card = capsys.readouterr().out
    body = card.split("\n---\n", 1)[1]  # the Markdown after the YAML front matter
    shown = check(body)
    assert f"Energy Card: model {MODEL}" in shown
    for text in (SCRIPT, BOLD, NODE):
        assert text in shown
    job = main(["card", "--job", "imported:3", "--ledger", str(ledger)])
    assert job == 0
    assert LINK in check(capsys.readouterr().out.split("\n---\n", 1)[1])


@pytest.mark.parametrize(
    "text",
    [*HOSTILE, "- item", "1. first", "---", "# heading", "`code`", "~~gone~~", "$x$", "a\nb", "a\r\n\r\nb",
     "&lt;b&gt;", "\\*", "<http://example.com>", "![i](x.png)", "\x1b[31mred"],
)  # fmt: skip
def test_markdown_text_renders_as_itself(text: str) -> None:
    escaped = markdown_text(text)
    assert "\n" not in escaped
    html = render(f"| a |\n|---|\n| {markdown_text(text)} |\n\n{escaped}\n")
    parsed = Elements()
    parsed.feed(html)
    assert [t for t, _ in parsed.tags] == ["table", "thead", "tr", "th", "tbody", "tr", "td", "p"]
    expected = re.sub(r"\s*[\r\n]+\s*", " ", text).replace("\x1b", "\\x1b")
    cell, paragraph = (d for d in parsed.text if d.strip() and d != "a")
    assert cell == paragraph == expected
