"""The `greenai` command line: parse the arguments, load the config, run one command.

With agent.daemon, the root of the package: the only place that wires layers together. Every
command's expected failures end here, as one `greenai: ...` line and the exit code that
agent.commands.failures gives them.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__, daemon
from agent.carbon.datafiles import CarbonDataError
from agent.carbon.model import CarbonModel
from agent.commands import annotate, card, dashboards, doctor, failures, import_runs, jobs, report
from agent.commands import ledger as ledger_command
from agent.commands import run as run_command
from agent.config import settings
from agent.report.annual import parse_formats
from agent.report.prometheus import JOBS_DEFAULT_DAYS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenai", description="Measure and report the energy of AI work.")
    parser.add_argument("--version", action="version", version=f"greenai {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    host = argparse.ArgumentParser(add_help=False)
    host.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    host.add_argument("--node-name", help="name of this node in metrics and the ledger")
    host.add_argument("--sysfs", help="root of the host's sysfs (default /sys)")
    host.add_argument("--procfs", help="root of the host's procfs (default /proc)")
    host.add_argument("--cgroupfs", help="root of the host's cgroup filesystem (default /sys/fs/cgroup)")

    agent = sub.add_parser("agent", parents=[host], help="run the measuring daemon")
    agent.add_argument("--listen", help=f"host:port to serve /metrics on (default {settings.DEFAULT_LISTEN})")
    agent.add_argument("--interval", type=float, metavar="SECONDS", help="sampling interval (default 1)")
    agent.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    doc = sub.add_parser(
        "doctor",
        parents=[host],
        help="say which energy sources work here and why not, and how the carbon section prices them",
        epilog="exit codes: 0 ok, 1 no energy source works or a carbon site does not resolve, 2 bad config",
    )
    doc.add_argument("--json", action="store_true", help="print the report as JSON")

    ledger = argparse.ArgumentParser(add_help=False)
    ledger.add_argument("--config", type=Path, help="YAML config file whose ledger.path to read")
    ledger.add_argument("--ledger", type=Path, metavar="PATH", help="ledger file (default: ledger.path)")
    ledger.add_argument("--json", action="store_true", help="print JSON")
    codes = "exit codes: 0 ok, 1 no ledger or no such job, 2 bad input"
    jobs = sub.add_parser(
        "jobs", parents=[ledger], help="list the jobs in the ledger and their energy", epilog=codes
    )
    jobs.add_argument("--running", action="store_true", help="only the jobs still running")
    jobs.add_argument(
        "--since", metavar="DATE", help="jobs running at or after DATE (YYYY-MM-DD or ISO, UTC)"
    )
    jobs.add_argument("--user", metavar="USER", help="only USER's jobs")
    jobs.add_argument(
        "--prometheus",
        metavar="URL",
        help=f"read the fleet's jobs from this Prometheus server instead of a ledger (--since default: "
        f"{JOBS_DEFAULT_DAYS} days; docs/deploy.md)",
    )
    job = sub.add_parser("job", parents=[ledger], help="one job's energy", epilog=codes)
    job.add_argument(
        "id",
        metavar="ID",
        help="job id (4242), or scheduler:id (slurm:4242) where ids repeat; an id used again after its job "
        "ended names the latest job, slurm:4242#1 the first",
    )
    job.add_argument("--node", help="the node name, where the ledger has the job under several")
    note = sub.add_parser(
        "annotate",
        parents=[ledger],
        help="add useful work (tokens, samples) to a job, for kWh per million tokens or per sample",
        epilog=codes,
    )
    note.add_argument("id", metavar="JOB", help="job id (4242), or scheduler:id (slurm:4242)")
    note.add_argument("--tokens", metavar="N", help="tokens the job processed, added to its count")
    note.add_argument("--samples", metavar="N", help="samples the job processed, added to its count")
    note.add_argument("--node", help="the node name, where the ledger has the job under several")
    imports = sub.add_parser(
        "import", help="store past runs or other tools' runs in the ledger (docs/import.md)"
    ).add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, what in (("csv", "a CSV of runs in our columns"), ("codecarbon", "CodeCarbon's emissions.csv")):
        form = imports.add_parser(name, parents=[ledger], help=f"import {what}", epilog=codes)
        form.add_argument("file", metavar="FILE", type=Path)
        form.add_argument(
            "--timezone",
            metavar="TZ",
            help="time zone of dates without an offset (default UTC), e.g. Europe/Paris",
        )
        form.add_argument(
            "--max-bytes",
            metavar="N",
            type=int,
            default=import_runs.MAX_FILE_BYTES,
            help=f"refuse a larger file (default {import_runs.MAX_FILE_BYTES:,} bytes)",
        )
    cards = sub.add_parser(
        "card",
        help="an Energy Card (Hugging Face co2_eq_emissions, EU AI Act Annex XI, energy impact statement)",
        epilog=codes + "; fields: docs/cards.md",
    )
    which = cards.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="NAME", help="the runs of model NAME, summed (filters below)")
    which.add_argument("--job", metavar="ID", help="one job: 4242, scheduler:id, or scheduler:id#run")
    cards.add_argument("--format", choices=["md", "json"], default="md", help="Markdown (default) or JSON")
    cards.add_argument("--config", type=Path, help="YAML config file: its carbon section and ledger.path")
    cards.add_argument(
        "--ledger", type=Path, nargs="+", action="extend", metavar="PATH", help="ledger files, merged"
    )
    cards.add_argument(
        "--phase",
        action="append",
        choices=card.PHASES,
        metavar="PHASE",
        help=f"only runs of PHASE ({', '.join(card.PHASES)}); repeat for several",
    )
    cards.add_argument("--year", type=int, metavar="YYYY", help="only runs that started in YYYY (UTC)")
    cards.add_argument("--since", metavar="DATE", help="only runs that started at or after DATE (UTC)")
    cards.add_argument(
        "--until", metavar="DATE", help="only runs that started before DATE (a bare date: up to its end)"
    )
    rep = sub.add_parser(
        "report", help="the annual AI Energy Impact Report (HTML, Markdown, JSON, PDF)", epilog=codes
    )
    rep.add_argument("--year", type=int, required=True, metavar="YYYY", help="the calendar year (UTC)")
    rep.add_argument(
        "--config", type=Path, help="YAML config file: its carbon and report sections, and ledger.path"
    )
    rep.add_argument(
        "--ledger", type=Path, nargs="+", action="extend", metavar="PATH", help="ledger files (one per node)"
    )
    rep.add_argument(
        "--format",
        default="html,md,json",
        metavar="LIST",
        help="any of html,md,json,pdf (default: html,md,json; pdf needs the pdf extra, WeasyPrint)",
    )
    rep.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="output folder (default: .)")
    rep.add_argument("--baseline-year", type=int, metavar="YYYY", help="the year targets are measured from")
    rep.add_argument("--anonymize-users", action="store_true", help="users as stable pseudonyms (user-1 ...)")
    rep.add_argument(
        "--prometheus",
        metavar="URL",
        help="read the fleet's energy from this Prometheus server instead of ledgers (docs/deploy.md)",
    )
    files = sub.add_parser(
        "ledger", help="check a ledger file, or save what can be read of a damaged one"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    checked = files.add_parser(
        "check",
        help="SQLite's integrity check and the ledger's invariants",
        epilog="exit codes: 0 ok, 1 problems found (one line each) or no ledger",
    )
    checked.add_argument("--config", type=Path, help="YAML config file whose ledger.path to check")
    checked.add_argument("--ledger", type=Path, metavar="PATH", help="ledger file (default: ledger.path)")
    saved = files.add_parser(
        "recover",
        help="copy what can be read of a damaged ledger into a new file; the old one is left as it is",
        epilog="exit codes: 0 the new file is written (the output says what was lost), 1 no ledger, "
        "2 the new file exists",
    )
    saved.add_argument("path", metavar="PATH", type=Path, help="the damaged ledger")
    saved.add_argument("--out", type=Path, metavar="NEW", help="the new file (default: PATH-recovered.db)")
    saved.set_defaults(config=None)
    runs = sub.add_parser(
        "run",
        help="run a command and say how much energy and CO2e its job used meanwhile (docs/in-code.md)",
        epilog="exit code: the command's (128 + n when a signal n ended it), with or without an agent",
    )
    runs.add_argument(
        "--csv", type=Path, metavar="FILE", help="append a CodeCarbon emissions.csv row to FILE"
    )
    runs.add_argument("--card", action="store_true", help="print the run's figures as Markdown")
    runs.add_argument(
        "--socket",
        metavar="PATH",
        help="the agent's socket (default $GREENAI_SOCKET, else api.socket's default)",
    )
    runs.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command and its arguments"
    )
    dash = sub.add_parser("dashboards", help="the Grafana dashboards (grafanalib, in a source checkout)")
    dash_sub = dash.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = dash_sub.add_parser("build", help="regenerate dashboards/*.json from dashboards/*.dashboard.py")
    build.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: beside the sources)")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, shaped like the config file, so that they go through the same validation."""
    flat = {
        "node_name": getattr(args, "node_name", None),
        "listen": getattr(args, "listen", None),
        "interval_seconds": getattr(args, "interval", None),
        "log_level": getattr(args, "log_level", None),
    }
    out: dict[str, Any] = {k: v for k, v in flat.items() if v is not None}
    host = {
        k: getattr(args, k) for k in ("sysfs", "procfs", "cgroupfs") if getattr(args, k, None) is not None
    }
    if host:
        out["host"] = host
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except failures.EXPECTED as e:
        return failures.report(e, sys.stderr)


