"""One year of several ledgers, aggregated for the annual report: energy, CO2e, coverage, per job.

The ledgers are read with SQL aggregation and streamed: energy is summed per job x hour in SQLite
(over components and sources), and Python keeps only per-job and per-(pricing, hour) sums. A job is
priced at its node's site, unless the job carries its own location, PUE or intensity (imported
runs), in which case it is priced on its own. Emissions are linear in IT energy within one site and
hour, so each (pricing, hour) is priced once, for 1 kWh (`carbon.hour_emissions`), and every kWh in
it is scaled by that factor: one intensity lookup per node-hour, however many rows it has.

Energy keeps its kind (measured, estimated, imported; agent.ledger.provenance): per (pricing, hour)
as kWh of each kind, and per job, per site label and for the unattributed energy as a `Tally` by
source, which gives the shares and the ranges.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from agent.carbon.data import CodecarbonData, LocationIntensity, Provenance, place_name
from agent.carbon.model import CarbonModel, Site, hour_emissions
from agent.ledger import aggregates
from agent.ledger.provenance import Tally
from agent.ledger.read import LedgerReader, open_readonly
from agent.units import DAY_SECONDS, HOUR_SECONDS, JOULES_PER_KWH

Progress = Callable[[float], None]
"""Called with the share of the work done, 0 to 1."""

_ROWS_PER_TICK = 50_000


@dataclass(slots=True)
class JobTotals:
    """One job (scheduler, job id) over all its nodes in the year: energy in kWh, CO2e in grams."""

    scheduler: str
    job_id: str
    run: int
    user: str
    name: str
    project: str
    phase: str
    model: str
    origin: str
    start: float
    end: float | None
    nodes: set[str] = field(default_factory=set)
    tokens: int | None = None
    samples: int | None = None
    it_kwh: float = 0.0
    facility_kwh: float = 0.0
    location_g: float = 0.0
    market_g: float = 0.0
    cfe_kwh: float = 0.0
    gpu_seconds: float = 0.0
    method: str = ""
    """How an imported run's energy was obtained, as its file says ('' unknown)."""
    uncertainty_pct: float | None = None
    """An imported run's stated accuracy (percent); None unknown."""
    energy: Tally = field(default_factory=Tally)
    """IT kWh by source, with its kinds and range."""

    @property
    def imported(self) -> bool:
        return self.origin != "agent"

    @property
    def label(self) -> str:
        """`slurm:4242`, and `slurm:4242#2` for the second run of a reused id."""
        return f"{self.scheduler}:{self.job_id}" + (f"#{self.run}" if self.run > 1 else "")


@dataclass(frozen=True, slots=True)
class Factor:
    """The figures of 1 IT kWh in one (pricing, hour): facility kWh, grams, CFE kWh."""

    facility: float
    location: float
    market: float
    cfe: float
    hourly: bool
    fallback: bool
    provenance: tuple[Provenance, ...]


@dataclass(frozen=True, slots=True)
class Pricing:
    """How a group of kWh is priced: a site, the label it has in the report, and the node it ran on."""

    site: Site
    label: str
    node: str


@dataclass(slots=True)
class NodeCoverage:
    hours_with_data: int = 0
    first_hour: int | None = None
    last_hour: int | None = None
    wall_hours: int = 0
    """Hours in which the node's wall power was read (a BMC, an ACPI power meter)."""
    wall_kwh: float = 0.0
    wall_sources: set[str] = field(default_factory=set)


@dataclass
class HourlySums:
    """Sums over priced (pricing, hour) figures: total, by month, by site label, heatmap, per source.

    Sums hold it_kwh, facility_kwh, location_g, market_g, cfe_kwh, estimated_kwh, imported_kwh (and,
    in `total`, unattributed_kwh, hourly_kwh, fallback_kwh). The heatmap is month x hour of day (UTC).
    """

    total: dict[str, float] = field(default_factory=dict)
    by_month: dict[int, dict[str, float]] = field(default_factory=dict)
    by_site: dict[str, dict[str, float]] = field(default_factory=dict)
    heat_g: list[list[float]] = field(default_factory=lambda: [[0.0] * 24 for _ in range(12)])
    heat_kwh: list[list[float]] = field(default_factory=lambda: [[0.0] * 24 for _ in range(12)])
    sources: dict[Provenance, float] = field(default_factory=dict)
    """Facility kWh priced with each source (split evenly where an hour has several)."""


