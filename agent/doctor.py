"""`greenai doctor`: what each collector found on this node, its devices, and what to do about problems."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from agent.config import Config
from agent.sources import Source, probe_sources
from collectors.base import Status


def diagnose(config: Config) -> list[Source]:
    """Probe every collector as the agent would, then release them."""
    sources = probe_sources(config, time.monotonic)
    for s in sources:
        if s.collector is not None:
            s.collector.close()
    return sources


def summary(sources: list[Source]) -> str:
    """One line: is the node measured, estimated, or neither, and why."""
    active = [s for s in sources if s.active]
    measured = [s.name for s in active if s.probe.status is Status.OK]
    estimated = [d.component for s in active if s.probe.status is Status.ESTIMATE for d in s.probe.devices]
    missing = "; ".join(
        f"{s.name}: {s.probe.status.value}"
        for s in sources
        if s.name != "estimate" and s.probe.status is not Status.OK
    )
    if not active:
        return "no energy source works on this node; fix one of the problems above"
    if estimated and not measured:
        return (
            f"ESTIMATING {', '.join(estimated)}: no measured source on this node ({missing}); "
            'every figure is labelled source="estimate"'
        )
    text = f"measuring with {', '.join(measured)}"
    if estimated:
        text += f"; estimating {', '.join(estimated)} (no measured source for it)"
    return text


def print_report(sources: list[Source], node_name: str, out: TextIO) -> None:
    """The human-readable report."""
    out.write(f"greenai doctor on node {node_name}\n\n")
    for s in sources:
        out.write(f"{s.name:<9} {s.probe.status.value:<18} {s.probe.reason}\n")
        for d in s.probe.devices:
            details = ", ".join(f"{k}={v}" for k, v in d.details.items())
            out.write(f"{'':<29}device {d.component}/{d.device} via {d.method}: {details}\n")
        for note in s.probe.notes:
            out.write(f"{'':<29}note: {note}\n")
        if s.probe.fix:
            out.write(f"{'':<29}to fix: {s.probe.fix}\n")
    out.write(f"\nresult: {summary(sources)}\n")


def as_json(sources: list[Source], node_name: str) -> dict[str, Any]:
    """The same report as a JSON-ready dict."""
    return {
        "node": node_name,
        "summary": summary(sources),
        "collectors": [
            {
                "name": s.name,
                "status": s.probe.status.value,
                "active": s.active,
                "reason": s.probe.reason,
                "fix": s.probe.fix,
                "notes": list(s.probe.notes),
                "devices": [
                    {
                        "component": d.component,
                        "device": d.device,
                        "source": d.source,
                        "method": d.method,
                        **dict(d.details),
                    }
                    for d in s.probe.devices
                ],
            }
            for s in sources
        ],
    }


def run(config: Config, out: TextIO, as_json_output: bool = False) -> int:
    """Print the report; 0 when at least one source, measured or estimated, works."""
    sources = diagnose(config)
    if as_json_output:
        out.write(json.dumps(as_json(sources, config.node_name), indent=2) + "\n")
    else:
        print_report(sources, config.node_name, out)
    return 0 if any(s.active for s in sources) else 1
