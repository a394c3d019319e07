"""Cgroups for tests: real ones under a unique prefix with real processes in them, and generated trees.

Real cgroups sit under `<the runner's memory cgroup>/greenai-test-<pid>-<random>` in every hierarchy,
so the test processes stay inside whatever memory limit the test runner has, concurrent test runs never
collide, and job discovery must match job paths anywhere below the hierarchy root, as it does on hosts
that nest everything one level down. `close()` kills the processes and removes every cgroup it made,
deepest first.

Generated trees are plain directories holding the files job discovery reads, for names the kernel
refuses (a newline) and for exact counter values.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from collectors.jobs.cgroups import JobDiscovery

V1 = ("cpuacct", "cpu", "cpuset", "memory")
UNIFIED = ("unified",)
WORKLOADS = {
    "burner": 'exec sh -c "while :; do :; done"',
    "sleeper": "exec sleep 60",
    "burner+sleeper": 'sleep 60 & exec sh -c "while :; do :; done"',
}


def discovery(
    cgroupfs: Path = Path("/sys/fs/cgroup"), procfs: Path = Path("/proc"), **kwargs: object
) -> JobDiscovery:
    """A probed JobDiscovery of node "vm" over these roots; `kwargs` as JobDiscovery takes them."""
    found = JobDiscovery(procfs, cgroupfs, "vm", **kwargs)  # type: ignore[arg-type]
    found.probe()
    return found


def real_cgroups_missing(cgroupfs: Path = Path("/sys/fs/cgroup")) -> str:
    """Why real cgroup tests cannot run here ("" when they can): they need root and a hybrid host."""
    if os.geteuid() != 0:
        return "real cgroup tests need root"
    for hierarchy in (*V1, *UNIFIED):
        if not (cgroupfs / hierarchy / "cgroup.procs").exists():
            return f"no cgroup hierarchy at {cgroupfs / hierarchy}"
    return ""


def runner_memory_cgroup(procfs: Path = Path("/proc")) -> str:
    """This process's v1 memory cgroup, relative to the hierarchy root ("" for the root)."""
    for line in (procfs / "self" / "cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path.strip("/")
    return ""


def cpu_ticks(pid: int, procfs: Path = Path("/proc")) -> int:
    """utime + stime of a process in clock ticks."""
    data = (procfs / str(pid) / "stat").read_bytes()
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


class RealCgroups:
    """Real cgroups under one unique prefix, and processes started in them; `close()` removes all."""

    def __init__(self, cgroupfs: Path = Path("/sys/fs/cgroup")) -> None:
        self.cgroupfs = cgroupfs
        self.base = runner_memory_cgroup()
        name = f"greenai-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.prefix = f"{self.base}/{name}" if self.base else name
        self._created: list[Path] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def path(self, hierarchy: str, rel: str = "") -> Path:
        """The cgroup `rel` (below the prefix) in one hierarchy."""
        return (
            self.cgroupfs / hierarchy / self.prefix / rel if rel else self.cgroupfs / hierarchy / self.prefix
        )

    def make(self, rel: str, hierarchies: Sequence[str] = V1) -> None:
        """Create cgroup `rel` (and its parents) in each hierarchy."""
        for hierarchy in hierarchies:
            for attempt in range(5):
                try:
                    self._make_one(hierarchy, f"{self.prefix}/{rel}")
                    break
                except FileNotFoundError:  # a concurrent test run removed a shared parent: again
                    if attempt == 4:
                        raise

    def _make_one(self, hierarchy: str, path: str) -> None:
        current = self.cgroupfs / hierarchy
        for part in path.strip("/").split("/"):
            parent, current = current, current / part
            try:
                current.mkdir()
            except FileExistsError:
                continue
            self._created.append(current)
            if hierarchy == "cpuset":  # a v1 cpuset takes no process until it has CPUs and nodes
                for file in ("cpuset.cpus", "cpuset.mems"):
                    (current / file).write_bytes((parent / file).read_bytes())

    def write(self, hierarchy: str, rel: str, file: str, value: str) -> None:
        (self.path(hierarchy, rel) / file).write_text(value)

    def remove(self, rel: str, hierarchies: Sequence[str] = V1) -> None:
        """Remove cgroup `rel` (which must hold no process) now, as a finished job's would be."""
        for hierarchy in hierarchies:
            path = self.path(hierarchy, rel)
            for child in sorted(self._created, key=lambda p: -len(p.parts)):
                if child == path or path in child.parents:
                    _rmdir(child, self.cgroupfs / hierarchy)
                    self._created.remove(child)

    def start(
        self,
        rel: str | None,
        workload: str = "sleeper",
        hierarchies: Sequence[str] = V1,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `workload` with its pid in cgroup `rel` of each hierarchy (None: leave it where it is).

        A shell writes its own pid to each cgroup.procs and then execs the workload, so all of the
        workload's CPU time lands in the cgroup.
        """
        files: list[str] = []
        if rel is not None:
            self.make(rel, hierarchies)
            files = [str(self.path(h, rel) / "cgroup.procs") for h in hierarchies]
        script = f'for f in "$@"; do echo $$ > "$f" || exit 97; done; {WORKLOADS[workload]}'
        proc = subprocess.Popen(
            ["sh", "-c", script, "greenai-test", *files],
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._procs.append(proc)
        deadline = time.monotonic() + 5
        while files and str(proc.pid) not in Path(files[-1]).read_text().split():
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"cannot put a process in cgroup {rel!r}: {stderr.strip()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"process {proc.pid} did not join cgroup {rel!r} within 5 s")
            time.sleep(0.005)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill a process started here (and the sleeper a burner+sleeper shell started) and reap it."""
        for child in children(proc.pid):
            _kill(child)
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()

    def close(self) -> None:
        """Kill every process started here and remove every cgroup made here, deepest first."""
        for proc in self._procs:
            self.stop(proc)
        for path in sorted(self._created, key=lambda p: -len(p.parts)):
            hierarchy = self.cgroupfs / path.relative_to(self.cgroupfs).parts[0]
            if path != self.path(hierarchy.name) and self.path(hierarchy.name) not in path.parents:
                # A parent of the prefix (the runner's cgroup path in another hierarchy) may be
                # shared with a concurrent test run: remove it only if it is empty now.
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            home = hierarchy / self.base if hierarchy.name == "memory" else hierarchy
            _rmdir(path, home)
        self._created.clear()

    def __enter__(self) -> RealCgroups:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def children(pid: int, procfs: Path = Path("/proc")) -> list[int]:
    """The live (not zombie) child processes of `pid`."""
    found = []
    for entry in procfs.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "stat").read_bytes()
        except OSError:
            continue
        state, ppid = data[data.rindex(b")") + 2 :].split()[:2]
        if int(ppid) == pid and state != b"Z":
            found.append(int(entry.name))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def _rmdir(path: Path, home: Path) -> None:
    """Remove a cgroup, moving any process still in it to `home` first; gives up after 2 s."""
    deadline = time.monotonic() + 2
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
        try:
            for pid in (path / "cgroup.procs").read_text().split():
                (home / "cgroup.procs").write_text(pid)
        except OSError:
            pass  # the process exited meanwhile; a reaped one leaves the cgroup on its own
        time.sleep(0.01)


class GeneratedCgroups:
    """A plain-directory cgroupfs whose counters the test writes: hybrid (v1 + unified) or pure v2."""

    def __init__(self, root: Path, pure_v2: bool = False) -> None:
        self.root = root
        self.pure_v2 = pure_v2
        self.v2_root = root if pure_v2 else root / "unified"
        self.v2_root.mkdir(parents=True, exist_ok=True)
        (self.v2_root / "cgroup.controllers").write_text("cpu memory cpuset\n" if pure_v2 else "\n")
        if not pure_v2:
            for controller in V1:
                (root / controller).mkdir(exist_ok=True)
            (root / "cpuacct" / "cpuacct.usage").write_text("0\n")

    def v1(
        self,
        rel: str,
        cpu_ns: int = 0,
        memory_bytes: int | None = None,
        cpuset: str | None = None,
        quota_us: tuple[int, int] | None = None,
    ) -> Path:
        """A v1 cgroup: cpuacct.usage, and where given memory, cpuset and CPU quota at the same path."""
        path = self.root / "cpuacct" / rel
        path.mkdir(parents=True, exist_ok=True)
        (path / "cpuacct.usage").write_text(f"{cpu_ns}\n")
        (path / "cgroup.procs").touch()
        if memory_bytes is not None:
            (self.root / "memory" / rel).mkdir(parents=True, exist_ok=True)
            (self.root / "memory" / rel / "memory.usage_in_bytes").write_text(f"{memory_bytes}\n")
        if cpuset is not None:
            (self.root / "cpuset" / rel).mkdir(parents=True, exist_ok=True)
            (self.root / "cpuset" / rel / "cpuset.cpus").write_text(f"{cpuset}\n")
        if quota_us is not None:
            (self.root / "cpu" / rel).mkdir(parents=True, exist_ok=True)
            (self.root / "cpu" / rel / "cpu.cfs_quota_us").write_text(f"{quota_us[0]}\n")
            (self.root / "cpu" / rel / "cpu.cfs_period_us").write_text(f"{quota_us[1]}\n")
        return path

    def v2(
        self,
        rel: str,
        usage_usec: int = 0,
        memory_current: int | None = None,
        cpu_max: str | None = None,
        cpuset: str | None = None,
    ) -> Path:
        """A v2 cgroup: cpu.stat, and where given memory.current, cpu.max and cpuset.cpus.effective."""
        path = self.v2_root / rel
        path.mkdir(parents=True, exist_ok=True)
        (path / "cpu.stat").write_text(f"usage_usec {usage_usec}\nuser_usec 0\nsystem_usec 0\n")
        (path / "cgroup.procs").touch()
        if memory_current is not None:
            (path / "memory.current").write_text(f"{memory_current}\n")
        if cpu_max is not None:
            (path / "cpu.max").write_text(f"{cpu_max}\n")
        if cpuset is not None:
            (path / "cpuset.cpus.effective").write_text(f"{cpuset}\n")
        return path


def fake_process(
    procfs: Path,
    pid: int,
    cgroup: bytes,
    environ: bytes = b"",
    start_ticks: int = 1000,
    cpu_ticks: int = 0,
    comm: bytes = b"python3",
) -> None:
    """<procfs>/<pid>/{stat,cgroup,environ} of one process, in the kernel's formats."""
    directory = procfs / str(pid)
    directory.mkdir(parents=True, exist_ok=True)
    # pid (comm) state ppid ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24)
    after = ["S", "1"] + ["0"] * 9 + [str(cpu_ticks), "0"] + ["0"] * 6 + [str(start_ticks), "0", "25"]
    (directory / "stat").write_bytes(b"%d (%s) " % (pid, comm) + " ".join(after).encode() + b"\n")
    (directory / "cgroup").write_bytes(cgroup)
    (directory / "environ").write_bytes(environ)
