"""Measure a block of your own code with the node's greenai agent: `Monitor.begin_window` / `end_window`.

    from agent.client import Monitor
    m = Monitor()                      # $GREENAI_SOCKET, else /run/greenai/agent.sock
    m.begin_window("epoch-3")
    train_one_epoch()
    w = m.end_window("epoch-3")        # a Window: w.kwh, w.energy_j["gpu"], w.co2e_g["location"] ...
    with m.window("eval") as held:     # held.result is the Window once the block has left
        evaluate()

The names follow Zeus's `ZeusMonitor` so that its users feel at home; what differs:

- A window measures the caller's *job* (its Slurm job, pod, container), as the agent on the node
  attributes energy to jobs, not the GPUs of this process: every process of the job, every GPU and
  the job's share of CPU and DRAM. A caller in no job measures its own process tree.
- The agent measures; this module only asks it over a Unix socket, so a window costs one local
  HTTP request at each end and nothing in between, and windows of any number of processes overlap.
- `sync_execution` is accepted and ignored, to be a drop-in: the agent meters energy at its sampling
  interval (about 1 s) and interpolates at a window's edges, so waiting for queued GPU kernels would
  move an edge by less than the agent can resolve. Synchronise yourself where it matters.
- `end_window(cancel=True)` discards the window on the agent's side; it still returns its figures.
- A `Window` holds joules per component, kWh, CO2e (when the agent has a carbon model), the
  sources and the share measured; `time` and `total_energy` are there as Zeus spells them.

Standard library only: it loads inside training scripts, so it imports nothing of the agent (an
import-linter contract says so). docs/in-code.md says what the figures mean.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

SOCKET_ENV = "GREENAI_SOCKET"
DEFAULT_SOCKET = "/run/greenai/agent.sock"
TIMEOUT_S = 5.0
"""How long a request may take: the agent answers from memory, in milliseconds."""
API = "/api/v1/self"
HINT = "is the greenai agent running on this node with api.socket set? see docs/in-code.md"


class GreenaiError(Exception):
    """Anything this module raises: one line that says what and what to do."""


class AgentUnavailable(GreenaiError):
    """No figures can be had: no agent on the socket, or it keeps no per-job figures."""


class WindowError(GreenaiError):
    """The agent refused a request (4xx): `status` and the agent's one-line `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Window:
    """One measured window of the caller's job: joules, kWh, grams of CO2e, seconds."""

    name: str
    owner: Mapping[str, Any]
    """{"kind": "job" | "process", "job": "slurm:4242" | None, "pid": ..., "uid": ...}"""
    begin: float
    """Unix seconds."""
    end: float
    duration_s: float
    energy_j: Mapping[str, float]
    """Joules per component (always cpu, dram, gpu) and `total`."""
    kwh: float
    co2e_g: Mapping[str, float] | None
    """{"location": g, "market": g}; None when the agent has no carbon model."""
    sources: Mapping[str, float]
    """Joules per source (nvml, rapl, estimate ...)."""
    shares: Mapping[str, float] | None
    """Of `energy_j["total"]`, the share measured and estimated (0..1); None when there is no energy."""
    gpu_shares: Mapping[str, float]
    """The owner's share (0..1) of each GPU it used."""
    interval_seconds: float
    interpolated_s: float
    """Seconds of the window whose energy was interpolated or extrapolated at its edges."""
    note: str
    node_unattributed_share: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The agent's JSON, as it came."""

    @property
    def is_job(self) -> bool:
        """True when the figure is a job's (all its processes), False for a process tree in no job."""
        return self.owner.get("kind") == "job"

    @property
    def time(self) -> float:
        """Seconds, as Zeus's `Measurement.time`."""
        return self.duration_s

    @property
    def total_energy(self) -> float:
        """Joules, as Zeus's `Measurement.total_energy`."""
        return self.energy_j.get("total", 0.0)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Window:
        """A Window from the agent's answer; GreenaiError when a field is missing or of a wrong type."""
        try:
            co2e = data.get("co2e_g")
            shares = data.get("shares")
            unattributed = data.get("node_unattributed_share")
            return cls(
                name=str(data["name"]),
                owner=dict(data["owner"]),
                begin=float(data["begin"]),
                end=float(data["end"]),
                duration_s=float(data["duration_s"]),
                energy_j=_numbers(data["energy_j"]),
                kwh=float(data["kwh"]),
                co2e_g=None if co2e is None else _numbers(co2e),
                sources=_numbers(data.get("sources") or {}),
                shares=None if shares is None else _numbers(shares),
                gpu_shares=_numbers(data.get("gpu_shares") or {}),
                interval_seconds=float(data.get("interval_seconds") or 0.0),
                interpolated_s=float(data.get("interpolated_s") or 0.0),
                note=str(data.get("note") or ""),
                node_unattributed_share=None if unattributed is None else float(unattributed),
                raw=data,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GreenaiError(
                f"the agent's window answer is not as expected ({e!r}); upgrade the client"
            ) from e


def _numbers(value: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in value.items()}


@dataclass
class Held:
    """What `Monitor.window()` yields: `result` is the Window once the block has left, None before."""

    name: str
    result: Window | None = None


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix stream socket."""

    def __init__(self, socket_path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Monitor:
    """Windows of the caller's job, measured by the greenai agent on this node (over its Unix socket)."""

    def __init__(self, socket_path: str | None = None, timeout_s: float = TIMEOUT_S) -> None:
        self.socket_path = socket_path or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
        self.timeout_s = timeout_s

    def whoami(self) -> dict[str, Any]:
        """The agent's view of the caller: {"owner": {...}, "interval_seconds": ...}."""
        return self._request("GET", API)

    def begin_window(self, key: str, sync_execution: bool = True) -> float:
        """Open window `key` (1 to 128 printable characters, no "/"); its begin, in Unix seconds.

        `sync_execution` is ignored (module docstring).
        """
        answer = self._request("POST", f"{API}/windows", {"name": key})
        return float(answer.get("begin", 0.0))

    def end_window(self, key: str, sync_execution: bool = True, cancel: bool = False) -> Window:
        """Close window `key` and return its figures; `cancel` discards it on the agent's side."""
        path = f"{API}/windows/{quote(key, safe='')}"
        if cancel:
            return Window.from_json(self._request("DELETE", path))
        return Window.from_json(self._request("POST", f"{path}/end", {}))

    def open_windows(self) -> list[dict[str, Any]]:
        """The caller's open windows: [{"name": ..., "begin": ...}, ...]."""
        return list(self._request("GET", f"{API}/windows").get("windows", []))

    @contextmanager
    def window(self, key: str) -> Iterator[Held]:
        """`with m.window("eval") as held:`; after the block (even one that raised), `held.result`."""
        held = Held(key)
        self.begin_window(key)
        try:
            yield held
        except BaseException:
            with suppress(GreenaiError):  # the block's own exception is the one to see
                held.result = self.end_window(key)
            raise
        held.result = self.end_window(key)

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The agent's JSON answer; AgentUnavailable or WindowError otherwise."""
        connection = _UnixConnection(self.socket_path, self.timeout_s)
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            status, text = response.status, response.read()
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise AgentUnavailable(
                f"no greenai agent answers at {self.socket_path} ({_why(e)}); {HINT}"
            ) from e
        except PermissionError as e:
            raise AgentUnavailable(
                f"{self.socket_path}: permission denied; the agent's socket should be mode 0666 "
                "(see docs/in-code.md)"
            ) from e
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            raise AgentUnavailable(
                f"the greenai agent at {self.socket_path} did not answer ({_why(e)}); {HINT}"
            ) from e
        finally:
            connection.close()
        return _answer(self.socket_path, status, text)


def _why(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such socket"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    return getattr(error, "strerror", None) or type(error).__name__


def _answer(socket_path: str, status: int, text: bytes) -> dict[str, Any]:
    """The JSON object of an answer; its one-line error raised as WindowError or AgentUnavailable."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise GreenaiError(
            f"{socket_path}: HTTP {status} with an answer that is not a JSON object; is it the agent?"
        )
    if 200 <= status < 300:
        return data
    message = " ".join(str(data.get("error") or f"HTTP {status}").split())
    if status == 503:
        raise AgentUnavailable(f"the greenai agent at {socket_path} keeps no per-job figures: {message}")
    raise WindowError(status, message)
