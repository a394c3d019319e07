"""The fleet view: `greenai report --prometheus URL` and `greenai jobs --prometheus URL`.

Reads the agents' counters back from a Prometheus server's HTTP API (stdlib urllib only) and builds
the same structures as the ledgers do: `data.YearData` for the report, `JobSummary` rows for
`greenai jobs`.

Energy per hour. For every series (summed per job or node over the components in the total), the
last value of each hour is read with one `query_range` of `last_over_time(...[1h])` at step 1h, and
an hour's energy is that value minus the previous hour's last value. The differences telescope, so
the sum over a window is exact, whatever the scrape interval, from the counter's start (the agent's
start, or the job's first sighting) to its last scrape: no `increase()` extrapolation. Where a counter
went down (the agent restarted), that hour uses Prometheus's reset-aware `increase(...[1h])` instead.
A series that reappears after a gap continues from its last value before the gap.

Nodes are told apart by the `node` label where the scrape config sets one, else by `instance`
(relabel `instance` to the node's name: docs/deploy.md), so the names match the ledgers'.

What a report from Prometheus lacks, next to one from the ledgers:
- job metadata beyond the labels exported (`jobs.labels`: user, name, project, phase, model...);
  without them the jobs are reported under an empty user, name, project and phase;
- tokens and samples (`greenai annotate` writes them in the ledger only), so no kWh per token;
- GPU-hours (not exported), and job start and end to the hour only;
- the estimated share of a job is its node's estimated share of that hour (jobs have no source label);
- imported runs (they live in ledgers only), and the energy of jobs that never had a series of their
  own (beyond `max_job_series`), which Prometheus only has as `greenai_jobs_unexported_...`;
- whatever the server no longer holds (retention): point it at long-term storage for a whole year.
CO2e is priced from the energy with the carbon section of the config, as for ledgers, not read from
the exported `..._co2_grams_total` counters, so both sources give the same figures for the same kWh.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.ledger.summary import JobSummary
from agent.report.data import JobTotals, NodeCoverage, YearData, YearReader, fold, year_bounds
from agent.units import HOUR_SECONDS, JOULES_PER_KWH
from collectors.base import NOT_IN_TOTAL
from collectors.workloads import JobInfo

LOOKBACK_S = 86400
"""How far before a window the previous value of each counter is looked for."""
JOBS_DEFAULT_DAYS = 31
"""`greenai jobs --prometheus` without --since: the jobs of the last 31 days."""
JOB_ENERGY = "greenai_job_energy_joules_total"
NODE_ENERGY = "greenai_node_energy_joules_total"
UNATTRIBUTED = "greenai_node_unattributed_energy_joules_total"
IN_TOTAL = f'component!~"{"|".join(sorted(NOT_IN_TOTAL))}"'
"""Meters that contain other components (psys, the wall, Grace's sensors): left out of totals, as in
the ledgers."""
META = ("user", "name", "account", "partition", "project", "phase", "model")
"""Job labels read where `jobs.labels` exports them."""
NODE_BY = ("node", "instance")
Labels = tuple[tuple[str, str], ...]


class PromError(Exception):
    """The server cannot be reached, or answered with an error; one line for the user."""


class PromUrlError(PromError):
    """The URL given is not an http(s) URL."""


class PromClient:
    """A Prometheus HTTP API client: instant and range queries, each answered or a PromError."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PromUrlError(f"--prometheus {url!r} is not a URL; give http://HOST:9090")
        self.url = url.strip().rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise PromError(f"Prometheus at {self.url} answered {e.code}: {_api_error(e)}") from None
        except urllib.error.URLError as e:
            raise PromError(f"cannot reach Prometheus at {self.url}: {e.reason}") from None
        except (OSError, ValueError) as e:
            raise PromError(f"cannot read from Prometheus at {self.url}: {e}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "no error given") if isinstance(body, dict) else "not JSON"
            raise PromError(f"Prometheus at {self.url} refused a query: {error}")
        return body["data"]

    def range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """Each series of `expr` over [start, end]: its labels and (time, value) points."""
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        return [(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def instant(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        return [(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]


def _api_error(e: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(e.read()).get("error", e.reason))
    except (OSError, ValueError, AttributeError):
        return str(e.reason)


def node_of(labels: Mapping[str, str]) -> str:
    """The node a series belongs to: its `node` label, else its `instance`."""
    return labels.get("node") or labels.get("instance") or "unknown"


def hourly(
    client: PromClient, selector: str, by: Sequence[str], start: int, end: int
) -> dict[Labels, dict[int, float]]:
    """Joules per hour of `sum by (by) (selector)` for the hours in [start, end), per label set.

    `start` and `end` are whole hours. An hour is in a series' dict when Prometheus has a sample of
    it in that hour, even where the energy is 0.
    """
    group = ", ".join(by)
    first = start - LOOKBACK_S
    last_values = client.range(
        f"sum by ({group}) (last_over_time({selector}[1h]))", first + HOUR_SECONDS, end, HOUR_SECONDS
    )
    out: dict[Labels, dict[int, float]] = {}
    reset_hours: dict[Labels, list[int]] = {}
    for labels, points in last_values:
        key = tuple(sorted(labels.items()))
        hours = out.setdefault(key, {})
        previous: float | None = None
        for t, value in points:
            hour = round(t) - HOUR_SECONDS  # the value at t is the last of the hour before t
            if previous is not None and value < previous:
                reset_hours.setdefault(key, []).append(hour)
                joules = value  # replaced below by Prometheus's reset-aware increase
            else:
                joules = value - (previous or 0.0)
            previous = value
            if hour >= start:
                hours[hour] = joules
    if reset_hours:
        increases = client.range(
            f"sum by ({group}) (increase({selector}[1h]))", first + HOUR_SECONDS, end, HOUR_SECONDS
        )
        for labels, points in increases:
            key = tuple(sorted(labels.items()))
            wanted = set(reset_hours.get(key, ()))
            for t, value in points:
                hour = round(t) - HOUR_SECONDS
                if hour in wanted and hour >= start:
                    out[key][hour] = max(value, out[key].get(hour, 0.0))
    return {k: v for k, v in out.items() if v}


METERS = "meters"
"""The source of the measured energy read from Prometheus: which meter is not exported per job."""


def _window(lo: float, hi: float, now: float) -> tuple[int, int]:
    """Whole hours from the hour of `lo` to the end of the hour of min(hi, now)."""
    start = int(lo // HOUR_SECONDS * HOUR_SECONDS)
    end = int(math.ceil(min(hi, now) / HOUR_SECONDS) * HOUR_SECONDS)
    return start, max(end, start)


def _estimated_shares(client: PromClient, start: int, end: int) -> dict[tuple[str, int], float]:
    """(node, hour) -> the share of the node's energy in the total that was estimated."""
    total = hourly(client, f"{NODE_ENERGY}{{{IN_TOTAL}}}", NODE_BY, start, end)
    estimated = hourly(client, f'{NODE_ENERGY}{{{IN_TOTAL},source="estimate"}}', NODE_BY, start, end)
    est = {(node_of(dict(k)), h): j for k, hours in estimated.items() for h, j in hours.items()}
    out = {}
    for key, hours in total.items():
        node = node_of(dict(key))
        for hour, joules in hours.items():
            out[(node, hour)] = min(1.0, est.get((node, hour), 0.0) / joules) if joules > 0 else 0.0
    return out


def read_year(
    client: PromClient, reader: YearReader, year: int, now: Callable[[], float] = time.time
) -> YearData:
    """`year` of the fleet's counters as the report's YearData (see the module for what it lacks)."""
    lo, hi = year_bounds(year)
    start, end = _window(lo, hi, now())
    out = YearData(year, ledgers=(f"prometheus {client.url}",))
    if end <= start:
        return out
    node_total = hourly(client, f"{NODE_ENERGY}{{{IN_TOTAL}}}", NODE_BY, start, end)
    shares = _estimated_shares(client, start, end)
    by = ("job_id", "scheduler", *NODE_BY, *META)
    for key, hours in sorted(hourly(client, f"{JOB_ENERGY}{{{IN_TOTAL}}}", by, start, end).items()):
        if not any(joules > 0 for joules in hours.values()):
            continue  # as in the ledgers' report: the jobs with energy in the year
        labels = dict(key)
        node = node_of(labels)
        scheduler, job_id = labels.get("scheduler", ""), labels.get("job_id", "")
        first, last = min(hours), max(hours)
        job = out.jobs.get((scheduler, job_id, 1))  # metrics do not tell runs of a reused id apart
        if job is None:
            job = JobTotals(
                scheduler,
                job_id,
                1,
                user=labels.get("user", ""),
                name=labels.get("name", ""),
                project=labels.get("project", ""),
                phase=labels.get("phase", ""),
                model=labels.get("model", ""),
                origin="agent",
                start=first,
                end=last + HOUR_SECONDS,
            )
            out.jobs[(scheduler, job_id, 1)] = job
        job.start = min(job.start, first)
        job.end = max(job.end or 0, last + HOUR_SECONDS)
        job.nodes.add(node)
        pid = reader.node_pricing(out, node)
        for hour, joules in sorted(hours.items()):
            if joules > 0:
                est = joules * shares.get((node, hour), 0.0)
                reader.add_job_hour(out, job, pid, hour, joules, est)
                _add_sources(reader, out, job, pid, joules, est)
    for key, hours in hourly(client, f"{UNATTRIBUTED}{{{IN_TOTAL}}}", NODE_BY, start, end).items():
        node = node_of(dict(key))
        for hour, joules in sorted(hours.items()):
            if joules > 0:
                est = joules * shares.get((node, hour), 0.0)
                reader.add_unattributed_hour(out, node, hour, joules, est)
                _add_sources(reader, out, None, reader.node_pricing(out, node), joules, est)
    for key, hours in node_total.items():
        cov = out.coverage.setdefault(node_of(dict(key)), NodeCoverage())
        cov.hours_with_data += len(hours)
        cov.first_hour = min(hours) if cov.first_hour is None else min(cov.first_hour, min(hours))
        cov.last_hour = max(hours) if cov.last_hour is None else max(cov.last_hour, max(hours))
    for key, hours in hourly(
        client, f'{NODE_ENERGY}{{component="node"}}', (*NODE_BY, "source"), start, end
    ).items():
        labels = dict(key)
        cov = out.coverage.setdefault(node_of(labels), NodeCoverage())
        cov.wall_hours += len(hours)
        cov.wall_kwh += sum(hours.values()) / JOULES_PER_KWH
        cov.wall_sources.add(labels.get("source", ""))
    fold(out)
    return out


def _add_sources(
    reader: YearReader, out: YearData, job: JobTotals | None, pid: str, joules: float, est: float
) -> None:
    """Book an hour's joules by kind: jobs have no source label, so the meters are not named."""
    if est > 0:
        reader.add_source(out, job, pid, "estimate", est)
    if joules - est > 0:
        reader.add_source(out, job, pid, METERS, joules - est)


@dataclass(frozen=True)
class JobsQuery:
    since: float | None
    user: str | None
    running: bool


def read_jobs(client: PromClient, query: JobsQuery, now: Callable[[], float] = time.time) -> list[JobSummary]:
    """One JobSummary per job and node with energy since `query.since` (default: 31 days)."""
    t = now()
    lo = query.since if query.since is not None else t - JOBS_DEFAULT_DAYS * 86400
    start, end = _window(lo, t, t)
    if end <= start:
        return []
    shares = _estimated_shares(client, start, end)
    by = ("job_id", "scheduler", "component", *NODE_BY, *META)
    per_job: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, hours in hourly(client, JOB_ENERGY, by, start, end).items():
        labels = dict(key)
        node = node_of(labels)
        ident = (labels.get("scheduler", ""), labels.get("job_id", ""), node)
        job = per_job.setdefault(ident, {"labels": labels, "energy": {}, "hours": set()})
        component = labels.get("component", "")
        for hour, joules in hours.items():
            job["hours"].add(hour)
            est = joules * shares.get((node, hour), 0.0) if component not in NOT_IN_TOTAL else 0.0
            for source, j in (("estimate", est), ("measured", joules - est)):
                if j:
                    energy = job["energy"]
                    energy[(component, source)] = energy.get((component, source), 0.0) + j
    live = {
        (labels.get("scheduler", ""), labels.get("job_id", ""), node_of(labels))
        for labels, _ in client.instant(
            f"count by (job_id, scheduler, {', '.join(NODE_BY)}) ({JOB_ENERGY})", t
        )
    }
    out = []
    for (scheduler, job_id, node), job in per_job.items():
        labels, hours = job["labels"], job["hours"]
        info = JobInfo(**{m: labels.get(m, "") for m in META})
        running = (scheduler, job_id, node) in live
        last_seen = min(t, max(hours) + HOUR_SECONDS)
        summary = JobSummary(
            scheduler,
            job_id,
            node,
            info,
            float(min(hours)),
            None if running else last_seen,
            last_seen,
            job["energy"],
        )
        if query.user is not None and info.user != query.user:
            continue
        if query.running and not running:
            continue
        out.append(summary)
    out.sort(key=lambda s: (s.start, s.scheduler, s.job_id, s.node))
    return out
