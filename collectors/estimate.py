"""An honest, labelled estimate of CPU and memory power, for nodes where RAPL cannot be read.

CPU power follows a linear idle-to-max curve driven by CPU utilisation, with max at the CPU model's
TDP; memory draws a constant W/GB of installed memory. Both are integrated over the injected clock
into cumulative counters with `source="estimate"`.

Utilisation and memory come from `<procfs>/stat` and `<procfs>/meminfo` (the same files psutil
reads) so that the procfs root is configurable: an agent in a container reads the host's /proc
mounted elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collectors.base import Clock, CollectorError, Counter, Device, Probe, Reading, Status, counter_delta
from collectors.procstat import read_cpu_jiffies, read_memory_bytes
from collectors.tdp import codecarbon_table, node_tdp, read_cpuinfo

GIB = 1024**3


@dataclass(frozen=True)
class EstimateModel:
    """The power model's parameters, in watts."""

    cpu_idle_w: float
    cpu_max_w: float
    memory_w: float

    def cpu_power_w(self, utilisation: float) -> float:
        """CPU power at a utilisation from 0 to 1."""
        return self.cpu_idle_w + (self.cpu_max_w - self.cpu_idle_w) * min(1.0, max(0.0, utilisation))


class EstimateCollector:
    """CPU and memory power estimated from utilisation, TDP and installed memory."""

    name = "estimate"

    def __init__(
        self,
        procfs: Path,
        clock: Clock,
        components: frozenset[str] = frozenset({"cpu", "dram"}),
        tdp_watts: float | None = None,
        idle_watts: float | None = None,
        idle_fraction: float = 0.3,
        memory_watts_per_gb: float = 0.375,
        cpu_table: Path | None = None,
    ) -> None:
        self._procfs = procfs
        self._clock = clock
        self._components = components
        self._tdp_watts = tdp_watts
        self._idle_watts = idle_watts
        self._idle_fraction = idle_fraction
        self._memory_watts_per_gb = memory_watts_per_gb
        self._cpu_table = cpu_table if cpu_table is not None else codecarbon_table()
        self.model: EstimateModel | None = None
        self._last: tuple[float, int, int] | None = None
        self._cpu_uj = 0.0
        self._dram_uj = 0.0

    def probe(self) -> Probe:
        try:
            memory_bytes = read_memory_bytes(self._procfs)
            read_cpu_jiffies(self._procfs)
        except (OSError, ValueError) as e:
            return Probe(
                Status.ERROR,
                f"cannot read CPU utilisation or memory size: {e}",
                fix="point host.procfs at the host's /proc",
            )
        cpu = read_cpuinfo(self._procfs)
        package_tdp = False
        if self._tdp_watts is not None:
            max_w, basis = self._tdp_watts, "collectors.estimate.cpu_tdp_watts in the config"
        else:
            tdp = node_tdp(cpu, self._cpu_table)
            max_w, basis, package_tdp = tdp.watts, tdp.basis, tdp.matched is not None
        idle_w = self._idle_watts if self._idle_watts is not None else max_w * self._idle_fraction
        idle_w = min(idle_w, max_w)
        memory_gb = memory_bytes / GIB
        self.model = EstimateModel(idle_w, max_w, memory_gb * self._memory_watts_per_gb)
        devices = []
        parts = []
        if "cpu" in self._components:
            devices.append(
                Device(
                    "cpu",
                    "node",
                    "estimate",
                    "tdp-utilisation",
                    {"model": cpu.model or "unknown", "tdp_watts": f"{max_w:g}", "idle_watts": f"{idle_w:g}"},
                )
            )
            parts.append(f"CPU {idle_w:.1f}-{max_w:.1f} W by utilisation (TDP: {basis})")
        if "dram" in self._components:
            devices.append(
                Device(
                    "dram",
                    "node",
                    "estimate",
                    "watts-per-gb",
                    {"memory_gb": f"{memory_gb:.1f}", "watts_per_gb": f"{self._memory_watts_per_gb:g}"},
                )
            )
            per_gb = self._memory_watts_per_gb
            parts.append(f"memory {memory_gb:.1f} GB x {per_gb:g} W/GB = {self.model.memory_w:.1f} W")
        notes = []
        if cpu.virtual and package_tdp:
            notes.append(
                "this is a virtual machine: the TDP is that of whole CPU packages, not of this VM's share;"
                " set collectors.estimate.cpu_tdp_watts to the share you know"
            )
        return Probe(Status.ESTIMATE, "; ".join(parts), devices=tuple(devices), notes=tuple(notes))

    def read(self) -> Reading:
        if self.model is None:
            raise CollectorError("not_probed", "estimate collector read before probe")
        now = self._clock()
        try:
            busy, total = read_cpu_jiffies(self._procfs)
        except (OSError, ValueError) as e:
            raise CollectorError("read_failed", f"cannot read CPU utilisation: {e}") from e
        if self._last is not None:
            last_time, last_busy, last_total = self._last
            elapsed = max(0.0, now - last_time)
            d_total = counter_delta(last_total, total, None)
            utilisation = counter_delta(last_busy, busy, None) / d_total if d_total else 0.0
            self._cpu_uj += self.model.cpu_power_w(utilisation) * elapsed * 1e6
            self._dram_uj += self.model.memory_w * elapsed * 1e6
        self._last = (now, busy, total)
        counters = []
        if "cpu" in self._components:
            counters.append(
                Counter("cpu", "node", "estimate", round(self._cpu_uj), None, self.model.cpu_max_w)
            )
        if "dram" in self._components:
            counters.append(
                Counter("dram", "node", "estimate", round(self._dram_uj), None, self.model.memory_w)
            )
        return Reading(tuple(counters))

    def close(self) -> None:
        self._last = None
