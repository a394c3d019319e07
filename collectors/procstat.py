"""Node-wide CPU time and installed memory, from `<procfs>/stat` and `<procfs>/meminfo`.

Shared by the estimate (power) and job discovery (the node's busy CPU time); the procfs root is an
argument, so a containerised agent reads the host's /proc mounted elsewhere.
"""

from __future__ import annotations

from pathlib import Path


def read_cpu_jiffies(procfs: Path) -> tuple[int, int]:
    """(busy, total) CPU time of the whole node in clock ticks, from the first line of <procfs>/stat."""
    with open(procfs / "stat", "rb") as f:
        fields = f.readline().split()
    if not fields or fields[0] != b"cpu" or len(fields) < 5:
        raise ValueError(f"{procfs / 'stat'}: first line is not the 'cpu' total")
    # user nice system idle iowait irq softirq steal [guest guest_nice: already inside user, nice]
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    steal = values[7] if len(values) > 7 else 0
    total = sum(values) - steal  # time stolen by the hypervisor was not this node's work
    return total - idle, total


def read_memory_bytes(procfs: Path) -> int:
    """Installed memory in bytes, from MemTotal in <procfs>/meminfo."""
    with open(procfs / "meminfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"{procfs / 'meminfo'}: no MemTotal line")
