"""Text that jobs, users and files chose, made safe to print on a terminal: one line, nothing live.

The helpers, one per output, are in agent/report/escape.py, where the report can use them too.
"""

from __future__ import annotations

from agent.report.escape import terminal as escape

__all__ = ["escape"]
