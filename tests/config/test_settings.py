"""The config file: defaults, overrides, and a one-line error with exit code 2 for every likely mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.config import settings
from tests.support.processes import run_greenai

BAD_CONFIGS = [
    # (file content, key the message must name, words it must contain)
    ("interval: 5\n", "interval", "unknown key"),
    ("collectors:\n  rapl:\n    enable: true\n", "collectors.rapl.enable", "unknown key"),
    ("interval_seconds: fast\n", "interval_seconds", "must be a number"),
    ("interval_seconds: 0\n", "interval_seconds", "must be from 0.05"),
    ("interval_seconds: -1\n", "interval_seconds", "must be from"),
    ("interval_seconds: true\n", "interval_seconds", "must be a number"),
    ("interval_seconds: .nan\n", "interval_seconds", "must be from"),
    ("listen: 9877\n", "listen", "non-empty string"),
    ("listen: '9877'\n", "listen", "host:port"),
    ("listen: 'localhost:99999'\n", "listen", "0 to 65535"),
    ("listen: ':9877'\n", "listen", "host:port"),
    ("collectors:\n  nvml:\n    enabled: maybe\n", "collectors.nvml.enabled", "auto, true, false"),
    ("host:\n  sysfs: sys\n", "host.sysfs", "absolute path"),
    ("collectors: rapl\n", "collectors", "must be a mapping"),
    ("node_name: ''\n", "node_name", "non-empty"),
    ('node_name: "a\\nb"\n', "node_name", "single line"),
    ("collectors:\n  estimate:\n    cpu_tdp_watts: -5\n", "collectors.estimate.cpu_tdp_watts", "above 0"),
    (
        "collectors:\n  estimate:\n    cpu_idle_fraction: 1.5\n",
        "collectors.estimate.cpu_idle_fraction",
        "0 to 1",
    ),
    ("log_level: verbose\n", "log_level", "debug, info"),
    ("ledger:\n  path: ledger.db\n", "ledger.path", "absolute path"),
    ("1: 2\n", "1", "unknown key"),
]


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("content", "key", "words"), BAD_CONFIGS)
@pytest.mark.parametrize("command", ["agent", "doctor"])
def test_bad_value_is_one_line_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: str, key: str, words: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(content)
    code, err = _run_cli([command, "--config", str(path)], capsys)
    assert code == 2
    assert err.count("\n") == 1, err
    assert str(path) in err and f"'{key}'" in err and words in err, err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("listen: [127.0.0.1\n", "invalid YAML at line"),
        ("- interval_seconds: 1\n", "top level must be a mapping"),
        ("a: b: c\n", "invalid YAML at line 1"),
        (b"node_name: \xff\xfe\n", "not UTF-8"),
    ],
)
def test_unreadable_yaml_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, words: str
) -> None:
    path = tmp_path / "agent.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code, err = _run_cli(["agent", "--config", str(path)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and str(path) in err and words in err, err


def test_missing_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_cli(["agent", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "no such file" in err and err.count("\n") == 1
    code, err = _run_cli(["doctor", "--config", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in err and err.count("\n") == 1


def test_bad_flag_value_names_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_cli(["agent", "--interval", "0"], capsys)
    assert code == 2 and "command line" in err and "interval_seconds" in err
    code, err = _run_cli(["agent", "--listen", "nowhere"], capsys)
    assert code == 2 and "host:port" in err


def test_subprocess_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("collectors:\n  rapl: {enabled: sometimes}\n")
    out = run_greenai("agent", "--config", str(path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"greenai: {path}: key 'collectors.rapl.enabled' must be one of auto, true, false; got 'sometimes'"
    ]


def test_defaults_and_every_key(tmp_path: Path) -> None:
    defaults = settings.load(None)
    assert defaults.listen_address == ("127.0.0.1", settings.DEFAULT_PORT)
    assert defaults.interval_seconds == 1.0
    assert defaults.collectors.rapl.enabled == "auto"

    path = tmp_path / "agent.yaml"
    path.write_text(
        "node_name: gpu-node-7\n"
        "interval_seconds: 0.5\n"
        "listen: '[::1]:9900'\n"
        "log_level: DEBUG\n"
        "host: {sysfs: /host/sys, procfs: /host/proc, cgroupfs: /host/sys/fs/cgroup}\n"
        "ledger: {path: /var/lib/greenai/x.db, flush_seconds: 2}\n"
        "collectors:\n"
        "  rapl: {enabled: false}\n"
        "  nvml: {enabled: true, reprobe_seconds: 10}\n"
        "  estimate: {enabled: auto, cpu_tdp_watts: 120, cpu_idle_watts: 30, memory_watts_per_gb: 0.5}\n"
        "jobs: {labels: [project, phase, model, user]}\n"
    )
    cfg = settings.load(path)
    assert cfg.node_name == "gpu-node-7"
    assert cfg.interval_seconds == 0.5
    assert cfg.listen_address == ("::1", 9900)
    assert cfg.log_level == "debug"
    assert cfg.host.procfs == Path("/host/proc")
    assert cfg.ledger.flush_seconds == 2.0
    assert cfg.collectors.rapl.enabled == "false"
    assert cfg.collectors.nvml.enabled == "true"
    assert cfg.collectors.estimate.cpu_tdp_watts == 120.0
    assert cfg.jobs.labels == ("project", "phase", "model", "user")


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("listen: 127.0.0.1:9000\ninterval_seconds: 2\nhost: {sysfs: /a, procfs: /b}\n")
    cfg = settings.load(path, {"listen": "0.0.0.0:9100", "host": {"sysfs": "/c"}})
    assert cfg.listen == "0.0.0.0:9100"
    assert cfg.interval_seconds == 2.0
    assert cfg.host.sysfs == Path("/c") and cfg.host.procfs == Path("/b")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("# nothing set\n")
    assert settings.load(path).listen == settings.DEFAULT_LISTEN
