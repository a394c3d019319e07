"""`greenai dashboards build`: the Grafana JSON of each `dashboards/*.dashboard.py` (grafanalib).

grafanalib is imported by the dashboard sources only, so the agent itself never loads it. Each
source defines `dashboard`, a grafanalib Dashboard; its JSON goes to `<name>.json` beside it (or in
`--out`), with keys sorted so that a regenerated file differs only where the source changed.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

SOURCES = Path(__file__).resolve().parents[2] / "dashboards"
"""The dashboard sources in a source checkout (they are not part of the installed package)."""
SUFFIX = ".dashboard.py"


class DashboardError(Exception):
    """A dashboard that cannot be built; the message is one line meant for the user."""


def sources(folder: Path = SOURCES) -> list[Path]:
    """The dashboard sources in `folder`, by name."""
    found = sorted(folder.glob(f"*{SUFFIX}"))
    if not found:
        raise DashboardError(f"no *{SUFFIX} files in {folder}: run this from a greenai-agent source checkout")
    return found


def render(source: Path) -> str:
    """The JSON (sorted keys, two-space indent, final newline) of the dashboard that `source` defines."""
    try:
        from grafanalib._gen import DashboardEncoder
    except ImportError as e:
        raise DashboardError("grafanalib is not installed: pip install grafanalib") from e
    # The sources share their folder's common.py: that one, not a `common` imported before.
    earlier = sys.modules.pop("common", None)
    sys.path.insert(0, str(source.parent))
    try:
        namespace = runpy.run_path(str(source))
    finally:
        sys.path.remove(str(source.parent))
        sys.modules.pop("common", None)
        if earlier is not None:
            sys.modules["common"] = earlier
    board = namespace.get("dashboard")
    if board is None:
        raise DashboardError(f"{source} defines no `dashboard`")
    data: dict[str, Any] = json.loads(json.dumps(board.to_json_data(), cls=DashboardEncoder))
    data["__requires"] = [
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "9.0.0"},
    ]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def output_name(source: Path) -> str:
    """node.dashboard.py -> node.json"""
    return source.name.removesuffix(SUFFIX) + ".json"


def build(out: Path | None = None, folder: Path = SOURCES) -> list[Path]:
    """Writes every dashboard's JSON into `out` (default: beside its source); returns the files written."""
    written = []
    for source in sources(folder):
        target = (out or source.parent) / output_name(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(source), encoding="utf-8")
        written.append(target)
    return written
