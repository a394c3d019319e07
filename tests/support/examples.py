"""The commented examples shipped in config files (systemd/agent.yaml, the Helm values), made live."""

from __future__ import annotations


def uncomment_block(text: str, head: str) -> str:
    """`text` with the commented block that starts at the line `# {head}` uncommented: that line and
    the commented lines indented under it lose one `# `; comments inside the block stay comments."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == f"# {head}")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and lines[end].startswith(" " * indent + "#   "):
        end += 1
    block = [line[:indent] + line[indent + 2 :] for line in lines[start:end]]
    return "".join(lines[:start] + block + lines[end:])
