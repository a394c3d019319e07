"""report.md and report.html from report.json's document: the same sections, written twice.

The sections are built once as blocks (paragraphs, tables, images: agent/report/sections.py);
`markdown` and `html` only format them. The HTML is one self-contained file: CSS inline, charts as
data: URIs, no URL outside.
"""

from __future__ import annotations

import base64
import html as html_lib
from collections.abc import Mapping, Sequence
from typing import Any

from agent.report.escape import markdown_cell, markdown_text
from agent.report.page import CSS, front_rows, organisation, running_title, title
from agent.report.sections import sections


def markdown(doc: Mapping[str, Any], images: Sequence[str]) -> str:
    """report.md; images are the PNG file names written beside it. Every text is escaped: the blocks
    hold plain text (some of it from jobs, users and the config), never Markdown."""
    md = markdown_text
    lines = [f"# {md(title(doc))}", ""]
    lines += [f"- **{md(label)}**: {'; '.join(map(md, values))}" for label, values in front_rows(doc)] + [""]
    for section_title, blocks in sections(doc):
        lines += [f"## {md(section_title)}", ""]
        for block in blocks:
            if block[0] == "p":
                lines += [md(block[1]), ""]
            elif block[0] == "img" and block[1] in images:
                lines += [f"![{md(block[2])}]({block[1]})", ""]
            elif block[0] == "table":
                lines += [_md_row(block[1]), "| " + " | ".join(["---"] * len(block[1])) + " |"]
                lines += [_md_row(r) for r in block[2]] or [_md_row(["(none)"] + [""] * (len(block[1]) - 1))]
                lines.append("")
    return "\n".join(lines)


def _md_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(markdown_cell(str(c)) for c in cells) + " |"


# Sets data-images-ok on <body> once every chart decoded, so a headless browser can check them.
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images-ok", ok ? "yes" : "no");
  document.body.setAttribute("data-images", String(imgs.length));
});
"""


def html(doc: Mapping[str, Any], pngs: Mapping[str, bytes]) -> str:
    """report.html: one file, charts embedded as data: URIs; its print CSS makes report.pdf's pages."""
    esc = html_lib.escape
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(running_title(doc))}</title>",
        f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>",
        *_html_front(doc),
    ]
    for title_text, blocks in sections(doc):
        out.append(f"<h2>{esc(title_text)}</h2>")
        for n, block in enumerate(blocks):
            if block[0] == "p":
                cls = " class='lead'" if title_text == "Summary" and n == 0 else ""
                out.append(f"<p{cls}>{esc(block[1])}</p>")
            elif block[0] == "img" and block[1] in pngs:
                data = base64.b64encode(pngs[block[1]]).decode("ascii")
                out.append(f"<img alt='{esc(block[2])}' src='data:image/png;base64,{data}'>")
            elif block[0] == "table":
                out += _html_table(block[1], block[2])
    out.append("</body></html>\n")
    return "\n".join(out)


def _html_front(doc: Mapping[str, Any]) -> list[str]:
    """The title, the organisation and the front block; a page of its own in print."""
    esc = html_lib.escape
    out = ["<header class='front'>", f"<h1 data-running='{esc(running_title(doc))}'>{esc(title(doc))}</h1>"]
    org = organisation(doc)
    if org:
        out.append(f"<p class='org'>{esc(org)}</p>")
    out.append("<table class='front'>")
    for label, values in front_rows(doc):
        if label == "Organisation" and org:
            continue  # the subtitle says it
        shown = (
            esc(values[0])
            if len(values) == 1
            else "<ul>" + "".join(f"<li>{esc(v)}</li>" for v in values) + "</ul>"
        )
        out.append(f"<tr><th>{esc(label)}</th><td>{shown}</td></tr>")
    out += ["</table>", "</header>"]
    return out


def _html_table(head: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A table whose header repeats on every printed page it spans; `(none)` when it has no rows."""
    esc = html_lib.escape
    out = ["<table class='data'><thead><tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in head)]
    out.append("</tr></thead><tbody>")
    out += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    if not rows:
        out.append(f"<tr><td colspan='{len(head)}'>(none)</td></tr>")
    out.append("</tbody></table>")
    return out
