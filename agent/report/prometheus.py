"""The fleet view: `greenai report --prometheus URL` and `greenai jobs --prometheus URL`.

Reads the agents' counters back from a Prometheus server's HTTP API (stdlib urllib only), or from
long-term storage with the same query API (VictoriaMetrics, Mimir, Thanos), and builds the same
structures as the ledgers do: `data.YearData` for the report, `JobSummary` rows for `greenai jobs`.

Energy per hour. For every series (summed per job or node over the components in the total), the
last value of each hour is read with `query_range` of `last_over_time(...[1h])` at step 1h, and an
hour's energy is that value minus the previous hour's last value. The differences telescope, so the
sum over a window is exact, whatever the scrape interval, from the counter's start (the agent's
start, or the job's first sighting) to its last scrape: no `increase()` extrapolation. Where a counter
went down (the agent restarted), that hour uses the server's reset-aware `increase(...[1h])` instead.
A series that reappears after a gap continues from its last value before the gap.

The query plan. Five families of series are read, each summed by the labels that name its series:
node energy in the total (by node: coverage, and the estimated share's denominator), its estimated
part (`source="estimate"`), job energy (by job and node), unattributed energy (by node) and wall
meters (`component="node"`, by node and source); `greenai jobs` reads the first two and the jobs
(by component too). A family's hours, from a day before the period (for the previous values) to
its end, are read in consecutive windows, one `query_range` each at step 1h; the last value of each
series is carried from window to window, so the energy is what one query over the period gives.
The first window is 2 days; each next one is sized from the answer before so that an answer holds
about WINDOW_POINTS (250,000) points, at most twice the window before (8 times after an empty
answer) and at most MAX_WINDOW_S (10,000 hours). The next window is asked for while this one is
booked. A window the server refuses (HTTP 422 or 503: too many series or samples, too long) is
halved and asked again, down to one hour. Where a counter went down, one `increase` query per run
of such hours, one step each (the whole window past MAX_RESET_QUERIES runs).

So a year with N nodes running J jobs at a time takes about N x J x 8,784 / 250,000 job windows
and N x 8,784 / 250,000 for each node family, and at least 8 a family (a few nodes: about 40
queries in all). 1,000 nodes with 2 jobs each (1.05 million job series, 16 million job-hours;
benchmarks/fleet_report.py): 65 job windows of about 6 days, 37 of 10 days each for the node
totals and the unattributed energy, 8 and 9 for the estimated part and the wall meters, and 40
one-hour `increase` queries for 20 restarts: about 200 queries, the largest selecting 24,000 series,
far below VictoriaMetrics' default limits (300,000 series a query, 30 s, 30,000 points a series).
Memory stays at two answers (about 70 MB each while parsed) and what a year keeps anyway: each
series' last value, the jobs' totals, and the hours per site (nodes of one site are priced alike,
so one pricing serves them all, and a job's series on several nodes of a site are summed before
they are priced).

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

import bisect
import contextlib
import gc
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.ledger.summary import JobSummary
from agent.report.data import JobTotals, NodeCoverage, YearData, YearReader, fold, year_bounds
from agent.units import HOUR_SECONDS, JOULES_PER_KWH
from collectors.base import NOT_IN_TOTAL
from collectors.workloads import JobInfo

LOOKBACK_S = 86400
"""How far before a window the previous value of each counter is looked for."""
FIRST_WINDOW_S = LOOKBACK_S + 86400
"""The first window of a family: the day looked back over, and the period's first day."""
WINDOW_POINTS = 250_000
"""About how many points one answer holds (a few MB of JSON, about 60 MB while parsed)."""
MAX_WINDOW_S = 10_000 * HOUR_SECONDS
"""Below Prometheus's limit of 11,000 points a series in one answer."""
MAX_RESET_QUERIES = 8
"""Up to this many runs of hours with a restart in a window are asked for one by one, else the window."""
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
JOB_META = ("user", "name", "project", "phase", "model")
"""The labels a job's report entry keeps."""
NODE_BY = ("node", "instance")
Labels = tuple[tuple[str, str], ...]
Series = tuple[dict[str, str], Sequence[Sequence[Any]]]
"""A series of a range query: its labels and its (time, value) points."""


class PromError(Exception):
    """The server cannot be reached, or answered with an error; one line for the user."""


