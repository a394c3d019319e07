"""CPU model and its thermal design power (TDP), from /proc/cpuinfo and codecarbon's packaged table.

The table (`codecarbon/data/hardware/cpu_power.csv`, columns Name,TDP) is read as a plain file:
codecarbon itself is never imported, so none of its trackers, network look-ups or heavy imports run.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WATTS_PER_THREAD = 4.0
"""Used when the CPU model is not in the table; the same per-thread figure codecarbon falls back to."""

_NOISE = re.compile(
    r"\((?:r|tm)\)|\bcpu\b|\bprocessor\b|@\s*[\d.]+\s*ghz|\b\d+-core\b|\bwith radeon.*$|\bgen\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the CPUs."""

    model: str
    sockets: int
    threads: int
    virtual: bool


@dataclass(frozen=True)
class Tdp:
    """The whole node's CPU TDP in watts, and where the figure came from."""

    watts: float
    basis: str
    matched: str | None


def read_cpuinfo(procfs: Path) -> CpuInfo:
    """Parse <procfs>/cpuinfo; a missing file gives an unnamed single-thread CPU."""
    try:
        text = (procfs / "cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo(model="", sockets=1, threads=1, virtual=False)
    model = ""
    sockets: set[str] = set()
    threads = 0
    virtual = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            threads += 1
        elif key in ("model name", "Model", "cpu model") and not model:
            model = value
        elif key == "physical id":
            sockets.add(value)
        elif key == "flags" and not virtual:
            virtual = "hypervisor" in value.split()
    return CpuInfo(model=model, sockets=max(1, len(sockets)), threads=max(1, threads), virtual=virtual)


def normalize(model: str) -> str:
    """Lower-case model name without trademarks, clock speed and filler words."""
    return " ".join(_NOISE.sub(" ", model).lower().split())


def codecarbon_table() -> Path | None:
    """Path of codecarbon's CPU power table, found without importing codecarbon."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "hardware" / "cpu_power.csv"
    return path if path.is_file() else None


def load_table(path: Path) -> dict[str, tuple[str, float]]:
    """normalized name -> (name as in the table, TDP in watts)."""
    table: dict[str, tuple[str, float]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                table.setdefault(normalize(row["Name"]), (row["Name"], float(row["TDP"])))
            except (KeyError, TypeError, ValueError):
                continue
    return table


def match(model: str, table: dict[str, tuple[str, float]]) -> tuple[str, float] | None:
    """The table entry for `model`: the exact normalized name, else the longest entry whose words
    all appear in the model's (and that names a model number, not just a brand)."""
    wanted = normalize(model)
    if not wanted:
        return None
    if wanted in table:
        return table[wanted]
    words = set(wanted.split())
    candidates = [n for n in table if any(ch.isdigit() for ch in n) and words.issuperset(n.split())]
    if not candidates:
        return None
    return table[max(candidates, key=lambda name: len(name.split()))]


def node_tdp(cpu: CpuInfo, table_path: Path | None) -> Tdp:
    """The node's CPU TDP: the model's TDP times its sockets, else a per-thread default."""
    if table_path is not None and cpu.model:
        found = match(cpu.model, load_table(table_path))
        if found is not None:
            name, watts = found
            return Tdp(
                watts=watts * cpu.sockets,
                basis=f"{name}: {watts:g} W x {cpu.sockets} socket(s) from codecarbon's cpu_power.csv",
                matched=name,
            )
    why = (
        "no CPU power table found" if table_path is None else f"model {cpu.model or 'unknown'!r} not in table"
    )
    return Tdp(
        watts=DEFAULT_WATTS_PER_THREAD * cpu.threads,
        basis=f"{DEFAULT_WATTS_PER_THREAD:g} W x {cpu.threads} thread(s) ({why})",
        matched=None,
    )
