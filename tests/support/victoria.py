"""A real single-node VictoriaMetrics (Debian's `victoria-metrics`): the long-term store behind the
tests' Prometheus, written to with remote_write and read with the Prometheus query API."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.processes import QueryServer, free_port, http_get, wait_for

BINARY = "victoria-metrics"


def victoria_missing() -> str:
    """Why VictoriaMetrics tests cannot run here ("" when they can)."""
    if shutil.which(BINARY) is None:
        return f"{BINARY} is not installed (apt-get install victoria-metrics)"
    return ""


class VictoriaMetrics(QueryServer):
    """`victoria-metrics` on 127.0.0.1 at a free port, its data under `workdir`.

    Queries see what was written as soon as `flush()` returns: the response cache is off (it would
    keep answers from before the last samples arrived) and no query time is moved back from "now"
    (`-search.latencyOffset`, 30 s by default, hides the newest samples of instant queries).
    """

    def __init__(self, workdir: Path, retention: str = "1y") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.write_url = f"{self.url}/api/v1/write"
        """Where Prometheus's remote_write sends samples."""
        self.log = workdir / "victoria-metrics.log"
        self.proc = subprocess.Popen(
            [
                BINARY,
                f"-storageDataPath={workdir / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-retentionPeriod={retention}",
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=WARN",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"),  # noqa: SIM115 - lives as long as the server
        )

    def wait_ready(self, timeout: float = 30.0) -> VictoriaMetrics:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"victoria-metrics exited with {self.proc.returncode}: see {self.log}")
            try:
                return http_get(f"{self.url}/health", timeout=1).strip() == b"OK"
            except OSError:
                return False

        wait_for(ready, timeout, "victoria-metrics to be ready", poll=0.1)
        return self

    def flush(self) -> None:
        """Make every sample received so far visible to queries (they wait in memory up to a second)."""
        http_get(f"{self.url}/internal/force_flush")
