"""Which jobs run on this node and what each uses, from cgroups (v1, v2 or hybrid) and /proc.

A job is found by the shape of its cgroup path, anywhere under the hierarchy root; the shapes are
listed in collectors.jobs.paths.

The walk stops at a job's cgroup and reads that cgroup's own counters, so a scan costs a few reads
per job however many processes it has. Anything else is not a job: its CPU time stays in the node's
busy time and is unattributed downstream.

Without job cgroups (Slurm's proctrack/linuxproc), processes whose environment holds
SLURM_JOB_ID=<id> form slurm:<id> with the sum of their CPU time (collectors.jobs.procjobs); that fallback
is on by default only while no Slurm cgroup hierarchy is seen (`environ_fallback=None`).

Memory is v2 memory.current, or v1 memory.usage_in_bytes at the same relative path (page cache
included in both, so v1 and v2 nodes agree), else the processes' RSS.
"""

from __future__ import annotations

import math
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path

from collectors.base import Clock, CollectorError, Probe, Status
from collectors.jobs.kubernetes import PodDirectory
from collectors.jobs.paths import PathMatch, classify_path, clean_text
from collectors.jobs.procjobs import NS_PER_S, EnvironJobs
from collectors.jobs.walk import CgroupWalk, JobCgroup
from collectors.procstat import read_cpu_jiffies
from collectors.smallfiles import OpenFiles, default_open_files, read_int, read_small
from collectors.workloads import JobInfo, JobKey, JobUsage, NodeUsage, UsageScan

MetadataLookup = Callable[[JobKey], JobInfo | None]
"""What the Slurm metadata cache (or any other) offers: a job's details, None when it has none."""

MAX_PID_CACHE = 16_384
NO_PIDS: frozenset[int] = frozenset()


def _cpuset_size(text: bytes) -> int:
    """How many CPUs a cpuset list like `0-3,8` names."""
    count = 0
    for part in text.strip().split(b","):
        if b"-" in part:
            low, high = part.split(b"-", 1)
            count += int(high) - int(low) + 1
        elif part:
            count += 1
    return count


