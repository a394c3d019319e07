"""Energy windows over the local socket, from jobs in a real Slurm (tests/support/slurm_cluster.py).

The agent runs with its local socket; jobs, running as an unprivileged user, talk to it with a few
lines of the standard library (the system's python3, as a job's own script would). Each window's
figure is checked against the agent's own accounting of the job over the same span, read from
/metrics several times a second and interpolated at the window's begin and end.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import AgentProcess, wait_for
from tests.support.slurm_cluster import SlurmCluster, missing_binaries

real_slurm = pytest.mark.skipif(
    bool(missing_binaries()) or os.geteuid() != 0,
    reason=f"needs root and Slurm (missing: {', '.join(missing_binaries()) or 'none'})",
)
NOBODY, DAEMON = 65534, 1
"""The two unprivileged users the jobs run as."""
INTERVAL_S = 0.25

# A job's side: begin a window, burn or sleep, end it, write what the agent said; then ask for a job.
JOB_SCRIPT = r"""#!/usr/bin/python3
import http.client, json, socket, sys, time

SOCKET, OUT, MODE, SECONDS, OTHER = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]


class Local(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(SOCKET)


def call(method, path, body=None):
    c = Local("localhost", timeout=10)
    data = json.dumps(body) if body is not None else None
    c.request(method, path, data, {"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read())


time.sleep(1.5)  # the agent has seen the job for a few intervals
answers = {"self": call("GET", "/api/v1/self")}
answers["begin"] = call("POST", "/api/v1/self/windows", {"name": "work"})
until = time.time() + SECONDS
while time.time() < until:
    if MODE == "sleep":
        time.sleep(0.05)
answers["end"] = call("POST", "/api/v1/self/windows/work/end", {})
answers["own"] = call("GET", "/api/v1/jobs/" + answers["self"][1]["owner"]["job"].split(":")[1])
answers["other"] = call("GET", "/api/v1/jobs/" + OTHER)
time.sleep(1.0)  # idle, outside any window
with open(OUT, "w") as f:
    json.dump(answers, f)
"""


@pytest.fixture
def agent(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[tuple[AgentProcess, Path]]:
    sock = (
        slurm_cluster.workdir / f"run-{os.urandom(4).hex()}" / "agent.sock"
    )  # where the jobs' user can reach
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"ledger: {{path: '{tmp_path / 'ledger.db'}'}}\n"
        f"api: {{socket: '{sock}'}}\n"
        f"slurm: {{scontrol: '{slurm_cluster.scontrol_path}', refresh_seconds: 1}}\n"
    )
    with AgentProcess(["--config", str(config), "--interval", str(INTERVAL_S)], env=slurm_cluster.env) as a:
        a.wait_ready()
        wait_for(sock.exists, 10, "the local socket")
        yield a, sock


class JobEnergy:
    """The agent's accounting of each job, scraped from /metrics in a thread: (time, joules) series."""

    def __init__(self, agent: AgentProcess) -> None:
        self.series: dict[str, list[tuple[float, float]]] = {}
        self._agent = agent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            totals: dict[str, float] = {}
            for (name, labels), value in self._agent.samples().items():
                if name == "greenai_job_energy_joules_total":
                    job = dict(labels)["job_id"]
                    totals[job] = totals.get(job, 0.0) + value
            now = time.time()
            for job, joules in totals.items():
                self.series.setdefault(job, []).append((now, joules))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def between(self, job: str, begin: float, end: float) -> float:
        """The job's accounted joules from `begin` to `end`, interpolated between scrapes."""
        return self._at(job, end) - self._at(job, begin)

    def _at(self, job: str, t: float) -> float:
        points = self.series[job]
        for (t0, j0), (t1, j1) in itertools.pairwise(points):
            if t0 <= t <= t1:
                return j0 + (j1 - j0) * (t - t0) / (t1 - t0) if t1 > t0 else j1
        raise AssertionError(f"no scrape of job {job} around {t}")


def _job_dir(cluster: SlurmCluster, uid: int) -> Path:
    path = cluster.workdir / "jobs" / f"win-{os.urandom(4).hex()}"
    path.mkdir(parents=True)
    os.chown(path, uid, uid)
    script = path / "job.py"
    script.write_text(JOB_SCRIPT)
    script.chmod(0o755)
    return path


def _run(
    cluster: SlurmCluster, sock: Path, mode: str, seconds: float, other: str, uid: int
) -> tuple[str, Path]:
    d = _job_dir(cluster, uid)
    out = d / "answers.json"
    job = cluster.submit(
        wrap=f"exec {d / 'job.py'} {sock} {out} {mode} {seconds} {other}", uid=uid, output=d / "job.out"
    )
    return job.job_id, out


def _answers(cluster: SlurmCluster, job_id: str, out: Path) -> dict[str, Any]:
    cluster.wait_finished(job_id, timeout=60)
    assert out.exists(), (out.parent / "job.out").read_text() if (out.parent / "job.out").exists() else job_id
    answers: dict[str, Any] = json.loads(out.read_text())
    return answers


@real_slurm
def test_windows_of_two_jobs_hold_their_own_energy_and_nothing_else(
    slurm_cluster: SlurmCluster, agent: tuple[AgentProcess, Path]
) -> None:
    process, sock = agent
    scraped = JobEnergy(process)
    try:
        busy_id, busy_out = _run(slurm_cluster, sock, "busy", 4.0, "1", DAEMON)
        idle_id, idle_out = _run(slurm_cluster, sock, "sleep", 4.0, busy_id, NOBODY)
        busy = _answers(slurm_cluster, busy_id, busy_out)
        idle = _answers(slurm_cluster, idle_id, idle_out)
    finally:
        scraped.stop()
    for job_id, answers, uid in ((busy_id, busy, DAEMON), (idle_id, idle, NOBODY)):
        assert answers["self"][0] == 200
        assert answers["self"][1]["owner"] == {
            "kind": "job", "job": f"slurm:{job_id}", "pid": answers["self"][1]["owner"]["pid"], "uid": uid
        }  # fmt: skip
        assert answers["begin"][0] == 201
        status, window = answers["end"]
        assert status == 200, window
        accounted = scraped.between(job_id, window["begin"], window["end"])
        assert window["energy_j"]["total"] == pytest.approx(accounted, rel=0.10), (job_id, window, accounted)
        assert window["owner"]["job"] == f"slurm:{job_id}"
        assert window["duration_s"] == pytest.approx(4.0, abs=0.5)
    # The sleeping job's window saw none of the burner next to it.
    assert idle["end"][1]["energy_j"]["total"] < 0.5 * busy["end"][1]["energy_j"]["total"]
    # A job reads its own record over the socket, and not another user's (nobody asking for daemon's).
    assert busy["own"][0] == 200 and busy["own"][1]["job_id"].endswith(busy_id)
    assert idle["other"][0] == 403, idle["other"]
