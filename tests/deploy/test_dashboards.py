"""dashboards/: the committed JSON is what the grafanalib sources build, and every query is sound.

Sound means: on the `${DS_PROMETHEUS}` input, only metrics the agent exports (README's table) or the
recording rules define, and valid PromQL (promtool checks each one, wrapped as a recording rule).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from agent.commands import dashboards

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "dashboards"
DS = "${DS_PROMETHEUS}"
BUILTIN = {"up"}
"""Series Prometheus itself makes for every target."""
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1d",
    "__range_s": "86400",
    "__range": "1d",
    "instance": ".*",
    "job": ".*",
    "basis": "location",
    "job_id": "1",
}
"""Values for the variables in the queries, for promtool, longest name first."""
NOT_METRICS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan",
}  # fmt: skip


def boards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(FOLDER.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(board: dict[str, Any]) -> Iterator[str]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in board["templating"]["list"]:
        if variable.get("type", "query") == "query":
            match = re.fullmatch(r"label_values\((.*), *\w+\)", variable["query"])
            assert match, variable["query"]
            yield match.group(1)


def substituted(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(f"${name}", value)
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, labels or keywords."""
    text = substituted(expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        followed = text[match.end() :].lstrip()
        if not followed.startswith("(") and match.group() not in NOT_METRICS:
            names.add(match.group())
    return names


def exported_metrics() -> set[str]:
    """The metric contract: the names in README.md's metrics table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `greenai_")]
    return {name for line in rows for name in re.findall(r"`(greenai_[a-z0-9_]+)`", line.split("|")[1])}


def recorded_metrics() -> set[str]:
    rules = yaml.safe_load((FOLDER / "greenai.rules.yml").read_text(encoding="utf-8"))
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


def test_committed_json_is_what_the_sources_build(tmp_path: Path) -> None:
    assert cli.main(["dashboards", "build", "--out", str(tmp_path)]) == 0
    built = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text(encoding="utf-8") for p in FOLDER.glob("*.json")}
    assert set(built) == {"node.json", "jobs.json", "carbon.json", "agent_health.json"}
    stale = [name for name in built if committed.get(name) != built[name]]
    assert not stale and set(committed) == set(built), f"run `greenai dashboards build`: {stale} stale"


def test_a_changed_source_shows_as_stale(tmp_path: Path) -> None:
    # The check above can fail: a source that says something else builds something else.
    for source in FOLDER.glob("*.py"):
        (tmp_path / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    node = tmp_path / "node.dashboard.py"
    node.write_text(
        node.read_text(encoding="utf-8").replace('"IT power"', '"IT power now"'), encoding="utf-8"
    )
    assert dashboards.render(node) != (FOLDER / "node.json").read_text(encoding="utf-8")


def test_each_folder_builds_with_its_own_common(tmp_path: Path) -> None:
    for source in FOLDER.glob("*.py"):
        (tmp_path / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    common = tmp_path / "common.py"
    common.write_text(common.read_text(encoding="utf-8").replace(DS, "${DS_OTHER}"), encoding="utf-8")
    committed = (FOLDER / "node.json").read_text(encoding="utf-8")
    assert dashboards.render(FOLDER / "node.dashboard.py") == committed
    assert "${DS_OTHER}" in dashboards.render(tmp_path / "node.dashboard.py")
    assert dashboards.render(FOLDER / "node.dashboard.py") == committed


def test_every_panel_queries_the_datasource_input() -> None:
    for name, board in boards().items():
        assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"], name
        assert board["__inputs"][0]["pluginId"] == "prometheus"
        data_panels = [p for p in panels(board) if p["type"] != "row"]
        assert len(data_panels) >= 8, name
        for panel in data_panels:
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == DS, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["expr"].strip() and target["datasource"] == DS, where
        for variable in board["templating"]["list"]:
            if variable.get("type", "query") == "query":
                assert variable["datasource"] == DS, f"{name}: ${variable['name']}"


def test_every_metric_is_exported_or_recorded() -> None:
    known = exported_metrics() | recorded_metrics() | BUILTIN
    assert "greenai_node_energy_joules_total" in known and "greenai_site_pue" in known
    for name, board in boards().items():
        for expr in expressions(board):
            names = metric_names(expr)
            assert names, f"{name}: no metric in {expr}"
            assert names <= known, f"{name}: {sorted(names - known)} in {expr}"


def test_metric_names_are_parsed_from_expressions() -> None:
    expr = (
        'sum by (instance) (rate(greenai_node_energy_joules_total{component!~"grace|node|platform"}'
        "[$__rate_interval]))"
        " * on (instance) group_left () max by (instance) (greenai_site_pue) / 3.6e+06 or vector(0)"
    )
    assert metric_names(expr) == {"greenai_node_energy_joules_total", "greenai_site_pue"}


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = sorted({substituted(e) for board in boards().values() for e in expressions(board)})
    rules = {
        "groups": [
            {"name": "queries", "rules": [{"record": f"q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    check = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_bad_query_fails_the_syntax_check(tmp_path: Path) -> None:
    path = tmp_path / "bad.rules.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "q", "expr": "sum by (x (up)"}]}]})
    )
    check = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode != 0


@pytest.mark.parametrize("module", ["agent.cli", "agent.daemon"])
def test_the_agent_never_imports_grafanalib(module: str) -> None:
    code = f"import sys, {module}; assert 'grafanalib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
