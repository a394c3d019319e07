"""The annual report of a fleet from a long-term store: 1,000 nodes, a year of hourly counters in a real
VictoriaMetrics; the report at most 120 s and 1 GB.

The counters are shaped like the agents' own /metrics as Prometheus stores them (`job` and `instance`
added by the scrape), one sample an hour, at a second of the hour of each node's own:

- greenai_node_energy_joules_total{component, device, source}: cpu and dram per package (rapl), gpu
  per GPU (nvml, 8 a node); every 20th node has no RAPL and estimates cpu and dram (device node,
  source estimate); every 10th has a wall meter too (component node, source redfish, not in totals);
- greenai_node_unattributed_energy_joules_total{component}: the idle energy no job was charged;
- greenai_job_energy_joules_total{job_id, scheduler, component, user, project, phase}: cpu, dram and
  gpu of each job, from 0 at its first sighting, rising while it runs. A node runs two jobs at a time
  (4 GPUs each) of 1 hour to 10 days (43 hours on average) with gaps of 5 hours on average; in one of
  the two slots the jobs span 4 nodes (the same job id on each). 232,000 jobs, 1.1 million job series,
  16 million job-hours; 1.13 million series and 179 million samples in all.

Every counter starts before the year (the report looks back a day for the previous values), and every
50th node's agent restarts once in the year (all its counters start again from 0). The counters are
written through VictoriaMetrics' JSON-lines import (/api/v1/import) as they are generated, and the
year's parts are then merged, as a store has long done with data a year old. `greenai report
--prometheus URL --year 2025` (html, md, json) then runs in a child process: its wall time, CPU time
and peak RSS, and VictoriaMetrics' CPU time meanwhile (its response cache emptied before each run).
The report's IT, unattributed and estimated kWh and its job count must match what was generated
within 1%. Exit 1 when one does not, or a run is over a limit. The load is timed apart.

VictoriaMetrics runs with its defaults but `-retentionPeriod` (a year ago is past the default month).
The report's query plan (agent/report/prometheus.py): per family of series (node totals, their
estimated part, jobs, unattributed, wall meters) one `query_range` at step 1h per window of hours, a
window holding about 250,000 points: here 65 job windows of about 6 days, 37 windows of 10 days for
the node totals and for the unattributed energy, 8 and 9 for the estimated part and the wall meters,
and 40 one-hour `increase` queries for the 20 restarts: about 200 queries, the largest selecting
24,000 series, far below VictoriaMetrics' limits (300,000 series a query, 30 s).

    python3 benchmarks/fleet_report.py [--dir DIR] [--nodes 1000] [--reports 1] [--port PORT]

With --dir, the store is kept there: the next run with as many --nodes reports from it without
loading again.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
YEAR = 2025
LIMIT_S = 120.0
LIMIT_MB = 1024.0
HOUR = 3600
BINARY = "victoria-metrics"
SCRAPE_JOB = "greenai"
PHASES = ("pretraining", "fine-tuning", "inference", "evaluation", "other")
GROUP = 4
"""Nodes that run the same multi-node jobs in their first slot."""


@dataclass(frozen=True)
class Shape:
    """What each simulated node has and does."""

    nodes: int = 1000
    gpus: int = 8
    slots: int = 2
    estimate_every: int = 20
    wall_every: int = 10
    restart_every: int = 50


@dataclass
class Expected:
    """What the report must find, from the generated energy: joules in the year, and the job ids."""

    it_j: float = 0.0
    unattributed_j: float = 0.0
    estimated_j: float = 0.0
    job_ids: set[str] = field(default_factory=set)
    series: int = 0
    samples: int = 0


@dataclass
class Series:
    labels: dict[str, str]
    first: int
    """The sample index of its first value."""
    values: np.ndarray


def year_hours() -> int:
    return (calendar.timegm((YEAR + 1, 1, 1, 0, 0, 0)) - calendar.timegm((YEAR, 1, 1, 0, 0, 0))) // HOUR


def _durations(rng: np.random.Generator) -> Iterator[int]:
    """Job lengths in hours: a third short (1-8 h), most a day or two, a fifth of 2 to 10 days."""
    while True:
        u = rng.random()
        hi = 8 if u < 0.35 else 48 if u < 0.8 else 240
        lo = 1 if hi == 8 else 8 if hi == 48 else 48
        yield int(rng.integers(lo, hi + 1))


def _schedule(rng: np.random.Generator, hours: int) -> list[tuple[int, int, bool]]:
    """(first sample, end sample, started before the year) of one slot's jobs over the sample indices
    0..hours; sample 0 is the last of the year before."""
    out, k = [], 1
    if rng.random() < 0.5:  # a job already running when the year starts
        k = 0
    for length in _durations(rng):
        if k > hours:
            return out
        end = min(k + length, hours + 1)
        out.append((k, end, k == 0))
        k = end + int(rng.exponential(5.0))
    return out


def _counter(energy: np.ndarray, restart: int | None, first: int) -> np.ndarray:
    """Cumulative values of per-interval energy; from `restart` on, again from 0 (the agent restarted
    just after the sample before)."""
    values = np.cumsum(energy)
    at = None if restart is None else restart - first
    if at is not None and 0 < at < len(values):
        values[at:] = np.cumsum(energy[at:])
    return np.round(values, 3)


def simulate(shape: Shape, index: int, expected: Expected) -> list[Series]:
    """One node's series over the year (samples 0..hours), and its energy added to `expected`."""
    hours = year_hours()
    name = f"gpu-{index:04d}"
    rng = np.random.default_rng(10_000 + index)
    restart = int(rng.integers(200, hours - 200)) if index % shape.restart_every == 7 else None
    estimated = index % shape.estimate_every == 3
    idle_w = {"cpu": 110.0, "dram": 12.0, "gpu": 55.0 * shape.gpus}
    idle = {c: w * HOUR * rng.uniform(0.97, 1.03, hours + 1) for c, w in idle_w.items()}
    for c, e in idle.items():
        e[0] = 30 * 24 * idle_w[c] * HOUR  # the counter's value at the last sample of the year before
    node = {c: e.copy() for c, e in idle.items()}
    base = {"job": SCRAPE_JOB, "instance": name}
    series: list[Series] = []
    for slot in range(shape.slots):
        shared = slot == 0
        plan_rng = np.random.default_rng(20_000 + index // GROUP) if shared else rng
        for seq, (a, b, before) in enumerate(_schedule(plan_rng, hours)):
            job_id = str(
                (10_000_000 + (index // GROUP) * 1000 if shared else 20_000_000 + index * 1000) + seq
            )
            n = int(job_id)
            labels = {
                **base, "job_id": job_id, "scheduler": "slurm", "user": f"user{n % 317}",
                "project": f"proj{n % 23}", "phase": PHASES[n % len(PHASES)],
            }  # fmt: skip
            frac = rng.uniform(0.9, 1.1, b - a)
            if not before:
                frac[0] *= rng.uniform(0.05, 1.0)  # it started within its first interval
            if b <= hours and b - a > 1:
                frac[-1] *= rng.uniform(0.05, 1.0)  # and ended within its last
            gpus = shape.gpus / shape.slots
            watts = {
                "cpu": rng.uniform(30, 150),
                "dram": rng.uniform(5, 25),
                "gpu": gpus * rng.uniform(150, 650),
            }
            in_year = 0.0
            for component, w in watts.items():
                energy = w * HOUR * frac
                if before:
                    energy[0] = 20 * w * HOUR  # what it used before the year
                node[component][max(a, 1) : b] += energy[1:] if before else energy
                in_year += float(energy[1:].sum() if before else energy.sum())
                job_labels = {"__name__": "greenai_job_energy_joules_total", **labels, "component": component}
                series.append(Series(job_labels, a, _counter(energy, restart, a)))
            if in_year > 0:
                expected.job_ids.add(job_id)
    sources = {"cpu": "rapl", "dram": "rapl", "gpu": "nvml"}
    devices = {"cpu": ["package-0", "package-1"], "dram": ["package-0", "package-1"]}
    devices["gpu"] = [f"gpu{g}" for g in range(shape.gpus)]
    if estimated:
        sources.update(cpu="estimate", dram="estimate")
        devices.update(cpu=["node"], dram=["node"])
        expected.estimated_j += float(node["cpu"][1:].sum() + node["dram"][1:].sum())
    for component, energy in node.items():
        expected.it_j += float(energy[1:].sum())
        for device in devices[component]:
            labels = {"__name__": "greenai_node_energy_joules_total", **base, "component": component}
            labels |= {"device": device, "source": sources[component]}
            series.append(Series(labels, 0, _counter(energy / len(devices[component]), restart, 0)))
    for component, energy in idle.items():
        expected.unattributed_j += float(energy[1:].sum())
        labels = {"__name__": "greenai_node_unattributed_energy_joules_total", **base, "component": component}
        series.append(Series(labels, 0, _counter(energy, restart, 0)))
    if index % shape.wall_every == 5:
        wall = sum(node.values()) * 1.12
        labels = {"__name__": "greenai_node_energy_joules_total", **base, "component": "node"}
        series.append(
            Series(labels | {"device": "chassis", "source": "redfish"}, 0, _counter(wall, restart, 0))
        )
    expected.series += len(series)
    expected.samples += sum(len(s.values) for s in series)
    return series


def json_lines(index: int, series: list[Series]) -> bytes:
    """The node's series as /api/v1/import lines: {"metric": labels, "values": [...], "timestamps": [ms]}."""
    lo = calendar.timegm((YEAR, 1, 1, 0, 0, 0))
    offset = 60 + (index * 7919) % (HOUR - 120)  # the node is scraped at this second of each hour
    stamps = [str((lo + (k - 1) * HOUR + offset) * 1000) for k in range(year_hours() + 1)]
    all_stamps = ",".join(stamps)
    out = []
    for s in series:
        count = len(s.values)
        ts = all_stamps if count == len(stamps) else ",".join(stamps[s.first : s.first + count])
        values = ",".join(map(repr, s.values.tolist()))
        out.append(f'{{"metric":{json.dumps(s.labels)},"values":[{values}],"timestamps":[{ts}]}}\n')
    return "".join(out).encode()


class Victoria:
    """`victoria-metrics` on 127.0.0.1 with its data in `storage`: its defaults, but the retention."""

    def __init__(self, storage: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = storage.parent / "victoria-metrics.log"
        command = [
            BINARY,
            f"-storageDataPath={storage}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=100y",
            "-loggerLevel=WARN",
        ]
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"victoria-metrics did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                return bool(r.read().strip() == b"OK")
        except OSError:
            return False

    def post(self, body: bytes) -> None:
        request = urllib.request.Request(f"{self.url}/api/v1/import", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=600) as r:
            r.read()

    def cpu_s(self) -> float:
        """CPU seconds the server has used so far (user and system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def merge(self) -> None:
        """Merge the year's parts as the store does over time with data this old; wait until it has."""
        for prefix in (f"{YEAR - 1}_12", str(YEAR)):
            urllib.request.urlopen(
                f"{self.url}/internal/force_merge?partition_prefix={prefix}", timeout=60
            ).read()
        quiet = 0
        while quiet < 3:  # merges start a little after the call
            time.sleep(1)
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=60) as r:
                lines = r.read().decode().splitlines()
            active = sum(float(line.split()[-1]) for line in lines if line.startswith("vm_active_merges{"))
            quiet = quiet + 1 if active == 0 else 0

    def forget(self) -> None:
        """Empty the response cache, so that every report run asks the storage as the first did."""
        urllib.request.urlopen(f"{self.url}/internal/resetRollupResultCache", timeout=60).read()

    def flush(self) -> None:
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=600).read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def load(vm: Victoria, shape: Shape) -> Expected:
    """Generate every node's year and import it, one node's lines per request, the next node generated
    while VictoriaMetrics takes the last (a thread posts)."""
    expected = Expected()
    pending: threading.Thread | None = None
    failed: list[BaseException] = []

    def post(body: bytes) -> None:
        try:
            vm.post(body)
        except BaseException as e:  # reported by the main thread
            failed.append(e)

    for index in range(shape.nodes):
        body = json_lines(index, simulate(shape, index, expected))
        if pending is not None:
            pending.join()
        if failed:
            raise SystemExit(f"import failed: {failed[0]}")
        pending = threading.Thread(target=post, args=(body,))
        pending.start()
    if pending is not None:
        pending.join()
    if failed:
        raise SystemExit(f"import failed: {failed[0]}")
    vm.flush()
    return expected


def write_config(folder: Path) -> Path:
    """Two sites: the first 300 nodes priced hour by hour from a CSV, the others by the year's mean."""
    start = calendar.timegm((YEAR, 1, 1, 0, 0, 0))
    rng = np.random.default_rng(7)
    csv = folder / "hourly.csv"
    rows = [
        f"{start + h * HOUR},{rng.uniform(20, 120):.1f},{rng.uniform(40, 95):.1f}"
        for h in range(year_hours())
    ]
    csv.write_text("timestamp,g_per_kwh,cfe_pct\n" + "\n".join(rows) + "\n")
    cfg = folder / "agent.yaml"
    cfg.write_text(
        "carbon:\n  sites:\n"
        f"    paris: {{location: FRA, intensity_csv: {csv}, pue: 1.2, nodes: ['gpu-0[0-2].*']}}\n"
        "    virginia: {location: US-VA, pue: 1.4, cfe_contract_pct: 30, nodes: ['gpu-.*']}\n"
        "  default_site: virginia\n"
    )
    return cfg


def timed_report(url: str, cfg: Path, out: Path) -> tuple[float, float, float, dict[str, Any]]:
    """(wall seconds, CPU seconds, peak RSS in MB, report.json) of `greenai report --prometheus URL`
    in a child."""
    command = [sys.executable, "-m", "agent.cli", "report", "--year", str(YEAR), "--prometheus", url]
    command += ["--config", str(cfg), "--out", str(out)]
    t = time.monotonic()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the report failed:\n{stderr.decode(errors='replace')}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, json.loads((out / "report.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def checked(report: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    """The report's figures next to the generated ones, and those more than 1% off."""
    got = {
        "it_kwh": report["energy"]["it_kwh"],
        "unattributed_kwh": report["energy"]["unattributed_kwh"],
        "estimated_kwh": report["energy"]["estimated_kwh"],
        "jobs": report["jobs"]["count"],
    }
    wanted = {
        "it_kwh": want["it_j"] / 3.6e6,
        "unattributed_kwh": want["unattributed_j"] / 3.6e6,
        "estimated_kwh": want["estimated_j"] / 3.6e6,
        "jobs": want["job_ids"],
    }
    wrong = [k for k in got if abs(got[k] - wanted[k]) > 0.01 * abs(wanted[k])]
    return {"got": got, "expected": wanted, "wrong": wrong}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="keep the store here (default: a temporary folder)")
    parser.add_argument("--nodes", type=int, default=Shape.nodes)
    parser.add_argument("--reports", type=int, default=1, choices=range(1, 11), help="report runs (1-10)")
    parser.add_argument("--port", type=int, help="VictoriaMetrics' port (default: a free one)")
    args = parser.parse_args()
    if shutil.which(BINARY) is None:
        print(f"{BINARY} is not installed (apt-get install victoria-metrics)", file=sys.stderr)
        return 1
    shape = Shape(nodes=args.nodes)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="greenai-fleet-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "loaded.json"
    saved = json.loads(marker.read_text()) if marker.exists() else None
    if saved is None or saved["shape"] != asdict(shape):
        shutil.rmtree(folder / "storage", ignore_errors=True)  # another fleet's, or a load cut short
        saved = None
    figures: dict[str, Any] = {"nodes": shape.nodes, "year": YEAR, "load_s": None, "merge_s": None}
    vm = Victoria(folder / "storage", args.port or free_port())
    try:
        if saved is None:
            t = time.monotonic()
            expected = load(vm, shape)
            figures["load_s"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            vm.merge()
            figures["merge_s"] = round(time.monotonic() - t, 1)
            saved = {
                "shape": asdict(shape),
                "expected": asdict(expected) | {"job_ids": len(expected.job_ids)},
            }
            marker.write_text(json.dumps(saved))
        want = saved["expected"]
        figures |= {"series": want["series"], "samples": want["samples"], "jobs": want["job_ids"]}
        cfg, runs = write_config(folder), []
        for _ in range(args.reports):
            vm.forget()
            vm_cpu = vm.cpu_s()
            seconds, cpu, peak_mb, report = timed_report(vm.url, cfg, folder / "report")
            run = {"report_s": round(seconds, 1), "report_cpu_s": round(cpu, 1)}
            run |= {"report_peak_rss_mb": round(peak_mb), "victoria_cpu_s": round(vm.cpu_s() - vm_cpu, 1)}
            runs.append(run | {"wrong": checked(report, want)["wrong"]})
    finally:
        vm.stop()
    over = any(r["report_s"] > LIMIT_S or r["report_peak_rss_mb"] > LIMIT_MB for r in runs)
    wrong = any(r["wrong"] for r in runs)
    figures |= {"runs": runs, **checked(report, want), "limits": {"s": LIMIT_S, "mb": LIMIT_MB}, "over": over}
    print(json.dumps(figures, indent=2))
    return 1 if over or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