@dataclass
class YearData:
    """Everything the report needs from the ledgers for one year."""

    year: int
    jobs: dict[tuple[str, str, int], JobTotals] = field(default_factory=dict)
    """(scheduler, job_id, run) -> the job over all its nodes."""
    hour_kwh: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    """(pricing id, hour) -> [IT kWh, estimated kWh, imported kWh, unattributed kWh], for the ledger
    being read."""
    pricing: dict[str, Pricing] = field(default_factory=dict)
    factors: dict[tuple[str, int], Factor] = field(default_factory=dict)
    """The ledger being read's factors; emptied with hour_kwh once folded into `sums`."""
    sums: HourlySums = field(default_factory=HourlySums)
    coverage: dict[str, NodeCoverage] = field(default_factory=dict)
    site_energy: dict[str, Tally] = field(default_factory=dict)
    """Site label -> IT kWh by source (jobs and unattributed)."""
    site_gpu_seconds: dict[str, float] = field(default_factory=dict)
    """Site label -> the GPU-seconds of the jobs priced there."""
    unattributed: Tally = field(default_factory=Tally)
    """The energy attributed to no job, by source."""
    ledgers: tuple[str, ...] = ()

    @property
    def energy(self) -> Tally:
        """All IT kWh by source: the sites' together."""
        out = Tally()
        for tally in self.site_energy.values():
            out.absorb(tally)
        return out


def year_bounds(year: int) -> tuple[int, int]:
    """Epoch seconds of 1 January 00:00 UTC of `year` and of the next year."""
    return calendar.timegm((year, 1, 1, 0, 0, 0)), calendar.timegm((year + 1, 1, 1, 0, 0, 0))


def month_of(hour: int) -> int:
    return datetime.fromtimestamp(hour, timezone.utc).month


