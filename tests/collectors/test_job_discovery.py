"""Job discovery against real cgroups with real processes in them, and against generated trees."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from collectors.jobs.cgroups import JobDiscovery
from collectors.jobs.kubernetes import PodDirectory
from collectors.workloads import JobInfo, JobKey, UsageScan
from tests.support.cgroups import (
    UNIFIED,
    V1,
    GeneratedCgroups,
    RealCgroups,
    children,
    cpu_ticks,
    discovery,
    fake_process,
    real_cgroups_missing,
)
from tests.support.clock import FakeClock
from tests.support.processes import wait_for
from tests.support.procfs import FakeProcfs

PROC = Path("/proc")
CGROUPFS = Path("/sys/fs/cgroup")
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
HEX = "0123456789abcdef" * 4
POD_UID = "1234abcd-5678-4def-9abc-0123456789ab"
POD_UID_SYSTEMD = POD_UID.replace("-", "_")

real = pytest.mark.skipif(bool(real_cgroups_missing()), reason=real_cgroups_missing() or "ok")


def burn(pid: int, cpu_seconds: float = 0.4) -> None:
    """Wait until a burner has used `cpu_seconds` more CPU time (bounded: the node may be busy)."""
    target = cpu_ticks(pid) + cpu_seconds * 1e9 / TICK_NS
    wait_for(lambda: cpu_ticks(pid) >= target, 10, f"{cpu_seconds} s of CPU time in pid {pid}", poll=0.02)


def measure(found: JobDiscovery, pid: int) -> tuple[UsageScan, UsageScan, int]:
    """Two scans around some burning, and the burner's own CPU time in ns between them.

    The process's figure is read inside the scans' interval, so its cgroup can only have more.
    """
    before = found.scan()
    start = cpu_ticks(pid)
    burn(pid)
    used_ns = (cpu_ticks(pid) - start) * TICK_NS
    return before, found.scan(), used_ns


def cpu_delta(before: UsageScan, after: UsageScan, key: JobKey) -> int:
    return after.jobs[key].cpu_ns - before.jobs[key].cpu_ns


# ---- real cgroups: Slurm ----


@real
def test_slurm_v1_burner_gets_its_cpu_time_and_sleeper_none(cgroups: RealCgroups) -> None:
    burner = cgroups.start("slurm/uid_0/job_42/step_0/task_0", "burner")
    sleeper = cgroups.start("slurm_vm/uid_1000/job_43/step_batch", "sleeper")
    found = discovery(collect_pids=True, environ_fallback=False)
    before, after, used_ns = measure(found, burner.pid)

    burned = cpu_delta(before, after, JobKey("slurm", "42"))
    assert 0.9 * used_ns <= burned <= used_ns + 200_000_000
    assert cpu_delta(before, after, JobKey("slurm", "43")) < 20_000_000
    job = after.jobs[JobKey("slurm", "42")]
    assert job.info.uid == 0 and job.info.user == "root"
    assert burner.pid in job.pids
    assert after.jobs[JobKey("slurm", "43")].info.uid == 1000
    assert found.job_for_pid(burner.pid) == JobKey("slurm", "42")
    assert found.job_for_pid(sleeper.pid) == JobKey("slurm", "43")
    assert found.job_for_pid(os.getpid()) is None
    assert after.node.cpus == os.cpu_count()
    assert after.node.cpu_busy_ns - before.node.cpu_busy_ns >= 0.9 * burned


@real
@pytest.mark.parametrize("pure_v2", [False, True], ids=["hybrid", "pure-v2"])
def test_slurm_v2_job_in_the_unified_hierarchy(cgroups: RealCgroups, pure_v2: bool) -> None:
    job = "system.slice/vm_slurmstepd.scope/job_51"
    burner = cgroups.start(f"{job}/step_0/user/task_0", "burner", UNIFIED)
    cgroups.make(f"{job}/step_batch", UNIFIED)
    # The unified hierarchy mounted alone stands for a pure v2 host (it has cgroup.controllers).
    found = discovery(CGROUPFS / "unified" if pure_v2 else CGROUPFS, environ_fallback=False)
    before, after, used_ns = measure(found, burner.pid)

    key = JobKey("slurm", "51")
    assert 0.9 * used_ns <= cpu_delta(before, after, key) <= used_ns + 200_000_000
    usage = after.jobs[key]
    assert usage.info.uid == 0  # from the owner of the job's processes: a v2 path has no uid
    assert usage.memory_bytes > 0  # no memory controller here: the processes' RSS
    assert usage.cpus_allocated is None
    assert found.job_for_pid(burner.pid) == key


@real
def test_v1_memory_cpuset_and_quota_come_from_the_cgroup(cgroups: RealCgroups) -> None:
    cgroups.make("slurm/uid_0/job_60")
    cgroups.write("cpuset", "slurm/uid_0/job_60", "cpuset.cpus", "0")  # before any step copies it
    cgroups.start("slurm/uid_0/job_60/step_0", "sleeper")
    cgroups.start("slurm/uid_0/job_61/step_0", "sleeper")
    found = discovery(environ_fallback=False)
    scan = found.scan()
    limited, free = scan.jobs[JobKey("slurm", "60")], scan.jobs[JobKey("slurm", "61")]
    memory_file = cgroups.path("memory", "slurm/uid_0/job_60") / "memory.usage_in_bytes"
    assert limited.memory_bytes == int(memory_file.read_text()) > 0
    assert limited.cpus_allocated == (1.0 if (os.cpu_count() or 1) > 1 else None)
    assert free.cpus_allocated is None

    cgroups.write("cpu", "slurm/uid_0/job_61", "cpu.cfs_quota_us", "50000")
    refreshed = discovery(environ_fallback=False).scan()
    assert refreshed.jobs[JobKey("slurm", "61")].cpus_allocated == 0.5


# ---- real cgroups: Kubernetes, Docker, Podman, systemd ----

LAYOUTS = {
    "k8s-systemd-burstable-containerd": (
        f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_SYSTEMD}.slice"
        f"/cri-containerd-{HEX}.scope",
        JobKey("kubernetes", POD_UID),
    ),
    "k8s-systemd-besteffort-crio": (
        f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID_SYSTEMD}.slice"
        f"/crio-{HEX}.scope",
        JobKey("kubernetes", POD_UID),
    ),
    "k8s-systemd-guaranteed-docker": (
        f"kubepods.slice/kubepods-pod{POD_UID_SYSTEMD}.slice/docker-{HEX}.scope",
        JobKey("kubernetes", POD_UID),
    ),
    "k8s-cgroupfs-burstable": (f"kubepods/burstable/pod{POD_UID}/{HEX}", JobKey("kubernetes", POD_UID)),
    "k8s-cgroupfs-besteffort": (f"kubepods/besteffort/pod{POD_UID}/{HEX}", JobKey("kubernetes", POD_UID)),
    "k8s-cgroupfs-guaranteed": (f"kubepods/pod{POD_UID}/{HEX}", JobKey("kubernetes", POD_UID)),
    "docker-cgroupfs": (f"docker/{HEX}", JobKey("docker", HEX[:12])),
    "docker-systemd": (f"system.slice/docker-{HEX}.scope", JobKey("docker", HEX[:12])),
    "podman-machine": (f"machine.slice/libpod-{HEX}.scope/container", JobKey("podman", HEX[:12])),
    "podman-user": (
        f"user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{HEX}.scope",
        JobKey("podman", HEX[:12]),
    ),
    "systemd-service": ("system.slice/greenai-test.service", JobKey("systemd", "greenai-test.service")),
}


@real
@pytest.mark.parametrize("hierarchies", [V1, UNIFIED], ids=["v1", "v2"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_map_to_their_job(cgroups: RealCgroups, layout: str, hierarchies: tuple[str, ...]) -> None:
    path, key = LAYOUTS[layout]
    sleeper = cgroups.start(path, "burner", hierarchies)
    found = discovery(environ_fallback=False, collect_pids=True)
    scan = found.scan()
    ours = {k: j for k, j in scan.jobs.items() if sleeper.pid in j.pids}
    assert list(ours) == [key]
    # v2 counts in whole microseconds: wait until the process has run long enough to show
    deadline = time.monotonic() + 5
    while found.scan().jobs[key].cpu_ns == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert found.scan().jobs[key].cpu_ns > 0
    assert found.job_for_pid(sleeper.pid) == key
    if key.scheduler in ("docker", "podman"):
        assert ours[key].info.name == HEX[:12]
    if layout == "podman-user":
        assert ours[key].info.uid == 1000
    if layout == "systemd-service":
        assert ours[key].info.name == "greenai-test.service"


@real
def test_a_service_holding_a_job_is_not_a_job(cgroups: RealCgroups) -> None:
    runtime = cgroups.start("system.slice/fake-runtime.service", "sleeper")
    container = cgroups.start(f"system.slice/fake-runtime.service/docker/{HEX}", "sleeper")
    found = discovery(environ_fallback=False)
    scan = found.scan()
    assert JobKey("docker", HEX[:12]) in scan.jobs
    assert JobKey("systemd", "fake-runtime.service") not in scan.jobs
    assert found.job_for_pid(container.pid) == JobKey("docker", HEX[:12])
    assert found.job_for_pid(runtime.pid) is None


# ---- real processes: the SLURM_JOB_ID fallback ----


@real
def test_environ_fallback_finds_slurm_processes_outside_job_cgroups(cgroups: RealCgroups) -> None:
    loose = cgroups.start(None, "burner+sleeper", env={"SLURM_JOB_ID": "777"})
    extra = cgroups.start(None, "sleeper", env={"SLURM_JOB_ID": "777"})
    caged = cgroups.start("slurm/uid_0/job_778/step_0", "burner", env={"SLURM_JOB_ID": "778"})
    wait_for(lambda: len(children(loose.pid)) == 1, 5, "the fallback job's child")
    found = discovery(environ_fallback=True)
    caged_start = cpu_ticks(caged.pid)
    before, after, used_ns = measure(found, loose.pid)
    caged_used_ns = (cpu_ticks(caged.pid) - caged_start) * TICK_NS

    key = JobKey("slurm", "777")
    assert 0.9 * used_ns <= cpu_delta(before, after, key) <= used_ns + 200_000_000
    assert after.jobs[key].pids == {loose.pid, extra.pid, *children(loose.pid)}
    assert after.jobs[key].memory_bytes > 0
    assert after.jobs[key].info.uid == os.getuid()
    # Already in a job cgroup: counted once, from the cgroup, not again from its environment.
    assert cpu_delta(before, after, JobKey("slurm", "778")) <= caged_used_ns + 30 * TICK_NS
    assert found.job_for_pid(loose.pid) == key
    assert found.job_for_pid(caged.pid) == JobKey("slurm", "778")

    # A process of the job exits: the job's CPU time stays cumulative.
    cgroups.stop(extra)
    later = found.scan().jobs[key]
    assert later.cpu_ns >= after.jobs[key].cpu_ns and extra.pid not in later.pids

    assert key not in discovery(environ_fallback=False).scan().jobs


# ---- real cgroups: hostile names and races ----


@real
def test_hostile_cgroup_names_never_break_a_scan(cgroups: RealCgroups) -> None:
    hostile = ["q\"uo'te", "back\\slash", b"\xff\xfebad".decode("utf-8", "surrogateescape"), "x" * 240]
    for i, name in enumerate(hostile):
        cgroups.make(f"system.slice/{name}.service", ("cpuacct",))
        cgroups.make(f"slurm/uid_0/job_{name}", ("cpuacct",))
        cgroups.make(f"kubepods/pod{name}/c{i}", ("cpuacct",))
    scan = discovery(environ_fallback=False).scan()
    ids = {k.job_id for k in scan.jobs}
    assert {"q\"uo'te.service", "back\\slash.service", "\ufffd\ufffdbad.service"} <= ids
    assert {"q\"uo'te", "back\\slash", "\ufffd\ufffdbad", "x" * 240} <= ids
    for key in scan.jobs:
        key.job_id.encode("utf-8")  # valid UTF-8: no lone surrogates reach the ledger
        assert len(key.job_id) <= 256 and "\n" not in key.job_id


@real
def test_a_removed_cgroup_leaves_the_next_scan(cgroups: RealCgroups) -> None:
    sleeper = cgroups.start("slurm/uid_0/job_90/step_0", "sleeper")
    found = discovery(environ_fallback=False)
    assert JobKey("slurm", "90") in found.scan().jobs
    cgroups.stop(sleeper)
    cgroups.remove("slurm/uid_0/job_90")
    assert JobKey("slurm", "90") not in found.scan().jobs


@real
def test_200_jobs_are_all_found_scan_after_scan(cgroups: RealCgroups) -> None:
    # How much a scan costs is measured by benchmarks/jobs_overhead.py, not asserted here.
    for i in range(200):
        cgroups.make(f"slurm/uid_0/job_{i}/step_0", ("cpuacct", "memory"))
    found = discovery(environ_fallback=False)
    for _ in range(3):
        assert {JobKey("slurm", str(i)) for i in range(200)} <= set(found.scan().jobs)


# ---- generated trees: exact values, v1/v2 precedence, races between listing and reading ----


def test_generated_hybrid_tree_reads_v1_and_v2_counters(tmp_path: Path) -> None:
    tree = GeneratedCgroups(tmp_path / "cg")
    tree.v1("slurm/uid_5/job_1", cpu_ns=7_000, memory_bytes=4096, cpuset="0-1,4", quota_us=(150000, 100000))
    tree.v1("slurm/uid_5/job_1/step_0", cpu_ns=6_000)
    tree.v2("system.slice/slurmstepd.scope/job_1", usage_usec=99)  # the same job: v1 counts, not both
    tree.v2("system.slice/cron.service", usage_usec=3, memory_current=8192, cpu_max="200000 100000")
    tree.v2("system.slice/slurmd.service", usage_usec=1)
    tree.v2("system.slice/slurmd.service/slurmstepd.scope/job_2", usage_usec=2, cpuset="0")
    procfs = FakeProcfs(tmp_path / "proc", threads=8)
    procfs.run(1.0, 0.5)
    scan = discovery(tree.root, procfs.root, environ_fallback=False).scan()

    job = scan.jobs[JobKey("slurm", "1")]
    assert (job.cpu_ns, job.memory_bytes, job.cpus_allocated, job.info.uid) == (7_000, 4096, 1.5, 5)
    cron = scan.jobs[JobKey("systemd", "cron.service")]
    assert (cron.cpu_ns, cron.memory_bytes, cron.cpus_allocated) == (3_000, 8192, 2.0)
    assert scan.jobs[JobKey("slurm", "2")].cpu_ns == 2_000
    assert JobKey("systemd", "slurmd.service") not in scan.jobs
    assert scan.node.cpu_busy_ns == 400 * TICK_NS
    assert scan.node.memory_used_bytes == (64 * 1024 * 1024 - 1024) * 1024


def test_generated_pure_v2_tree(tmp_path: Path) -> None:
    tree = GeneratedCgroups(tmp_path / "cg", pure_v2=True)
    tree.v2(
        f"kubepods.slice/kubepods-pod{POD_UID_SYSTEMD}.slice",
        usage_usec=5,
        memory_current=10,
        cpu_max="max 100000",
    )
    tree.v2(f"kubepods.slice/kubepods-pod{POD_UID_SYSTEMD}.slice/cri-containerd-{HEX}.scope", usage_usec=4)
    scan = discovery(tree.root, environ_fallback=False).scan()
    assert set(scan.jobs) == {JobKey("kubernetes", POD_UID)}
    pod = scan.jobs[JobKey("kubernetes", POD_UID)]
    assert (pod.cpu_ns, pod.memory_bytes, pod.cpus_allocated) == (5_000, 10, None)


def test_names_the_kernel_refuses_and_metadata_of_any_size(tmp_path: Path) -> None:
    tree = GeneratedCgroups(tmp_path / "cg")
    tree.v1("system.slice/new\nline\x1b[31m.service", cpu_ns=1)
    tree.v1("slurm/uid_0/job_9", cpu_ns=1)
    huge = "\u2028" + 'n\x00"\\' * 2500

    def metadata(key: JobKey) -> JobInfo | None:
        return (
            JobInfo(user=huge, name=huge, account=huge, partition="p\n") if key.scheduler == "slurm" else None
        )

    scan = discovery(tree.root, metadata=metadata, environ_fallback=False).scan()
    assert JobKey("systemd", "newline[31m.service") in scan.jobs
    info = scan.jobs[JobKey("slurm", "9")].info
    for text in (info.user, info.name, info.account):
        assert len(text) == 256 and "\x00" not in text and "\u2028" not in text
    assert info.partition == "p"


def test_a_cgroup_vanishing_between_listing_and_reading_is_skipped(tmp_path: Path) -> None:
    tree = GeneratedCgroups(tmp_path / "cg")
    (tree.v1("slurm/uid_0/job_1", cpu_ns=1) / "cpuacct.usage").unlink()  # listed, then gone
    tree.v1("slurm/uid_0/job_2", cpu_ns=2, memory_bytes=1)
    (tree.root / "memory/slurm/uid_0/job_2/memory.usage_in_bytes").write_text("garbage")
    (tree.root / "cpuacct/slurm/uid_0/job_3").write_text("a file, not a cgroup")
    scan = discovery(tree.root, environ_fallback=False).scan()
    assert JobKey("slurm", "1") not in scan.jobs
    assert scan.jobs[JobKey("slurm", "2")].memory_bytes == 0  # never drop a job for its memory


def test_job_for_pid_caches_by_process_start_time(tmp_path: Path) -> None:
    procfs = FakeProcfs(tmp_path / "proc")
    tree = GeneratedCgroups(tmp_path / "cg")
    fake_process(procfs.root, 4242, b"2:cpuacct:/slurm/uid_0/job_5/step_0\n0::/\n", start_ticks=10)
    found = discovery(tree.root, procfs.root)
    assert found.job_for_pid(4242) == JobKey("slurm", "5")
    fake_process(procfs.root, 4242, b"2:cpuacct:/\n0::/system.slice/nginx.service\n", start_ticks=10)
    assert found.job_for_pid(4242) == JobKey("slurm", "5")  # the same process: cached
    fake_process(procfs.root, 4242, b"2:cpuacct:/\n0::/system.slice/nginx.service\n", start_ticks=11)
    assert found.job_for_pid(4242) == JobKey("systemd", "nginx.service")  # the pid was reused
    fake_process(procfs.root, 4243, b"0::/x/" + b"\xff" * 200 + b"\n\n::::\n", environ=b"SLURM_JOB_ID=\xff1")
    assert found.job_for_pid(4243) == JobKey("slurm", "\ufffd1")
    assert found.job_for_pid(99999) is None


# ---- the Kubernetes pod directory ----

PODS = {
    "kind": "PodList",
    "items": [
        {"metadata": {"uid": POD_UID, "name": "trainer-0", "namespace": "ml"}},
        {"metadata": {"uid": "bad-pod", "name": "evil\n" + "x" * 10_000, "namespace": 'q"'}},
        {"metadata": "not an object"},
    ],
}


class _PodsHandler(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str]]] = []

    def do_GET(self) -> None:
        type(self).requests.append((self.path, self.headers.get("Authorization", "")))
        body = json.dumps(PODS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def pods_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PodsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _PodsHandler.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pod_directory_names_pods_from_the_api_server(pods_server: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    pods = PodDirectory(f"{pods_server}/api/v1/pods", "node-a", token_file=token, refresh_seconds=0.05)
    pods.start()
    try:
        wait_for(lambda: pods.refreshes >= 2, 5, "two pod list refreshes")
    finally:
        pods.close()
    path, auth = _PodsHandler.requests[0]
    assert path == "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a" and auth == "Bearer s3cret"

    tree = GeneratedCgroups(tmp_path / "cg")
    tree.v1(f"kubepods/burstable/pod{POD_UID}", cpu_ns=1)
    tree.v1("kubepods/besteffort/podbad_pod", cpu_ns=1)
    tree.v1("kubepods/besteffort/podunknown", cpu_ns=1)
    scan = discovery(tree.root, pods=pods, environ_fallback=False).scan()
    assert scan.jobs[JobKey("kubernetes", POD_UID)].info == JobInfo(name="trainer-0", account="ml")
    evil = scan.jobs[JobKey("kubernetes", "bad-pod")].info
    assert evil.name == "evil" + "x" * 251 and evil.account == 'q"'
    assert scan.jobs[JobKey("kubernetes", "unknown")].info == JobInfo()


def test_pod_directory_keeps_its_last_map_when_the_api_fails(pods_server: str) -> None:
    pods = PodDirectory(f"{pods_server}/pods", "node-a")
    pods.refresh()
    assert _PodsHandler.requests[0][0] == "/pods" and len(pods) == 2
    pods.url = "http://127.0.0.1:1/pods"
    pods.refresh()
    assert "cannot list pods from http://127.0.0.1:1/pods" in pods.last_error
    assert pods.lookup(JobKey("kubernetes", POD_UID)) == JobInfo(name="trainer-0", account="ml")
    assert pods.lookup(JobKey("slurm", POD_UID)) is None


def test_a_hung_pod_api_never_blocks_a_scan(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        pods = PodDirectory(f"http://127.0.0.1:{listener.getsockname()[1]}/pods", "n", timeout_seconds=5)
        pods.start()
        tree = GeneratedCgroups(tmp_path / "cg")
        tree.v1(f"kubepods/pod{POD_UID}", cpu_ns=1)
        clock = FakeClock()
        started = time.monotonic()
        scan = discovery(tree.root, clock=clock, pods=pods, environ_fallback=False).scan()
        assert time.monotonic() - started < 1.0
        assert scan.jobs[JobKey("kubernetes", POD_UID)].info == JobInfo()
        pods.close()
