#!/usr/bin/env python3
"""The agent beside its peers on this machine, in one run: CPU per second and RSS, as ratios.

Two cases, each measured side by side over the same window (all processes run at once, so a busy
machine slows them alike), at 1 s sampling and a 1 Hz scrape:

- `estimate` (no RAPL, no GPU): `greenai agent` on an empty sysfs, against CodeCarbon's
  `OfflineEmissionsTracker` (measure_power_secs=1, tracking_mode="machine", nothing saved) in a
  Python process of its own, which does nothing else. CodeCarbon picks its own estimate (its log
  lines saying which are printed); it is offline, so nothing is looked up on the network. Its log
  level is `warning` (its default, `info`, would charge it for a log line every second).
- `rapl`: the agent and `prometheus-node-exporter --collector.disable-defaults --collector.rapl`
  (Debian's package: only its rapl collector, plus its own go_/process_ metrics) on the same
  generated 2-socket powercap tree, which follows real time.

Both agents and node_exporter are scraped once a second as Prometheus does: a kept-alive
connection, Prometheus's Accept header (OpenMetrics first) and gzip. A second agent beside the
first, sampling the same but never scraped, gives the scrape's own cost: the difference between the
two, per scrape.

CPU is each process's CPU clock (clock_gettime on its process CPU-time clock: every thread, those that
ended included, to the nanosecond), read at both ends of the window. RSS is read at the end.

Floors: the agent's CPU per second at most 0.5x CodeCarbon's (estimate) and at most 1.0x
node_exporter's (rapl); a scrape with no jobs at most 0.3 ms of CPU; RSS at most 40 MB. Prints JSON
and exits 1 when a floor is missed.

    python3 benchmarks/peers.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.powercap import PowercapTree, server_zones  # noqa: E402
from tests.support.processes import AgentProcess, free_port, wait_for  # noqa: E402

CODECARBON_RATIO_FLOOR = 0.5
NODE_EXPORTER_RATIO_FLOOR = 1.0
SCRAPE_CPU_MS_FLOOR = 0.3
RSS_MB_FLOOR = 40.0
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""What Prometheus 2.x sends when it scrapes."""
CPUCLOCK_SCHED = 2

CODECARBON = """
import sys, tempfile
out, sys.stdout = sys.stdout, sys.stderr  # CodeCarbon logs to stdout: to the log file instead
from codecarbon import OfflineEmissionsTracker
tracker = OfflineEmissionsTracker(
    country_iso_code="USA", measure_power_secs=1, tracking_mode="machine", save_to_file=False,
    output_dir=tempfile.mkdtemp(), log_level="warning",
)
tracker.start()
out.write("started" + chr(10))
out.flush()
sys.stdin.readline()
tracker.stop()
"""


def cpu_s(pid: int) -> float:
    """The process's CPU time so far, all threads (ended ones included), from its CPU-time clock."""
    return time.clock_gettime_ns(((~pid) << 3) | CPUCLOCK_SCHED) / 1e9


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 1e6


