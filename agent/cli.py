"""The `greenai` command line."""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__, cards, config, daemon, doctor, import_cli, jobs_view, prom_source
from agent.carbon import CarbonModel
from agent.ledger import annotate_file
from agent.ledger_schema import AmbiguousJob, LedgerError
from agent.work import parse_count

EXIT_BAD_INPUT = 2


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
    agent.add_argument("--listen", help=f"host:port to serve /metrics on (default {config.DEFAULT_LISTEN})")
    agent.add_argument("--interval", type=float, metavar="SECONDS", help="sampling interval (default 1)")
    agent.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    doc = sub.add_parser("doctor", parents=[host], help="say which energy sources work here, and why not")
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
        f"{prom_source.JOBS_DEFAULT_DAYS} days; docs/deploy.md)",
    )
    job = sub.add_parser("job", parents=[ledger], help="one job's energy", epilog=codes)
    job.add_argument("id", metavar="ID", help="job id (4242), or scheduler:id (slurm:4242) where ids repeat")
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
    card = sub.add_parser(
        "card", help="an Energy Card (Hugging Face co2_eq_emissions, energy impact statement)", epilog=codes
    )
    which = card.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="NAME", help="all the jobs of model NAME, summed")
    which.add_argument("--job", metavar="ID", help="one job: 4242, or scheduler:id")
    card.add_argument("--format", choices=["md", "json"], default="md", help="Markdown (default) or JSON")
    card.add_argument("--config", type=Path, help="YAML config file: its carbon section and ledger.path")
    card.add_argument(
        "--ledger", type=Path, nargs="+", action="extend", metavar="PATH", help="ledger files, merged"
    )
    rep = sub.add_parser(
        "report", help="the annual AI Energy Impact Report (HTML, Markdown, JSON)", epilog=codes
    )
    rep.add_argument("--year", type=int, required=True, metavar="YYYY", help="the calendar year (UTC)")
    rep.add_argument("--config", type=Path, help="YAML config file: its carbon section and ledger.path")
    rep.add_argument(
        "--ledger", type=Path, nargs="+", action="extend", metavar="PATH", help="ledger files (one per node)"
    )
    rep.add_argument("--format", default="html,md,json", metavar="LIST", help="html,md,json (default: all)")
    rep.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="output folder (default: .)")
    rep.add_argument("--baseline-year", type=int, metavar="YYYY", help="the year targets are measured from")
    rep.add_argument("--anonymize-users", action="store_true", help="users as stable pseudonyms (user-1 ...)")
    rep.add_argument(
        "--prometheus",
        metavar="URL",
        help="read the fleet's energy from this Prometheus server instead of ledgers (docs/deploy.md)",
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
    if args.command == "dashboards":
        return _dashboards(args)
    try:
        cfg = config.load(args.config, _overrides(args))
    except config.ConfigError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "report":
        return _report(args, cfg)
    if args.command == "doctor":
        return doctor.run(cfg, sys.stdout, as_json_output=args.json)
    if args.command in ("jobs", "job"):
        return _ledger_view(args, (args.ledger or cfg.ledger.path).absolute(), cfg)
    if args.command == "card":
        return _card(args, cfg)
    if args.command == "annotate":
        return _annotate(args, (args.ledger or cfg.ledger.path).absolute())
    if args.command == "import":
        return import_cli.run(
            args.format, args.file, args.timezone, (args.ledger or cfg.ledger.path).absolute(), args.json
        )
    return _agent(cfg)


def _dashboards(args: argparse.Namespace) -> int:
    from agent import dashboards  # grafanalib only here, never in the agent

    try:
        written = dashboards.build(args.out)
    except dashboards.DashboardError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path in written:
        print(path)
    return 0


def _ledger_view(args: argparse.Namespace, path: Path, cfg: config.Config) -> int:
    # Whatever the locale, a job's name must not end the command with UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    if args.command == "jobs" and args.prometheus is not None:
        try:
            since = jobs_view.parse_since(args.since) if args.since is not None else None
        except ValueError as e:
            print(f"greenai: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return prom_source.run_jobs(
            args.prometheus, since, args.user, args.running, args.json, sys.stdout, sys.stderr
        )
    if args.command == "jobs":
        return jobs_view.run_jobs(
            path, args.since, args.user, args.running, args.json, sys.stdout, sys.stderr
        )
    try:
        # Flagged fallbacks (no carbon config) show in the job's intensity_source, not as a warning.
        carbon = CarbonModel.from_config(cfg.carbon, warn=lambda _: None)
    except config.ConfigError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return jobs_view.run_job(path, args.id, args.node, args.json, sys.stdout, sys.stderr, carbon)


def _card(args: argparse.Namespace, cfg: config.Config) -> int:
    try:
        carbon = CarbonModel.from_config(cfg.carbon, warn=lambda w: print(f"greenai: {w}", file=sys.stderr))
    except config.ConfigError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    subject = cards.Subject("model", args.model) if args.model is not None else cards.Subject("job", args.job)
    paths = args.ledger or [cfg.ledger.path]
    return cards.run(paths, subject, args.format, carbon, sys.stdout, sys.stderr)


def _annotate(args: argparse.Namespace, path: Path) -> int:
    try:
        if args.tokens is None and args.samples is None:
            raise ValueError("give --tokens N, --samples N or both")
        tokens = None if args.tokens is None else parse_count(args.tokens, "--tokens", text=True)
        samples = None if args.samples is None else parse_count(args.samples, "--samples", text=True)
    except ValueError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        summary = annotate_file(path, args.id, args.node, tokens, samples)
    except AmbiguousJob as e:
        print(f"greenai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LedgerError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        counts = {"tokens": summary.tokens, "samples": summary.samples}
        print(f"{summary.key}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v is not None))
    return 0


def _agent(cfg: config.Config) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=cfg.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    daemon.install_signal_handlers(stop)
    try:
        daemon.run(cfg, stop)
    except daemon.StartupError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def _report(args: argparse.Namespace, cfg: config.Config) -> int:
    from agent import report  # matplotlib is imported only for this command

    try:
        formats = report.parse_formats(args.format)
    except ValueError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    ledgers = [p.absolute() for p in (args.ledger or [cfg.ledger.path])]
    return report.run(
        cfg,
        args.year,
        ledgers,
        args.out,
        formats,
        args.baseline_year,
        args.anonymize_users,
        prometheus=args.prometheus,
    )


if __name__ == "__main__":
    sys.exit(main())
