"""The layers (docs/architecture.md): the import contracts bite, and no private name crosses a module."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO

PACKAGES = ("agent", "collectors")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
"""import-linter, of the test extras, beside the Python that runs the tests."""


def _python_files() -> list[Path]:
    return [f for folder in (*PACKAGES, "tests", "benchmarks") for f in sorted((REPO / folder).rglob("*.py"))]


def _private_uses(path: Path) -> list[str]:
    """`from ours import _x`, and `module._x` on a module of ours imported by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, modules = [], set()
    ours = (*PACKAGES, "tests")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ours:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name.split(".")[0] in ours)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_private_name_is_used_across_modules() -> None:
    offences = {str(f.relative_to(REPO)): uses for f in _python_files() if (uses := _private_uses(f))}
    assert offences == {}


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from agent.ledger import files\nfrom agent.units import _x\nfiles._hidden()\n")
    assert _private_uses(sample) == ["line 2: from agent.units import _x", "line 3: files._hidden"]


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("agent/export/api.py", "from agent.report import annual", "agent's layers"),  # siblings
        ("agent/ledger/read.py", "from agent.commands import text", "agent's layers"),  # upward, a cycle too
        ("agent/live/carbon.py", "from agent.ledger import files", "sink protocol"),
        ("collectors/rapl.py", "from collectors.jobs import paths", "collectors: level 2"),
        ("collectors/base.py", "from agent import units", "never the other way"),
        ("agent/live/snapshot.py", "from agent.live import sampler", "no import cycles"),
    ],
)
def test_an_import_against_the_layers_fails_lint_imports(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for folder in PACKAGES:
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"{line}  # noqa\n", encoding="utf-8")
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout
    broken = [row for row in result.stdout.splitlines() if row.endswith(" BROKEN")]
    assert any(contract in row for row in broken), result.stdout
    assert line.split()[1] in result.stdout  # the import at fault is named
