"""Prometheus export: a custom collector over the sampler's immutable snapshot, and the HTTP server.

A scrape only turns the latest snapshot into metric families; it never reads hardware. The metric
names and labels here are a contract that dashboards, the report and the alert rules rely on. No
label is named `job` or `instance`: Prometheus owns those.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from agent import __version__
from agent.accounting import JobsSnapshot
from agent.job_metrics import JobFamilies
from agent.sampler import Snapshot
from agent.work import parse_count
from collectors.base import Status

log = logging.getLogger(__name__)

Published = tuple[Snapshot, JobsSnapshot | None]
"""What one sample produced: node energy and, where jobs are accounted, the job totals that go with it."""

ENERGY_LABELS = ["component", "device", "source"]


BROKEN = (Status.PERMISSION_DENIED, Status.ERROR)
"""Probe outcomes that are a problem to fix, so the collector shows as down (0) rather than absent."""


class SnapshotCollector:
    """Yields the greenai_* metric families of whatever snapshot `get_snapshot` returns now.

    `statuses` is what each configured collector's probe found; it does not change while the agent
    runs. A collector whose hardware is simply absent (not found, disabled) has no `up` series, so
    that a node without GPUs does not look like a node with a broken GPU collector.
    """

    def __init__(
        self,
        get_snapshot: Callable[[], Published],
        node_name: str,
        statuses: Mapping[str, Status],
        jobs: JobFamilies | None = None,
    ) -> None:
        self._get_snapshot = get_snapshot
        self._node_name = node_name
        self._statuses = dict(statuses)
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        # One read for the whole scrape: node and job figures from the same sample always add up.
        snap, jobs = self._get_snapshot()
        yield from self._node_families(snap)
        if self._jobs is not None and jobs is not None:
            yield from self._jobs.families(jobs)

    def _node_families(self, snap: Snapshot) -> Iterator[Metric]:
        energy = CounterMetricFamily(
            "greenai_node_energy_joules",
            "Energy used by the node since the agent started, per component and device; "
            "source says whether it was measured (rapl, nvml) or estimated.",
            labels=ENERGY_LABELS,
        )
        power = GaugeMetricFamily(
            "greenai_node_power_watts",
            "Mean power over the last sampling interval, per component and device.",
            labels=ENERGY_LABELS,
        )
        for row in snap.energy:
            labels = [row.component, row.device, row.source]
            energy.add_metric(labels, row.energy_j)
            if row.power_w is not None:
                power.add_metric(labels, row.power_w)
        yield energy
        yield power

        up = GaugeMetricFamily(
            "greenai_collector_up",
            "1 when the collector's last read succeeded, else 0.",
            labels=["collector"],
        )
        states = {name: 0.0 for name, status in self._statuses.items() if status in BROKEN}
        states.update({name: 1.0 if ok else 0.0 for name, ok in snap.collectors_up.items()})
        for name, value in sorted(states.items()):
            up.add_metric([name], value)
        yield up

        status = GaugeMetricFamily(
            "greenai_collector_status",
            "What each configured collector found when the agent started (found, estimate, not_found, "
            "permission_denied, error, disabled); `greenai doctor` says why.",
            labels=["collector", "status"],
        )
        for name, found in sorted(self._statuses.items()):
            status.add_metric([name, found.value.replace(" ", "_")], 1.0)
        yield status

        errors = CounterMetricFamily(
            "greenai_collector_errors",
            "Failed reads per collector and reason (a device lost, not supported, no permission, ...).",
            labels=["collector", "reason"],
        )
        for (name, reason), count in sorted(snap.errors.items()):
            errors.add_metric([name, reason], count)
        yield errors

        info = GaugeMetricFamily(
            "greenai_device_info",
            "Devices the agent measures or estimates, with how (method) and what they are.",
            labels=[*ENERGY_LABELS, "method", "model", "uuid"],
        )
        for dev in snap.devices:
            model = dev.details.get("name") or dev.details.get("model") or ""
            info.add_metric(
                [dev.component, dev.device, dev.source, dev.method, model, dev.details.get("uuid", "")], 1.0
            )
        yield info

        yield GaugeMetricFamily(
            "greenai_agent_sample_duration_seconds",
            "Wall-clock time the last sample of all collectors took.",
            value=snap.sample_duration_s,
        )
        yield CounterMetricFamily(
            "greenai_agent_samples", "Samples taken since the agent started.", value=snap.samples
        )
        node = GaugeMetricFamily("greenai_node_info", "The node this agent measures.", labels=["node"])
        node.add_metric([self._node_name], 1.0)
        yield node
        build = GaugeMetricFamily("greenai_build_info", "The agent's version.", labels=["version"])
        build.add_metric([__version__], 1.0)
        yield build


def make_registry(
    get_snapshot: Callable[[], Published],
    node_name: str,
    statuses: Mapping[str, Status],
    jobs: JobFamilies | None = None,
) -> CollectorRegistry:
    """A registry of its own (never the global one) with the snapshot's and the process's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(get_snapshot, node_name, statuses, jobs))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The exposition of `registry` in the format the Accept header asks for, and its content type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