class PromUrlError(PromError):
    """The URL given is not an http(s) URL."""


class PromTooLarge(PromError):
    """The server refused a query as too large for its limits (HTTP 422 or 503); a shorter window may pass."""


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
            kind = PromTooLarge if e.code in (422, 503) else PromError
            raise kind(f"Prometheus at {self.url} answered {e.code}: {_api_error(e)}") from None
        except urllib.error.URLError as e:
            raise PromError(f"cannot reach Prometheus at {self.url}: {e.reason}") from None
        except (OSError, ValueError) as e:
            raise PromError(f"cannot read from Prometheus at {self.url}: {e}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "no error given") if isinstance(body, dict) else "not JSON"
            raise PromError(f"Prometheus at {self.url} refused a query: {error}")
        return body["data"]

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Each series of `expr` over [start, end]: its labels and (time, value) points as the API
        gives them (the value a decimal string: float() reads it)."""
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        return [(r["metric"], r["values"]) for r in data["result"]]

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


Key = str | tuple[str, ...]
"""A series of `sum by (by)`: its by-labels' values joined by NUL, or as a tuple where one holds a NUL."""
Row = tuple[Key, dict[str, str], Sequence[int], list[float]]
"""A series in one window: its key, its labels, and its hours (in time order) and their joules."""


class Hourly:
    """Joules per hour of `sum by (by) (selector)` for the hours in [start, end), read window by window.

    `start` and `end` are whole hours. `windows()` yields, per window in time order, each series with
    a sample in it: its key, its labels and its hours with their joules, 0 J included.
    """

    def __init__(self, client: PromClient, selector: str, by: Sequence[str], start: int, end: int) -> None:
        self.client = client
        self.selector = selector
        self.by = tuple(by)
        self.start, self.end = start, end
        self.previous: dict[Key, float] = {}
        """Each series' last value so far: carried from window to window."""

    def _expr(self, function: str) -> str:
        return f"sum by ({', '.join(self.by)}) ({function}({self.selector}[1h]))"

    def key(self, labels: Mapping[str, str]) -> Key:
        values = tuple(labels.get(name, "") for name in self.by)
        joined = "\0".join(values)
        return joined if joined.count("\0") == len(values) - 1 else values

    def windows(self) -> Iterator[list[Row]]:
        for lo, hi, answer in self.answers():
            yield self.energy(answer, lo, hi)

    def answers(self) -> Iterator[tuple[int, int, list[Series]]]:
        """Each window's hours [lo, hi) and the last value of each of them, per series."""
        # The next window is asked for while this one is booked: the server's work and ours overlap.
        with ThreadPoolExecutor(max_workers=1) as pool:
            t, size = self.start - LOOKBACK_S, FIRST_WINDOW_S
            hi = min(t + size, self.end)
            pending = pool.submit(self._last_values, t, hi)
            while True:
                try:
                    answer = pending.result()
                except PromTooLarge:
                    if hi - t <= HOUR_SECONDS:
                        raise
                    size = max(HOUR_SECONDS, (hi - t) // 2 // HOUR_SECONDS * HOUR_SECONDS)
                    hi = min(t + size, self.end)
                    pending = pool.submit(self._last_values, t, hi)
                    continue
                size = _next_window(size, hi - t, sum(len(p) for _, p in answer))
                lo, t = t, hi
                if t < self.end:
                    hi = min(t + size, self.end)
                    pending = pool.submit(self._last_values, t, hi)
                yield lo, t, answer
                if t >= self.end:
                    return

    def _last_values(self, lo: int, hi: int) -> list[Series]:
        # The value at step t is the last of the hour before t: steps lo + 1h .. hi are the hours [lo, hi).
        return self.client.range(self._expr("last_over_time"), lo + HOUR_SECONDS, hi, HOUR_SECONDS)

    def energy(self, answer: Sequence[Series], lo: int, hi: int) -> list[Row]:
        """The joules of each hour of the window [lo, hi) from `answer`, its hours from `start` on."""
        rows: list[Row] = []
        resets: dict[Key, set[int]] = {}
        for labels, points in answer:
            if not points:
                continue
            key = self.key(labels)
            values = [float(v) for _, v in points]
            first, last = round(points[0][0]) - HOUR_SECONDS, round(points[-1][0]) - HOUR_SECONDS
            hours: Sequence[int] = (
                range(first, last + HOUR_SECONDS, HOUR_SECONDS)  # no gap: the usual case, and cheaper
                if last - first == (len(points) - 1) * HOUR_SECONDS
                else [round(t) - HOUR_SECONDS for t, _ in points]
            )
            before = self.previous.get(key)
            joules = [v - b for b, v in zip((before or 0.0, *values), values, strict=False)]
            self.previous[key] = values[-1]
            if min(joules) < 0:  # a counter went down (the agent restarted)
                for i in range(0 if before is not None else 1, len(joules)):
                    if joules[i] < 0:
                        joules[i] = values[i]  # replaced below by the server's reset-aware increase
                        if hours[i] >= self.start:
                            resets.setdefault(key, set()).add(hours[i])
            skip = bisect.bisect_left(hours, self.start)  # the hours looked back over
            if skip:
                hours, joules = hours[skip:], joules[skip:]
            if hours:
                rows.append((key, labels, hours, joules))
        if resets:
            # Asked for the hours with a restart only (runs of them, or the window where they are many).
            runs = _runs(sorted(set().union(*resets.values())))
            found: dict[Key, dict[int, float]] = {}
            for first, last in runs if len(runs) <= MAX_RESET_QUERIES else [(lo, hi - HOUR_SECONDS)]:
                expr, step = self._expr("increase"), HOUR_SECONDS
                for labels, points in self.client.range(expr, first + step, last + step, step):
                    key = self.key(labels)
                    if key in resets:
                        found.setdefault(key, {}).update((round(t) - step, float(v)) for t, v in points)
            for key, _labels, hours, joules in rows:
                wanted, increase = resets.get(key, ()), found.get(key, {})
                for i, hour in enumerate(hours):
                    if hour in wanted and hour in increase:
                        joules[i] = max(increase[hour], joules[i])
        return rows


def _next_window(size: int, last: int, points: int) -> int:
    """The next window, in whole hours: about WINDOW_POINTS points at the last answer's rate, at most
    twice the last (8 times after an empty one: the first window's day looked back over may be sparse)."""
    limit = (2 if points else 8) * max(size, last)
    grown = min(limit, int(WINDOW_POINTS * last / points)) if points else limit
    return max(HOUR_SECONDS, min(grown, MAX_WINDOW_S) // HOUR_SECONDS * HOUR_SECONDS)


def _runs(hours: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted hours as runs of consecutive hours: (first, last)."""
    runs: list[tuple[int, int]] = []
    for hour in hours:
        if runs and hour == runs[-1][1] + HOUR_SECONDS:
            runs[-1] = (runs[-1][0], hour)
        else:
            runs.append((hour, hour))
    return runs


def hourly(
    client: PromClient, selector: str, by: Sequence[str], start: int, end: int
) -> dict[Labels, dict[int, float]]:
    """Joules per hour of `sum by (by) (selector)` for the hours in [start, end), per label set.

    `start` and `end` are whole hours. An hour is in a series' dict when the server has a sample of
    it in that hour, even where the energy is 0.
    """
    out: dict[Labels, dict[int, float]] = {}
    for window in Hourly(client, selector, by, start, end).windows():
        for _key, labels, hours, joules in window:
            out.setdefault(tuple(sorted(labels.items())), {}).update(zip(hours, joules, strict=True))
    return out


METERS = "meters"
"""The source of the measured energy read from Prometheus: which meter is not exported per job."""


def _window(lo: float, hi: float, now: float) -> tuple[int, int]:
    """Whole hours from the hour of `lo` to the end of the hour of min(hi, now)."""
    start = int(lo // HOUR_SECONDS * HOUR_SECONDS)
    end = int(math.ceil(min(hi, now) / HOUR_SECONDS) * HOUR_SECONDS)
    return start, max(end, start)


class Shares:
    """(node, hour) -> the share of the node's energy in the total that was estimated, 0 where none
    was: an array of the period's hours (index (hour - start) / 3600) for each node with some."""

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.hours = (end - start) // HOUR_SECONDS
        self.by_node: dict[str, array[float]] = {}

    def estimated(self, node: str, hours: Sequence[int], joules: list[float]) -> list[float] | None:
        """The estimated part of each hour's joules of a series of `node`; None where none is."""
        shares = self.by_node.get(node)
        if shares is None:
            return None
        start = self.start
        return [j * shares[(h - start) // HOUR_SECONDS] for h, j in zip(hours, joules, strict=True)]


def _estimated_shares(
    client: PromClient, start: int, end: int, coverage: dict[str, NodeCoverage] | None = None
) -> Shares:
    """The estimated share of each node's energy per hour; with `coverage`, the nodes' hours with data."""
    out = Shares(start, end)
    estimated: dict[str, array[float]] = {}
    selector = f'{NODE_ENERGY}{{{IN_TOTAL},source="estimate"}}'
    for window in Hourly(client, selector, NODE_BY, start, end).windows():
        for _key, labels, hours, joules in window:
            node = node_of(labels)
            if node in estimated or max(joules) > 0:
                est = estimated.setdefault(node, array("d", bytes(8 * out.hours)))
                for hour, j in zip(hours, joules, strict=True):
                    est[(hour - start) // HOUR_SECONDS] = j
    total = Hourly(client, f"{NODE_ENERGY}{{{IN_TOTAL}}}", NODE_BY, start, end)
    for lo, hi, answer in total.answers():
        if coverage is not None:
            _cover(coverage, answer, start)
        # Only the nodes with estimated energy need the total's hours.
        wanted = [(labels, points) for labels, points in answer if node_of(labels) in estimated]
        for _key, labels, hours, joules in total.energy(wanted, lo, hi):
            node = node_of(labels)
            est = estimated[node]
            shares = out.by_node.setdefault(node, array("d", bytes(8 * out.hours)))
            for hour, j in zip(hours, joules, strict=True):
                i = (hour - start) // HOUR_SECONDS
                shares[i] = min(1.0, est[i] / j) if j > 0 else 0.0
    return out


def _cover(coverage: dict[str, NodeCoverage], answer: Sequence[Series], start: int) -> None:
    """Count each node's hours with data from `start` on: the hours of its series in `answer`."""
    for labels, points in answer:
        skip = 0
        while skip < len(points) and round(points[skip][0]) - HOUR_SECONDS < start:
            skip += 1  # hours looked back over
        if skip == len(points):
            continue
        first, last = round(points[skip][0]) - HOUR_SECONDS, round(points[-1][0]) - HOUR_SECONDS
        cov = coverage.setdefault(sys.intern(node_of(labels)), NodeCoverage())
        cov.hours_with_data += len(points) - skip
        cov.first_hour = first if cov.first_hour is None else min(cov.first_hour, first)
        cov.last_hour = last if cov.last_hour is None else max(cov.last_hour, last)


class SitePricing:
    """The pricing id of each node: one per site, its first node's. A site prices every node's hour
    alike, so its hours are summed and priced once, not once per node (1,000 nodes: 8.8 million
    factors a year)."""

    def __init__(self, reader: YearReader, out: YearData) -> None:
        self.reader, self.out = reader, out
        self._by_site: dict[int, tuple[str, str]] = {}
        self._by_node: dict[str, tuple[str, str]] = {}

    def of(self, node: str) -> tuple[str, str]:
        """(pricing id, the node it was registered for) for `node`."""
        found = self._by_node.get(node)
        if found is None:
            site = self.reader.model.site_for(node)
            found = self._by_site.get(id(site))
            if found is None:
                found = self._by_site[id(site)] = (self.reader.node_pricing(self.out, node), node)
            self._by_node[node] = found
        return found


@contextlib.contextmanager
def _acyclic() -> Iterator[None]:
    """The cyclic garbage collector paused: a year's answers and totals are millions of objects in no
    cycle, which it would otherwise walk again and again (two thirds of the time) to free nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_year(
    client: PromClient, reader: YearReader, year: int, now: Callable[[], float] = time.time
) -> YearData:
    """`year` of the fleet's counters as the report's YearData (see the module for what it lacks)."""
    lo, hi = year_bounds(year)
    start, end = _window(lo, hi, now())
    out = YearData(year, ledgers=(f"prometheus {client.url}",))
    if end > start:
        with _acyclic():
            _read_year(client, reader, out, start, end)
    return out


def _read_year(client: PromClient, reader: YearReader, out: YearData, start: int, end: int) -> None:
    shares = _estimated_shares(client, start, end, out.coverage)
    pricing = SitePricing(reader, out)
    _book_jobs(client, reader, out, shares, pricing, start, end)
    _book_unattributed(client, reader, out, shares, pricing, start, end)
    walls = Hourly(client, f'{NODE_ENERGY}{{component="node"}}', (*NODE_BY, "source"), start, end)
    for window in walls.windows():
        for _key, labels, hours, joules in window:
            cov = out.coverage.setdefault(sys.intern(node_of(labels)), NodeCoverage())
            cov.wall_hours += len(hours)
            cov.wall_kwh += sum(joules) / JOULES_PER_KWH
            cov.wall_sources.add(labels.get("source", ""))
    fold(out)


def _book_jobs(
    client: PromClient,
    reader: YearReader,
    out: YearData,
    shares: Shares,
    pricing: SitePricing,
    start: int,
    end: int,
) -> None:
    """Book the jobs with energy in [start, end): their hours, start and end, nodes and sources."""
    by = ("job_id", "scheduler", *NODE_BY, *META)
    jobs = Hourly(client, f"{JOB_ENERGY}{{{IN_TOTAL}}}", by, start, end)
    # The series with energy so far: all their hours count for their job's start and end. The others:
    # their first hour, where their job starts if energy comes.
    booked: set[Key] = set()
    first_seen: dict[Key, int] = {}
    add = reader.add_job_hour
    for window in jobs.windows():
        # A job's series on nodes of one site are summed hour by hour and booked once: one price.
        parts: dict[tuple[str, str, str], list[Part]] = {}
        for key, labels, hours, joules in window:
            first = hours[0]
            if key not in booked:
                first = min(first_seen.pop(key, first), first)
                if max(joules) <= 0:
                    first_seen[key] = first
                    continue  # as in the ledgers' report: the jobs with energy in the year
                booked.add(key)
            job = _job(out, labels, first, hours[-1])
            node = sys.intern(node_of(labels))
            job.nodes.add(node)
            pid, _ = pricing.of(node)
            part = (job, hours, joules, shares.estimated(node, hours, joules))
            parts.setdefault((job.scheduler, job.job_id, pid), []).append(part)
        for (_scheduler, _job_id, pid), of_job in parts.items():
            job, hours, joules, estimated = of_job[0] if len(of_job) == 1 else _summed(of_job)
            if estimated is None:
                for hour, j in zip(hours, joules, strict=True):
                    if j > 0:
                        add(out, job, pid, hour, j, 0.0)
                _add_sources(reader, out, job, pid, 0.0, sum(j for j in joules if j > 0))
                continue
            for hour, j, est in zip(hours, joules, estimated, strict=True):
                if j > 0:
                    add(out, job, pid, hour, j, est)
            est_j = sum(e for j, e in zip(joules, estimated, strict=True) if j > 0)
            _add_sources(reader, out, job, pid, est_j, sum(j for j in joules if j > 0) - est_j)


Part = tuple[JobTotals, Sequence[int], list[float], list[float] | None]
"""A job's series in a window: the job, the hours, their joules and their estimated part (None: 0)."""


def _summed(parts: list[Part]) -> Part:
    """The series of one job summed hour by hour (the hours with energy)."""
    joules: dict[int, float] = {}
    estimated: dict[int, float] = {}
    for _job, hours, part_j, part_est in parts:
        for hour, j in zip(hours, part_j, strict=True):
            if j > 0:
                joules[hour] = joules.get(hour, 0.0) + j
        if part_est is not None:
            for hour, j, est in zip(hours, part_j, part_est, strict=True):
                if j > 0:
                    estimated[hour] = estimated.get(hour, 0.0) + est
    hours = sorted(joules)
    est_list = [estimated.get(hour, 0.0) for hour in hours] if estimated else None
    return parts[0][0], hours, [joules[hour] for hour in hours], est_list


def _book_unattributed(
    client: PromClient,
    reader: YearReader,
    out: YearData,
    shares: Shares,
    pricing: SitePricing,
    start: int,
    end: int,
) -> None:
    """Book the energy no job was charged for, summed per site and hour (one pricing serves them)."""
    unattributed = Hourly(client, f"{UNATTRIBUTED}{{{IN_TOTAL}}}", NODE_BY, start, end)
    for lo, hi, answer in unattributed.answers():
        # Per site, the window's joules and their estimated part by hour index from lo.
        sums: dict[str, tuple[array[float], array[float]]] = {}
        for _key, labels, hours, joules in unattributed.energy(answer, lo, hi):
            node = node_of(labels)
            pid, priced_as = pricing.of(node)
            if priced_as not in sums:
                zeros = bytes(8 * ((hi - lo) // HOUR_SECONDS))
                sums[priced_as] = (array("d", zeros), array("d", zeros))
            site_j, site_est = sums[priced_as]
            index = [(hour - lo) // HOUR_SECONDS for hour in hours]
            for i, j in zip(index, joules, strict=True):
                if j > 0:
                    site_j[i] += j
            estimated = shares.estimated(node, hours, joules)
            est_j = 0.0
            if estimated is not None:
                for i, j, est in zip(index, joules, estimated, strict=True):
                    if j > 0:
                        site_est[i] += est
                        est_j += est
            _add_sources(reader, out, None, pid, est_j, sum(j for j in joules if j > 0) - est_j)
        for priced_as, (site_j, site_est) in sums.items():
            for i, j in enumerate(site_j):
                if j > 0:
                    # Booked under the node the site's pricing was registered for: same site, same price.
                    reader.add_unattributed_hour(out, priced_as, lo + i * HOUR_SECONDS, j, site_est[i])


def _job(out: YearData, labels: Mapping[str, str], first: int, last: int) -> JobTotals:
    """The job of a series (metrics do not tell runs of a reused id apart), its start and end widened
    to the series' hours [first, last]."""
    scheduler, job_id = sys.intern(labels.get("scheduler", "")), labels.get("job_id", "")
    job = out.jobs.get((scheduler, job_id, 1))
    if job is None:
        user, name, project, phase, model = (sys.intern(labels.get(m, "")) for m in JOB_META)
        job = JobTotals(
            scheduler, job_id, 1, user, name, project, phase, model, "agent", first, last + HOUR_SECONDS
        )
        out.jobs[(scheduler, job_id, 1)] = job
    job.start = min(job.start, first)
    job.end = max(job.end or 0, last + HOUR_SECONDS)
    return job


def _add_sources(
    reader: YearReader, out: YearData, job: JobTotals | None, pid: str, est_j: float, meters_j: float
) -> None:
    """Book joules by kind: jobs have no source label, so the meters are not named."""
    if est_j > 0:
        reader.add_source(out, job, pid, "estimate", est_j)
    if meters_j > 0:
        reader.add_source(out, job, pid, METERS, meters_j)


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
    with _acyclic():
        shares = _estimated_shares(client, start, end)
        per_job = _job_energy(client, shares, start, end)
    live = {
        (labels.get("scheduler", ""), labels.get("job_id", ""), node_of(labels))
        for labels, _ in client.instant(
            f"count by (job_id, scheduler, {', '.join(NODE_BY)}) ({JOB_ENERGY})", t
        )
    }
    out = []
    for (scheduler, job_id, node), job in per_job.items():
        labels = job["labels"]
        info = JobInfo(**{m: labels.get(m, "") for m in META})
        running = (scheduler, job_id, node) in live
        last_seen = min(t, job["last"] + HOUR_SECONDS)
        summary = JobSummary(
            scheduler,
            job_id,
            node,
            info,
            float(job["first"]),
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


def _job_energy(
    client: PromClient, shares: Shares, start: int, end: int
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(scheduler, job id, node) -> the labels of its first series, its energy by (component, source)
    and its first and last hours, for the jobs with a sample in [start, end)."""
    by = ("job_id", "scheduler", "component", *NODE_BY, *META)
    per_job: dict[tuple[str, str, str], dict[str, Any]] = {}
    for window in Hourly(client, JOB_ENERGY, by, start, end).windows():
        for _key, labels, hours, joules in window:
            node = node_of(labels)
            ident = (labels.get("scheduler", ""), labels.get("job_id", ""), node)
            job = per_job.setdefault(ident, {"labels": labels, "energy": {}, "first": hours[0], "last": 0})
            job["first"] = min(job["first"], hours[0])
            job["last"] = max(job["last"], hours[-1])
            component = labels.get("component", "")
            estimated = shares.estimated(node, hours, joules) if component not in NOT_IN_TOTAL else None
            energy = job["energy"]
            for i, j in enumerate(joules):
                est = estimated[i] if estimated else 0.0
                for source, part in (("estimate", est), ("measured", j - est)):
                    if part:
                        energy[(component, source)] = energy.get((component, source), 0.0) + part
    return per_job
