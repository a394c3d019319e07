"""`greenai jobs` and `greenai job ID`: the ledger's jobs as a table, a detail view, or JSON.

Exit codes (agent.commands.failures): 0 shown; 1 nothing to show (no ledger file, unreadable
ledger, no such job, Prometheus unreachable); 2 bad input (a --since that is not a date, an id that
names several jobs).

Text from jobs (names, users, ids) is the jobs' owners' to choose: control and format characters are
shown escaped (`\\x1b`), and table cells are cut to their column, so every job stays one line. JSON
keeps the text exactly, escaped as JSON (ASCII only, so no raw control character reaches a terminal).

Figures are written by agent.units, the one formatter: the table states one energy unit for all its
energy columns (the one that suits its largest figure), the detail view picks a unit per figure
(`50.4 MWh`, `1.56 t`) and gives the range the sources' stated accuracy allows, and says of what
kind the energy is (measured, estimated, imported). JSON keeps raw SI numbers.

A job id used again after its job ended is a new job (a run): the table shows `4242#2` for run 2,
and the detail view says which run it is and how to name the others (`slurm:4242#1`).
"""

from __future__ import annotations

import math
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from agent.carbon.model import CarbonModel
from agent.commands.dates import parse_when
from agent.commands.failures import EXIT_OK
from agent.commands.text import escape
from agent.ledger.job_carbon import JobCarbon, job_carbon
from agent.ledger.provenance import (
    ESTIMATED,
    IMPORT_PREFIX,
    IMPORTED,
    MEASURED,
    METER_NAMES,
    TOOL_NAMES,
    Tally,
    kind_of,
)
from agent.ledger.read import open_readonly
from agent.ledger.summary import JobSummary, find_job, iso
from agent.report import prometheus
from agent.units import (
    DAY_SECONDS,
    ENERGY_UNITS,
    HOUR_SECONDS,
    JOULES_PER_KWH,
    MASS_UNITS,
    energy_text,
    json_text,
    mass_text,
    range_text,
    share_text,
    sig,
    table_unit,
)
from collectors.base import CONTAINS

SCHEDULER_SHORT = {"kubernetes": "k8s"}

# (header, width, right-aligned); NAME takes what the others leave of the line.
COLUMNS = (
    ("JOB", 9, False),
    ("SCHED", 7, False),
    ("USER", 8, False),
    ("NAME", 0, False),
    ("START", 11, False),
    ("END", 8, False),
    ("DUR", 6, True),
    ("kWh", 5, True),  # the unit of this and the next three columns: the table's (table_unit)
    ("CPU", 5, True),
    ("DRAM", 5, True),
    ("GPU", 5, True),
    ("GPU-h", 5, True),
    ("EST%", 4, True),
)
TABLE_COMPONENTS = ("total", "cpu", "dram", "gpu")
REST_WORDS = {
    "module": "a superchip's GPU, CPU and memory together",
    "other": "the wall power beyond the counters",
}
"""The components in a job's total that have no column of their own, in words."""
LINE_WIDTH = 100
MIN_NAME_WIDTH = 10


