"""The local socket's rules, without a socket: who may read which job, what a request and a window's
name must be, and how a window's figures are put (agent.export.local)."""

from __future__ import annotations

import errno
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from agent.export.local import Caller, LocalServer, Request, SelfApi, answer, window_name
from agent.live.windows import WindowBook, WindowError
from collectors.workloads import JobKey
from tests.support.clock import FakeClock

JOB, OTHER = JobKey("slurm", "41"), JobKey("slurm", "42")


class Records:
    def get_job(self, job_id: str) -> dict[str, Any]:
        return {"job_id": job_id}


def api(clock: FakeClock | None = None) -> SelfApi:
    return SelfApi(WindowBook(clock or FakeClock(100.0)), lambda pid: None, 1.0, "n1", None, Records())


def test_a_job_reads_its_own_record_and_only_the_nodes_root_reads_any() -> None:
    a = api()
    assert a.job(Caller(1234, 1000, JOB), "41") == {"job_id": "41"}
    assert a.job(Caller(1234, 1000, JOB), "slurm:41") == {"job_id": "slurm:41"}
    for caller in (
        Caller(1234, 1000, JOB),  # another job's record
        Caller(1234, 0, JOB),  # root inside a job (a container without a user namespace): still that job's
        Caller(1234, 1000, JobKey("process", "1234")),  # a user in no job
    ):
        with pytest.raises(WindowError) as refused:
            a.job(caller, "42")
        assert refused.value.status == 403
    assert a.job(Caller(1, 0, JobKey("process", "1")), "42") == {"job_id": "42"}  # the node's root


def test_requests_and_names_are_checked_in_one_line() -> None:
    assert Request.parse(b"POST /api/v1/self/windows?x=1 HTTP/1.1\r\nHost: a\r\n\r\n{}") == Request(
        "POST", "/api/v1/self/windows", b"{}"
    )
    with pytest.raises(ValueError, match="not an HTTP/1 request line"):
        Request.parse(b"GARBAGE\r\n\r\n")
    assert window_name(b'{"name": "epoch-3"}') == "epoch-3"
    for body in (b"", b"[]", b'{"name": ""}', b'{"name": "a/b"}', b'{"name": "x\\n"}', b'{"name": 3}', b"{"):
        with pytest.raises(ValueError):
            window_name(body)
    with pytest.raises(ValueError, match="nests deeper"):
        window_name(b"[" * 40 + b"]" * 40)


def test_routes_answer_with_the_status_the_contract_gives() -> None:
    clock = FakeClock(100.0)
    a = api(clock)
    me = Caller(7, 1000, JOB)
    assert answer(a, me, Request("GET", "/api/v1/self", b""))[1]["owner"]["job"] == "slurm:41"
    status, begun = answer(a, me, Request("POST", "/api/v1/self/windows", b'{"name": "w 1"}'))
    assert (status, begun["name"]) == (201, "w 1")
    assert answer(a, me, Request("POST", "/api/v1/self/windows", b'{"name": "w 1"}'))[0] == 409
    clock.advance(2.0)
    status, ended = answer(a, me, Request("DELETE", "/api/v1/self/windows/w%201", b""))
    assert status == 200 and ended["duration_s"] == 2.0 and ended["shares"] is None
    assert ended["energy_j"] == {"cpu": 0.0, "dram": 0.0, "gpu": 0.0, "total": 0.0}
    assert answer(a, me, Request("POST", "/api/v1/self/windows/w%201/end", b""))[0] == 404
    assert answer(a, me, Request("PUT", "/api/v1/self", b""))[0] == 405
    assert answer(a, me, Request("GET", "/metrics", b""))[0] == 404


def test_a_live_socket_is_never_taken_over_and_a_stale_one_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "run" / "agent.sock"
    first = LocalServer(path, api())
    first.start()
    try:
        with pytest.raises(OSError) as taken:
            LocalServer(path, api())
        assert taken.value.errno == errno.EADDRINUSE
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    finally:
        first.stop()
    assert not path.exists()
    with socket.socket(socket.AF_UNIX) as stale:  # a socket file nobody listens on, as after a crash
        stale.bind(str(path))
    second = LocalServer(path, api())
    second.start()
    second.stop()
