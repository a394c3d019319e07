"""agent.client against a fake agent: a real HTTP server on a Unix socket speaking the socket API's
contract (docs/in-code.md), in a thread. It stands in for the agent at the boundary the client talks to."""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from agent.client import AgentUnavailable, GreenaiError, Monitor, WindowError
from tests.support.processes import REPO

API = "/api/v1/self"


@dataclass
class FakeAgent:
    """What the fake answers: a window's joules per component and source, its CO2e per kWh."""

    socket_path: str
    energy_j: dict[str, float] = field(default_factory=lambda: {"cpu": 1800.0, "dram": 180.0, "gpu": 34020.0})
    sources: dict[str, float] = field(default_factory=lambda: {"nvml": 34020.0, "rapl": 1980.0})
    grams_per_kwh: float | None = 400.0
    job: str | None = "slurm:4242"
    unavailable: bool = False
    clock: float = 1_733_000_000.0
    """Unix seconds; each begin and end steps it by `step_s`."""
    step_s: float = 60.0
    windows: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def owner(self, pid: int, uid: int) -> dict[str, Any]:
        kind = "job" if self.job else "process"
        return {"kind": kind, "job": self.job, "pid": pid, "uid": uid}

    def tick(self) -> float:
        self.clock += self.step_s
        return self.clock

    def result(self, name: str, owner: dict[str, Any]) -> dict[str, Any]:
        begin, end = self.windows.pop(name), self.tick()
        total = sum(self.energy_j.values())
        kwh = total / 3.6e6
        co2e = None if self.grams_per_kwh is None else {"location": kwh * self.grams_per_kwh, "market": 0.0}
        note = (
            "per-job figure measured by the node agent"
            if self.job
            else f"the process tree of pid {owner['pid']}, which is in no job"
        )
        return {
            "name": name, "owner": owner, "begin": begin, "end": end, "duration_s": end - begin,
            "energy_j": {**self.energy_j, "total": total}, "kwh": kwh, "co2e_g": co2e,
            "sources": self.sources, "shares": {"measured": 1.0, "estimated": 0.0} if total else None,
            "node_unattributed_share": 0.1, "gpu_shares": {"gpu0": 1.0, "gpu1": 0.5},
            "interval_seconds": 1.0, "interpolated_s": 1.5, "note": note,
        }  # fmt: skip

    def answer(self, method: str, path: str, body: dict[str, Any], pid: int, uid: int) -> tuple[int, Any]:
        self.requests.append((method, path))
        if self.unavailable:
            return 503, {"error": "api.socket is on but attribution is off"}
        owner = self.owner(pid, uid)
        if method == "GET" and path == API:
            return 200, {"owner": owner, "interval_seconds": 1.0}
        if method == "GET" and path == f"{API}/windows":
            return 200, {
                "owner": owner,
                "windows": [{"name": n, "begin": b} for n, b in self.windows.items()],
            }
        if method == "POST" and path == f"{API}/windows":
            name = body.get("name")
            if (
                not isinstance(name, str)
                or not 1 <= len(name) <= 128
                or "/" in name
                or not name.isprintable()
            ):
                return 400, {"error": "name: 1 to 128 printable characters, no '/'"}
            if name in self.windows:
                return 409, {"error": f"a window named {name!r} is already open"}
            if len(self.windows) >= 64:
                return 429, {"error": "at most 64 open windows per owner"}
            self.windows[name] = self.tick()
            return 201, {"name": name, "begin": self.windows[name], "owner": owner}
        prefix = f"{API}/windows/"
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            if method == "POST" and rest.endswith("/end"):
                rest = rest[: -len("/end")]
            elif method != "DELETE":
                return 400, {"error": "no such route"}
            name = unquote(rest)
            if name not in self.windows:
                return 404, {"error": f"no open window named {name!r}"}
            return 200, self.result(name, owner)
        return 400, {"error": "no such route"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        creds = self.connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        status, data = self.server.agent.answer(self.command, self.path, body, pid, uid)
        out = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the client address of a Unix socket is empty


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, agent: FakeAgent) -> None:
        super().__init__(agent.socket_path, _Handler)
        self.agent = agent


