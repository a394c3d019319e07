"""Text that jobs, users and files chose, made safe for where it is written: one helper per output.

- `terminal`: control, format and unassigned characters written as `\\xNN`, `\\uNNNN`, `\\UNNNNNNNN`.
- `markdown_text`: Markdown (CommonMark and GitHub's) that renders as the text itself, in running
  text, a heading or a table cell: no HTML element, link, image or emphasis from data.

HTML is escaped by `html.escape` where it is written (render.html); YAML by `yaml.safe_dump`.
Level: imports nothing of the project, so that the report and the commands both use it.
"""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")
"""Inline syntax, escaped with a backslash: emphasis, code, links and images (`![` needs its `[`),
tables, strikethrough and GitHub's math."""
_HTML_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BLOCK_START = re.compile(r"^(\s*)(\d*)([-+=.)#])(?=[\s=#-]|$)")
"""What would make a line a heading, a list item or a setext underline (`>` is an entity by then)."""
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def terminal(text: str) -> str:
    """The text with control, format and unassigned characters written as \\xNN, \\uNNNN or \\UNNNNNNNN."""
    out = []
    for ch in text:
        if unicodedata.category(ch) in _UNSAFE:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
        else:
            out.append(ch)
    return "".join(out)


def markdown_text(text: str) -> str:
    """`text` on one line, as Markdown that renders as exactly that text: HTML's `<`, `>` and `&` as
    entities, Markdown's punctuation backslashed, a list or quote marker at the start neutralised."""
    one_line = _LINE_BREAKS.sub(" ", terminal(_LINE_BREAKS.sub(" ", text)))
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", one_line)
    escaped = "".join(_HTML_SPECIAL.get(ch, ch) for ch in escaped)
    # `# x` is a heading, `- x`, `+ x`, `1. x`, `1) x` start a list; `\# x`, `1\. x` do not.
    return _BLOCK_START.sub(r"\1\2\\\3", escaped)


def markdown_cell(text: str) -> str:
    """`text` in a Markdown table cell: as `markdown_text`, whose `|` is already escaped."""
    return markdown_text(text)
