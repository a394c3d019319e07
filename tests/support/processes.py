"""Real processes the tests run: the agent itself, and a Prometheus server scraping it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, poll: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy; the real processes run on real time."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def run_greenai(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one `greenai` command to completion, as a user would from a shell."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


class AgentProcess:
    """`greenai agent` in a subprocess, listening on a free port it reports in its log."""

    def __init__(self, args: list[str], env: Mapping[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if "--config" not in args:  # never the system's ledger: tests run as root
            self._scratch = tempfile.TemporaryDirectory(prefix="greenai-agent-")
            config = Path(self._scratch.name) / "agent.yaml"
            config.write_text(f"ledger: {{path: {Path(self._scratch.name) / 'ledger.db'}}}\n")
            args = ["--config", str(config), *args]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "agent", "--listen", "127.0.0.1:0", *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 15.0) -> AgentProcess:
        def serving() -> int | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log}")
            for line in self.lines:
                m = re.search(r"serving metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
                if m:
                    return int(m.group(1))
            return None

        self.port = wait_for(serving, timeout, "the agent to serve /metrics")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics_text(self) -> str:
        return http_get(f"{self.url}/metrics").decode()

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample on /metrics, keyed by name and label set."""
        out = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample with this name whose labels include `labels`."""
        for (sample_name, sample_labels), v in self.samples().items():
            if sample_name == name and set(labels.items()) <= sample_labels:
                return v
        return None

    def wait_samples(self, at_least: int, timeout: float = 15.0) -> None:
        wait_for(
            lambda: (self.value("greenai_agent_samples_total") or 0) >= at_least,
            timeout,
            f"{at_least} samples",
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> tuple[int, float]:
        """Send `sig`; return the exit code and the seconds the agent took to exit."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        took = time.monotonic() - started
        self._reader.join(5)
        return code, took

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self._scratch is not None:
            self._scratch.cleanup()


def _remote_write(entry: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"url": entry} if isinstance(entry, str) else dict(entry)


class QueryServer:
    """A server process (`proc`) that answers Prometheus's query API at `url`; stopped on leaving."""

    url: str
    proc: subprocess.Popen[bytes]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result; the test fails on an error answer."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = json.loads(http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class PrometheusServer(QueryServer):
    """A real Prometheus (Debian's `prometheus`) on 127.0.0.1, scraping the given targets."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        scrape_interval: str = "1s",
        labels: Mapping[str, Mapping[str, str]] | None = None,
        rule_files: Sequence[Path] = (),
        remote_write: str | Mapping[str, Any] | None = None,
    ) -> None:
        """`labels`: extra target labels per target (e.g. `instance` as the node's name);
        `remote_write`: a URL, or one whole `remote_write` entry, to send the samples on to."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = workdir / "prometheus.yml"
        statics = [{"targets": [t], "labels": dict((labels or {}).get(t, {}))} for t in targets]
        config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {scrape_interval}\n"
            + (f"rule_files: {json.dumps([str(r) for r in rule_files])}\n" if rule_files else "")
            + (f"remote_write: {json.dumps([_remote_write(remote_write)])}\n" if remote_write else "")
            + "scrape_configs:\n"
            "  - job_name: greenai\n"
            f"    static_configs: {json.dumps(statics)}\n"
        )
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "prometheus.log", "w"),  # noqa: SIM115 - lives as long as the server
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> PrometheusServer:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}")
            try:
                return http_get(f"{self.url}/-/ready", timeout=1).startswith(b"Prometheus")
            except OSError:
                return False

        wait_for(ready, timeout, "prometheus to be ready", poll=0.2)
        return self