class YearReader:
    """Reads one year out of ledgers into a `YearData`; holds the carbon model and the pricing cache."""

    def __init__(self, model: CarbonModel, data: CodecarbonData | None = None) -> None:
        self.model = model
        self._data = data
        self._resolved: dict[str, LocationIntensity | None] = {}
        self._places: dict[str, str] = {}
        self._interned: dict[Provenance, Provenance] = {}

    def read(self, year: int, paths: Sequence[Path], progress: Progress | None = None) -> YearData:
        """Aggregate `year` of every ledger in `paths`; raises LedgerError (one line) on a bad ledger."""
        out = YearData(year, ledgers=tuple(str(p) for p in paths))
        for index, path in enumerate(paths):
            reader = open_readonly(path)
            try:
                with reader.snapshot():
                    self._read_one(out, index, reader, progress, len(paths))
            finally:
                reader.close()
            # Pricing is linear in kWh, so folding each ledger's hours apart gives the same sums
            # as folding them all at once, and memory stays at one ledger's hours.
            fold(out)
            if progress is not None:
                progress((index + 1) / len(paths))
        return out

    def read_years(self, years: Sequence[int], paths: Sequence[Path], progress: Progress | None = None
                   ) -> list[YearData]:  # fmt: skip
        """`read` each of `years` once, in order; progress spread over them."""
        out = []
        for n, year in enumerate(years):
            tick = None
            if progress is not None:
                tick = _share(progress, n, len(years))
            out.append(self.read(year, paths, tick))
        return out

    def _read_one(
        self, out: YearData, index: int, reader: LedgerReader, progress: Progress | None, count: int
    ) -> None:
        lo, hi = year_bounds(out.year)
        pricing_of: dict[int, str] = {}
        job_of: dict[int, JobTotals] = {}
        for row in aggregates.jobs(reader, lo, hi):
            rid, scheduler, job_id, node = row[:4]
            run = row[17]
            job = out.jobs.get((scheduler, job_id, run))
            if job is None:
                user, name, start, end, project, phase, model, tokens, samples, origin = row[4:14]
                job = JobTotals(scheduler, job_id, run, user, name, project, phase, model, origin, start, end)
                job.tokens, job.samples = tokens, samples
                job.method, job.uncertainty_pct = row[18] or "", row[19]
                out.jobs[(scheduler, job_id, run)] = job
            else:  # the same job on another node (ledger): one task
                job.start = min(job.start, row[6])
                job.end = None if job.end is None or row[7] is None else max(job.end, row[7])
                job.tokens = _add(job.tokens, row[11])
                job.samples = _add(job.samples, row[12])
            job.nodes.add(node)
            job_of[rid] = job
            pricing_of[rid] = self._pricing_id(out, index, rid, node, row[14], row[15], row[16])
        for rid, gpu_seconds in aggregates.gpu_seconds(reader, lo, hi):
            if rid in job_of:
                self.add_gpu_seconds(out, job_of[rid], pricing_of[rid], gpu_seconds or 0.0)
        for n, (rid, hour, joules, est_j, imp_j) in enumerate(aggregates.job_hours(reader, lo, hi), 1):
            self.add_job_hour(out, job_of[rid], pricing_of[rid], hour, joules, est_j, imp_j)
            if progress is not None and n % _ROWS_PER_TICK == 0:
                progress(index / count)
        for rid, source, joules in aggregates.job_sources(reader, lo, hi):
            self.add_source(out, job_of[rid], pricing_of[rid], source, joules)
        for node, hour, joules, est_j, imp_j in aggregates.unattributed_hours(reader, lo, hi):
            self.add_unattributed_hour(out, node, hour, joules, est_j, imp_j)
        for node, source, joules in aggregates.unattributed_sources(reader, lo, hi):
            self.add_source(out, None, self.node_pricing(out, node), source, joules)
        for node, hours, first, last in aggregates.node_coverage(reader, lo, hi):
            cov = out.coverage.setdefault(node, NodeCoverage())
            cov.hours_with_data += hours
            cov.first_hour = first if cov.first_hour is None else min(cov.first_hour, first)
            cov.last_hour = last if cov.last_hour is None else max(cov.last_hour, last)
        for node, source, hours, joules in aggregates.wall_meters(reader, lo, hi):
            cov = out.coverage.setdefault(node, NodeCoverage())
            cov.wall_hours += hours
            cov.wall_kwh += (joules or 0.0) / JOULES_PER_KWH
            cov.wall_sources.add(source)

    def add_job_hour(
        self,
        out: YearData,
        job: JobTotals,
        pid: str,
        hour: int,
        joules: float,
        est_j: float,
        imp_j: float = 0.0,
    ) -> None:
        """Book `joules` (`est_j` of them estimated, `imp_j` imported) of `job` in `hour`, priced by
        pricing `pid`. Their sources are booked apart (`add_source`)."""
        kwh = joules / JOULES_PER_KWH
        f = self._factor(out, pid, hour)
        job.it_kwh += kwh
        job.facility_kwh += kwh * f.facility
        job.location_g += kwh * f.location
        job.market_g += kwh * f.market
        job.cfe_kwh += kwh * f.cfe
        _add_hour(out, pid, hour, (kwh, est_j / JOULES_PER_KWH, imp_j / JOULES_PER_KWH, 0.0))

    def add_unattributed_hour(
        self, out: YearData, node: str, hour: int, joules: float, est_j: float, imp_j: float = 0.0
    ) -> None:
        """Book `joules` of `node` that no job was charged for in `hour`, priced at the node's site."""
        pid = self.node_pricing(out, node)
        self._factor(out, pid, hour)
        kwh = joules / JOULES_PER_KWH
        _add_hour(out, pid, hour, (kwh, est_j / JOULES_PER_KWH, imp_j / JOULES_PER_KWH, kwh))

    def add_source(self, out: YearData, job: JobTotals | None, pid: str, source: str, joules: float) -> None:
        """Book `joules` from `source` (over the year) to `job`, or to the unattributed energy (None),
        and to the site label of pricing `pid`."""
        kwh = joules / JOULES_PER_KWH
        site = out.site_energy.setdefault(out.pricing[pid].label, Tally())
        if job is None:
            out.unattributed.add(source, kwh)
            site.add(source, kwh)
        else:
            job.energy.add(source, kwh, job.uncertainty_pct, job.method)
            site.add(source, kwh, job.uncertainty_pct, job.method)

    def add_gpu_seconds(self, out: YearData, job: JobTotals, pid: str, seconds: float) -> None:
        """Book `seconds` of GPU time to `job` and to its site label."""
        job.gpu_seconds += seconds
        label = out.pricing[pid].label
        out.site_gpu_seconds[label] = out.site_gpu_seconds.get(label, 0.0) + seconds

    def node_pricing(self, out: YearData, node: str) -> str:
        """The pricing id of `node`'s site, registered in `out` on first use."""
        pid = f"node:{node}"
        if pid not in out.pricing:
            site = self.model.site_for(node)
            out.pricing[pid] = Pricing(site, site.name, node)
        return pid

    def _pricing_id(
        self,
        out: YearData,
        index: int,
        rid: int,
        node: str,
        location: str,
        pue: float | None,
        intensity: float | None,
    ) -> str:
        """The node's pricing, or the job's own when it states its location, PUE or intensity."""
        if not location and pue is None and intensity is None:
            return self.node_pricing(out, node)
        base = self.model.site_for(node)
        site = base if pue is None else replace(base, pue=(pue,) * 12)
        label = self._place(location) if location else base.name  # France, not FRA
        if intensity is not None:
            note = "the run's own intensity_g_per_kwh"
            prov = Provenance("job record", "", "annual", location or base.name, note=note)
            site = replace(site, annual=LocationIntensity(intensity, None, prov), hourly=None)
        elif location:
            site = replace(site, annual=self._resolve(location), hourly=None)
        if location or intensity is not None:
            # Another place than the site's, or a figure of its own: the site's contracts do not apply.
            site = replace(site, name=label, cfe_contract_share=0.0, supplier_g_per_kwh=None)
        pid = f"job:{index}:{rid}"
        out.pricing[pid] = Pricing(site, label, node)
        return pid

    def _place(self, location: str) -> str:
        if location not in self._places:
            self._places[location] = place_name(location, self._data)
        return self._places[location]

    def _resolve(self, location: str) -> LocationIntensity:
        if location not in self._resolved:
            if self._data is None:
                self._data = CodecarbonData()
            self._resolved[location] = self._data.resolve(location)
        found = self._resolved[location]
        if found is None:
            assert self._data is not None
            return self._data.world(f"{location} not found")
        return found

    def _factor(self, out: YearData, pid: str, hour: int) -> Factor:
        key = (pid, hour)
        f = out.factors.get(key)
        if f is None:
            e = hour_emissions(out.pricing[pid].site, hour, 1.0)
            fallback = any(p.fallback for p in e.provenance)
            provenance = tuple(self._interned.setdefault(p, p) for p in e.provenance)
            f = Factor(
                e.facility_kwh, e.location_g, e.market_g, e.cfe_kwh, e.hourly_kwh > 0, fallback, provenance
            )
            out.factors[key] = f
        return f


