"""The HTTP side against unkind clients, on real sockets and real agent processes: idle and slow
clients are dropped, bodies are bounded, deep JSON is a 400, disconnects are quiet, the threads stay
bounded under 300 slow clients while 50 scrapers are served; and the exposure options: TLS and basic
auth from an exporter-toolkit web config, and names left out for multi-tenant clusters."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest

from agent.export.connections import Limits
from agent.export.exposition import Exposition
from agent.export.server import MetricsServer
from tests.export.seed import agent_config
from tests.support.processes import AgentProcess, run_greenai, wait_for

NO_HOST = ["--sysfs", "/nonexistent-sys", "--cgroupfs", "/nonexistent-cgroup"]
"""No hardware and no jobs of the host: these tests see only their own ledgers."""
ESTIMATE_ONLY = {"LD_LIBRARY_PATH": "/nonexistent"}
DROPPED_WITHIN_S = Limits.request_seconds + 10  # generous: a busy 2-core machine


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    config = agent_config(tmp_path_factory.mktemp("agent"))
    args = ["--config", str(config), "--interval", "0.2", "--log-level", "debug", *NO_HOST]
    with AgentProcess(args, env=ESTIMATE_ONLY) as running:
        running.wait_ready()
        yield running


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=DROPPED_WITHIN_S)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket's timeout bounds the wait)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _request(port: int, raw: bytes) -> tuple[int, bytes]:
    with _connect(port) as sock:
        sock.sendall(raw)
        reply = _read_all(sock)
    status = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    assert status, reply
    return int(status.group(1)), reply.partition(b"\r\n\r\n")[2]


def _post_annotate(body: bytes, length: int | None = None) -> bytes:
    return (
        b"POST /api/v1/jobs/4242/annotate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body) if length is None else length}\r\n\r\n".encode()
        + body
    )


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _log_is_quiet(agent: AgentProcess) -> None:
    for word in ("Traceback", "BrokenPipeError", "RecursionError", "ConnectionResetError"):
        assert word not in agent.log, agent.log[-3000:]


# ---- case 9: slow, idle, oversized and deep requests ----


def test_an_idle_connection_is_dropped_within_seconds(agent: AgentProcess) -> None:
    started = time.monotonic()
    with _connect(agent.port) as sock:
        reply = _read_all(sock)
    assert time.monotonic() - started < DROPPED_WITHIN_S
    assert reply == b"" or reply.startswith(b"HTTP/1.0 408"), reply


def test_a_client_that_sends_its_head_slowly_is_dropped(agent: AgentProcess) -> None:
    started = time.monotonic()
    with _connect(agent.port) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        sock.settimeout(0.5)
        reply = b""
        while time.monotonic() - started < DROPPED_WITHIN_S and not reply:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # a header line every half second, never the end
                reply = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                break
    assert time.monotonic() - started < DROPPED_WITHIN_S + 1
    assert reply in (b"",) or reply.startswith(b"HTTP/1.0 408"), reply


def test_a_body_shorter_than_its_content_length_does_not_pin_a_worker(agent: AgentProcess) -> None:
    before = _threads(agent.proc.pid)
    socks = [_connect(agent.port) for _ in range(20)]  # more than the workers
    try:
        for sock in socks:
            sock.sendall(_post_annotate(b'{"tokens": 1', length=1000))
        status, body = _request(agent.port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert status == 200 and b"greenai_agent_samples_total" in body
        assert _threads(agent.proc.pid) <= before + 2
        started = time.monotonic()
        for sock in socks:
            assert _read_all(sock).startswith(b"HTTP/1.0 408")
        assert time.monotonic() - started < DROPPED_WITHIN_S
    finally:
        for sock in socks:
            sock.close()


def test_a_body_over_the_limit_is_413_at_once(agent: AgentProcess) -> None:
    started = time.monotonic()
    status, _ = _request(agent.port, _post_annotate(b"", length=10**9))
    assert status == 413 and time.monotonic() - started < 2.0


def test_a_head_over_the_limit_is_431(agent: AgentProcess) -> None:
    status, _ = _request(agent.port, b"GET /metrics HTTP/1.0\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert status == 431


def test_deeply_nested_json_is_a_400_without_a_traceback(agent: AgentProcess) -> None:
    for deep in (b"[" * 2040 + b"]" * 2040, b'{"tokens": ' * 1000 + b"1" + b"}" * 1000):
        status, body = _request(agent.port, _post_annotate(deep[:4096]))
        assert status == 400, body
        assert "nests deeper" in json.loads(body)["error"]
    status, body = _request(
        agent.port, _post_annotate(b'{"tokens": 5, "x": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')
    )
    assert status == 400 and "tokens" in json.loads(body)["error"]  # brackets in a string do not count
    _log_is_quiet(agent)


def test_clients_that_hang_up_early_leave_one_debug_line_each(agent: AgentProcess) -> None:
    for _ in range(30):
        sock = _connect(agent.port)
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.close()
    assert _request(agent.port, b"GET /healthz HTTP/1.0\r\n\r\n") == (200, b"ok\n")
    _log_is_quiet(agent)


@pytest.mark.parametrize(
    ("request_line", "allow"),
    [("TRACE /metrics", "GET"), ("PUT /api/v1/jobs/4242", "GET"), ("GET /api/v1/jobs/4242/annotate", "POST")],
)
def test_other_methods_are_405_with_allow(agent: AgentProcess, request_line: str, allow: str) -> None:
    with _connect(agent.port) as sock:
        sock.sendall(f"{request_line} HTTP/1.0\r\n\r\n".encode())
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.0 405") and f"\r\nAllow: {allow}\r\n".encode() in reply, reply


@pytest.mark.parametrize("since", ["nan", "NaN", "inf", "-inf", "Infinity", "abc"])
def test_since_must_be_a_finite_number(agent: AgentProcess, since: str) -> None:
    status, body = _request(agent.port, f"GET /api/v1/jobs?since={since} HTTP/1.0\r\n\r\n".encode())
    assert status == 400 and "since" in json.loads(body)["error"]


def test_past_the_connection_cap_a_client_gets_a_quick_503() -> None:
    server = MetricsServer("127.0.0.1", 0, Exposition(list), limits=Limits(workers=2, max_connections=4))
    server.start()
    held = [_connect(server.port) for _ in range(4)]
    try:
        # The reader accepts the held ones in its own time: wait until it turned one away.
        def refused() -> bool:
            try:
                status, body = _request(server.port, b"GET /metrics HTTP/1.0\r\n\r\n")
            except ConnectionError:  # closed before the request arrived: a refusal too, try again
                return False
            return status == 503 and body == b"too many connections"

        wait_for(refused, 10, "a 503 past the cap")
    finally:
        for sock in held:
            sock.close()
        server.stop()


# ---- the acceptance's load test ----

SLOW_CLIENTS, SCRAPERS, SCRAPES_EACH = 300, 50, 3


def test_slow_clients_do_not_starve_scrapers_threads_or_sampling(agent: AgentProcess) -> None:
    pid = agent.proc.pid
    baseline = _threads(pid)
    samples_before = agent.value("greenai_agent_samples_total") or 0
    started = time.monotonic()
    slow = []
    for i in range(SLOW_CLIENTS):  # half send part of a head, half nothing at all
        sock = _connect(agent.port)
        if i % 2:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    most_threads = [baseline]
    stop = threading.Event()

    def watch_threads() -> None:
        while not stop.wait(0.05):
            most_threads.append(_threads(pid))

    def scrape(_: int) -> int:
        served = 0
        for _ in range(SCRAPES_EACH):
            with urllib.request.urlopen(f"{agent.url}/metrics", timeout=20) as response:
                served += response.status == 200 and b"greenai_node_energy" in response.read()
        return served

    watcher = threading.Thread(target=watch_threads)
    watcher.start()
    try:
        with ThreadPoolExecutor(SCRAPERS) as pool:
            served = sum(pool.map(scrape, range(SCRAPERS)))
    finally:
        stop.set()
        watcher.join()
        for sock in slow:
            sock.close()
    assert served == SCRAPERS * SCRAPES_EACH
    assert max(most_threads) <= baseline + 2, (baseline, max(most_threads))
    assert baseline <= 20  # the reader and the workers, the sampler, the ledger: no thread per client
    # Sampling kept its schedule: at 0.2 s, at least half the expected samples in the elapsed time.
    wait_for(
        lambda: (
            (agent.value("greenai_agent_samples_total") or 0) - samples_before
            >= (time.monotonic() - started) / 0.2 / 2
        ),
        5,
        "sampling to keep its schedule",
    )
    _log_is_quiet(agent)


# ---- case 11: TLS, basic auth, redaction ----


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1, made by openssl: server.crt and server.key."""
    folder = tmp_path_factory.mktemp("certs")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "server.key"),
         "-out", str(folder / "server.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder


def _serving_https(agent: AgentProcess) -> int:
    def port() -> int | None:
        if agent.proc.poll() is not None:
            raise AssertionError(f"agent exited with {agent.proc.returncode}:\n{agent.log}")
        m = re.search(r"serving metrics on https://127\.0\.0\.1:(\d+)/metrics", agent.log)
        return int(m.group(1)) if m else None

    return wait_for(port, 15, "the agent to serve https")


def _get(url: str, ctx: ssl.SSLContext | None, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=10, context=ctx
        ) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_tls_and_basic_auth_guard_metrics_and_the_api(tmp_path: Path, certs: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs / 'server.crt'}\n  key_file: {certs / 'server.key'}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    config = agent_config(tmp_path, f"web: {{config_file: {web}}}\n")
    with AgentProcess(["--config", str(config), *NO_HOST], env=ESTIMATE_ONLY) as agent:
        port = _serving_https(agent)
        ctx = ssl.create_default_context(cafile=str(certs / "server.crt"))
        base = f"https://127.0.0.1:{port}"
        for path in ("/metrics", "/api/v1/jobs", "/api/v1/jobs/4242"):
            assert _get(base + path, ctx)[0] == 401
            assert _get(base + path, ctx, ("prometheus", "wrong"))[0] == 401
            assert _get(base + path, ctx, ("nobody", "s3cret"))[0] == 401
            status, body = _get(base + path, ctx, ("prometheus", "s3cret"))
            assert status == 200 and body
        assert _get(base + "/healthz", ctx) == (200, b"ok\n")  # liveness probes do not log in
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()  # no plain HTTP
        assert _get(base + "/metrics", ctx, ("prometheus", "s3cret"))[0] == 200  # still serving
    _log_is_quiet(agent)


def test_a_client_certificate_can_be_required(tmp_path: Path, certs: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(  # relative names: from the web config's folder
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.crt\n  min_version: TLS13\n"
    )
    for name in ("server.crt", "server.key"):
        (tmp_path / name).write_bytes((certs / name).read_bytes())
    config = agent_config(tmp_path, f"web: {{config_file: {web}}}\n")
    with AgentProcess(["--config", str(config), *NO_HOST], env=ESTIMATE_ONLY) as agent:
        port = _serving_https(agent)
        anonymous = ssl.create_default_context(cafile=str(certs / "server.crt"))
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", timeout=5, context=anonymous).read()
        known = ssl.create_default_context(cafile=str(certs / "server.crt"))
        known.load_cert_chain(certs / "server.crt", certs / "server.key")
        assert _get(f"https://127.0.0.1:{port}/metrics", known)[0] == 200
    _log_is_quiet(agent)


@pytest.mark.parametrize(
    ("web", "says"),
    [
        (None, "no such file"),
        ("tls_server_config: {cert_file: a.crt}\n", "'tls_server_config.key_file' is required"),
        ("tls_server_config: {cert_file: nope.crt, key_file: nope.key}\n", "cannot load cert_file"),
        ("basic_auth_users: {alice: s3cret}\n", "'basic_auth_users.alice' must be a bcrypt hash"),
        ("rate_limit: {burst: 20}\n", "unknown key 'rate_limit'"),
        ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequestClientCert}\n",
         "'tls_server_config.client_auth_type' must be one of"),
        ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: VerifyClientCertIfGiven}\n",
         "'tls_server_config.client_ca_file' is required"),
        ("tls_server_config: [\n", "invalid YAML"),
    ],
)  # fmt: skip
def test_a_bad_web_config_is_one_line_and_exit_2(tmp_path: Path, web: str | None, says: str) -> None:
    path = tmp_path / "web.yml"
    if web is not None:
        path.write_text(web)
    config = tmp_path / "agent.yaml"
    config.write_text(f"ledger: {{path: {tmp_path / 'ledger.db'}}}\nweb: {{config_file: {path}}}\n")
    result = run_greenai("agent", "--config", str(config), "--listen", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"greenai: web config {path}: "), result.stderr
    assert says in lines[0], lines[0]


