"""Slurm: job metadata from scontrol, job processes in a real Slurm, and the energy epilog.

The tests marked `real_slurm` run a real single-node Slurm (tests/support/slurm_cluster.py); they skip
only where slurm-wlm or munge is not installed (scripts/test installs them). The background and
timeout behaviour of SlurmMetadata is tested with a small fake `scontrol` script on a temporary PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.units import joules_text
from collectors.base import Status
from collectors.jobs.slurm import MAX_NAME_CHARS, SlurmJob, SlurmMetadata, parse_json, parse_text
from collectors.workloads import JobInfo
from tests.support.job_api import serve_job
from tests.support.processes import REPO, AgentProcess, free_port, http_get, run_greenai, wait_for
from tests.support.slurm_cluster import CGROUP_ROOT, SlurmCluster, cgroup_v2_only, missing_binaries

real_slurm = pytest.mark.skipif(
    bool(missing_binaries()) or os.geteuid() != 0,
    reason=f"needs root and Slurm (missing: {', '.join(missing_binaries()) or 'none'}): "
    "apt-get install slurm-wlm munge",
)
EPILOG = REPO / "scripts" / "slurm-epilog"
NOBODY = 65534
QUOTED_NAME = """train "big" model's x=1 'y'"""

# `scontrol -o show job` of Slurm 22.05.8, recorded from the test cluster (job name: nl\nUserId=alice(5)
# x\y and the byte 0xff).
RECORDED_TEXT = (
    b"JobId=3 JobName=nl\nUserId=alice(5) x\\y \xff UserId=root(0) GroupId=root(0) MCS_label=N/A "
    b"Priority=0 Nice=0 Account=(null) QOS=(null) JobState=COMPLETED Reason=None Dependency=(null) "
    b"Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED "
    b"TimeMin=N/A SubmitTime=2026-11-25T18:34:51 EligibleTime=2026-11-25T18:34:51 "
    b"AccrueTime=Unknown StartTime=2026-11-25T18:34:52 EndTime=2026-11-25T18:34:53 Deadline=N/A "
    b"SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-25T18:34:51 Scheduler=Main "
    b"Partition=debug AllocNode:Sid=localhost:14046 ReqNodeList=(null) ExcNodeList=(null) "
    b"NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    b"TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 "
    b"MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK "
    b"Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st "
    b"StdErr=/tmp/st/j3.out StdIn=/dev/null StdOut=/tmp/st/j3.out Power= \n"
)
# One job of `squeue --json` of Slurm 22.05.8 (OpenAPI v0.0.38 job objects), trimmed.
RECORDED_JSON = json.dumps(
    {
        "meta": {"plugin": {"type": "openapi/v0.0.38"}, "Slurm": {"release": "22.05.8"}},
        "errors": [],
        "jobs": [
            {
                "account": "",
                "job_id": 1,
                "job_state": "RUNNING",
                "name": 'busy "q" x=1',
                "partition": "debug",
                "start_time": 1795631622,
                "end_time": 1827167622,
                "user_id": 0,
                "user_name": "root",
                "standard_output": "/tmp/st/j%j.out",
            }
        ],
    }
).encode()


# ---- parsing recorded output ----


def test_parse_recorded_text_with_a_hostile_name() -> None:
    job = parse_text(RECORDED_TEXT)
    assert job.job_id == "3"
    assert job.info == JobInfo(user="root", uid=0, name="nl\nUserId=alice(5) x\\y \ufffd", partition="debug")
    assert job.finished and job.state == "COMPLETED"
    assert job.start_time is not None and job.end_time == job.start_time + 1


def test_a_name_holding_the_following_fields_is_not_guessed_at() -> None:
    spoof = b" UserId=alice(5) GroupId=alice(5) MCS_label=N/A Priority=1 Nice=0 Account=a QOS=n"
    spoof += b" JobState=RUNNING x"
    text = RECORDED_TEXT.replace(b"JobName=nl", b"JobName=nl" + spoof, 1)
    job = parse_text(text)
    assert job.job_id == "3" and job.info == JobInfo()


