"""A real single-node Slurm (Debian's slurm-wlm and munge) on 127.0.0.1, for the tests.

One `SlurmHost` per test session owns a temporary directory and a private munged; it runs at most
one Slurm configuration at a time (both use the same node name and would fight over the job
cgroups), and restarts slurmctld and slurmd when a test asks for the other proctrack plugin.
Job ids keep increasing across restarts because the controller's state directory is kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.processes import REPO, free_port, wait_for

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol")
PROCTRACKS = ("cgroup", "linuxproc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
EPILOG = REPO / "scripts" / "slurm-epilog"


def cgroup_v2_only() -> bool:
    """Whether the host mounts only the unified cgroup v2 hierarchy at /sys/fs/cgroup."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def missing_binaries() -> list[str]:
    """The programs a real Slurm needs that are not installed (munged and slurmd live in /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in DAEMONS if shutil.which(name, path=path) is None]


def _binary(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    assert found, f"{name} is not installed (apt-get install slurm-wlm munge)"
    return found


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


class _Daemon:
    """One daemon in the foreground, its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.name = Path(argv[0]).name
        self._out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - lives as long as the daemon
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT, env=env
        )

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log)}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    output: Path


class SlurmCluster:
    """The running Slurm: submit, wait for and cancel jobs; `env` points any Slurm command at it."""

    def __init__(self, host: SlurmHost, proctrack: str) -> None:
        self.host = host
        self.proctrack = proctrack
        self.node = host.node
        self.workdir = host.workdir
        self.env: dict[str, str] = {"SLURM_CONF": str(host.conf)}
        """Environment to add for `scontrol`, `sbatch`... to reach this cluster."""
        self.scontrol_path = _binary("scontrol")
        self._sbatch = _binary("sbatch")

    def run(self, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster; raise with its stderr if it fails."""
        result = subprocess.run(
            list(argv),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def scontrol(self, *args: str) -> str:
        return self.run(self.scontrol_path, *args).stdout

    def submit(
        self,
        script: str | None = None,
        *,
        wrap: str | None = None,
        name: str | None = None,
        cpus: int = 1,
        uid: int | None = None,
        output: Path | None = None,
        extra: Sequence[str] = (),
    ) -> SubmittedJob:
        """sbatch a script (text starting with #!) or a --wrap command; return its id and output file."""
        assert (script is None) != (wrap is None), "give a script or wrap, not both"
        out = output or self.workdir / "jobs" / f"job-{os.urandom(6).hex()}.out"
        argv = [self._sbatch, "--parsable", f"--cpus-per-task={cpus}", f"--output={out}"]
        argv += [f"--chdir={out.parent}"]
        if name is not None:
            argv.append(f"--job-name={name}")
        if uid is not None:
            argv += [f"--uid={uid}", f"--gid={uid}"]
        argv += list(extra)
        if wrap is not None:
            argv.append(f"--wrap={wrap}")
        result = subprocess.run(
            argv,
            input=script,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=20,
        )
        if result.returncode != 0:
            raise AssertionError(f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
        job_id = result.stdout.strip().split(";")[0]
        assert job_id.isdigit(), f"sbatch printed {result.stdout!r}"
        return SubmittedJob(job_id, out)

    def state(self, job_id: str) -> str:
        text = self.scontrol("-o", "show", "job", job_id)
        m = re.search(r" JobState=(\S+)", text)
        return m.group(1) if m else ""

    def pids(self, job_id: str) -> list[int]:
        """The job's processes, as `scontrol listpids` sees them (slurmstepd excluded)."""
        try:
            text = self.scontrol("listpids", job_id)
        except AssertionError:
            return []
        pids = []
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2 and fields[0].isdigit() and fields[1] == job_id:
                pids.append(int(fields[0]))
        return [pid for pid in pids if Path(f"/proc/{pid}").exists()]

    def wait_running(self, job_id: str, timeout: float = 20.0) -> list[int]:
        """Wait until the job runs and its batch script has a process; return the job's pids."""

        def running() -> list[int] | None:
            self.host.check()
            state = self.state(job_id)
            if state not in ("PENDING", "CONFIGURING", "RUNNING"):
                raise AssertionError(f"job {job_id} is {state}, expected it to run")
            return self.pids(job_id) if state == "RUNNING" else None

        return wait_for(running, timeout, f"job {job_id} to run", poll=0.1)

    def wait_finished(self, job_id: str, timeout: float = 20.0) -> str:
        finished = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")

        def ended() -> str | None:
            state = self.state(job_id)
            return state if state in finished else None

        return wait_for(ended, timeout, f"job {job_id} to finish", poll=0.1)

    def cancel(self, job_id: str) -> None:
        subprocess.run(
            [_binary("scancel"), job_id], env={**os.environ, **self.env}, capture_output=True, timeout=20
        )

    def active_jobs(self) -> list[str]:
        text = self.run(_binary("squeue"), "-h", "-o", "%i").stdout
        return text.split()

    def job_cgroup_paths(self, job_id: str) -> dict[str, Path]:
        """The job's cgroup directory in each v1 controller where Slurm made one ("unified" on v2)."""
        found = {}
        if cgroup_v2_only():
            for job_dir in CGROUP_ROOT.glob(f"system.slice/slurmstepd.scope/job_{job_id}"):
                found["unified"] = job_dir
            return found
        for controller_dir in CGROUP_ROOT.iterdir():
            root = controller_dir / f"slurm_{self.node}"
            for job_dir in root.glob(f"uid_*/job_{job_id}"):
                found[controller_dir.name] = job_dir
            legacy = controller_dir / "slurm"
            for job_dir in legacy.glob(f"uid_*/job_{job_id}"):
                found.setdefault(controller_dir.name, job_dir)
        return found

    def run_epilog_in(self, directory: Path, api_url: str) -> None:
        """Have the Epilog run scripts/slurm-epilog, asking `api_url`, for jobs working in `directory`
        (its name must be unique in this session)."""
        (self.workdir / "epilog.d" / directory.name).write_text(api_url)

    def log_tails(self) -> str:
        return self.host.log_tails()


class SlurmHost:
    """The session's munged and temporary directory; runs one Slurm configuration at a time."""

    def __init__(self) -> None:
        # munged wants every directory above its socket searchable by all; pytest's tmp dirs are 0700.
        self.workdir = Path(tempfile.mkdtemp(prefix="greenai-slurm-"))
        self.workdir.chmod(0o755)
        for sub in ("munge", "state", "spool", "log", "jobs"):
            (self.workdir / sub).mkdir()
            (self.workdir / sub).chmod(0o755)
        (self.workdir / "jobs").chmod(0o1777)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.workdir / "slurm.conf"
        self.epilog_log = self.workdir / "log" / "epilog.log"
        self.munge_socket = self.workdir / "munge" / "munge.socket"
        self._env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._munged: _Daemon | None = None
        self._daemons: list[_Daemon] = []
        self.cluster: SlurmCluster | None = None

    def start_munge(self, timeout: float = 10.0) -> None:
        key = self.workdir / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        munge_dir = self.workdir / "munge"
        self._munged = _Daemon(
            [
                _binary("munged"),
                "--foreground",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--log-file={self.workdir / 'log' / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
                "--num-threads=4",
            ],
            self.workdir / "log" / "munged.out",
            self._env,
        )

        def up() -> bool:
            assert self._munged is not None
            self._munged.check()
            return self.munge_socket.exists()

        wait_for(up, timeout, "munged to listen", poll=0.05)

    def check(self) -> None:
        for daemon in [self._munged, *self._daemons]:
            if daemon is not None:
                daemon.check()

    def _write_conf(self, proctrack: str) -> None:
        cpus = os.cpu_count() or 1
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        w = self.workdir
        cgroup_plugins = proctrack == "cgroup"
        lines = [
            "ClusterName=greenai-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "CredType=cred/munge",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={w / 'state'}",
            f"SlurmdSpoolDir={w / 'spool'}",
            f"SlurmctldPidFile={w / 'slurmctld.pid'}",
            f"SlurmdPidFile={w / 'slurmd.pid'}",
            f"SlurmctldLogFile={w / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={w / 'log' / 'slurmd.log'}",
            f"ProctrackType=proctrack/{proctrack}",
            # task/cgroup puts the job in a cpuset and memory cgroup; jobacct_gather/cgroup adds the
            # cpuacct cgroup a site measuring per-job CPU time runs with.
            f"TaskPlugin=task/{'cgroup' if cgroup_plugins else 'none'}",
            f"JobAcctGatherType=jobacct_gather/{'cgroup' if cgroup_plugins else 'none'}",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/builtin",
            "ReturnToService=2",
            "MpiDefault=none",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=2",
            "MinJobAge=600",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(memory_mb // 2, 1)}"
            " State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        lines.append(f"Epilog={self._write_epilog()}")
        self.conf.write_text("\n".join(lines) + "\n")
        # No systemd runs the daemons here: IgnoreSystemd lets slurmd make its cgroups itself.
        (w / "cgroup.conf").write_text(
            f"CgroupPlugin=cgroup/{'v2' if cgroup_v2_only() else 'v1'}\n"
            f"CgroupMountpoint={CGROUP_ROOT}\n"
            "IgnoreSystemd=yes\n"
            "ConstrainCores=yes\n"
            "ConstrainRAMSpace=no\n"
            "ConstrainDevices=no\n"
        )

    def _write_epilog(self) -> Path:
        """An Epilog that runs scripts/slurm-epilog, as slurmd would, only for the jobs whose working
        directory a test named with `SlurmCluster.run_epilog_in` (other tests' jobs are left alone).

        Like a site's wrapper it sets PATH (slurmd gives an Epilog none): the system's python3 runs
        the script, which finds greenai's Python through the `greenai` command at the end of PATH.
        """
        wrapper = self.workdir / "epilog"
        enabled = self.workdir / "epilog.d"
        enabled.mkdir(exist_ok=True)
        wrapper.write_text(
            "#!/bin/sh\n"
            f'on="{enabled}/$(basename "$SLURM_JOB_WORK_DIR")"\n'
            '[ -f "$on" ] || exit 0\n'
            'GREENAI_API_URL=$(cat "$on")\n'
            f"PATH=/usr/bin:/bin:{Path(sys.executable).parent}\n"
            "export GREENAI_API_URL PATH\n"
            f'exec "{EPILOG}" >> "{self.epilog_log}" 2>&1\n'
        )
        wrapper.chmod(0o755)
        return wrapper

    def start(self, proctrack: str, timeout: float = 30.0) -> SlurmCluster:
        """Run slurmctld and slurmd with this proctrack plugin; return once the node is idle."""
        assert proctrack in PROCTRACKS, proctrack
        if self.cluster is not None and self.cluster.proctrack == proctrack:
            return self.cluster
        self.stop_slurm()
        self._write_conf(proctrack)
        log = self.workdir / "log"
        conf = str(self.conf)
        self._daemons = [
            _Daemon([_binary("slurmctld"), "-D", "-f", conf], log / "slurmctld.out", self._env),
            _Daemon([_binary("slurmd"), "-D", "-f", conf], log / "slurmd.out", self._env),
        ]
        cluster = SlurmCluster(self, proctrack)
        sinfo = _binary("sinfo")

        def idle() -> bool:
            self.check()
            result = subprocess.run(
                [sinfo, "-h", "-N", "-n", self.node, "-o", "%T"],
                env=self._env,
                capture_output=True,
                text=True,
                timeout=10,
            )
            return result.returncode == 0 and result.stdout.strip() == "idle"

        try:
            wait_for(idle, timeout, f"node {self.node} to be idle in sinfo", poll=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log_tails()}") from None
        self.cluster = cluster
        return cluster

    def stop_slurm(self) -> None:
        """Cancel every job, stop slurmd and slurmctld, and remove the cgroups Slurm made."""
        if self.cluster is not None:
            cluster = self.cluster
            with contextlib.suppress(AssertionError, subprocess.SubprocessError, OSError):
                for job_id in cluster.active_jobs():
                    cluster.cancel(job_id)
                wait_for(lambda: not cluster.active_jobs(), 20, "jobs to end", poll=0.2)
        for daemon in reversed(self._daemons):
            daemon.stop()
        self._daemons = []
        self.cluster = None
        self._remove_cgroups()

    def _remove_cgroups(self) -> None:
        """rmdir the (by now empty) cgroups under slurm_<node> in every v1 controller, deepest first."""
        for controller_dir in CGROUP_ROOT.iterdir():
            for top in (controller_dir / f"slurm_{self.node}", controller_dir / "slurm"):
                if not top.is_dir():
                    continue
                dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
                for d in [*dirs, top]:
                    with contextlib.suppress(OSError):
                        d.rmdir()

    def stop(self) -> None:
        self.stop_slurm()
        if self._munged is not None:
            self._munged.stop()
            self._munged = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self) -> str:
        logs = ("slurmctld.log", "slurmd.log", "munged.log", "slurmctld.out", "slurmd.out", "epilog.log")
        return "\n".join(f"--- {name}\n{_tail(self.workdir / 'log' / name)}" for name in logs)