class Scraper:
    """GETs each URL once a `period`, as Prometheus would; counts the scrapes and their bytes."""

    def __init__(self, urls: dict[str, str], period: float = 1.0) -> None:
        self.urls = urls
        self.period = period
        self.scrapes = dict.fromkeys(urls, 0)
        self.bytes = dict.fromkeys(urls, 0)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        connections: dict[str, http.client.HTTPConnection] = {}
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.period
            for name, url in self.urls.items():
                host, _, path = url.removeprefix("http://").partition("/")
                try:
                    conn = connections.get(name) or http.client.HTTPConnection(host, timeout=10)
                    connections[name] = conn
                    conn.request(
                        "GET", "/" + path, headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
                    )
                    response = conn.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise OSError(f"HTTP {response.status}")
                    if response.getheader("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    self.scrapes[name] += 1
                    self.bytes[name] = len(body)
                except (OSError, http.client.HTTPException) as e:
                    connections.pop(name, None)
                    self.failures.append(f"{name}: {e}")
        for conn in connections.values():
            conn.close()

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _agent(root: Path, name: str, sysfs: Path) -> AgentProcess:
    """An agent at a 1 s interval on `sysfs`, on an empty cgroup tree (a node with no jobs now, whatever
    else runs on this machine), without the local socket, and with no vendor library to find."""
    cgroupfs = root / "cgroup"
    for hierarchy in ("cpu", "cpuacct", "cpuset", "memory", "unified"):
        (cgroupfs / hierarchy).mkdir(parents=True, exist_ok=True)
    (root / f"{name}.yaml").write_text(f"ledger: {{path: '{root / name}.db'}}\napi: {{socket: ''}}\n")
    args = [
        "--config",
        str(root / f"{name}.yaml"),
        "--interval",
        "1",
        "--sysfs",
        str(sysfs),
        "--cgroupfs",
        str(cgroupfs),
    ]
    return AgentProcess(args, env={"LD_LIBRARY_PATH": str(root / "no-libs")})


@contextlib.contextmanager
def _codecarbon(root: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    log = root / "codecarbon.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CODECARBON], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            text=True, cwd=root, env={**os.environ, "LD_LIBRARY_PATH": str(root / "no-libs")},
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "started":
                raise RuntimeError(f"CodeCarbon did not start:\n{log.read_text()}")
            yield proc, log
        finally:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.write("\n")
                proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _node_exporter(sysfs: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        raise SystemExit(
            "peers.py: prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)"
        )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--collector.disable-defaults", "--collector.rapl", f"--path.sysfs={sysfs}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: _get(url), 15, "node_exporter to serve /metrics")
        yield proc, url
    finally:
        proc.terminate()
        proc.wait()


def _get(url: str) -> bytes | None:
    host, _, path = url.removeprefix("http://").partition("/")
    try:
        conn = http.client.HTTPConnection(host, timeout=5)
        conn.request("GET", "/" + path)
        return conn.getresponse().read()
    except OSError:
        return None


def _window(pids: dict[str, int], scraped: dict[str, str], seconds: float) -> dict[str, Any]:
    """CPU ms per second of each process over `seconds`, while `scraped` are scraped at 1 Hz."""
    with Scraper(scraped) as scraper:
        time.sleep(2)  # the first scrapes, connections opened
        start = {name: cpu_s(pid) for name, pid in pids.items()}
        scrapes0 = dict(scraper.scrapes)
        t0 = time.monotonic()
        time.sleep(seconds)
        end = {name: cpu_s(pid) for name, pid in pids.items()}
        wall = time.monotonic() - t0
        scrapes = {name: scraper.scrapes[name] - scrapes0[name] for name in scraped}
    if scraper.failures:
        raise RuntimeError(f"scrapes failed: {scraper.failures[:3]}")
    return {
        "cpu_ms_per_s": {name: round((end[name] - start[name]) * 1000 / wall, 3) for name in pids},
        "rss_mb": {name: round(rss_mb(pid), 1) for name, pid in pids.items()},
        "scrapes": scrapes,
        "exposition_bytes": dict(scraper.bytes),
        "seconds": round(wall, 1),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


def estimate_case(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="greenai-peers-") as tmp:
        root = Path(tmp)
        empty = root / "sys"
        empty.mkdir()
        with (
            _agent(root, "agent", empty) as agent,
            _agent(root, "unscraped", empty) as unscraped,
            _codecarbon(root) as (codecarbon, log),
        ):
            for a in (agent, unscraped):
                a.wait_ready().wait_samples(3)
            time.sleep(3)  # past CodeCarbon's first measurements
            pids = {
                "agent": agent.proc.pid,
                "agent_unscraped": unscraped.proc.pid,
                "codecarbon": codecarbon.pid,
            }
            figures = _window(pids, {"agent": f"{agent.url}/metrics"}, seconds)
            sources = sorted(set(re.findall(r'source="([^"]+)"', agent.metrics_text())))
        mode = [line.split("] ", 1)[-1] for line in log.read_text().splitlines() if "mode" in line.lower()]
    cpu = figures["cpu_ms_per_s"]
    figures["agent_sources"] = sources
    figures["codecarbon_mode"] = mode[:3]
    figures["scrape_cpu_ms"] = round(
        (cpu["agent"] - cpu["agent_unscraped"]) / (figures["scrapes"]["agent"] / figures["seconds"]), 3
    )
    figures["ratio_cpu"] = _ratio(cpu["agent"], cpu["codecarbon"])
    figures["ratio_rss"] = _ratio(figures["rss_mb"]["agent"], figures["rss_mb"]["codecarbon"])
    return figures


def rapl_case(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="greenai-peers-") as tmp:
        root = Path(tmp)
        with (
            PowercapTree(root / "sys", server_zones(2)) as tree,
            tree.following_real_time(0.05),
            _agent(root, "agent", tree.root) as agent,
            _node_exporter(tree.root) as (exporter, exporter_url),
        ):
            agent.wait_ready().wait_samples(3)
            pids = {"agent": agent.proc.pid, "node_exporter": exporter.pid}
            figures = _window(pids, {"agent": f"{agent.url}/metrics", "node_exporter": exporter_url}, seconds)
            rapl_series = len(re.findall(rb"^node_rapl_\w+_joules_total", _get(exporter_url) or b"", re.M))
            agent_rapl = 'source="rapl"' in agent.metrics_text()
    if rapl_series == 0 or not agent_rapl:
        raise RuntimeError(f"not both reading RAPL: node_exporter {rapl_series} series, agent {agent_rapl}")
    cpu = figures["cpu_ms_per_s"]
    figures["node_exporter_rapl_series"] = rapl_series
    figures["ratio_cpu"] = _ratio(cpu["agent"], cpu["node_exporter"])
    figures["ratio_rss"] = _ratio(figures["rss_mb"]["agent"], figures["rss_mb"]["node_exporter"])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="the measured window per case (default 60)"
    )
    parser.add_argument("--case", choices=("both", "estimate", "rapl"), default="both")
    args = parser.parse_args()
    if args.case != "both":  # one case alone, while working on it: figures only, no verdict
        print(json.dumps((estimate_case if args.case == "estimate" else rapl_case)(args.seconds), indent=2))
        return 0
    estimate = estimate_case(args.seconds)
    rapl = rapl_case(args.seconds)
    checks = {
        "estimate_ratio_cpu": (estimate["ratio_cpu"] or 0) <= CODECARBON_RATIO_FLOOR,
        "rapl_ratio_cpu": (rapl["ratio_cpu"] or 0) <= NODE_EXPORTER_RATIO_FLOOR,
        "scrape_cpu_ms": estimate["scrape_cpu_ms"] <= SCRAPE_CPU_MS_FLOOR,
        "rss_mb": max(estimate["rss_mb"]["agent"], rapl["rss_mb"]["agent"]) <= RSS_MB_FLOOR,
    }
    figures = {
        "estimate": estimate,
        "rapl": rapl,
        "ratios": {
            "agent/codecarbon cpu (estimate)": estimate["ratio_cpu"],
            "agent/node_exporter cpu (rapl)": rapl["ratio_cpu"],
            "agent/codecarbon rss": estimate["ratio_rss"],
            "agent/node_exporter rss": rapl["ratio_rss"],
        },
        "floors": {
            "agent/codecarbon cpu": CODECARBON_RATIO_FLOOR,
            "agent/node_exporter cpu": NODE_EXPORTER_RATIO_FLOOR,
            "scrape_cpu_ms": SCRAPE_CPU_MS_FLOOR,
            "rss_mb": RSS_MB_FLOOR,
        },
        "checks": checks,
        "meets_floors": all(checks.values()),
    }
    print(json.dumps(figures, indent=2))
    return 0 if figures["meets_floors"] else 1


if __name__ == "__main__":
    sys.exit(main())