def test_parse_recorded_json() -> None:
    job = parse_json(RECORDED_JSON)["1"]
    assert job.info == JobInfo(user="root", uid=0, name='busy "q" x=1', partition="debug")
    assert job.state == "RUNNING" and not job.finished
    assert job.start_time == 1795631622 and job.end_time is None


def test_parse_json_of_newer_slurm() -> None:
    """Slurm 23.02+ gives states as lists and numbers as {set, infinite, number}."""
    data = json.loads(RECORDED_JSON)
    data["jobs"][0].update(
        job_state=["COMPLETED"],
        start_time={"set": True, "infinite": False, "number": 100},
        end_time={"set": True, "infinite": False, "number": 160},
    )
    job = parse_json(json.dumps(data).encode())["1"]
    assert job.finished and (job.start_time, job.end_time) == (100, 160)


# ---- the cache and its thread, against a fake scontrol ----


def _record(job_id: str, name: str, state: str = "RUNNING") -> str:
    start = RECORDED_TEXT.decode("utf-8", "replace").split(" UserId=root", 1)[1]
    return f"JobId={job_id} JobName={name} UserId=root{start}".replace(
        "JobState=COMPLETED", f"JobState={state}"
    )


@pytest.fixture
def fake_scontrol(tmp_path: Path) -> Path:
    """A `scontrol` that answers from files: <dir>/mode (ok, hang, fail), <dir>/<id>.out; logs its args."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(
        "#!/bin/sh\n"
        f'd="{tmp_path}"\n'
        'echo "$*" >> "$d/calls"\n'
        'case "$1" in --json) echo "scontrol: unrecognized option \'--json\'" >&2; exit 1;; esac\n'
        'mode=$(cat "$d/mode" 2>/dev/null)\n'
        'if [ "$mode" = hang ]; then exec sleep 30; fi\n'
        'if [ "$mode" = fail ]; then echo "Unable to contact slurm controller" >&2; exit 1; fi\n'
        'id="$4"\n'
        'if [ -f "$d/$id.out" ]; then cat "$d/$id.out"; exit 0; fi\n'
        'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1\n'
    )
    script.chmod(0o755)
    return tmp_path


def _finished(metadata: SlurmMetadata, job_id: str) -> SlurmJob | None:
    job = metadata.job(job_id)
    return job if job is not None and job.finished else None


def _metadata(fake: Path, refresh: float = 0.2, timeout: float = 5.0) -> SlurmMetadata:
    return SlurmMetadata(str(fake / "bin" / "scontrol"), refresh, timeout_seconds=timeout)


def _calls(fake: Path) -> list[str]:
    path = fake / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_missing_scontrol_disables_lookups_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    metadata = SlurmMetadata("scontrol", 60)
    assert metadata.probe().status is Status.NOT_FOUND
    assert "scontrol not found on PATH" in metadata.probe().reason
    assert metadata.get("12") is None and not metadata.enabled
    assert SlurmMetadata("", 60).probe().status is Status.DISABLED


def test_lookup_in_the_background_with_hostile_names(fake_scontrol: Path) -> None:
    name = b'a "b" \\ c\xfe\n=d ' + b"x" * 10_000  # quotes, backslash, not UTF-8, newline, 10 kB
    (fake_scontrol / "7.out").write_bytes(_record("7", "@NAME@").encode().replace(b"@NAME@", name))
    (fake_scontrol / "8.out").write_text(_record("8", "plain"))
    metadata = _metadata(fake_scontrol)
    try:
        assert metadata.get("7") is None  # queued, not waited for
        info = wait_for(lambda: metadata.get("7"), 5, "job 7 metadata")
        assert info.user == "root" and info.partition == "debug"
        assert info.name == name.decode(errors="replace")[:MAX_NAME_CHARS]
        assert wait_for(lambda: metadata.get("8"), 5, "job 8 metadata").name == "plain"
        assert metadata.get("not-a-job") is None and metadata.get("-h") is None
        assert all(" -h" not in call for call in _calls(fake_scontrol))
    finally:
        metadata.close()


def test_hanging_scontrol_never_blocks_a_sample(fake_scontrol: Path) -> None:
    (fake_scontrol / "mode").write_text("hang")
    (fake_scontrol / "9.out").write_text(_record("9", "later"))
    metadata = _metadata(fake_scontrol, refresh=0.3, timeout=0.5)
    try:
        started = time.monotonic()
        for _ in range(50):
            assert metadata.get("9") is None
            time.sleep(0.01)
        assert time.monotonic() - started < 1.5
        wait_for(lambda: len(_calls(fake_scontrol)) >= 3, 10, "look-ups to be tried again")
        (fake_scontrol / "mode").write_text("ok")
        assert wait_for(lambda: metadata.get("9"), 10, "job 9 after scontrol recovers").name == "later"
    finally:
        metadata.close()


def test_failing_scontrol_is_retried_and_finished_jobs_are_not_refreshed(fake_scontrol: Path) -> None:
    (fake_scontrol / "mode").write_text("fail")
    (fake_scontrol / "10.out").write_text(_record("10", "j", "RUNNING"))
    metadata = _metadata(fake_scontrol, refresh=0.2)
    try:
        assert metadata.get("10") is None
        wait_for(lambda: len(_calls(fake_scontrol)) >= 3, 10, "a failed look-up to be retried")
        (fake_scontrol / "mode").write_text("ok")
        wait_for(lambda: metadata.job("10"), 10, "job 10")
        (fake_scontrol / "10.out").write_text(_record("10", "j", "COMPLETED"))
        job = wait_for(lambda: _finished(metadata, "10"), 10, "job 10 to finish")
        assert job.end_time is not None
        calls = len(_calls(fake_scontrol))
        time.sleep(0.6)  # three refresh periods: a finished job is not asked about again
        assert len(_calls(fake_scontrol)) == calls
        # --json was tried once, found unknown, and not tried again
        assert sum(call.startswith("--json") for call in _calls(fake_scontrol)) == 1
    finally:
        metadata.close()


def test_unknown_job_is_none(fake_scontrol: Path) -> None:
    metadata = _metadata(fake_scontrol)
    try:
        metadata.get("404")
        wait_for(lambda: any("404" in c for c in _calls(fake_scontrol)[1:]), 5, "look-up of 404")
        time.sleep(0.1)
        assert metadata.get("404") is None
    finally:
        metadata.close()


# ---- a real Slurm ----


def _live_cgroup_lines(pids: list[int]) -> dict[int, dict[str, str]]:
    """/proc/<pid>/cgroup of each pid still alive."""
    out = {}
    for pid in pids:
        try:
            out[pid] = _cgroup_lines(pid)
        except FileNotFoundError:
            continue
    return out


def _cgroup_lines(pid: int) -> dict[str, str]:
    lines = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            lines[controller] = path
    return lines


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item)


@pytest.fixture
def live_metadata(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmMetadata]:
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    metadata = SlurmMetadata(slurm_cluster.scontrol_path, 0.5)
    yield metadata
    metadata.close()


@real_slurm
def test_jobs_run_in_their_slurm_cgroups(slurm_cluster: SlurmCluster, live_metadata: SlurmMetadata) -> None:
    busy = slurm_cluster.submit(wrap="exec python3 -c 'while True: pass'", name=QUOTED_NAME)
    sleeping = slurm_cluster.submit(wrap="exec sleep 300", extra=["--account=physics"])
    try:
        for job in (busy, sleeping):
            slurm_cluster.wait_running(job.job_id)
            # A process of the job's start-up may exit between listing and reading: poll for live ones.
            found = wait_for(
                lambda job=job: _live_cgroup_lines(slurm_cluster.pids(job.job_id)), 10, "the job's processes"
            )
            paths = slurm_cluster.job_cgroup_paths(job.job_id)
            if cgroup_v2_only():  # not run here (hybrid host): slurmd's own hierarchy without systemd
                assert "unified" in paths, paths
                for lines in found.values():
                    assert f"/job_{job.job_id}/step_batch/" in lines[""]
                continue
            assert {"freezer", "cpuacct", "cpuset", "memory"} <= set(paths), paths
            job_dir = f"/slurm_{slurm_cluster.node}/uid_0/job_{job.job_id}/"
            for lines in found.values():
                for controller in ("freezer", "cpuacct", "cpuset", "memory"):
                    assert lines[controller].startswith(job_dir + "step_batch"), (controller, lines)
        if not cgroup_v2_only():
            cpuacct = slurm_cluster.job_cgroup_paths(busy.job_id)["cpuacct"]
            wait_for(lambda: int((cpuacct / "cpuacct.usage").read_text()) > 0, 5, "CPU time of the busy job")

        busy_info = wait_for(lambda: live_metadata.get(busy.job_id), 10, "metadata of the busy job")
        assert busy_info == JobInfo(user="root", uid=0, name=QUOTED_NAME, account="", partition="debug")
        sleeping_job = wait_for(lambda: live_metadata.job(sleeping.job_id), 10, "metadata of the sleeper")
        assert sleeping_job.info == JobInfo(
            user="root", uid=0, name="wrap", account="physics", partition="debug"
        )
        assert sleeping_job.state == "RUNNING" and sleeping_job.start_time is not None

        slurm_cluster.cancel(sleeping.job_id)
        slurm_cluster.wait_finished(sleeping.job_id)
        done = wait_for(lambda: _finished(live_metadata, sleeping.job_id), 10, "a refresh to see it end")
        assert done.state == "CANCELLED" and done.end_time is not None
    finally:
        slurm_cluster.cancel(busy.job_id)
        slurm_cluster.cancel(sleeping.job_id)


@real_slurm
def test_hostile_job_name_from_real_scontrol(
    slurm_cluster: SlurmCluster, live_metadata: SlurmMetadata
) -> None:
    name = "q'\"\\ x=1\nUserId=alice(5) \udcff" + "n" * 300  # \udcff: the byte 0xff in argv
    job = slurm_cluster.submit(wrap="true", name=name, uid=NOBODY)
    slurm_cluster.wait_finished(job.job_id)
    raw = subprocess.run(
        [slurm_cluster.scontrol_path, "-o", "show", "job", job.job_id],
        env={**os.environ, **slurm_cluster.env},
        capture_output=True,
        check=True,
    ).stdout
    assert parse_text(raw).info.user == "nobody"
    info = wait_for(lambda: live_metadata.get(job.job_id), 10, "metadata of the hostile job")
    assert info.user == "nobody" and info.uid == NOBODY
    assert info.name == name.replace("\udcff", "\ufffd")[:MAX_NAME_CHARS]


@real_slurm
def test_linuxproc_jobs_are_found_by_their_environment(slurm_cluster_linuxproc: SlurmCluster) -> None:
    cluster = slurm_cluster_linuxproc
    busy = cluster.submit(wrap="exec python3 -c 'while True: pass'")
    sleeping = cluster.submit(wrap="exec sleep 300")
    try:
        for job in (busy, sleeping):
            checked = 0
            for pid in cluster.wait_running(job.job_id):
                try:
                    environ = _environ(pid)
                except FileNotFoundError:
                    continue  # a start-up process that has exited since it was listed
                assert environ["SLURM_JOB_ID"] == job.job_id
                assert not any("slurm" in path for path in _cgroup_lines(pid).values())
                checked += 1
            assert checked
            assert cluster.job_cgroup_paths(job.job_id) == {}
    finally:
        cluster.cancel(busy.job_id)
        cluster.cancel(sleeping.job_id)


# ---- the epilog ----

JOB_JSON = {
    "job_id": "slurm:0",
    "scheduler": "slurm",
    "user": "nobody",
    "name": "wrap",
    "start": 0,
    "end": 3723,
    "duration_seconds": 3723.0,
    "energy_joules": {"cpu": 36000.0, "dram": 3600.0, "gpu": 0.0, "total": 39600.0},
    "energy_kwh": 0.011,
    "gpu_hours": 0.0,
    "sources": ["estimate"],
    "estimated_share": 1.0,
}


@pytest.fixture
def job_api() -> Iterator[tuple[str, list[str]]]:
    """The agent's API stand-in serving JOB_JSON; yields its URL and the paths asked."""
    with serve_job(JOB_JSON) as served:
        yield served


