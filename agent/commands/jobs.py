"""`greenai jobs` and `greenai job ID`: the ledger's jobs as a table, a detail view, or JSON.

Exit codes (agent.commands.failures): 0 shown; 1 nothing to show (no ledger file, unreadable
ledger, no such job, Prometheus unreachable); 2 bad input (a --since that is not a date, an id that
names several jobs).

Text from jobs (names, users, ids) is the jobs' owners' to choose: control and format characters are
shown escaped (`\\x1b`), and table cells are cut to their column, so every job stays one line. JSON
keeps the text exactly, escaped as JSON (ASCII only, so no raw control character reaches a terminal).
"""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from agent.carbon.model import CarbonModel
from agent.commands.failures import EXIT_OK
from agent.commands.text import escape
from agent.config.checks import ArgumentError
from agent.ledger.job_carbon import JobCarbon, job_carbon
from agent.ledger.read import JobSummary, iso, open_readonly
from agent.report import prometheus
from agent.units import DAY_SECONDS, HOUR_SECONDS, JOULES_PER_KWH

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
    ("kWh", 5, True),
    ("CPU", 5, True),
    ("DRAM", 5, True),
    ("GPU", 5, True),
    ("GPU-h", 5, True),
    ("EST%", 4, True),
)
LINE_WIDTH = 100
MIN_NAME_WIDTH = 10


def parse_since(text: str) -> float:
    """YYYY-MM-DD or an ISO 8601 date-time (UTC unless it says otherwise) as epoch seconds."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read Z
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ArgumentError(
            f"--since {text!r} is not a date; use YYYY-MM-DD or a time such as 2024-05-01T13:00Z (UTC)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


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
    """The most decimals (up to 3) that fit in `width`; 0 as plain 0, a tiny non-zero as <.001."""
    if value == 0:
        return "0"
    if 0 < value < 0.0005:  # "0.000" would read as nothing at all
        return "<.001"
    for decimals in (3, 2, 1, 0):
        text = f"{value:.{decimals}f}"
        if len(text) <= width:
            return text
    return f"{value:.0e}"


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
    """One header line and one line per job, `width` columns wide at most (NAME absorbs the rest)."""
    fixed = sum(w for _, w, _ in COLUMNS) + len(COLUMNS) - 1
    widths = [w or max(MIN_NAME_WIDTH, width - fixed) for _, w, _ in COLUMNS]
    lines = [_line([h for h, _, _ in COLUMNS], widths)]
    for s in summaries:
        energy = s.by_component()
        kwh = {c: j / JOULES_PER_KWH for c, j in energy.items()}
        est = f"{s.estimated_share * 100:.0f}%" if energy["total"] > 0 else "-"
        values = [
            s.job_id,
            SCHEDULER_SHORT.get(s.scheduler, s.scheduler),
            s.info.user,
            s.info.name,
            _clock(s.start).strftime("%m-%d %H:%M"),
            end_column(s),
            duration(s.duration_seconds),
            number(kwh["total"], 5),
            number(kwh["cpu"], 5),
            number(kwh["dram"], 5),
            number(kwh["gpu"], 5),
            number(s.gpu_seconds / HOUR_SECONDS, 5),
            est,
        ]
        lines.append(_line(values, widths))
    return "\n".join(lines) + "\n"


def _line(values: list[str], widths: list[int]) -> str:
    return " ".join(
        cell(v, w, right) for v, w, (_, _, right) in zip(values, widths, COLUMNS, strict=True)
    ).rstrip()


def detail(s: JobSummary) -> str:
    """`greenai job ID`: every field on its own line, times in ISO 8601 UTC, energy in kWh."""
    energy = s.by_component()
    uid = f" (uid {s.info.uid})" if s.info.uid is not None else ""
    fields = [
        ("job", f"{s.scheduler}:{s.job_id}"),
        ("node", s.node),
        ("user", s.info.user + uid),
        ("name", s.info.name),
        ("account", s.info.account),
        ("partition", s.info.partition),
        ("start", iso(s.start) or ""),
        ("end", iso(s.end) or f"running (last seen {iso(s.last_seen)})"),
        ("duration", f"{duration(s.duration_seconds)} ({s.duration_seconds:.0f} s)"),
        ("energy", f"{energy['total'] / JOULES_PER_KWH:.6f} kWh ({energy['total']:.1f} J)"),
    ]
    for component, joules in energy.items():
        if component != "total":
            note = " (not in the total: it includes cpu and dram)" if component == "platform" else ""
            fields.append((f"  {component}", f"{joules / JOULES_PER_KWH:.6f} kWh{note}"))
    sources = ", ".join(f"{src} {j / JOULES_PER_KWH:.6f} kWh" for src, j in s.by_source().items())
    fields += [
        ("sources", sources or "none"),
        ("estimated", f"{s.estimated_share * 100:.1f}% of the total"),
        ("gpu-hours", f"{s.gpu_seconds / HOUR_SECONDS:.3f}"),
        ("cpu-hours", f"{s.cpu_seconds / HOUR_SECONDS:.3f}"),
    ]
    work = (("project", s.info.project), ("phase", s.info.phase), ("model", s.info.model))
    fields += [(k, v) for k, v in work if v]
    for name, count, unit, label in (
        ("tokens", s.tokens, 1e6, "million"),
        ("samples", s.samples, 1, "sample"),
    ):
        if count is not None:
            per = s.kwh_per(count, unit)
            fields.append((name, f"{count}" + (f" ({per:.6g} kWh per {label})" if per is not None else "")))
    return "".join(f"{k:<11}{escape(v)}\n" for k, v in fields)


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
        out.write(json.dumps([s.as_dict() for s in summaries], indent=2) + "\n")
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
        summary = reader.job(key_or_id, node)
        priced = job_carbon(summary, reader.job_hours(summary), carbon) if carbon is not None else None
    finally:
        reader.close()
    if as_json:
        out.write(json.dumps({**summary.as_dict(), **(priced.as_dict() if priced else {})}, indent=2) + "\n")
    else:
        out.write(detail(summary) + (carbon_detail(priced) if priced else ""))
    return EXIT_OK


def carbon_detail(c: JobCarbon) -> str:
    """`greenai job ID`'s CO2e lines."""
    e = c.emissions
    fields = [
        ("co2e", f"{e.location_g:.6g} g location-based, {e.market_g:.6g} g market-based"),
        ("facility", f"{e.facility_kwh:.6f} kWh (PUE {e.pue:.2f}), CFE {e.cfe_pct:.1f}%"),
        ("intensity", f"{e.intensity_g_per_kwh:.6g} g/kWh from {c.intensity_source}"),
        ("sci", f"{c.sci_g_per_run:.6g} g per run (embodied {c.embodied_g:.6g} g)"),
    ]
    return "".join(f"{k:<11}{escape(v)}\n" for k, v in fields)
