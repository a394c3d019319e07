"""The `greenai` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__, config, daemon, doctor

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
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, shaped like the config file, so that they go through the same validation."""
    flat = {
        "node_name": args.node_name,
        "listen": getattr(args, "listen", None),
        "interval_seconds": getattr(args, "interval", None),
        "log_level": getattr(args, "log_level", None),
    }
    out: dict[str, Any] = {k: v for k, v in flat.items() if v is not None}
    host = {k: getattr(args, k) for k in ("sysfs", "procfs", "cgroupfs") if getattr(args, k) is not None}
    if host:
        out["host"] = host
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = config.load(args.config, _overrides(args))
    except config.ConfigError as e:
        print(f"greenai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "doctor":
        return doctor.run(cfg, sys.stdout, as_json_output=args.json)
    return _agent(cfg)


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


if __name__ == "__main__":
    sys.exit(main())