def _run_epilog(
    cluster: SlurmCluster, job_id: str, api_url: str, uid: int = NOBODY
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        **cluster.env,
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_UID": str(uid),
        "SLURM_JOB_USER": "nobody",
        "GREENAI_API_URL": api_url,
    }
    return subprocess.run([sys.executable, str(EPILOG)], env=env, capture_output=True, text=True, timeout=30)


def _nobody_dir(cluster: SlurmCluster) -> Path:
    path = cluster.workdir / "jobs" / f"nobody-{os.urandom(4).hex()}"
    path.mkdir()
    os.chown(path, NOBODY, NOBODY)
    return path


@real_slurm
def test_epilog_appends_the_summary_as_the_jobs_user(
    slurm_cluster: SlurmCluster, job_api: tuple[str, list[str]]
) -> None:
    url, paths = job_api
    out = _nobody_dir(slurm_cluster) / "job.out"
    job = slurm_cluster.submit(wrap="echo job output", uid=NOBODY, output=out)
    slurm_cluster.wait_finished(job.job_id)
    assert out.stat().st_uid == NOBODY

    result = _run_epilog(slurm_cluster, job.job_id, url)
    assert result.returncode == 0, result.stderr
    assert paths == [f"/api/v1/jobs/slurm:{job.job_id}"]
    text = out.read_text()
    assert text.startswith("job output\n")
    assert f"energy of Slurm job {job.job_id}" in text
    assert "duration:  1h 02m 03s" in text
    assert "energy:    11.0 Wh (cpu 10.0 Wh, dram 1.00 Wh, gpu 0 Wh)" in text
    assert "measured:  none of it" in text
    assert "estimated: 11.0 Wh (100.0 %), a model estimate (estimate), not measured" in text
    assert "CO2e:      not available" in text  # this agent gave no co2e_grams
    assert "appended" in result.stderr


