"""The local socket: the jobs on this node ask for their own energy, and open and close windows on it.

The agent serves JSON over HTTP on a Unix socket (`api.socket`, mode 0666 in a 0755 directory), so
that any local process can connect without root. The kernel tells who connected (SO_PEERCRED: pid and
uid, which the caller cannot forge); the agent maps the pid to its job through the same discovery as
sampling. That is the trust boundary: a caller reaches its own job's figures and windows and nothing
else; a caller in no job, its own process tree; the node's root (uid 0 in no job), any job's record.
Root inside a job or a container without a user namespace is still that job's: its own record only.
docs/in-code.md documents the API.

    GET    /api/v1/self                      who the caller is, as the agent sees it
    GET    /api/v1/self/windows              the caller's open windows
    POST   /api/v1/self/windows              {"name": "..."}: begin a window
    POST   /api/v1/self/windows/<name>/end   end it: its energy, CO2e, sources, shares
    DELETE /api/v1/self/windows/<name>       the same
    GET    /api/v1/jobs/<id>                 a job's record, only the caller's own (root: any)
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import struct
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.carbon.model import CarbonModel
from agent.export.connections import Connections, Limits
from agent.export.server import MAX_JSON_DEPTH, json_depth
from agent.ledger.provenance import ESTIMATED, MEASURED, kind_of
from agent.live.windows import WindowBook, WindowError, WindowResult
from agent.units import JOULES_PER_KWH, hour_of, json_text
from collectors.jobs.trees import PROCESS, ProcessTrees
from collectors.workloads import JobKey

log = logging.getLogger("greenai.export")

SELF = "/api/v1/self"
WINDOWS = SELF + "/windows"
MAX_NAME = 128
ROOT_UID = 0


class JobRecords(Protocol):
    def get_job(self, job_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Caller:
    """Who is on the other end of a connection, from the kernel (SO_PEERCRED), and whose energy that is."""

    pid: int
    uid: int
    owner: JobKey
    """The caller's job, else JobKey("process", "<pid>"): its own process tree."""

    def as_dict(self) -> dict[str, Any]:
        in_job = self.owner.scheduler != PROCESS
        return {
            "kind": "job" if in_job else "process",
            "job": str(self.owner) if in_job else None,
            "pid": self.pid,
            "uid": self.uid,
        }


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket, as the kernel recorded it."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


class SelfApi:
    """What the local socket serves, over the windows and the job records."""

    def __init__(
        self,
        windows: WindowBook,
        job_for_pid: Callable[[int], JobKey | None],
        interval_seconds: float,
        node: str,
        carbon: CarbonModel | None = None,
        records: JobRecords | None = None,
        trees: ProcessTrees | None = None,
    ) -> None:
        """`trees` reads a caller's process tree when its first window begins (callers in no job)."""
        self._windows = windows
        self._trees = trees
        self._job_for_pid = job_for_pid
        self._interval = interval_seconds
        self._node = node
        self._carbon = carbon
        self._records = records

    def caller(self, pid: int, uid: int) -> Caller:
        job = self._job_for_pid(pid)
        return Caller(pid, uid, job if job is not None else JobKey(PROCESS, str(pid)))

    def whoami(self, caller: Caller) -> dict[str, Any]:
        return {"owner": caller.as_dict(), "interval_seconds": self._interval}

    def begin(self, caller: Caller, name: str) -> dict[str, Any]:
        baseline = None
        fresh = caller.owner.scheduler == PROCESS and not self._windows.followed(caller.owner)
        if fresh and self._trees is not None:  # counted from now, not from the next scan
            baseline = self._trees.usage(frozenset({caller.pid})).get(caller.owner)
        begin = self._windows.begin(caller.owner, name, baseline)
        return {"name": name, "begin": begin, "owner": caller.as_dict()}

    def open_windows(self, caller: Caller) -> dict[str, Any]:
        windows = self._windows.open_windows(caller.owner)
        return {"owner": caller.as_dict(), "windows": [{"name": n, "begin": b} for n, b in windows]}

    def end(self, caller: Caller, name: str) -> dict[str, Any]:
        return self.result(caller, self._windows.end(caller.owner, name))

    def job(self, caller: Caller, job_id: str) -> dict[str, Any]:
        """A job's record: the caller's own; any for the node's root (uid 0 in no job: root inside a
        job or a container is that job's, and reads its own only)."""
        if self._records is None:
            raise WindowError(503, "this agent keeps no per-job figures")
        node_root = caller.uid == ROOT_UID and caller.owner.scheduler == PROCESS
        if not node_root and (caller.owner.scheduler == PROCESS or job_id not in own_ids(caller.owner)):
            raise WindowError(403, "over the local socket a job may read only its own record")
        return self._records.get_job(job_id)

    def result(self, caller: Caller, r: WindowResult) -> dict[str, Any]:
        """The window's figures as the API gives them (docs/in-code.md)."""
        components = r.by_component
        energy = {"cpu": 0.0, "dram": 0.0, "gpu": 0.0, **components, "total": r.total_j}
        total = r.total_j
        kinds = {MEASURED: 0.0, ESTIMATED: 0.0}
        for source, joules in r.by_source.items():
            kind = kind_of(source)
            kinds[kind] = kinds.get(kind, 0.0) + joules
        kwh = total / JOULES_PER_KWH
        co2e = None
        if self._carbon is not None:
            priced = self._carbon.emissions(self._node, hour_of(r.end), kwh)
            co2e = {"location": priced.location_g, "market": priced.market_g}
        return {
            "name": r.name,
            "owner": caller.as_dict(),
            "begin": r.begin,
            "end": r.end,
            "duration_s": r.end - r.begin,
            "energy_j": energy,
            "kwh": kwh,
            "co2e_g": co2e,
            "sources": r.by_source,
            "shares": {k: v / total for k, v in kinds.items()} if total > 0 else None,
            "node_unattributed_share": r.node_unattributed_j / r.node_it_j if r.node_it_j > 0 else None,
            "gpu_shares": r.gpu_shares,
            "interval_seconds": self._interval,
            "interpolated_s": r.interpolated_s,
            "note": self._note(caller, r),
        }

    def _note(self, caller: Caller, r: WindowResult) -> str:
        if caller.owner.scheduler == PROCESS:
            who = (
                f"the process tree of pid {caller.pid}, which is in no job: its share of the node's "
                "energy follows its own CPU time, memory and GPU processes"
            )
        else:
            who = (
                f"job {caller.owner} as a whole (every process of the job, other steps running at the "
                "same time included)"
            )
        edge = (
            f"; {r.interpolated_s:.1f} s at an interval's steady power (sampling every {self._interval:g} s)"
            if r.interpolated_s > 0
            else ""
        )
        return f"Energy attributed by the node's greenai agent to {who}{edge}."