@contextmanager
def serving(folder: Path) -> Iterator[FakeAgent]:
    """A fake agent listening on folder/agent.sock while the block runs."""
    agent = FakeAgent(str(folder / "agent.sock"))
    server = _Server(agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield agent
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_agent(tmp_path: Path) -> Iterator[FakeAgent]:
    with serving(tmp_path) as agent:
        yield agent


def test_a_window_returns_the_agents_figures_of_the_callers_job(fake_agent: FakeAgent) -> None:
    m = Monitor(socket_path=fake_agent.socket_path)
    begin = m.begin_window("epoch 3 → ü")
    assert begin == fake_agent.clock
    assert m.open_windows() == [{"name": "epoch 3 → ü", "begin": begin}]
    w = m.end_window("epoch 3 → ü")
    assert w.name == "epoch 3 → ü"
    assert w.energy_j["gpu"] == 34020.0 and w.total_energy == 36000.0
    assert w.kwh == pytest.approx(0.01)
    assert w.co2e_g == {"location": pytest.approx(4.0), "market": 0.0}
    assert w.duration_s == w.time == 60.0
    assert w.sources == {"nvml": 34020.0, "rapl": 1980.0}
    assert w.shares == {"measured": 1.0, "estimated": 0.0}
    assert w.gpu_shares == {"gpu0": 1.0, "gpu1": 0.5}
    assert w.interpolated_s == 1.5 and w.note.startswith("per-job")
    assert w.is_job and w.owner["job"] == "slurm:4242"
    assert w.owner["pid"] == os.getpid()  # the agent saw this process through SO_PEERCRED
    assert w.raw["node_unattributed_share"] == 0.1
    assert ("POST", "/api/v1/self/windows/epoch%203%20%E2%86%92%20%C3%BC/end") in fake_agent.requests
    assert m.open_windows() == []
    assert m.whoami()["owner"]["kind"] == "job"


def test_the_socket_comes_from_the_environment(
    fake_agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENAI_SOCKET", fake_agent.socket_path)
    assert Monitor().socket_path == fake_agent.socket_path
    Monitor().begin_window("a")
    assert Monitor().end_window("a", sync_execution=False).kwh > 0


def test_the_context_manager_holds_the_result_even_when_the_block_raises(fake_agent: FakeAgent) -> None:
    m = Monitor(socket_path=fake_agent.socket_path)
    with m.window("eval") as held:
        assert held.result is None
    assert held.result is not None and held.result.name == "eval"
    with pytest.raises(ZeroDivisionError), m.window("broken") as failed:
        _ = 1 / 0
    assert failed.result is not None and failed.result.kwh > 0
    assert fake_agent.windows == {}


def test_cancel_discards_the_window_on_the_agents_side(fake_agent: FakeAgent) -> None:
    m = Monitor(socket_path=fake_agent.socket_path)
    m.begin_window("step")
    assert m.end_window("step", cancel=True).name == "step"
    assert ("DELETE", "/api/v1/self/windows/step") in fake_agent.requests
    assert fake_agent.windows == {}


def test_refusals_are_window_errors_with_the_agents_line(fake_agent: FakeAgent) -> None:
    m = Monitor(socket_path=fake_agent.socket_path)
    m.begin_window("same")
    with pytest.raises(WindowError) as again:
        m.begin_window("same")
    assert again.value.status == 409 and str(again.value) == "a window named 'same' is already open"
    with pytest.raises(WindowError) as missing:
        m.end_window("never")
    assert missing.value.status == 404
    with pytest.raises(WindowError) as bad:
        m.begin_window("")
    assert bad.value.status == 400


def test_an_agent_without_per_job_figures_is_unavailable(fake_agent: FakeAgent) -> None:
    fake_agent.unavailable = True
    with pytest.raises(AgentUnavailable, match=r"keeps no per-job figures: api\.socket is on"):
        Monitor(socket_path=fake_agent.socket_path).begin_window("x")


def test_no_agent_is_one_line_naming_the_socket_and_what_to_do(tmp_path: Path) -> None:
    path = str(tmp_path / "none.sock")
    with pytest.raises(AgentUnavailable) as e:
        Monitor(socket_path=path).begin_window("x")
    message = str(e.value)
    assert "\n" not in message
    assert path in message and "no such socket" in message
    assert "api.socket" in message and "docs/in-code.md" in message
    assert isinstance(e.value, GreenaiError)


def test_a_socket_nobody_listens_on_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "dead.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # bound, never listening: what an agent that died leaves behind
    try:
        with pytest.raises(AgentUnavailable, match="connection refused"):
            Monitor(socket_path=path).end_window("x")
    finally:
        dead.close()


def test_the_client_loads_without_the_rest_of_the_agent() -> None:
    code = (
        "import sys, agent.client, agent.tracker; "
        "print(sorted(m for m in sys.modules if m.startswith(('agent', 'collectors', 'prometheus'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "['agent', 'agent.client', 'agent.tracker']"


def test_lint_imports_refuses_an_agent_import_in_the_client(tmp_path: Path) -> None:
    for folder in ("agent", "collectors"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    client = tmp_path / "agent" / "client.py"
    client.write_text(client.read_text(encoding="utf-8") + "from agent import units  # noqa\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode != 0
    assert "agent.client imports nothing of the agent BROKEN" in result.stdout