@real_slurm
def test_epilog_does_not_follow_a_planted_symlink_as_root(
    slurm_cluster: SlurmCluster, job_api: tuple[str, list[str]]
) -> None:
    url, _ = job_api
    out = _nobody_dir(slurm_cluster) / "job.out"
    job = slurm_cluster.submit(wrap="echo job output", uid=NOBODY, output=out)
    slurm_cluster.wait_finished(job.job_id)
    root_dir = slurm_cluster.workdir / "root-only"
    root_dir.mkdir(exist_ok=True)
    target = root_dir / "precious"
    target.write_text("root's file\n")
    target.chmod(0o644)
    out.unlink()
    out.symlink_to(target)  # what the job's user could do before the epilog runs

    started = time.monotonic()
    result = _run_epilog(slurm_cluster, job.job_id, url)
    assert result.returncode == 0
    assert target.read_text() == "root's file\n"
    assert "could not append" in result.stderr and "Permission denied" in result.stderr
    assert time.monotonic() - started < 10

    # The same symlink to a file the user may write is followed: it is the user's own business.
    target.chmod(0o666)
    assert _run_epilog(slurm_cluster, job.job_id, url).returncode == 0
    assert "energy of Slurm job" in target.read_text()


@real_slurm
def test_epilog_without_agent_or_output_exits_zero_quickly(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    no_output = slurm_cluster.submit(wrap="true", uid=NOBODY, output=Path("/dev/null"))
    out = _nobody_dir(slurm_cluster) / "job.out"
    with_output = slurm_cluster.submit(wrap="echo hi", uid=NOBODY, output=out)
    slurm_cluster.wait_finished(no_output.job_id)
    slurm_cluster.wait_finished(with_output.job_id)

    result = _run_epilog(slurm_cluster, no_output.job_id, "http://127.0.0.1:9")
    assert result.returncode == 0 and "no output file" in result.stderr

    started = time.monotonic()
    closed_port = "http://127.0.0.1:9"  # nothing listens: the CLI fallback is tried and has no agent data
    env_path = f"{tmp_path}:/usr/bin:/bin"  # no greenai on PATH
    env = {"PATH": env_path, **slurm_cluster.env, "SLURM_JOB_ID": with_output.job_id}
    env |= {"SLURM_JOB_UID": str(NOBODY), "GREENAI_API_URL": closed_port}
    result = subprocess.run(
        [sys.executable, str(EPILOG)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert "greenai not found" in result.stderr
    assert out.read_text() == "hi\n"
    assert time.monotonic() - started < 10

    for bad in ({}, {"SLURM_JOB_ID": "1;rm", "SLURM_JOB_UID": "0"}):
        result = subprocess.run(
            [sys.executable, str(EPILOG)], env={"PATH": env_path, **bad}, capture_output=True, text=True
        )
        assert result.returncode == 0 and "nothing to do" in result.stderr


# ---- the agent on a real Slurm: attribution, /api/v1/jobs, the ledger CLI and the epilog ----

NO_RAPL = ["--sysfs", "/nonexistent-sys"]  # the estimate on every host, so the figures below hold
BUSY_NAME, SLEEPER_NAME = "greenai busy", "greenai sleeper"


def _agent_config(tmp_path: Path, cluster: SlurmCluster) -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"ledger: {{path: {tmp_path / 'ledger.db'}, flush_seconds: 0.5}}\n"
        f"slurm: {{scontrol: {cluster.scontrol_path}}}\n"
    )
    return cfg


def _job_cpu_j(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], job_id: str) -> float | None:
    labels = {("scheduler", "slurm"), ("job_id", job_id), ("component", "cpu")}
    found = [
        v for (name, ls), v in samples.items() if name == "greenai_job_energy_joules_total" and labels <= ls
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def _assert_conserved(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
    """jobs + unexported + unattributed == node, per component, within one scrape."""
    node: dict[str, float] = {}
    parts: dict[str, float] = {}
    charged = (
        "greenai_job_energy_joules_total",
        "greenai_jobs_unexported_energy_joules_total",
        "greenai_node_unattributed_energy_joules_total",
    )
    for (name, labels), value in samples.items():
        component = dict(labels).get("component", "")
        if name == "greenai_node_energy_joules_total":
            node[component] = node.get(component, 0.0) + value
        elif name in charged:
            parts[component] = parts.get(component, 0.0) + value
    assert set(node) >= {"cpu", "dram"}, node
    for component, joules in node.items():
        assert joules > 0, component
        assert parts.get(component, 0.0) == pytest.approx(joules, rel=1e-6), (component, parts, node)


def _what_the_agent_sees(agent: AgentProcess) -> str:
    """For a failure message: the jobs on /metrics, and Slurm job cgroups on this host. The environ
    fallback (proctrack/linuxproc) is off while any exist, e.g. made by another test running at once."""
    jobs = sorted({dict(ls)["job_id"] for n, ls in agent.samples() if n == "greenai_job_energy_joules_total"})
    cgroups = sorted(str(p) for p in CGROUP_ROOT.glob("cpuacct/**/job_*"))
    return (
        f"{len(jobs)} jobs on /metrics (first: {jobs[:5]}); "
        f"{len(cgroups)} Slurm job cgroups on the host (first: {cgroups[:3]})"
    )


def _ledger_job(cfg: Path, job_id: str) -> dict[str, Any] | None:
    """`greenai job <id> --json` as a user runs it; None while the ledger does not have the job yet."""
    result = run_greenai("job", job_id, "--json", "--config", str(cfg))
    if result.returncode == 1 and "no job" in result.stderr:
        return None
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _api_job(agent: AgentProcess, job_id: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(http_get(f"{agent.url}/api/v1/jobs/slurm:{job_id}")))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def _assert_job_fields(record: dict[str, Any], job_id: str, name: str, running: bool) -> None:
    assert record["scheduler"] == "slurm" and record["job_id"] == job_id, record
    assert record["user"] == "root" and record["uid"] == 0, record
    assert record["name"] == name, record
    assert record["partition"] == "debug", record
    assert (record["end"] is None) == running and record["running"] == running, record
    assert record["energy_joules"]["cpu"] > 0, record
    assert record["energy_joules"]["gpu"] == 0, record
    assert record["sources"].keys() == {"estimate"} and record["estimated_share"] == 1.0, record


def _agent_attributes_real_jobs(cluster: SlurmCluster, tmp_path: Path) -> None:
    busy = cluster.submit(wrap="exec python3 -c 'while True: pass'", name=BUSY_NAME)
    sleeper = cluster.submit(wrap="exec sleep 300", name=SLEEPER_NAME)
    cfg = _agent_config(tmp_path, cluster)
    try:
        cluster.wait_running(busy.job_id)
        cluster.wait_running(sleeper.job_id)
        args = ["--config", str(cfg), "--interval", "0.2", *NO_RAPL]
        with AgentProcess(args, env=cluster.env) as agent:
            agent.wait_ready()
            try:
                first = wait_for(
                    lambda: _job_cpu_j(agent.samples(), busy.job_id), 15, "CPU energy of the busy job"
                )
            except AssertionError as e:
                raise AssertionError(f"{e}; {_what_the_agent_sees(agent)}") from None
            # A second of sampling: the busy job's share has to stand out from the sleeper's.
            wait_for(
                lambda: (_job_cpu_j(agent.samples(), busy.job_id) or 0) > first + 2.0,
                15,
                "the busy job's CPU energy to grow",
            )
            samples = agent.samples()  # one scrape for every figure below
            busy_j, sleeper_j = _job_cpu_j(samples, busy.job_id), _job_cpu_j(samples, sleeper.job_id)
            assert busy_j is not None and sleeper_j is not None, sorted(n for n, _ in samples)
            if cluster.proctrack == "cgroup":
                # The sleeper holds one of the node's CPUs (its cpuset), so under idle_policy share it
                # pays that CPU's idle power: busy/sleeper is about TDP/idle = 1/0.3 here, not more.
                assert sleeper_j > 0
                assert busy_j >= 2 * sleeper_j, (busy_j, sleeper_j)
            else:
                # No cgroup, no allocation: a job's claim on idle power is the CPU it kept busy.
                assert busy_j >= 5 * sleeper_j, (busy_j, sleeper_j)
            _assert_conserved(samples)

            # The API: metadata comes from scontrol in the background.
            running = wait_for(
                lambda: (r := _api_job(agent, busy.job_id)) and r["name"] == BUSY_NAME and r,
                15,
                "the busy job's name from scontrol on the API",
            )
            _assert_job_fields(running, busy.job_id, BUSY_NAME, running=True)
            # The CLI reads the ledger the agent writes every 0.5 s.
            in_ledger = wait_for(
                lambda: (r := _ledger_job(cfg, busy.job_id)) and r["name"] == BUSY_NAME and r,
                15,
                "the busy job's name in the ledger",
            )
            _assert_job_fields(in_ledger, busy.job_id, BUSY_NAME, running=True)

            cluster.cancel(busy.job_id)
            cluster.cancel(sleeper.job_id)
            cluster.wait_finished(busy.job_id)
            cluster.wait_finished(sleeper.job_id)
            for job_id in (busy.job_id, sleeper.job_id):
                wait_for(
                    lambda job_id=job_id: (r := _api_job(agent, job_id)) and r["end"] is not None,
                    15,
                    f"the agent to see job {job_id} end",
                )
            ended = _api_job(agent, busy.job_id)
            assert ended is not None
            code, _ = agent.stop()
            assert code == 0, agent.log
        assert "Traceback" not in agent.log, agent.log

        final = _ledger_job(cfg, busy.job_id)
        assert final is not None
        _assert_job_fields(final, busy.job_id, BUSY_NAME, running=False)
        assert final["end"] == ended["end"]
        assert (
            final["energy_joules"]["cpu"]
            >= ended["energy_joules"]["cpu"]
            >= in_ledger["energy_joules"]["cpu"]
        )
        assert final["energy_joules"]["cpu"] >= busy_j - 1e-9
        sleeper_final = _ledger_job(cfg, sleeper.job_id)
        assert sleeper_final is not None and sleeper_final["end"] is not None
        assert sleeper_final["name"] == SLEEPER_NAME
        listed = run_greenai("jobs", "--config", str(cfg))
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
        # Other jobs on this host (cgroups made by other tests) may be listed too.
        assert {busy.job_id, sleeper.job_id} <= set(rows), listed.stdout
        for job_id in (busy.job_id, sleeper.job_id):
            assert rows[job_id].split()[1:4] == ["slurm", "root", "greenai"], listed.stdout

        _epilog_falls_back_to_the_cli(cluster, busy.job_id, cfg, final)
    finally:
        cluster.cancel(busy.job_id)
        cluster.cancel(sleeper.job_id)


def _epilog_falls_back_to_the_cli(
    cluster: SlurmCluster, job_id: str, cfg: Path, record: dict[str, Any]
) -> None:
    """The agent is stopped: the epilog's API call fails and `greenai job slurm:<id>` answers."""
    out = _nobody_dir(cluster) / "job.out"
    out.write_text("job output\n")
    os.chown(out, NOBODY, NOBODY)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",  # where pip put `greenai`
        **cluster.env,
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_UID": str(NOBODY),
        "SLURM_JOB_STDOUT": str(out),
        "GREENAI_CONFIG": str(cfg),
        "GREENAI_API_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    result = subprocess.run(
        [sys.executable, str(EPILOG)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "trying the greenai CLI" in result.stderr and "appended" in result.stderr, result.stderr
    text = out.read_text()
    assert text.startswith("job output\n"), text
    joules = {c: joules_text(record["energy_joules"][c]) for c in ("total", "cpu", "dram", "gpu")}
    assert f"=== greenai: energy of Slurm job {job_id} ===" in text, text
    assert (
        f"energy:    {joules['total']} (cpu {joules['cpu']}, dram {joules['dram']}, gpu {joules['gpu']})"
    ) in text, text
    seconds = round(record["duration_seconds"])
    assert f"duration:  0h {seconds // 60:02d}m {seconds % 60:02d}s" in text, text
    assert f"estimated: {joules['total']} (100.0 %), " in text, text
    # No carbon: section in this agent's config: the CLI prices at the world average, and says so.
    assert "g market-based (grid: world, a fallback average, not this site's own grid)" in text, text
    assert out.stat().st_uid == NOBODY


@real_slurm
def test_agent_attributes_real_slurm_jobs_cgroup(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    _agent_attributes_real_jobs(slurm_cluster, tmp_path)


@real_slurm
def test_agent_attributes_real_slurm_jobs_linuxproc(
    slurm_cluster_linuxproc: SlurmCluster, tmp_path: Path
) -> None:
    _agent_attributes_real_jobs(slurm_cluster_linuxproc, tmp_path)