def _run(args: argparse.Namespace) -> int:
    if args.command == "dashboards":
        return _dashboards(args)
    if args.command == "run":
        return _run_command(args)
    cfg = settings.load(args.config, _overrides(args))
    try:
        return _command(args, cfg)
    except CarbonDataError as e:  # found after loading: an unknown location, a bad intensity CSV
        raise CarbonDataError(f"{cfg.source}: {e}") from None


def _command(args: argparse.Namespace, cfg: settings.Config) -> int:
    if args.command == "agent":
        return _agent(cfg)
    if args.command == "doctor":
        return doctor.run(cfg, sys.stdout, as_json_output=args.json)
    if args.command == "ledger":
        return _ledger(args, cfg)
    if args.command == "report":
        return report.run(
            cfg,
            args.year,
            [p.absolute() for p in (args.ledger or [cfg.ledger.path])],
            args.out,
            parse_formats(args.format),
            args.baseline_year,
            args.anonymize_users,
            sys.stdout,
            sys.stderr,
            prometheus_url=args.prometheus,
        )
    if args.command == "card":
        carbon = CarbonModel.from_config(cfg.carbon, warn=lambda w: print(f"greenai: {w}", file=sys.stderr))
        subject = (
            card.Subject("model", args.model) if args.model is not None else card.Subject("job", args.job)
        )
        chosen = card.selection(args.phase, args.year, args.since, args.until)
        return card.run(
            args.ledger or [cfg.ledger.path], subject, args.format, carbon, sys.stdout, chosen=chosen
        )
    ledger = (args.ledger or cfg.ledger.path).absolute()
    if args.command == "annotate":
        return annotate.run(ledger, args.id, args.node, args.tokens, args.samples, args.json, sys.stdout)
    if args.command == "import":
        return import_runs.run(
            args.format, args.file, args.timezone, ledger, args.json, sys.stdout, args.max_bytes
        )
    # Whatever the locale, a job's name must not end `jobs` or `job` with UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    if args.command == "jobs" and args.prometheus is not None:
        return jobs.run_prometheus_jobs(
            args.prometheus, args.since, args.user, args.running, args.json, sys.stdout
        )
    if args.command == "jobs":
        return jobs.run_jobs(ledger, args.since, args.user, args.running, args.json, sys.stdout)
    # Flagged fallbacks (no carbon config) show in the job's intensity_source, not as a warning.
    carbon = CarbonModel.from_config(cfg.carbon, warn=lambda _: None)
    return jobs.run_job(ledger, args.id, args.node, args.json, sys.stdout, carbon)


def _ledger(args: argparse.Namespace, cfg: settings.Config) -> int:
    if args.action == "check":
        return ledger_command.run_check((args.ledger or cfg.ledger.path).absolute(), sys.stdout)
    return ledger_command.run_recover(args.path.absolute(), args.out, sys.stdout)


def _run_command(args: argparse.Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        print("greenai: run: no command given; write `greenai run -- CMD ...`", file=sys.stderr)
        return failures.EXIT_BAD_INPUT
    return run_command.run(command, args.socket, args.csv, args.card, sys.stdout, sys.stderr)


def _dashboards(args: argparse.Namespace) -> int:
    for path in dashboards.build(args.out):
        print(path)
    return 0


def _agent(cfg: settings.Config) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=cfg.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    daemon.install_signal_handlers(stop)
    daemon.run(cfg, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