def fold(out: YearData) -> None:
    """Price the pending (pricing, hour) sums into `out.sums`, then forget them."""
    s = out.sums
    month_cache: dict[int, int] = {}
    for (pid, hour), (kwh, est, imp, unattributed) in out.hour_kwh.items():
        f = out.factors[(pid, hour)]
        day = hour - hour % DAY_SECONDS
        month = month_cache.get(day)
        if month is None:
            month = month_cache[day] = month_of(day)
        fac = kwh * f.facility
        figures = (
            ("it_kwh", kwh),
            ("facility_kwh", fac),
            ("location_g", kwh * f.location),
            ("market_g", kwh * f.market),
            ("cfe_kwh", kwh * f.cfe),
            ("estimated_kwh", est),
            ("imported_kwh", imp),
        )
        extra = (
            ("unattributed_kwh", unattributed),
            ("hourly_kwh", fac if f.hourly else 0.0),
            ("fallback_kwh", fac if f.fallback else 0.0),
        )
        for into in (
            s.total,
            s.by_month.setdefault(month, {}),
            s.by_site.setdefault(out.pricing[pid].label, {}),
        ):
            for name, value in figures:
                into[name] = into.get(name, 0.0) + value
        for name, value in extra:
            s.total[name] = s.total.get(name, 0.0) + value
        hod = (hour % DAY_SECONDS) // HOUR_SECONDS
        s.heat_g[month - 1][hod] += kwh * f.location
        s.heat_kwh[month - 1][hod] += fac
        for p in f.provenance:
            s.sources[p] = s.sources.get(p, 0.0) + fac / len(f.provenance)
    out.hour_kwh.clear()
    out.factors.clear()


def _add_hour(out: YearData, pid: str, hour: int, figures: tuple[float, float, float, float]) -> None:
    """Add (IT, estimated, imported, unattributed) kWh to the (pricing, hour) sums."""
    sums = out.hour_kwh.get((pid, hour))
    if sums is None:
        out.hour_kwh[(pid, hour)] = list(figures)
    else:
        for i, value in enumerate(figures):
            sums[i] += value


def _share(progress: Progress, n: int, count: int) -> Progress:
    """Progress of the n-th of `count` equal parts."""
    return lambda done: progress((n + done) / count)


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


def hours_in_year(year: int) -> int:
    lo, hi = year_bounds(year)
    return (hi - lo) // HOUR_SECONDS


def history_years(year: int, baseline_year: int | None) -> list[int]:
    """The years a report reads, each once: the baseline year, the years after it, the reporting year
    last (a baseline year after the reporting year is read first all the same)."""
    if baseline_year is None or baseline_year == year:
        return [year]
    if baseline_year < year:
        return list(range(baseline_year, year + 1))
    return [baseline_year, year]
