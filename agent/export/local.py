"""The local socket: the jobs on this node ask for their own energy, and open and close windows on it.

The agent serves JSON over HTTP on a Unix socket (`api.socket`, mode 0666 in a 0755 directory), so
that any local process can connect without root. The kernel tells who connected (SO_PEERCRED: pid and
uid, which the caller cannot forge); the agent maps the pid to its job through the same discovery as
sampling. That is the trust boundary: a caller reaches its own job's figures and windows and nothing
else; a caller in no job, its own process tree; root, any job. docs/in-code.md documents the API.

    GET    /api/v1/self                      who the caller is, as the agent sees it
    GET    /api/v1/self/windows              the caller's open windows
    POST   /api/v1/self/windows              {"name": "..."}: begin a window
    POST   /api/v1/self/windows/<name>/end   end it: its energy, CO2e, sources, shares
    DELETE /api/v1/self/windows/<name>       the same
    GET    /api/v1/jobs/<id>                 a job's record, only the caller's own (root: any)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.carbon.model import CarbonModel
from agent.export.connections import Connections, Limits
from agent.export.server import MAX_JSON_DEPTH, ApiHandler, json_depth
from agent.ledger.provenance import ESTIMATED, MEASURED, kind_of
from agent.live.windows import WindowBook, WindowError, WindowResult
from agent.units import JOULES_PER_KWH, hour_of
from collectors.jobs.trees import PROCESS
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
    ) -> None:
        self._windows = windows
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
        begin = self._windows.begin(caller.owner, name)
        return {"name": name, "begin": begin, "owner": caller.as_dict()}

    def open_windows(self, caller: Caller) -> dict[str, Any]:
        windows = self._windows.open_windows(caller.owner)
        return {"owner": caller.as_dict(), "windows": [{"name": n, "begin": b} for n, b in windows]}

    def end(self, caller: Caller, name: str) -> dict[str, Any]:
        return self.result(caller, self._windows.end(caller.owner, name))

    def job(self, caller: Caller, job_id: str) -> dict[str, Any]:
        """A job's record: the caller's own, or any for root."""
        if self._records is None:
            raise WindowError(503, "this agent keeps no per-job figures")
        if caller.uid != ROOT_UID and (
            caller.owner.scheduler == PROCESS or job_id not in own_ids(caller.owner)
        ):
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
            "shares": {k: (v / total if total > 0 else None) for k, v in kinds.items()},
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


class _LocalHandler(ApiHandler):
    """One request on the local socket; the caller is whoever the kernel says is at the other end."""

    server: LocalServer  # type: ignore[assignment]

    def parse_request(self) -> bool:
        return super(ApiHandler, self).parse_request()  # no basic auth, every method routed below

    def address_string(self) -> str:
        return "local"

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        api = self.server.api
        if path == SELF:
            self._local(lambda c: api.whoami(c))
        elif path == WINDOWS:
            self._local(lambda c: api.open_windows(c))
        elif path.startswith("/api/v1/jobs/") and "/" not in path[len("/api/v1/jobs/") :]:
            job_id = urllib.parse.unquote(path[len("/api/v1/jobs/") :])
            self._local(lambda c: api.job(c, job_id))
        else:
            self._json(404, {"error": f"no such resource: {path}"})

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        api = self.server.api
        if path == WINDOWS:
            self._local(lambda c: api.begin(c, self._window_name()), status=201)
        elif path.startswith(WINDOWS + "/") and path.endswith("/end"):
            name = urllib.parse.unquote(path[len(WINDOWS) + 1 : -len("/end")])
            self._local(lambda c: api.end(c, name))
        else:
            self._json(404, {"error": f"no such resource: {path}"})

    def do_DELETE(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith(WINDOWS + "/") and "/" not in path[len(WINDOWS) + 1 :]:
            name = urllib.parse.unquote(path[len(WINDOWS) + 1 :])
            self._local(lambda c: self.server.api.end(c, name))
        else:
            self._json(404, {"error": f"no such resource: {path}"})

    def _window_name(self) -> str:
        """The window's name from the request's JSON body; ValueError (400) when it is not right."""
        length = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(length) if length > 0 else b""
        if json_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            body = json.loads(text or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"the body is not JSON: {e}") from None
        name = body.get("name") if isinstance(body, dict) else None
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= MAX_NAME
            or "/" in name
            or not name.isprintable()
        ):
            raise ValueError(f'send {{"name": "..."}}: 1 to {MAX_NAME} printable characters, no "/"')
        return name

    def _local(self, call: Callable[[Caller], Mapping[str, Any]], status: int = 200) -> None:
        try:
            pid, uid = peer(self.connection)
            answer = call(self.server.api.caller(pid, uid))
        except WindowError as e:
            self._json(e.status, {"error": str(e)})
        except LookupError as e:
            self._json(404, {"error": str(e.args[0] if e.args else e)})
        except ValueError as e:
            self._json(400, {"error": str(e)})
        except Exception:  # the API must never take the agent down
            log.exception("local socket: %s %s", self.command, self.path)
            self._json(500, {"error": "internal error; see the agent's log"})
        else:
            self._json(status, answer)


class LocalServer:
    """The local socket's server: one reader thread and a few workers (agent.export.connections)."""

    def __init__(self, path: Path, api: SelfApi, limits: Limits | None = None) -> None:
        """Binds `path` (replacing a stale socket there), mode 0666, its directory made 0755 if missing.
        Raises OSError when it cannot."""
        self.api = api
        self.path = path
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if path.is_socket() or (path.exists() and stat.S_ISSOCK(path.lstat().st_mode)):
            path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o111)  # the socket file is made 0666: any local user may connect
        try:
            self._listener.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o666)
        limits = limits or Limits(workers=4)
        self._listener.listen(limits.backlog)
        self._connections = Connections(self._listener, self._answer, limits)

    def _answer(self, sock: socket.socket, address: tuple[str, int], request: bytes) -> None:
        _LocalHandler((sock, request), ("local", 0), self)  # type: ignore[arg-type]

    def start(self) -> None:
        self._connections.start()

    def stop(self) -> None:
        self._connections.stop()
        self._listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
