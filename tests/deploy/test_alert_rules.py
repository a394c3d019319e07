"""dashboards/greenai.rules.yml: promtool accepts it, and its unit tests (tests/support/rules_test.yml)
pass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "greenai.rules.yml"
RULES_TEST = ROOT / "tests" / "support" / "rules_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_rules_are_valid() -> None:
    check = promtool("check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr


def test_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    # The unit tests can fail: the same file with one expected power off by a watt must not pass.
    text = RULES_TEST.read_text(encoding="utf-8").replace("../../dashboards/greenai.rules.yml", str(RULES))
    wrong, count = re.subn(r"(\n\s+value: )600\n", r"\g<1>601\n", text)
    assert count == 1
    broken = tmp_path / "rules_test.yml"
    broken.write_text(wrong, encoding="utf-8")
    result = promtool("test", "rules", str(broken))
    assert result.returncode != 0
    assert "6.01E+02" in result.stdout + result.stderr


def test_a_missing_alert_fails(tmp_path: Path) -> None:
    # And an alert that should fire but was left out of the rules fails them too.
    rules = tmp_path / "greenai.rules.yml"
    rules.write_text(
        re.sub(
            r"      - alert: GreenaiCollectorDown\n(?:        .*\n|          .*\n)+", "", RULES.read_text()
        ),
        encoding="utf-8",
    )
    assert "GreenaiCollectorDown" not in rules.read_text()
    text = RULES_TEST.read_text(encoding="utf-8").replace("../../dashboards/greenai.rules.yml", str(rules))
    (tmp_path / "rules_test.yml").write_text(text, encoding="utf-8")
    result = promtool("test", "rules", str(tmp_path / "rules_test.yml"))
    assert result.returncode != 0
