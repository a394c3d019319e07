"""A job's record as the CLI, the HTTP API, cards and reports see it, and how a user names one.

`JobSummary` is one job's row on one node (one run of its id), its joules by (component, source),
usage and useful work; `find_job` resolves `4242`, `slurm:4242` and `slurm:4242#2` (run 2 of a
reused id) among summaries. The queries that build summaries are `read`.

Totals: `platform` (RAPL psys) contains the CPU package and DRAM, so it is reported on its own and not
added to a job's total; every other component is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agent.ledger.provenance import Tally
from agent.ledger.schema import AmbiguousJob, JobNotFound
from agent.units import HOUR_SECONDS, JOULES_PER_KWH
from collectors.base import NOT_IN_TOTAL
from collectors.workloads import JobInfo, JobKey

SCHEDULER_ALIASES = {"k8s": "kubernetes"}


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC to the second, e.g. 2024-05-01T13:00:00Z."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobSummary:
    """One job's record on one node: metadata, joules by (component, source), CPU and GPU seconds."""

    scheduler: str
    job_id: str
    node: str
    info: JobInfo
    start: float
    end: float | None
    last_seen: float
    energy_j: Mapping[tuple[str, str], float]
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    tokens: int | None = None
    samples: int | None = None
    """Useful work reported for the job (`greenai annotate`); None when none was."""
    run: int = 1
    """1 for the first job with this id on this node; 2, 3 ... when the id was used again later."""
    origin: str = "agent"
    """`agent` for the agent's own jobs; for an imported run, the importer's identity of it."""
    method: str = ""
    """For an imported run: how the other tool obtained the energy, as its file says."""
    uncertainty_pct: float | None = None
    """For an imported run: its stated accuracy, percent; None unknown."""

    @property
    def key(self) -> JobKey:
        return JobKey(self.scheduler, self.job_id)

    @property
    def ref(self) -> str:
        """How the CLI names this job: `slurm:4242`, or `slurm:4242#2` for a later run of the id."""
        return str(self.key) if self.run == 1 else f"{self.key}#{self.run}"

    @property
    def imported(self) -> bool:
        return self.origin != "agent"

    def provenance(self) -> Tally:
        """The job's energy by kind (measured, estimated, imported) with its range."""
        return tally_joules(self.by_source(), self.uncertainty_pct, self.method)

    @property
    def running(self) -> bool:
        return self.end is None

    @property
    def duration_seconds(self) -> float:
        """Start to end, or to the last sighting while it runs."""
        return max(0.0, (self.end if self.end is not None else self.last_seen) - self.start)

    def by_component(self) -> dict[str, float]:
        """Joules per component, cpu, dram and gpu always present, plus `total` (without platform)."""
        out = {"cpu": 0.0, "dram": 0.0, "gpu": 0.0}
        for (component, _source), joules in self.energy_j.items():
            out[component] = out.get(component, 0.0) + joules
        out["total"] = sum(j for c, j in out.items() if c not in NOT_IN_TOTAL)
        return out

    def by_source(self) -> dict[str, float]:
        """Joules per source over the components in the total."""
        out: dict[str, float] = {}
        for (component, source), joules in sorted(self.energy_j.items()):
            if component not in NOT_IN_TOTAL:
                out[source] = out.get(source, 0.0) + joules
        return out

    @property
    def total_j(self) -> float:
        return self.by_component()["total"]

    @property
    def estimated_share(self) -> float:
        total = self.total_j
        return self.by_source().get("estimate", 0.0) / total if total > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the CLI and the HTTP API; times are ISO 8601 UTC, energy in joules and kWh."""
        energy = self.by_component()
        provenance = self.provenance()
        return {
            "scheduler": self.scheduler,
            "job_id": self.job_id,
            "run": self.run,
            "ref": self.ref,
            "node": self.node,
            "user": self.info.user,
            "uid": self.info.uid,
            "name": self.info.name,
            "account": self.info.account,
            "partition": self.info.partition,
            "start": iso(self.start),
            "end": iso(self.end),
            "last_seen": iso(self.last_seen),
            "running": self.running,
            "duration_seconds": self.duration_seconds,
            "energy_joules": energy,
            "energy_kwh": energy["total"] / JOULES_PER_KWH,
            "gpu_hours": self.gpu_seconds / HOUR_SECONDS,
            "cpu_hours": self.cpu_seconds / HOUR_SECONDS,
            "sources": self.by_source(),
            "estimated_share": self.estimated_share,
            "project": self.info.project or None,
            "phase": self.info.phase or None,
            "model": self.info.model or None,
            "tokens": self.tokens,
            "samples": self.samples,
            "kwh_per_million_tokens": self.kwh_per(self.tokens, 1e6),
            "kwh_per_sample": self.kwh_per(self.samples, 1),
            "hardware": {
                "gpu_model": self.info.gpu_model or None,
                "gpu_count": self.info.gpu_count,
                "cpu_model": self.info.cpu_model or None,
            },
            "origin": self.origin,
            "provenance": provenance.as_dict(),
            "energy_kwh_range": provenance.range_dict(),
        }

    def kwh_per(self, count: int | None, unit: float) -> float | None:
        """kWh per `unit` of `count` (tokens, samples); None when the count is unknown or zero."""
        if not count:
            return None
        return self.total_j / JOULES_PER_KWH / (count / unit)


JobIdent = tuple[str, str, str, int]
"""(scheduler, job_id, node, run)."""


def tally_joules(by_source_j: Mapping[str, float], uncertainty_pct: float | None, method: str) -> Tally:
    out = Tally()
    out.add_joules(by_source_j, uncertainty_pct, method)
    return out


def latest_runs(out: Mapping[JobIdent, JobSummary]) -> dict[tuple[str, str, str], JobSummary]:
    """The latest run of each (scheduler, job_id, node)."""
    latest: dict[tuple[str, str, str], JobSummary] = {}
    for (scheduler, job_id, node, run), s in out.items():
        old = latest.get((scheduler, job_id, node))
        if old is None or run > old.run:
            latest[(scheduler, job_id, node)] = s
    return latest


def find_job(summaries: Iterable[JobSummary], key_or_id: str, node: str | None = None) -> JobSummary:
    """The one job that `4242`, `slurm:4242` or `slurm:4242#2` (run 2 of a reused id) names (on `node`,
    if given). Without `#N`, an id used several times names its latest run."""
    text, run = split_run(key_or_id)
    scheduler, sep, rest = text.partition(":")
    candidates = [s for s in summaries if node is None or s.node == node]
    scheduler = SCHEDULER_ALIASES.get(scheduler, scheduler)
    matches = [s for s in candidates if sep and s.scheduler == scheduler and s.job_id == rest]
    if not matches:  # a bare id, or an id that itself holds a colon
        matches = [s for s in candidates if s.job_id == text]
    if not matches:
        raise JobNotFound(f"no job {key_or_id!r} in the ledger; `greenai jobs` lists the jobs it has")
    if run is not None:
        runs = sorted({s.run for s in matches})
        matches = [s for s in matches if s.run == run]
        if not matches:
            raise JobNotFound(
                f"job {text!r} has no run {run} in the ledger; its runs: {', '.join(map(str, runs))}"
            )
    else:
        latest = latest_runs({(s.scheduler, s.job_id, s.node, s.run): s for s in matches})
        matches = list(latest.values())
    if len(matches) > 1:
        nodes = {s.node for s in matches}
        if len({s.key for s in matches}) == 1:
            raise AmbiguousJob(
                f"job {key_or_id!r} is in the ledger under several node names ({', '.join(sorted(nodes))}); "
                "pick one with --node"
            )
        names = ", ".join(sorted(str(s.key) for s in matches))
        raise AmbiguousJob(f"job id {key_or_id!r} is ambiguous ({names}); use scheduler:id")
    return matches[0]


def split_run(key_or_id: str) -> tuple[str, int | None]:
    """`slurm:4242#2` -> ('slurm:4242', 2); an id without `#N` -> (id, None)."""
    text, sep, number = key_or_id.rpartition("#")
    if sep and number.isdigit() and int(number) >= 1 and text:
        return text, int(number)
    return key_or_id, None
