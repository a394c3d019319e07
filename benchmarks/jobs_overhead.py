#!/usr/bin/env python3
"""The agent's cost with many jobs: CPU per sample, /metrics scrape time, RSS, for 20, 200, 2,000 jobs.

For each size it makes that many real Slurm-shaped job cgroups (slurm/uid_0/job_<i>/step_0 in the v1
cpuacct, cpu, cpuset and memory hierarchies, under a unique prefix removed afterwards) and fills
them with 2,000 `sleep 600` processes in every case (100, 10 or 1 per job), so only the number of
jobs changes between sizes. It then runs `greenai agent --interval 0.1` on a generated 2-socket
powercap tree, waits until every job is on /metrics, and measures:

  * cpu_ms_per_sample: the agent's CPU time (all threads, ledger writer included) per sample, over a
    window in which nothing but its two end points scrapes /metrics;
  * scrape_ms: the median wall time of a /metrics GET seen from this process, and the agent's CPU
    time per scrape (its CPU during the scrapes less what sampling alone costs in that time: a rough
    figure, too low once sampling keeps the agent busy);
  * rss_mb, and the /metrics size in bytes.

Floors (issue 13), for 2,000 jobs and 2,000 processes: at most 15 ms CPU per sample, a scrape in at
most 40 ms, at most 60 MB resident; and from 200 to 2,000 jobs the CPU per sample grows at most x11
(linear in jobs: nothing per job may cost more as jobs are added). Prints JSON (figures per size,
growth between sizes, floors, verdict) and exits 1 when the 2,000-job case misses a floor.

Needs root on a hybrid cgroup host (the v1 hierarchies and /sys/fs/cgroup/unified). slurm.scontrol
is off unless --scontrol is given (the jobs are made up, so each look-up would only fail). Run from
anywhere:

    python3 benchmarks/jobs_overhead.py [--sizes 20,200,2000] [--seconds 10] [--processes 2000]
    python3 benchmarks/jobs_overhead.py --sizes 2000 --profile 50   # where the time goes, cProfile
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.cgroups import V1, RealCgroups, real_cgroups_missing  # noqa: E402
from tests.support.powercap import PowercapTree, server_zones  # noqa: E402
from tests.support.processes import AgentProcess, http_get, wait_for  # noqa: E402

CPU_MS_PER_SAMPLE_FLOOR = 15.0
SCRAPE_MS_FLOOR = 40.0
RSS_MB_FLOOR = 60.0
GROWTH_FLOOR = 11.0
"""CPU per sample at FLOOR_JOBS over that at GROWTH_FROM_JOBS."""
FLOOR_JOBS = 2000
GROWTH_FROM_JOBS = 200
INTERVAL = 0.1
PR_SET_CHILD_SUBREAPER = 36
JOB_SERIES = re.compile(rb'^greenai_job_energy_joules_total\{[^}\n]*\bjob_id="(\d+)"', re.M)
FIRST_JOB_ID = 870_000_001
"""Job ids far from those the tests use, so jobs a concurrent test run makes are not counted."""


def _job_rel(i: int) -> str:
    return f"slurm/uid_0/job_{FIRST_JOB_ID + i}/step_0"


class Jobs:
    """`count` job cgroups holding `per_job` sleepers each; `close()` kills them and removes the cgroups.

    One shell per job writes its pid to the step's cgroup.procs in every hierarchy, forks per_job - 1
    sleepers (which inherit its cgroups) and execs the last one. This process is a child subreaper,
    so the sleepers orphaned when their parent is killed come back here to be reaped.
    """

    def __init__(self, count: int, per_job: int) -> None:
        self.count, self.per_job = count, per_job
        self.cgroups = RealCgroups()
        self.spawned: list[int] = []

    def start(self) -> float:
        """Make the cgroups and start the processes; returns the seconds it took."""
        started = time.monotonic()
        script = (
            'for f in "$@"; do echo $$ > "$f" || exit 97; done; '
            f"i=1; while [ $i -lt {self.per_job} ]; do sleep 600 & i=$((i+1)); done; exec sleep 600"
        )
        devnull = os.open(os.devnull, os.O_RDWR)
        actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1)]
        try:
            for i in range(self.count):
                self.cgroups.make(_job_rel(i), V1)
                files = [str(self.cgroups.path(h, _job_rel(i)) / "cgroup.procs") for h in V1]
                pid = os.posix_spawn(
                    "/bin/sh", ["sh", "-c", script, "greenai-bench", *files], os.environ, file_actions=actions
                )
                self.spawned.append(pid)
        finally:
            os.close(devnull)
        expected = self.count * self.per_job

        def all_in() -> bool:
            for pid in self.spawned:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    raise RuntimeError(f"job shell {pid} exited with status {status} before its sleepers")
            return self.processes() >= expected

        wait_for(all_in, 120, f"{expected} processes in {self.count} job cgroups", poll=0.2)
        return time.monotonic() - started

    def pids(self) -> list[int]:
        out: list[int] = []
        for i in range(self.count):
            with contextlib.suppress(OSError):
                procs = (self.cgroups.path("cpuacct", _job_rel(i)) / "cgroup.procs").read_text()
                out.extend(int(p) for p in procs.split())
        return out

    def processes(self) -> int:
        return len(self.pids())

    def close(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _reap()
            if not pids:
                break
            time.sleep(0.05)
        self.cgroups.close()
        _reap()


def _reap() -> None:
    """Reap every child that has exited (the agent's Popen has waited for its own already)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _job_series(agent: AgentProcess, count: int) -> int:
    """How many of our jobs are on /metrics: their energy series (one per component) / 3."""
    text = http_get(f"{agent.url}/metrics", timeout=30)
    ours = range(FIRST_JOB_ID, FIRST_JOB_ID + count)
    return sum(1 for m in JOB_SERIES.finditer(text) if int(m[1]) in ours) // 3


def _samples(agent: AgentProcess) -> float:
    text = http_get(f"{agent.url}/metrics", timeout=30).decode()
    for line in text.splitlines():
        if line.startswith("greenai_agent_samples_total"):
            return float(line.split()[-1])
    raise AssertionError("no greenai_agent_samples_total on /metrics")


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _config_text(root: Path, count: int, scontrol: bool, sysfs: Path | None = None) -> str:
    """The agent's config: a ledger of its own, room for every job on /metrics, no scontrol."""
    text = f"ledger:\n  path: {root / 'ledger.db'}\njobs:\n  max_job_series: {max(10_000, 2 * count)}\n"
    if not scontrol:
        text += 'slurm:\n  scontrol: ""\n'
    if sysfs is not None:
        text += f"host:\n  sysfs: {sysfs}\n"
    return text


def measure(count: int, processes: int, seconds: float, scrapes: int, scontrol: bool) -> dict[str, Any]:
    per_job = max(1, processes // count)
    jobs = Jobs(count, per_job)
    figures: dict[str, Any] = {"jobs": count, "processes_per_job": per_job}
    try:
        figures["start_processes_s"] = round(jobs.start(), 2)
        figures["processes"] = jobs.processes()
        with tempfile.TemporaryDirectory(prefix="greenai-bench-") as tmp:
            root = Path(tmp)
            config = root / "greenai.yaml"
            config.write_text(_config_text(root, count, scontrol))
            with PowercapTree(root / "sys", server_zones(2)) as tree, tree.following_real_time(0.05):
                args = ["--config", str(config), "--interval", str(INTERVAL), "--sysfs", str(tree.root)]
                with AgentProcess(args) as agent:
                    agent.wait_ready(timeout=60)
                    figures.update(_measure_agent(agent, count, seconds, scrapes))
                    agent.stop(timeout=30)
    finally:
        jobs.close()
    return figures


def _measure_agent(agent: AgentProcess, count: int, seconds: float, scrapes: int) -> dict[str, Any]:
    proc = psutil.Process(agent.proc.pid)
    started = time.monotonic()
    wait_for(lambda: _job_series(agent, count) >= count, 120, f"{count} jobs on /metrics", poll=0.5)
    seen_after = time.monotonic() - started
    time.sleep(2.0)  # past the first sightings: new jobs, ledger inserts, first metadata refresh

    # CPU per sample: nothing scrapes between the two end points.
    samples0 = _samples(agent)
    cpu0 = _cpu_s(proc)
    wall0 = time.monotonic()
    time.sleep(seconds)
    cpu1 = _cpu_s(proc)
    wall1 = time.monotonic()
    samples1 = _samples(agent)
    samples = samples1 - samples0

    # Scrapes, back to back with a pause between them; the agent's CPU per scrape is the excess
    # over what sampling alone costs in the same time.
    times, sizes = [], []
    cpu2, wall2 = _cpu_s(proc), time.monotonic()
    for _ in range(scrapes):
        t = time.perf_counter()
        body = http_get(f"{agent.url}/metrics", timeout=30)
        times.append(time.perf_counter() - t)
        sizes.append(len(body))
        time.sleep(0.2)
    cpu3, wall3 = _cpu_s(proc), time.monotonic()
    sampling_cpu_per_s = (cpu1 - cpu0) / (wall1 - wall0)
    scrape_cpu = max(0.0, (cpu3 - cpu2) - sampling_cpu_per_s * (wall3 - wall2)) / scrapes
    memory = proc.memory_info()
    jobs_seen = _job_series(agent, count)
    energy = "greenai_node_energy_joules_total"
    sources = sorted({dict(labels).get("source", "") for name, labels in agent.samples() if name == energy})
    behind = sum("fell" in line and "behind" in line for line in agent.lines)
    return {
        "jobs_on_metrics": jobs_seen,
        "energy_sources": sources,
        "all_jobs_seen_after_s": round(seen_after, 2),
        "samples": int(samples),
        "samples_per_s": round(samples / (wall1 - wall0), 2),
        "cpu_ms_per_sample": round((cpu1 - cpu0) * 1000 / samples, 3) if samples else None,
        "cpu_percent_of_one_core": round(100 * sampling_cpu_per_s, 1),
        "scrape_ms_median": round(statistics.median(times) * 1000, 2),
        "scrape_ms_max": round(max(times) * 1000, 2),
        "scrape_cpu_ms": round(scrape_cpu * 1000, 2),
        "metrics_bytes": int(statistics.median(sizes)),
        "rss_mb": round(memory.rss / 1e6, 1),
        "fell_behind_warnings": behind,
    }


GROWN = ("cpu_ms_per_sample", "scrape_ms_median", "scrape_cpu_ms", "rss_mb", "metrics_bytes")


def _growth(small: dict[str, Any], large: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"jobs": large["jobs"] / small["jobs"]}
    for key in GROWN:
        a, b = small.get(key), large.get(key)
        out[key] = round(b / a, 2) if a and b is not None else None
    return out


def _verdict(figures: dict[str, Any], smaller: dict[str, Any] | None) -> dict[str, bool | str]:
    cpu = figures.get("cpu_ms_per_sample")
    verdict: dict[str, bool | str] = {
        "cpu_ms_per_sample": cpu is not None and cpu <= CPU_MS_PER_SAMPLE_FLOOR,
        "scrape_ms_median": figures["scrape_ms_median"] <= SCRAPE_MS_FLOOR,
        "rss_mb": figures["rss_mb"] <= RSS_MB_FLOOR,
    }
    if smaller is None:
        verdict["cpu_growth"] = f"not measured: --sizes has no {GROWTH_FROM_JOBS}"
    else:
        growth = _growth(smaller, figures)["cpu_ms_per_sample"]
        verdict["cpu_growth"] = growth is not None and growth <= GROWTH_FLOOR
    return verdict


WARM_TICKS = 40
"""Ticks before a profile: baselines, first sightings, and the scans on which the work classifier reads
a new job's environment (agent.live.work.ENV_READ_SIGHTINGS) are behind it."""
RENDERS = 10


def profile(count: int, processes: int, ticks: int, top: int) -> None:
    """The agent's sampling tick and a /metrics render, in this process under cProfile, to stderr.

    Built as daemon.run builds them (probe_sources, Sampler, JobAccounting, LiveCarbon,
    make_exposition), so the profile shows where the subprocess spends its time; each render follows a
    tick, so none is served from the kept bytes.
    """
    import cProfile
    import io
    import pstats

    from agent.carbon.model import CarbonModel
    from agent.config import settings as agent_config
    from agent.daemon import JobAccounting
    from agent.export.job_metrics import JobFamilies
    from agent.export.registry import make_exposition
    from agent.live.carbon import LiveCarbon
    from agent.live.sampler import Sampler
    from agent.live.snapshot import Published
    from agent.live.sources import devices, probe_sources, require

    jobs = Jobs(count, max(1, processes // count))
    try:
        jobs.start()
        with tempfile.TemporaryDirectory(prefix="greenai-bench-") as tmp:
            root = Path(tmp)
            with PowercapTree(root / "sys", server_zones(2)) as tree:
                path = root / "greenai.yaml"
                path.write_text(_config_text(root, count, scontrol=False, sysfs=tree.root))
                cfg = agent_config.load(path, {"interval_seconds": INTERVAL})
                carbon = CarbonModel.from_config(cfg.carbon)
                sources = probe_sources(cfg, time.monotonic)
                sampler = Sampler(require(sources), time.monotonic, devices=devices(sources))
                accounting = JobAccounting.open(cfg, sources, time.monotonic, carbon)
                live = LiveCarbon(carbon, cfg.node_name, time.time)
                try:
                    statuses = {s.name: s.probe.status for s in sources}
                    families = JobFamilies(cfg.jobs.labels, accounting.ledger)
                    published = [Published(sampler.snapshot)]
                    metrics = make_exposition(lambda: published[0], cfg.node_name, statuses, families)

                    def tick() -> None:
                        node = sampler.tick()
                        accounted = accounting.accountant.account(node)
                        published[0] = Published(node, accounted, live.update(node, accounted))

                    for _ in range(WARM_TICKS):
                        tree.advance(INTERVAL)
                        tick()
                    tick_profile, render_profile = cProfile.Profile(), cProfile.Profile()
                    tick_cpu = render_cpu = 0.0
                    for i in range(ticks):
                        tree.advance(INTERVAL)
                        started = time.process_time()
                        tick_profile.enable()
                        tick()
                        tick_profile.disable()
                        tick_cpu += time.process_time() - started
                        if i >= ticks - RENDERS:
                            started = time.process_time()
                            render_profile.enable()
                            metrics.render()
                            render_profile.disable()
                            render_cpu += time.process_time() - started
                        time.sleep(INTERVAL)
                finally:
                    accounting.close()
                    sampler.close()
    finally:
        jobs.close()
    for what, prof, per, n in (
        ("tick", tick_profile, tick_cpu, ticks),
        ("/metrics render", render_profile, render_cpu, min(RENDERS, ticks)),
    ):
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        out.write(
            f"=== {count} jobs: {what}, {per * 1000 / n:.2f} ms CPU each (this process, all threads) ===\n"
        )
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        print(out.getvalue(), file=sys.stderr)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="20,200,2000", help="job counts (default 20,200,2000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU window per size (default 10)")
    parser.add_argument("--processes", type=int, default=2000, help="processes in jobs (default 2000)")
    parser.add_argument("--scrapes", type=int, default=10, help="timed scrapes per size (default 10)")
    parser.add_argument("--scontrol", action="store_true", help="leave slurm.scontrol at its default")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="TICKS",
        help="instead: profile TICKS ticks and 10 renders in this process, per size, to stderr",
    )
    args = parser.parse_args()
    missing = real_cgroups_missing()
    if missing:
        print(f"jobs_overhead: {missing}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # SIGTERM unwinds like Ctrl-C, so the sleepers and cgroups are removed either way.
    signal.signal(signal.SIGTERM, _interrupt)

    if args.profile:
        for count in sizes:
            profile(count, args.processes, args.profile, 25)
        return 0

    results = []
    for count in sizes:
        print(f"jobs_overhead: {count} jobs ...", file=sys.stderr, flush=True)
        results.append(measure(count, args.processes, args.seconds, args.scrapes, args.scontrol))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "interval_seconds": INTERVAL,
        "sockets": 2,
        "node_cpus": os.cpu_count(),
        "sizes": results,
        "growth": {f"{b['jobs']}_vs_{a['jobs']}": _growth(a, b) for a, b in itertools.pairwise(results)},
        "floors": {
            "jobs": FLOOR_JOBS,
            "cpu_ms_per_sample": CPU_MS_PER_SAMPLE_FLOOR,
            "scrape_ms_median": SCRAPE_MS_FLOOR,
            "rss_mb": RSS_MB_FLOOR,
            f"cpu_growth_from_{GROWTH_FROM_JOBS}": GROWTH_FLOOR,
        },
    }
    at_floor = next((r for r in results if r["jobs"] == FLOOR_JOBS), None)
    smaller = next((r for r in results if r["jobs"] == GROWTH_FROM_JOBS), None)
    ok = True
    if at_floor is not None:
        verdict = _verdict(at_floor, smaller)
        report["meets_floors"] = verdict
        ok = all(v is True for v in verdict.values() if isinstance(v, bool))
    else:
        report["meets_floors"] = f"not measured: --sizes has no {FLOOR_JOBS}"
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