class JobDiscovery:
    """Finds the node's jobs in its cgroups and reads their cumulative usage; `scan()` every interval."""

    def __init__(
        self,
        procfs: Path,
        cgroupfs: Path,
        node_name: str,
        clock: Clock = time.monotonic,
        *,
        metadata: MetadataLookup | None = None,
        pods: PodDirectory | None = None,
        environ_fallback: bool | None = None,
        collect_pids: bool = False,
        refresh_seconds: float = 30.0,
        max_open_files: int | None = None,
    ) -> None:
        # node_name is kept for reports only: job patterns accept any slurm_<node> or <node>_slurmstepd,
        # since Slurm's NodeName need not be the host name and one host may run several slurmd.
        self.node_name = node_name
        self._procfs = str(procfs)
        self._cgroupfs = cgroupfs
        self._clock = clock
        self._metadata = metadata
        self._pods = pods
        self._environ_fallback = environ_fallback
        self._collect_pids = collect_pids
        self._refresh_seconds = refresh_seconds
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")
        self._page_bytes = os.sysconf("SC_PAGE_SIZE")
        self._hierarchies: list[tuple[str, bool]] = []
        self._hierarchies_at = -math.inf
        self._cpus: int | None = None
        self._walk = CgroupWalk(refresh_seconds)
        self._by_key: dict[JobKey, list[JobCgroup]] | None = None
        """The last scan's cgroups by job, made when first asked for after a scan."""
        self._open_for: frozenset[str] | None = None
        """The cgroups whose counter files are held open; None: to work out again."""
        self._nesting_services: set[JobKey] = set()
        self._pure_v2: bool | None = None
        """Whether cgroupfs is a v2 hierarchy alone, as of this scan (None: not looked at yet)."""
        self._users: dict[int, str] = {}
        self._environ = EnvironJobs(
            self._procfs, self._cgroup_match, lambda key, uid: self._info(key, uid, "", None), clock=clock
        )
        self._pid_keys: dict[int, tuple[int, JobKey | None]] = {}
        self._files = OpenFiles(default_open_files() if max_open_files is None else max_open_files)

    # ---- hierarchies ----

    def _find_hierarchies(self) -> list[tuple[str, bool]]:
        """(root, is_v2) of each hierarchy to walk: the v1 cpuacct one first, then v2."""
        fs = self._cgroupfs
        if (fs / "cgroup.controllers").exists():
            return [(str(fs), True)]
        found = []
        for name in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
            if (fs / name / "cpuacct.usage").exists():
                found.append((str(fs / name), False))
                break
        if (fs / "unified" / "cgroup.controllers").exists():
            found.append((str(fs / "unified"), True))
        return found

    def close(self) -> None:
        """Close the counter files held open between scans."""
        self._files.close()

    def probe(self) -> Probe:
        """Which cgroup hierarchies job discovery reads."""
        self._hierarchies = self._find_hierarchies()
        if not self._hierarchies:
            return Probe(
                Status.NOT_FOUND,
                f"no cgroup v1 cpuacct or v2 hierarchy under {self._cgroupfs}",
                fix="point host.cgroupfs at the host's /sys/fs/cgroup",
            )
        kinds = ", ".join(f"{'v2' if v2 else 'v1'} {root}" for root, v2 in self._hierarchies)
        return Probe(Status.OK, f"jobs from cgroups: {kinds}")

    def _v1_dir(self, controller: str, rel: str, file: str) -> str | None:
        """<cgroupfs>/<controller hierarchy>/<rel>/<file> where it exists (v1 and hybrid hosts only)."""
        if self._pure_v2 is None:  # once per scan, not once per job and controller
            self._pure_v2 = os.path.exists(f"{self._cgroupfs}/cgroup.controllers")
        if self._pure_v2:
            return None
        names = {"cpu": ("cpu", "cpu,cpuacct", "cpuacct,cpu")}.get(controller, (controller,))
        for name in names:
            path = f"{self._cgroupfs}/{name}/{rel}/{file}" if rel else f"{self._cgroupfs}/{name}/{file}"
            if os.path.exists(path):
                return path
        return None

    # ---- reading one job cgroup ----

    def _cpu_ns(self, cgroup: JobCgroup) -> int:
        if not cgroup.v2:
            return int(self._files.read(cgroup.cpu_file))
        data = self._files.read(cgroup.cpu_file)
        for line in data.split(b"\n"):
            if line.startswith(b"usage_usec "):
                return int(line[11:]) * 1000
        raise ValueError(f"{cgroup.path}/cpu.stat has no usage_usec")

    def _refresh_static(self, cgroup: JobCgroup, now: float) -> None:
        """Re-read what rarely changes: CPU limits, where memory is, the owner's uid."""
        cgroup.checked_at = now
        memory = f"{cgroup.path}/memory.current" if cgroup.v2 else None
        if memory is None or not os.path.exists(memory):
            memory = self._v1_dir("memory", cgroup.rel, "memory.usage_in_bytes")
        if memory != cgroup.memory_file:
            self._open_for = None  # the files held open change
        cgroup.memory_file = memory
        cgroup.cpus_allocated = self._cpus_allocated(cgroup)
        if cgroup.match.uid is None and cgroup.uid is None:
            for pid in self._cgroup_pids(cgroup.path, first_only=True):
                try:
                    cgroup.uid = os.stat(f"{self._procfs}/{pid}").st_uid
                except OSError:
                    continue
                break

    def _cpus_allocated(self, cgroup: JobCgroup) -> float | None:
        """The smaller of the cpuset's size and the CPU quota; None when neither limits the job."""
        limits: list[float] = []
        cpuset = f"{cgroup.path}/cpuset.cpus.effective" if cgroup.v2 else None
        if cpuset is None or not os.path.exists(cpuset):
            cpuset = self._v1_dir("cpuset", cgroup.rel, "cpuset.cpus")
        try:
            if cpuset is not None:
                size = _cpuset_size(read_small(cpuset))
                if 0 < size < self._node_cpus():
                    limits.append(float(size))
            cpu_max = f"{cgroup.path}/cpu.max" if cgroup.v2 else None
            if cpu_max is not None and os.path.exists(cpu_max):
                quota, period = read_small(cpu_max).split()[:2]
                if quota != b"max" and int(period) > 0:
                    limits.append(int(quota) / int(period))
            else:
                quota_file = self._v1_dir("cpu", cgroup.rel, "cpu.cfs_quota_us")
                if quota_file is not None:
                    quota_us = read_int(quota_file)
                    period_us = read_int(quota_file.replace("cpu.cfs_quota_us", "cpu.cfs_period_us"))
                    if quota_us > 0 and period_us > 0:
                        limits.append(quota_us / period_us)
        except (OSError, ValueError):
            pass  # removed meanwhile, or an unexpected format: no known limit
        return min(limits) if limits else None

    def _cgroup_pids(self, path: str, first_only: bool = False) -> list[int]:
        """Pids in a cgroup and every cgroup below it."""
        pids: list[int] = []
        stack = [path]
        while stack:
            current = stack.pop()
            try:
                pids.extend(int(p) for p in read_small(f"{current}/cgroup.procs").split())
                if first_only and pids:
                    return pids[:1]
                with os.scandir(current) as it:
                    stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
            except (OSError, ValueError):
                continue
        return pids

    def _rss_bytes(self, pids: list[int]) -> int:
        total = 0
        for pid in pids:
            try:
                total += int(read_small(f"{self._procfs}/{pid}/statm").split()[1]) * self._page_bytes
            except (OSError, ValueError, IndexError):
                continue
        return total

    def _usage(self, cgroup: JobCgroup, now: float) -> JobUsage | None:
        """The job's usage now; None when its cgroup is gone."""
        try:
            cpu_ns = self._cpu_ns(cgroup)
        except (OSError, ValueError):
            return None
        if now - cgroup.checked_at >= self._refresh_seconds:
            self._refresh_static(cgroup, now)
        pids: list[int] = []
        if self._collect_pids or cgroup.memory_file is None:
            pids = self._cgroup_pids(cgroup.path)
        memory_bytes = 0
        if cgroup.memory_file is not None:
            try:
                memory_bytes = int(self._files.read(cgroup.memory_file))
            except (OSError, ValueError):
                cgroup.checked_at = -math.inf  # look for it again next scan
        else:
            memory_bytes = self._rss_bytes(pids)
        match = cgroup.match
        info = self._info(match.key, match.uid if match.uid is not None else cgroup.uid, match.name, cgroup)
        last, pid_set = cgroup.usage, frozenset(pids) if pids else NO_PIDS
        if (
            last is not None
            and last.cpu_ns == cpu_ns
            and last.memory_bytes == memory_bytes
            and last.info is info
            and last.cpus_allocated == cgroup.cpus_allocated
            and last.pids == pid_set
        ):
            return last  # an idle job: the same figures, no new record
        usage = JobUsage(match.key, info, cpu_ns, memory_bytes, cgroup.cpus_allocated, pid_set)
        cgroup.usage = usage
        return usage

    # ---- metadata ----

    def _user(self, uid: int | None) -> str:
        if uid is None:
            return ""
        if uid not in self._users:
            try:
                self._users[uid] = clean_text(pwd.getpwuid(uid).pw_name)
            except KeyError:
                self._users[uid] = ""
        return self._users[uid]

    def _info(self, key: JobKey, uid: int | None, name: str, cache: JobCgroup | None) -> JobInfo:
        """What the path tells, overlaid by the pod directory, overlaid by the metadata hook."""
        pod = self._pods.lookup(key) if self._pods is not None else None
        extra = self._metadata(key) if self._metadata is not None else None
        inputs = (uid, pod, extra)
        if isinstance(cache, JobCgroup) and cache.info_inputs == inputs:
            return cache.info
        info = JobInfo(user=self._user(uid), uid=uid, name=name)
        for source in (pod, extra):
            if source is not None:
                info = JobInfo(
                    user=clean_text(source.user) or info.user,
                    uid=source.uid if source.uid is not None else info.uid,
                    name=clean_text(source.name) or info.name,
                    account=clean_text(source.account) or info.account,
                    partition=clean_text(source.partition) or info.partition,
                )
        if isinstance(cache, JobCgroup):
            cache.info_inputs, cache.info = inputs, info
        return info

    # ---- the node ----

    def _node_cpus(self) -> int:
        if self._cpus is None:
            try:
                with open(f"{self._procfs}/stat", "rb") as f:
                    count = sum(1 for line in f if line.startswith(b"cpu") and line[3:4].isdigit())
            except OSError:
                count = 0
            self._cpus = count or os.cpu_count() or 1
        return self._cpus

    def _node_usage(self) -> NodeUsage:
        try:
            busy_ticks, _ = read_cpu_jiffies(Path(self._procfs))
            meminfo = {}
            for line in read_small(f"{self._procfs}/meminfo").split(b"\n"):
                name, _, rest = line.partition(b":")
                if name in (b"MemTotal", b"MemAvailable", b"MemFree"):
                    meminfo[name] = int(rest.split()[0]) * 1024
        except (OSError, ValueError, IndexError) as e:
            message = f"cannot read node CPU time or memory in {self._procfs}: {e}"
            raise CollectorError("read_failed", message) from e
        available = meminfo.get(b"MemAvailable", meminfo.get(b"MemFree", 0))
        return NodeUsage(
            cpu_busy_ns=busy_ticks * NS_PER_S // self._ticks_per_s,
            cpus=self._node_cpus(),
            memory_used_bytes=max(0, meminfo.get(b"MemTotal", 0) - available),
        )

    # ---- the scan ----

    def scan(self) -> UsageScan:
        """Every job's cumulative usage and the node's, read now; raises CollectorError without procfs."""
        now = self._clock()
        self._pure_v2 = None
        node = self._node_usage()
        if not self._hierarchies and now - self._hierarchies_at >= self._refresh_seconds:
            self._hierarchies, self._hierarchies_at = self._find_hierarchies(), now
        found, self._nesting_services = self._walk.walk(self._hierarchies, now)
        self._by_key = None
        self._keep_open(found)
        jobs: dict[JobKey, JobUsage] = {}
        for cgroup in found.values():
            usage = self._usage(cgroup, now)
            if usage is not None:
                _add(jobs, usage)
        if self._environ_fallback or (self._environ_fallback is None and not self._walk.saw_slurm):
            for usage in self._environ.jobs():
                _add(jobs, usage)
        return UsageScan(jobs, node)

    def _keep_open(self, found: dict[str, JobCgroup]) -> None:
        """Close the counter files of cgroups gone since the last scan (only when the set changed)."""
        paths = frozenset(found)
        if self._open_for == paths:
            return
        memory = {c.memory_file for c in found.values() if c.memory_file is not None}
        self._files.keep_only({c.cpu_file for c in found.values()} | memory)
        self._open_for = paths

    # ---- pid -> job ----

    def _cgroup_match(self, pid: int) -> PathMatch | None:
        """The job whose cgroup holds the process, from <procfs>/<pid>/cgroup (v1 cpuacct, then v2)."""
        try:
            data = read_small(f"{self._procfs}/{pid}/cgroup")
        except OSError:
            return None
        v1_path = v2_path = None
        for line in data.split(b"\n"):
            parts = line.split(b":", 2)
            if len(parts) != 3:
                continue
            if b"cpuacct" in parts[1].split(b","):
                v1_path = parts[2]
            elif parts[0] == b"0" and parts[1] == b"":
                v2_path = parts[2]
        for raw in (v1_path, v2_path):
            if raw:
                match = classify_path(raw.decode("utf-8", "surrogateescape"), self._nesting_services)
                if match is not None:
                    return match
        return None

    def job_pids(self, key: JobKey, limit: int) -> list[int]:
        """Up to `limit` processes of a job the last scan found; reads its cgroups' process lists."""
        by_key = self._by_key
        if by_key is None:  # once per scan at most, however many jobs are asked about
            by_key = {}
            for cgroup in list(self._walk.known.values()):
                by_key.setdefault(cgroup.match.key, []).append(cgroup)
            self._by_key = by_key
        pids: list[int] = []
        for cgroup in by_key.get(key, ()):
            if len(pids) < limit:
                pids.extend(self._cgroup_pids(cgroup.path)[: limit - len(pids)])
        if len(pids) < limit:
            pids.extend(self._environ.pids_of(key)[: limit - len(pids)])
        return pids

    def job_for_pid(self, pid: int) -> JobKey | None:
        """The job a process belongs to (its cgroup, else its SLURM_JOB_ID); None for none or gone."""
        stat = self._environ.proc_stat(pid)
        if stat is None:
            return None
        cached = self._pid_keys.get(pid)
        if cached is not None and cached[0] == stat[0]:
            return cached[1]
        match = self._cgroup_match(pid)
        key = match.key if match is not None else None
        if key is None and self._environ_fallback is not False:
            key = self._environ.environ_job(pid)
        if len(self._pid_keys) >= MAX_PID_CACHE:
            self._pid_keys.clear()
        self._pid_keys[pid] = (stat[0], key)
        return key


def _add(jobs: dict[JobKey, JobUsage], usage: JobUsage) -> None:
    """Put a job's usage in `jobs`, summing with a sibling cgroup of the same job (several slurmd)."""
    other = jobs.get(usage.key)
    if other is None:
        jobs[usage.key] = usage
        return
    cpus = None
    if other.cpus_allocated is not None and usage.cpus_allocated is not None:
        cpus = other.cpus_allocated + usage.cpus_allocated
    jobs[usage.key] = JobUsage(
        usage.key,
        other.info,
        other.cpu_ns + usage.cpu_ns,
        other.memory_bytes + usage.memory_bytes,
        cpus,
        other.pids | usage.pids,
    )
