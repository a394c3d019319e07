"""The HTTP server: /metrics (an Exposition), /api/v1/jobs (JSON, from a JobsApi), /healthz.

It never touches hardware: a scrape gets the exposition of the latest published sample, rendered once
per sample and kept (agent.export.exposition); a scrape that asks for gzip gets it compressed, also
kept. GET /metrics is answered from a lean parse of the request; everything else by the standard
library's handler. Connections are read by one thread and answered by a fixed pool (agent.export.connections),
so slow clients cannot multiply threads. With a web config (agent.config.web) it speaks TLS and asks
for basic auth on every path but /healthz, which says no more than "ok" to probes.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import io
import ipaddress
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

import bcrypt

from agent.config.web import WebConfig
from agent.config.work import parse_count
from agent.export.connections import Connections, Limits
from agent.export.exposition import Exposition
from agent.units import json_text

log = logging.getLogger("greenai.export")
METRICS = "/metrics"

_INDEX = b"""<html><head><title>greenai agent</title></head>
<body><h1>greenai agent</h1><p><a href="/metrics">Metrics</a> &middot;
<a href="/api/v1/jobs">Jobs (JSON)</a></p></body></html>
"""


class JobsApi(Protocol):
    """Read-only job figures for /api/v1/jobs; errors are LookupError (no such job) or ValueError."""

    def list_jobs(self, query: Mapping[str, str]) -> list[dict[str, Any]]: ...

    def get_job(self, job_id: str) -> dict[str, Any]: ...

    def annotate(self, job_id: str, tokens: int | None, samples: int | None) -> dict[str, Any]: ...


MAX_POST_BYTES = Limits.max_body_bytes
MAX_JSON_DEPTH = 32
ANNOTATE = "/annotate"
OPEN_PATHS = ("/healthz",)
"""Served without basic auth: liveness probes that cannot log in; they learn nothing else."""


def json_depth(text: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text, counted before parsing it (which recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes; a right answer is remembered, since bcrypt
    is slow on purpose and Prometheus sends the same credentials every scrape."""

    MAX_REMEMBERED = 64

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {name: hashed.encode() for name, hashed in users.items()}
        self._known: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        if not self._users:
            return True
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        if not sep or hashed is None:
            return False
        token = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        with self._lock:
            if token in self._known:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            if len(self._known) >= self.MAX_REMEMBERED:
                self._known.clear()
            self._known.add(token)
        return True


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (named with a non-zero q, or `*`)."""
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() in ("gzip", "*"):
            q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def is_loopback(host: str) -> bool:
    """Whether a listen host only takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    """Answers one request that the connection reader has read whole: `request` is (socket, bytes)."""

    server: MetricsServer  # type: ignore[assignment]
    request: tuple[socket.socket, bytes]

    def setup(self) -> None:
        sock, data = self.request
        self.connection = sock
        self.rfile = io.BytesIO(data)
        self.wfile = sock.makefile("wb")

    def parse_request(self) -> bool:
        """The request line and headers, then basic auth and the method: False when answered already."""
        if not super().parse_request():
            return False
        path = urllib.parse.urlsplit(self.path).path
        if path not in OPEN_PATHS and not self.server.auth.allows(self.headers.get("Authorization")):
            self._reply(401, "text/plain; charset=utf-8", b"unauthorized\n",
                        {"WWW-Authenticate": 'Basic realm="greenai", charset="UTF-8"'})  # fmt: skip
            return False
        allowed = "POST" if path.startswith("/api/v1/jobs/") and path.endswith(ANNOTATE) else "GET"
        if self.command != allowed:
            self._reply(405, "text/plain; charset=utf-8", b"method not allowed\n", {"Allow": allowed})
            return False
        return True

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path.startswith("/api/v1/jobs"):
            self._jobs_api(path, dict(urllib.parse.parse_qsl(url.query)))
        elif path == METRICS:
            body, content_type = self.server.metrics.render(self.headers.get("Accept", ""))
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
        if not 0 < length <= MAX_POST_BYTES:  # the reader answered 413 above the limit
            raise ValueError(f"the body must be 1 to {MAX_POST_BYTES} bytes")
        text = self.rfile.read(length)  # already in memory: the reader waited for all of it
        if json_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            body = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
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
        self._reply(status, "application/json", json_text(value, indent=1).encode() + b"\n")

    def _reply(
        self, status: int, content_type: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer:
    """Serves /metrics, the API and /healthz, on threads of its own."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Exposition,
        jobs_api: JobsApi | None = None,
        allow_annotate: bool = False,
        web: WebConfig | None = None,
        limits: Limits | None = None,
    ) -> None:
        """`allow_annotate`: serve POST .../annotate beyond loopback too (api.allow_annotate);
        `web`: TLS and basic auth (web.config_file). Raises OSError when `host:port` cannot be bound."""
        web = web or WebConfig()
        limits = limits or Limits()
        self.metrics = metrics
        self.jobs_api = jobs_api
        self.allow_annotate = allow_annotate or is_loopback(host)
        self.auth = BasicAuth(web.basic_auth_users)
        self.scheme = "https" if web.tls is not None else "http"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=limits.backlog)
        self.server_address = self._listener.getsockname()
        tls = web.tls.context() if web.tls is not None else None
        self._connections = Connections(self._listener, self._answer, limits, tls)

    def _answer(self, sock: socket.socket, address: tuple[str, int], request: bytes) -> None:
        if not self._scrape(sock, address, request):
            _Handler((sock, request), address, self)  # type: ignore[arg-type]

    def _scrape(self, sock: socket.socket, address: tuple[str, int], request: bytes) -> bool:
        """Answer a well-formed, authorised GET /metrics from the kept exposition; False for anything
        else (the standard handler answers it, errors included)."""
        head = request.partition(b"\r\n\r\n")[0].decode("latin-1")
        line, *header_lines = head.split("\r\n")
        method, _, rest = line.partition(" ")
        target, _, version = rest.partition(" ")
        if method != "GET" or target != METRICS or not version.startswith("HTTP/1."):
            return False
        headers = {}
        for header in header_lines:
            name, sep, value = header.partition(":")
            if not sep or not name or name != name.strip():
                return False
            headers[name.lower()] = value.strip()
        if not self.auth.allows(headers.get("authorization")):
            return False
        accept = headers.get("accept", "")
        if accepts_gzip(headers.get("accept-encoding", "")):
            body, content_type, compress = self.metrics.render_gzip(accept)
        else:
            (body, content_type), compress = self.metrics.render(accept), False
        reply = (
            f"HTTP/1.0 200 OK\r\nServer: {_Handler.server_version} {_Handler.sys_version}\r\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Content-Encoding: gzip\r\n" if compress else "") + "\r\n"
        )
        sock.sendall(reply.encode("latin-1") + body)  # one write: no Nagle wait between head and body
        log.debug('%s "GET /metrics" 200 %d', address[0], len(body))
        return True

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._connections.start()

    def stop(self) -> None:
        self._connections.stop()
        self._listener.close()
