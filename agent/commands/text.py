"""Text that jobs, users and files chose, made safe to print on a terminal: one line, nothing live."""

from __future__ import annotations

import unicodedata

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def escape(text: str) -> str:
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