def test_redact_leaves_people_out_of_the_api_and_the_metrics(tmp_path: Path) -> None:
    extra = "api: {redact: [user, uid, account, name]}\njobs: {labels: [user, name, account, project]}\n"
    config = agent_config(tmp_path, extra)
    with AgentProcess(["--config", str(config), "--interval", "0.2", *NO_HOST], env=ESTIMATE_ONLY) as agent:
        agent.wait_ready()
        jobs = json.loads(urllib.request.urlopen(f"{agent.url}/api/v1/jobs", timeout=10).read())
        one = json.loads(urllib.request.urlopen(f"{agent.url}/api/v1/jobs/4242", timeout=10).read())
        assert len(jobs) == 2 and one["job_id"] == "4242"
        for job in [*jobs, one]:
            assert [job[k] for k in ("user", "uid", "account", "name")] == [None] * 4
            assert job["energy_kwh"] > 0
        status, body = _request(agent.port, b"GET /api/v1/jobs?user=alice HTTP/1.0\r\n\r\n")
        assert status == 400 and "api.redact" in json.loads(body)["error"]
        text = agent.metrics_text()
        assert "alice" not in text and "train" not in text
        assert not re.search(r'\b(user|name|account)="', text)
    unredacted = agent_config(tmp_path / "plain" if (tmp_path / "plain").mkdir() is None else tmp_path)
    with AgentProcess(["--config", str(unredacted), *NO_HOST], env=ESTIMATE_ONLY) as agent:
        agent.wait_ready()
        one = json.loads(urllib.request.urlopen(f"{agent.url}/api/v1/jobs/4242", timeout=10).read())
        assert (one["user"], one["uid"], one["account"], one["name"]) == ("alice", 1000, "ml", "train")
