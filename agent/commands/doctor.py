"""`greenai doctor`: what each collector found on this node, its devices, and what to do about problems."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from agent.config.settings import Config
from agent.live.sources import Source, probe_sources
from collectors.base import Probe, Status
from collectors.jobs.cgroups import JobDiscovery
from collectors.jobs.slurm import SlurmMetadata


def diagnose(config: Config) -> list[Source]:
    """Probe every collector as the agent would, then release them."""
    sources = probe_sources(config, time.monotonic)
    for s in sources:
        if s.collector is not None:
            s.collector.close()
    return sources


def job_checks(config: Config) -> list[tuple[str, Probe]]:
    """What per-job accounting will find: job cgroups, Slurm names, and whether the ledger is writable."""
    discovery = JobDiscovery(config.host.procfs, config.host.cgroupfs, config.node_name)
    try:
        checks = [("jobs", discovery.probe())]
    finally:
        discovery.close()
    if config.slurm.scontrol:
        slurm = SlurmMetadata(config.slurm.scontrol, config.slurm.refresh_seconds)
        checks.append(("slurm", slurm.probe()))
        slurm.close()
    checks.append(("ledger", _ledger_probe(config.ledger.path)))
    return checks


def _ledger_probe(path: Path) -> Probe:
    # os.path.exists, unlike Path.exists, says False where a parent cannot be searched
    existing = next((p for p in (path, *path.parents) if os.path.exists(p)), Path("/"))
    if not os.access(existing, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return Probe(
            Status.PERMISSION_DENIED,
            f"{path}: {existing} is not writable by this user",
            fix="run the agent as root, or set ledger.path to a writable place",
        )
    state = "exists" if os.path.exists(path) else "will be created by the agent"
    return Probe(Status.OK, f"{path} ({state})")


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


def print_report(sources: list[Source], checks: list[tuple[str, Probe]], node_name: str, out: TextIO) -> None:
    """The human-readable report: energy sources, then per-job accounting, then the verdict."""
    out.write(f"greenai doctor on node {node_name}\n\n")
    for s in sources:
        _line(out, s.name, s.probe)
        for d in s.probe.devices:
            details = ", ".join(f"{k}={v}" for k, v in d.details.items())
            out.write(f"{'':<29}device {d.component}/{d.device} via {d.method}: {details}\n")
        for note in s.probe.notes:
            out.write(f"{'':<29}note: {note}\n")
        if s.probe.fix:
            out.write(f"{'':<29}to fix: {s.probe.fix}\n")
    out.write("\n")
    for name, probe in checks:
        _line(out, name, probe)
        if probe.fix:
            out.write(f"{'':<29}to fix: {probe.fix}\n")
    out.write(f"\nresult: {summary(sources)}\n")


def _line(out: TextIO, name: str, probe: Probe) -> None:
    out.write(f"{name:<9} {probe.status.value:<18} {probe.reason}\n")


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
    checks = job_checks(config)
    if as_json_output:
        report = as_json(sources, config.node_name)
        report["jobs"] = [
            {"name": name, "status": p.status.value, "reason": p.reason, "fix": p.fix} for name, p in checks
        ]
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        print_report(sources, checks, config.node_name, out)
    return 0 if any(s.active for s in sources) else 1
