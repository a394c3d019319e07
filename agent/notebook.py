"""`%%greenai`: a Jupyter or IPython cell magic that prints the energy the node's greenai agent
attributed while the cell ran, through the same window as `greenai run` (docs/in-code.md).

    %load_ext agent.notebook
    %%greenai                  # or: %%greenai /path/to/agent.sock
    train_one_epoch()

The cell runs whether or not an agent answers; without one, a line says so and no figure is made up.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from agent.client import GreenaiError, Monitor
from agent.commands.run import statement


def load_ipython_extension(ipython: Any) -> None:
    """Register `%%greenai` with the running IPython."""

    def greenai(line: str, cell: str) -> None:
        monitor = Monitor(line.strip() or None)
        name = f"cell {ipython.execution_count} [pid {os.getpid()}]"
        try:
            monitor.begin_window(name)
        except GreenaiError as e:
            print(f"greenai: no energy figure for this cell: {e}", file=sys.stderr)
            ipython.run_cell(cell)
            return
        try:
            ipython.run_cell(cell)
        finally:
            try:
                window = monitor.end_window(name)
            except GreenaiError as e:
                print(f"greenai: no energy figure for this cell: {e}", file=sys.stderr)
            else:
                print(statement(window, "the cell"), file=sys.stderr)

    ipython.register_magic_function(greenai, magic_kind="cell", magic_name="greenai")