def parse_since(text: str) -> float:
    """--since: YYYY-MM-DD or an ISO 8601 date-time (UTC unless it says otherwise) as epoch seconds."""
    return parse_when("--since", text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell(text: str, width: int, right: bool = False) -> str:
    """Escaped text cut (with …) or padded to exactly `width` terminal columns."""
    text = escape(text)
    used, kept = 0, []
    total = sum(_char_width(ch) for ch in text)
    limit = width if total <= width else width - 1
    for ch in text:
        w = _char_width(ch)
        if used + w > limit:
            break
        kept.append(ch)
        used += w
    if total > width:
        kept.append("…")
        used += 1
    pad = " " * (width - used)
    return pad + "".join(kept) if right else "".join(kept) + pad


def number(value: float, width: int) -> str:
    """`value` (not negative) in at most `width` characters: 3 significant figures where they fit, fewer
    where not, thousands as k, M, G; 0 as plain 0, and a figure too small to show as <.001, never 0."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return "?"
    for scale, suffix in ((1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G")):
        scaled = value / scale
        if scaled >= 999.5 and suffix != "G":
            continue
        for digits in (3, 2, 1):
            text = sig(scaled, digits).replace(",", "") + suffix
            if len(text) <= width:
                return text
        break
    text = f"{value:.{width - 2}f}"  # below 1: as many decimals as fit
    return text if float(text) > 0 else "<." + "0" * (width - 3) + "1"


def duration(seconds: float) -> str:
    """Compact: 59m59s, 99h59m, 12d03h, 123d."""
    s = int(seconds)
    if s < HOUR_SECONDS:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 100 * HOUR_SECONDS:
        return f"{s // HOUR_SECONDS}h{s % HOUR_SECONDS // 60:02d}m"
    days, hours = s // DAY_SECONDS, s % DAY_SECONDS // HOUR_SECONDS
    return f"{days}d{hours:02d}h" if days < 100 else f"{days}d"


def _clock(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def end_column(s: JobSummary) -> str:
    """running, or the end as HH:MM UTC, with +Nd when it is N days after the start's date."""
    if s.end is None:
        return "running"
    end, start = _clock(s.end), _clock(s.start)
    days = (end.date() - start.date()).days
    return end.strftime("%H:%M") + (f"+{days}d" if days else "")


def table(summaries: list[JobSummary], width: int = LINE_WIDTH) -> str:
    """One header line and one line per job, `width` columns wide at most (NAME absorbs the rest).

    The energy columns share one unit, the one that suits the largest figure, named in the header.
    """
    fixed = sum(w for _, w, _ in COLUMNS) + len(COLUMNS) - 1
    widths = [w or max(MIN_NAME_WIDTH, width - fixed) for _, w, _ in COLUMNS]
    energies = [s.by_component() for s in summaries]
    unit, per = table_unit([e["total"] / JOULES_PER_KWH for e in energies], ENERGY_UNITS)
    headers = [unit if h == "kWh" else h for h, _, _ in COLUMNS]
    lines = [_line(headers, widths)]
    j_per_unit = per * JOULES_PER_KWH
    for s, energy in zip(summaries, energies, strict=True):
        values = [
            job_column(s, widths[0]),
            SCHEDULER_SHORT.get(s.scheduler, s.scheduler),
            s.info.user,
            s.info.name,
            _clock(s.start).strftime("%m-%d %H:%M"),
            end_column(s),
            duration(s.duration_seconds),
            *(number(energy[c] / j_per_unit, 5) for c in TABLE_COMPONENTS),
            number(s.gpu_seconds / HOUR_SECONDS, 5),
            estimated_column(s, energy["total"]),
        ]
        lines.append(_line(values, widths))
    rest = sorted({c for e in energies for c, j in e.items() if c not in TABLE_COMPONENTS and j > 0})
    lines += [
        f"{unit} includes {c}, {REST_WORDS.get(c, 'in no column')}: `greenai job ID` shows it" for c in rest
    ]
    return "\n".join(lines) + "\n"


def job_column(s: JobSummary, width: int) -> str:
    """The job's id, and `#N` for a later run of a reused id, kept whole when a long id is cut."""
    if s.run == 1:
        return s.job_id
    suffix = f"#{s.run}"
    return cell(s.job_id, max(1, width - len(suffix))).rstrip(" ") + suffix


def estimated_column(s: JobSummary, total_j: float) -> str:
    """The share the agent estimated (`10%`); `imp` for energy another tool gave; `-` for none."""
    if total_j <= 0:
        return "-"
    if s.imported or any(kind_of(source) == IMPORTED for source in s.by_source()):
        return "imp"
    return f"{s.estimated_share * 100:.0f}%"


def _line(values: list[str], widths: list[int]) -> str:
    return " ".join(
        cell(v, w, right) for v, w, (_, _, right) in zip(values, widths, COLUMNS, strict=True)
    ).rstrip()


def detail(s: JobSummary, runs: list[int] | None = None) -> str:
    """`greenai job ID`: every field on its own line, times in ISO 8601 UTC, figures in the unit that
    suits each. `runs`: the runs the ledger holds of the job's id on its node (default: this one)."""
    energy = s.by_component()
    provenance = s.provenance()
    runs = sorted(set(runs or []) | {s.run})
    uid = f" (uid {s.info.uid})" if s.info.uid is not None else ""
    fields = [
        ("job", str(s.key) if len(runs) == 1 else f"{s.key}#{s.run}"),
        *([("run", runs_text(s, runs))] if len(runs) > 1 else []),
        ("node", s.node),
        ("user", s.info.user + uid),
        ("name", s.info.name),
        ("account", s.info.account),
        ("partition", s.info.partition),
        ("start", iso(s.start) or ""),
        ("end", iso(s.end) or f"running (last seen {iso(s.last_seen)})"),
        ("duration", f"{duration(s.duration_seconds)} ({s.duration_seconds:.0f} s)"),
        ("energy", energy_range(provenance)),
    ]
    for component, joules in energy.items():
        if component != "total":
            note = f" (not in the total: {CONTAINS[component]})" if component in CONTAINS else ""
            fields.append((f"  {component}", f"{energy_text(joules / JOULES_PER_KWH)}{note}"))
    sources = ", ".join(f"{src} {energy_text(j / JOULES_PER_KWH)}" for src, j in s.by_source().items())
    fields += [("kinds", kinds_line(provenance)), ("sources", sources or "none")]
    if provenance.unquantified > 0 and provenance.quantified:
        fields.append(
            ("accuracy", f"unknown for {energy_text(provenance.unquantified)} "
                         f"({provenance.unquantified_words()}): the range counts it at its value")
        )  # fmt: skip
    fields += [
        ("hardware", hardware_text(s)),
        ("gpu-hours", sig(s.gpu_seconds / HOUR_SECONDS)),
        ("cpu-hours", sig(s.cpu_seconds / HOUR_SECONDS)),
    ]
    work = (("project", s.info.project), ("phase", s.info.phase), ("model", s.info.model))
    fields += [(k, v) for k, v in work if v]
    for name, count, unit, label in (
        ("tokens", s.tokens, 1e6, "million tokens"),
        ("samples", s.samples, 1, "sample"),
    ):
        if count is not None:
            per = s.kwh_per(count, unit)
            fields.append((name, f"{count:,}" + (f" ({energy_text(per)} per {label})" if per else "")))
    return "".join(f"{k:<11}{escape(v)}\n" for k, v in fields)


def runs_text(s: JobSummary, runs: list[int]) -> str:
    """Which run of a reused id `s` is, and how to name the others."""
    others = [f"{s.key}#{r}" for r in runs if r != s.run]
    named = ("the other: " if len(others) == 1 else "the others: ") + ", ".join(others)
    if s.run == max(runs):
        return f"{s.run} of {len(runs)} jobs with this id, the latest (`{s.key}` names it); {named}"
    return f"{s.run} of {len(runs)} jobs with this id; {named} (`{s.key}` names the latest)"


def energy_range(t: Tally) -> str:
    """`50.4 MWh (47.9-52.9 by the sources' stated accuracy)`; no range for no energy, nor for energy
    whose accuracy is all unknown."""
    if t.total > 0 and not t.quantified:
        return f"{energy_text(t.total)} (accuracy unknown)"
    text = range_text(t.total, t.low, t.high, ENERGY_UNITS)
    return text[:-1] + " by the sources' stated accuracy)" if text.endswith(")") else text


def kinds_line(t: Tally) -> str:
    """`measured 88 % (NVML, RAPL), estimated 12 % (the agent's power model)`; each kind's share."""
    total = t.total
    if total <= 0:
        return "no energy recorded"
    parts = []
    for kind in (MEASURED, ESTIMATED, IMPORTED):
        kwh = t.by_kind[kind]
        if kwh <= 0:
            continue
        sources = sorted(src for src, v in t.by_source.items() if v > 0 and kind_of(src) == kind)
        if kind == MEASURED:
            how = ", ".join(METER_NAMES.get(src, src).split(" (")[0] for src in sources)
        elif kind == ESTIMATED:
            how = "the agent's power model, TDP x utilisation"
        else:
            how = "; ".join(imported_how(src, t.methods.get(src, "")) for src in sources)
        parts.append(f"{kind} {share_text(kwh / total, 0)} ({how})")
    return ", ".join(parts)


def imported_how(source: str, method: str) -> str:
    tool = source[len(IMPORT_PREFIX) :]
    return f"from {TOOL_NAMES.get(tool, tool)}, " + (
        f"its method: {method}" if method else "method not stated"
    )


def hardware_text(s: JobSummary) -> str:
    """`8 x NVIDIA H100 80GB HBM3; CPU AMD EPYC 9654 96-Core Processor`, what of it is known."""
    info = s.info
    gpus = info.gpu_model or ("GPU" if info.gpu_count else "")
    if info.gpu_count and gpus:
        gpus = f"{info.gpu_count} x {gpus}"
    parts = [p for p in (gpus, f"CPU {info.cpu_model}" if info.cpu_model else "") if p]
    return "; ".join(parts) or "not recorded"


def run_jobs(
    path: Path, since_text: str | None, user: str | None, running: bool, as_json: bool, out: TextIO
) -> int:
    """`greenai jobs`: writes the table or JSON to `out`; raises ArgumentError or LedgerError."""
    since = parse_since(since_text) if since_text is not None else None
    reader = open_readonly(path)
    try:
        summaries = reader.jobs(since=since, user=user, running=True if running else None)
    finally:
        reader.close()
    _write_jobs(summaries, as_json, out)
    return EXIT_OK


def run_prometheus_jobs(
    url: str, since_text: str | None, user: str | None, running: bool, as_json: bool, out: TextIO
) -> int:
    """`greenai jobs --prometheus URL`: the fleet's jobs, as `run_jobs` shows a ledger's; raises
    ArgumentError or PromError."""
    since = parse_since(since_text) if since_text is not None else None
    summaries = prometheus.read_jobs(prometheus.PromClient(url), prometheus.JobsQuery(since, user, running))
    _write_jobs(summaries, as_json, out)
    return EXIT_OK


def _write_jobs(summaries: list[JobSummary], as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json_text([s.as_dict() for s in summaries], indent=2) + "\n")
    else:
        out.write(table(summaries))


def run_job(
    path: Path,
    key_or_id: str,
    node: str | None,
    as_json: bool,
    out: TextIO,
    carbon: CarbonModel | None = None,
) -> int:
    """`greenai job ID`: writes the job, with its CO2e when `carbon` is given; raises LedgerError
    (JobNotFound, AmbiguousJob...)."""
    reader = open_readonly(path)
    try:
        every = reader.jobs()
        summary = find_job(every, key_or_id, node)
        priced = job_carbon(summary, reader.job_hours(summary), carbon) if carbon is not None else None
    finally:
        reader.close()
    runs = [
        j.run
        for j in every
        if (j.scheduler, j.job_id, j.node) == (summary.scheduler, summary.job_id, summary.node)
    ]
    if as_json:
        others = {"other_runs": [f"{summary.key}#{r}" for r in sorted(runs) if r != summary.run]}
        record = {**summary.as_dict(), **others, **(priced.as_dict() if priced else {})}
        out.write(json_text(record, indent=2) + "\n")
    else:
        out.write(detail(summary, runs) + (carbon_detail(priced) if priced else ""))
    return EXIT_OK


def carbon_detail(c: JobCarbon) -> str:
    """`greenai job ID`'s CO2e lines, the location-based figure with the range of its energy."""
    e = c.emissions
    provenance = c.job.provenance()
    low, high = provenance.scaled(e.location_g) if provenance.quantified else (None, None)
    embodied = f"embodied {mass_text(c.embodied_g)}" if c.embodied_configured else "embodied: not configured"
    fields = [
        ("co2e", f"location-based {range_text(e.location_g, low, high, MASS_UNITS)}, "
                 f"market-based {mass_text(e.market_g)}"),
        ("facility", f"{energy_text(e.facility_kwh)} (PUE {e.pue:.2f}), CFE {share_text(e.cfe_pct / 100)}"),
        ("intensity", f"{sig(e.intensity_g_per_kwh)} gCO2e/kWh from {c.intensity_source}"),
        ("sci", f"{mass_text(c.sci_g_per_run)} CO2e per run, location-based ({embodied})"),
    ]  # fmt: skip
    return "".join(f"{k:<11}{escape(v)}\n" for k, v in fields)