def own_ids(job: JobKey) -> tuple[str, ...]:
    """The ids under which a caller's job may be asked for: `slurm:4242` and `4242`."""
    return (str(job), job.job_id)


REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}  # fmt: skip


@dataclass(frozen=True)
class Request:
    """One request read whole by the connection reader: method, path (percent-decoding left to the
    routes) and body."""

    method: str
    path: str
    body: bytes

    @classmethod
    def parse(cls, data: bytes) -> Request:
        """The request line and body of an HTTP/1.x request; ValueError when it is not one."""
        head, _, body = data.partition(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1 request line: {line[:80]!r}")
        return cls(parts[0], urllib.parse.urlsplit(parts[1]).path, body)


def answer(api: SelfApi, caller: Caller, request: Request) -> tuple[int, Mapping[str, Any]]:
    """The status and JSON body for `request` from `caller`."""
    method, path = request.method, request.path
    try:
        if method == "GET" and path == SELF:
            return 200, api.whoami(caller)
        if method == "GET" and path == WINDOWS:
            return 200, api.open_windows(caller)
        if method == "GET" and path.startswith("/api/v1/jobs/") and "/" not in path[len("/api/v1/jobs/") :]:
            return 200, api.job(caller, urllib.parse.unquote(path[len("/api/v1/jobs/") :]))
        if method == "POST" and path == WINDOWS:
            return 201, api.begin(caller, window_name(request.body))
        if method == "POST" and path.startswith(WINDOWS + "/") and path.endswith("/end"):
            return 200, api.end(caller, urllib.parse.unquote(path[len(WINDOWS) + 1 : -len("/end")]))
        if method == "DELETE" and path.startswith(WINDOWS + "/") and "/" not in path[len(WINDOWS) + 1 :]:
            return 200, api.end(caller, urllib.parse.unquote(path[len(WINDOWS) + 1 :]))
        if method not in ("GET", "POST", "DELETE"):
            return 405, {"error": f"method {method} is not served here"}
        return 404, {"error": f"no such resource: {path}"}
    except WindowError as e:
        return e.status, {"error": str(e)}
    except LookupError as e:
        return 404, {"error": str(e.args[0] if e.args else e)}
    except ValueError as e:
        return 400, {"error": str(e)}


def window_name(body: bytes) -> str:
    """The window's name from a JSON body {"name": "..."}; ValueError (400) when it is not right."""
    if json_depth(body) > MAX_JSON_DEPTH:
        raise ValueError(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"the body is not JSON: {e}") from None
    name = value.get("name") if isinstance(value, dict) else None
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or "/" in name or not name.isprintable():
        raise ValueError(f'send {{"name": "..."}}: 1 to {MAX_NAME} printable characters, no "/"')
    return name


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


class LocalServer:
    """The local socket's server: one reader thread and a few workers (agent.export.connections)."""

    def __init__(self, path: Path, api: SelfApi, limits: Limits | None = None) -> None:
        """Binds `path` (replacing a stale socket there), mode 0666, its directory made 0755 if missing.
        Raises OSError when it cannot."""
        self.api = api
        self.path = path
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if path.is_socket():
            if _answers(path):  # another agent serves it: never take its socket away
                raise OSError(errno.EADDRINUSE, "another process serves this socket")
            path.unlink()  # left by an agent that stopped without removing it
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o111)  # the socket file is made 0666: any local user may connect
        try:
            self._listener.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o666)
        # Answers take microseconds and the peers are local: the reader answers them itself, which
        # saves a thread hand-off per request (half the agent's CPU for a window's round trip).
        limits = limits or Limits(workers=0)
        self._listener.listen(limits.backlog)
        self._connections = Connections(self._listener, self._answer, limits)

    def _answer(self, sock: socket.socket, address: tuple[str, int], data: bytes) -> None:
        """Answer one request on a worker; the caller is whoever the kernel says is at the other end."""
        try:
            request = Request.parse(data)
            pid, uid = peer(sock)
            status, body = answer(self.api, self.api.caller(pid, uid), request)
        except ValueError as e:
            status, body = 400, {"error": str(e)}
        except Exception:  # the API must never take the agent down
            log.exception("local socket: a request failed")
            status, body = 500, {"error": "internal error; see the agent's log"}
        payload = json_text(body).encode() + b"\n"
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)

    def start(self) -> None:
        self._connections.start()

    def stop(self) -> None:
        self._connections.stop()
        self._listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