_INDEX = b"""<html><head><title>greenai agent</title></head>
<body><h1>greenai agent</h1><p><a href="/metrics">Metrics</a> &middot;
<a href="/api/v1/jobs">Jobs (JSON)</a></p></body></html>
"""


class JobsApi(Protocol):
    """Read-only job figures for /api/v1/jobs; errors are LookupError (no such job) or ValueError."""

    def list_jobs(self, query: Mapping[str, str]) -> list[dict[str, Any]]: ...

    def get_job(self, job_id: str) -> dict[str, Any]: ...

    def annotate(self, job_id: str, tokens: int | None, samples: int | None) -> dict[str, Any]: ...


MAX_POST_BYTES = 4096
ANNOTATE = "/annotate"


def is_loopback(host: str) -> bool:
    """Whether a listen host only takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path.startswith("/api/v1/jobs"):
            self._jobs_api(path, dict(urllib.parse.parse_qsl(url.query)))
        elif path == "/metrics":
            body, content_type = render(self.server.registry, self.headers.get("Accept", ""))
            self._reply(200, content_type, body)
        elif path == "/":
            self._reply(200, "text/html; charset=utf-8", _INDEX)
        elif path == "/healthz":
            self._reply(200, "text/plain; charset=utf-8", b"ok\n")
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n")

    def do_POST(self) -> None:
        """POST /api/v1/jobs/<id>/annotate {"tokens": N} or {"samples": N}: add useful work to a job.

        Anyone who can connect may annotate any job, so this is served only where the agent listens on
        loopback (local users only) or `api.allow_annotate` says so. A JSON content type is required:
        a browser cannot send one cross-site without a CORS preflight, which this server never grants.
        """
        path = urllib.parse.urlsplit(self.path).path
        api = self.server.jobs_api
        if not (path.startswith("/api/v1/jobs/") and path.endswith(ANNOTATE)) or api is None:
            self._json(404, {"error": f"no such resource: {path}"})
            return
        if not self.server.allow_annotate:
            self._json(403, {"error": "annotating is off: the agent listens beyond loopback; "
                                      "set api.allow_annotate: true to allow it"})  # fmt: skip
            return
        job_id = urllib.parse.unquote(path[len("/api/v1/jobs/") : -len(ANNOTATE)])

        def annotate() -> object:
            tokens, samples = self._annotation()
            return api.annotate(job_id, tokens, samples)

        self._answer(f"POST {path}", annotate)

    def _annotation(self) -> tuple[int | None, int | None]:
        """(tokens, samples) from the request's JSON body; ValueError (HTTP 400) when it is not right."""
        if self.headers.get_content_type() != "application/json":
            raise ValueError("send the body as Content-Type: application/json")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ValueError("a Content-Length header is required") from None
        if not 0 < length <= MAX_POST_BYTES:
            raise ValueError(f"the body must be 1 to {MAX_POST_BYTES} bytes")
        try:
            body = json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"the body is not JSON: {e}") from None
        if not isinstance(body, dict) or not body or set(body) - {"tokens", "samples"}:
            raise ValueError('the body must be {"tokens": N} and/or {"samples": N}')
        tokens = parse_count(body["tokens"], "tokens") if "tokens" in body else None
        samples = parse_count(body["samples"], "samples") if "samples" in body else None
        return tokens, samples

    def _jobs_api(self, path: str, query: dict[str, str]) -> None:
        api = self.server.jobs_api
        rest = path[len("/api/v1/jobs") :]

        def answer() -> object:
            if api is None:
                raise LookupError("this agent keeps no per-job figures")
            if rest in ("", "/"):
                return api.list_jobs(query)
            if rest.startswith("/") and "/" not in rest[1:]:
                return api.get_job(urllib.parse.unquote(rest[1:]))
            raise LookupError(f"no such resource: {path}")

        self._answer(f"GET {path}", answer)

    def _answer(self, request: str, call: Callable[[], object]) -> None:
        """Reply with `call()` as JSON: LookupError is 404, ValueError 400, anything else 500."""
        try:
            self._json(200, call())
        except LookupError as e:
            self._json(404, {"error": str(e.args[0] if e.args else e)})
        except ValueError as e:
            self._json(400, {"error": str(e)})
        except Exception:  # the API must never take the agent down
            log.exception("%s", request)
            self._json(500, {"error": "internal error; see the agent's log"})

    def _json(self, status: int, value: object) -> None:
        self._reply(status, "application/json", json.dumps(value, indent=1).encode() + b"\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer(ThreadingHTTPServer):
    """Serves /metrics from a registry on its own daemon thread."""

    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        jobs_api: JobsApi | None = None,
        allow_annotate: bool = False,
    ) -> None:
        """`allow_annotate`: serve POST .../annotate beyond loopback too (api.allow_annotate)."""
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.registry = registry
        self.jobs_api = jobs_api
        self.allow_annotate = allow_annotate or is_loopback(host)
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
