"""What kind each energy figure is, how sure it is, and the words a person publishes about it.

Every joule in the ledger carries a `source`: a meter the agent read (`nvml`, `rapl`, `amdsmi`,
`hwmon`, `redfish`, `ipmi`), the agent's power model (`estimate`), or another tool's figure brought
in by `greenai import` (`import:csv`, `import:codecarbon`). Three kinds follow from it:

- measured: read from a hardware energy counter by the agent on the node;
- estimated: the agent's model (TDP x utilisation) where no counter exists;
- imported: measured or estimated by another tool, with that tool's own method where the file says.

Each source has a stated relative accuracy and the basis for it (docs/uncertainty.md). A total's
range adds the bounds of its parts linearly (as a calibration bias would add, not as independent
noise): the true figure is inside it whenever every part is within its stated accuracy. Energy of
unknown accuracy (an import that declares none, a meter whose maker states none) is counted at its
value and reported apart, as `unquantified_kwh`: the range never pretends to know it.

Level: imports only agent.units, so the Slurm epilog and every output can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.units import JOULES_PER_KWH, share_text

MEASURED, ESTIMATED, IMPORTED = "measured", "estimated", "imported"
KINDS = (MEASURED, ESTIMATED, IMPORTED)
IMPORT_PREFIX = "import:"
ESTIMATE_SOURCE = "estimate"


@dataclass(frozen=True)
class Accuracy:
    """Relative bounds (0.05 = 5 %) below and above a figure, and why; None: unknown."""

    minus: float | None
    plus: float | None
    basis: str

    @property
    def known(self) -> bool:
        return self.minus is not None and self.plus is not None


NVML_ACCURACY = Accuracy(
    0.05,
    0.05,
    "NVML's reference documents the board power reading as accurate to within +/-5 % of the current "
    "draw (nvmlDeviceGetPowerUsage, Fermi and Kepler; no tighter figure is published for later GPUs), "
    "and the energy counter integrates the same sensor. Yang et al. 2024 (SC24, arXiv:2312.02741) show "
    "that A100/H100 sensors sample only part of each period, so jobs under a minute can be off by more. "
    "+/-5 % of a job's energy is taken.",
)
RAPL_ACCURACY = Accuracy(
    0.05,
    0.05,
    "Validation of Intel RAPL against external meters (Hähnel et al. 2012; Desrochers et al. 2016 for "
    "DRAM; Khan et al. 2018, ACM TOMPECS) finds package and DRAM energy within a few percent on "
    "Haswell and later; AMD's RAPL interface is reported similar. +/-5 % is taken.",
)
ESTIMATE_ACCURACY = Accuracy(
    0.60,
    1.90,
    "A TDP x utilisation model of the kind CodeCarbon falls back to without RAPL; comparisons of that "
    "fallback with RAPL on the same work found it -60 % to +190 % off. The range is taken as is: the "
    "figure may be 0.4x to 2.9x the true energy.",
)
UNKNOWN_IMPORT = Accuracy(None, None, "imported without a stated accuracy: unknown")
AMDSMI_ACCURACY = Accuracy(
    None,
    None,
    "AMD publishes no accuracy for the AMD SMI energy accumulator or its power reading: unknown, "
    "counted at its value.",
)
HWMON_ACCURACY = Accuracy(
    None,
    None,
    "hwmon sensors (Intel GPU energy, ACPI power meters, Grace sensors) carry their firmware's "
    "accuracy, which their drivers do not publish in general: unknown, counted at its value.",
)
WALL_ACCURACY = Accuracy(
    None,
    None,
    "A BMC's input power comes from the power supplies' own meters, whose accuracy depends on the "
    "supply and its load and is not stated over Redfish or IPMI: unknown, counted at its value. The "
    "`other` energy derived from it carries the same.",
)

ACCURACY: Mapping[str, Accuracy] = {
    "nvml": NVML_ACCURACY,
    "rapl": RAPL_ACCURACY,
    "nvml_outage": NVML_ACCURACY,
    "rapl_outage": RAPL_ACCURACY,
    ESTIMATE_SOURCE: ESTIMATE_ACCURACY,
    **{source: AMDSMI_ACCURACY for source in ("amdsmi", "amdsmi_outage")},
    **{source: HWMON_ACCURACY for source in ("hwmon", "hwmon_outage")},
    **{source: WALL_ACCURACY for source in ("redfish", "redfish_outage", "ipmi", "ipmi_outage")},
}
METER_NAMES: Mapping[str, str] = {
    "nvml": "NVML (NVIDIA GPU energy counter)",
    "rapl": "RAPL (CPU and DRAM energy counters)",
    "nvml_outage": "NVML (counted while the GPU could not be read; charged to no job)",
    "rapl_outage": "RAPL (counted while the zone could not be read; charged to no job)",
    "amdsmi": "AMD SMI (AMD GPU energy counter)",
    "hwmon": "hwmon (kernel power and energy sensors)",
    "redfish": "the node's BMC over Redfish (wall power)",
    "ipmi": "the node's BMC over IPMI DCMI (wall power)",
}
TOOL_NAMES: Mapping[str, str] = {"codecarbon": "CodeCarbon", "csv": "a CSV file"}


def kind_of(source: str) -> str:
    """measured, estimated or imported, from a ledger `source`."""
    if source.startswith(IMPORT_PREFIX):
        return IMPORTED
    return ESTIMATED if source == ESTIMATE_SOURCE else MEASURED


def accuracy_of(source: str, declared_pct: float | None = None) -> Accuracy:
    """The stated accuracy of a source; for an import, what the file declared (percent), else unknown."""
    if source.startswith(IMPORT_PREFIX):
        if declared_pct is None:
            return UNKNOWN_IMPORT
        share = declared_pct / 100.0
        return Accuracy(min(share, 1.0), share, f"+/-{declared_pct:g} % as declared with the imported run")
    return ACCURACY.get(source, Accuracy(0.05, 0.05, f"{source}: an energy counter, +/-5 % taken"))


def method_of(source: str, method: str = "") -> str:
    """How a source's energy was obtained, in words: `measured by RAPL (...)`, `estimated ...`,
    `imported from CodeCarbon (its method: ...)`."""
    kind = kind_of(source)
    if kind == IMPORTED:
        tool = source[len(IMPORT_PREFIX) :]
        own = f" (its method: {method})" if method else " (its method not stated)"
        return f"imported from {TOOL_NAMES.get(tool, tool)}{own}"
    if kind == ESTIMATED:
        return "estimated by the agent's power model (TDP x utilisation), not measured"
    return f"measured by {METER_NAMES.get(source, source)}"


@dataclass
class Tally:
    """Energy (kWh) by source and kind, with the range its parts' accuracies give."""

    by_source: dict[str, float] = field(default_factory=dict)
    by_kind: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    low: float = 0.0
    high: float = 0.0
    unquantified: float = 0.0
    """kWh of unknown accuracy, inside both `low` and `high` at its value."""
    unquantified_sources: set[str] = field(default_factory=set)
    """The sources that energy of unknown accuracy came from."""
    methods: dict[str, str] = field(default_factory=dict)
    """Imported sources -> the method their files stated."""

    def add(self, source: str, kwh: float, declared_pct: float | None = None, method: str = "") -> None:
        self.by_source[source] = self.by_source.get(source, 0.0) + kwh
        self.by_kind[kind_of(source)] += kwh
        acc = accuracy_of(source, declared_pct)
        if acc.minus is None or acc.plus is None:
            self.unquantified += kwh
            if kwh > 0:
                self.unquantified_sources.add(source)
            self.low += kwh
            self.high += kwh
        else:
            self.low += kwh * (1.0 - acc.minus)
            self.high += kwh * (1.0 + acc.plus)
        if method and kind_of(source) == IMPORTED:
            self.methods.setdefault(source, method)

    def add_joules(
        self, energy_j: Mapping[str, float], declared_pct: float | None = None, method: str = ""
    ) -> None:
        """Add joules by source."""
        for source, joules in energy_j.items():
            self.add(source, joules / JOULES_PER_KWH, declared_pct, method)

    def absorb(self, other: Tally) -> None:
        for source, kwh in other.by_source.items():
            self.by_source[source] = self.by_source.get(source, 0.0) + kwh
        for kind, kwh in other.by_kind.items():
            self.by_kind[kind] += kwh
        self.low += other.low
        self.high += other.high
        self.unquantified += other.unquantified
        self.unquantified_sources |= other.unquantified_sources
        for source, method in other.methods.items():
            self.methods.setdefault(source, method)

    @property
    def total(self) -> float:
        return sum(self.by_kind.values())

    def unquantified_words(self) -> str:
        """Where the energy of unknown accuracy came from, in words: `imported without a stated
        accuracy`, `from meters that state no accuracy (AMD SMI, ...)`, or both."""
        meters = sorted(
            {
                METER_NAMES.get(source.removesuffix("_outage"), source).split(" (")[0]
                for source in self.unquantified_sources
                if kind_of(source) != IMPORTED
            }
        )
        imported = any(kind_of(source) == IMPORTED for source in self.unquantified_sources)
        words = ["imported without a stated accuracy"] if imported or not meters else []
        if meters:
            words.append(f"from meters that state no accuracy ({', '.join(meters)})")
        return " or ".join(words)

    def shares(self) -> dict[str, float | None]:
        """Each kind's share of the total (0 to 1); None for no energy."""
        total = self.total
        return {k: (v / total if total > 0 else None) for k, v in self.by_kind.items()}

    def scaled(self, value: float) -> tuple[float | None, float | None]:
        """The range of a figure proportional to this energy (its CO2e): value x low/total, x high/total."""
        total = self.total
        if total <= 0:
            return None, None
        return value * self.low / total, value * self.high / total

    @property
    def quantified(self) -> bool:
        """Whether some of the energy has a stated accuracy (else there is no range to give)."""
        return self.total > 0 and self.unquantified < self.total

    def range_dict(self, value: float | None = None) -> dict[str, float | None]:
        """{value, low, high} of this energy (kWh), or of a figure proportional to it; low and high
        are None when no part of the energy has a stated accuracy."""
        if value is None:
            value = self.total
            low, high = (self.low, self.high) if self.quantified else (None, None)
        else:
            low, high = self.scaled(value) if self.quantified else (None, None)
        return {"value": value, "low": low, "high": high}

    def as_dict(self) -> dict[str, Any]:
        """The JSON block every output carries: kWh by kind and source, shares, range, methods."""
        return {
            "kwh_by_kind": dict(self.by_kind),
            "shares": self.shares(),
            "kwh_by_source": dict(sorted(self.by_source.items())),
            "low_kwh": self.low if self.quantified else None,
            "high_kwh": self.high if self.quantified else None,
            "unquantified_kwh": self.unquantified,
            "methods": {s: method_of(s, self.methods.get(s, "")) for s in sorted(self.by_source)},
        }


@dataclass
class Spread:
    """A figure (CO2e, energy) summed over parts, each part's range scaled by its own energy's range;
    a part of no stated accuracy counts at its value at both ends. No range at all when no part had
    energy of a stated accuracy."""

    value: float = 0.0
    low: float = 0.0
    high: float = 0.0
    known: bool = False

    def add(self, value: float, energy: Tally) -> None:
        low, high = energy.scaled(value)
        self.value += value
        self.low += value if low is None else low
        self.high += value if high is None else high
        self.known = self.known or energy.quantified

    def absorb(self, other: Spread) -> None:
        self.value += other.value
        self.low += other.low
        self.high += other.high
        self.known = self.known or other.known

    def bounds(self, unit: float = 1.0) -> tuple[float | None, float | None]:
        """(low, high) divided by `unit`; (None, None) when not known."""
        return (self.low / unit, self.high / unit) if self.known else (None, None)


def tally(parts: Iterable[tuple[str, float]], declared_pct: float | None = None, method: str = "") -> Tally:
    """A Tally of (source, kWh) pairs."""
    out = Tally()
    for source, kwh in parts:
        out.add(source, kwh, declared_pct, method)
    return out


def kinds_sentence(t: Tally) -> str:
    """One sentence of how the energy was obtained, generated from its kinds: never `measured` for
    what was imported or estimated."""
    total = t.total
    if total <= 0:
        return "No energy was recorded."
    parts = []
    meters = sorted(s for s in t.by_source if kind_of(s) == MEASURED and t.by_source[s] > 0)
    if t.by_kind[MEASURED] > 0:
        names = ", ".join(METER_NAMES.get(s, s).split(" (")[0] for s in meters)
        parts.append(f"{_pct(t.by_kind[MEASURED] / total)} was measured per job by greenai-agent ({names})")
    if t.by_kind[ESTIMATED] > 0:
        parts.append(
            f"{_pct(t.by_kind[ESTIMATED] / total)} was estimated by greenai-agent's power model "
            "(no energy counter there)"
        )
    if t.by_kind[IMPORTED] > 0:
        tools = sorted(s for s in t.by_source if kind_of(s) == IMPORTED and t.by_source[s] > 0)
        how = "; ".join(method_of(s, t.methods.get(s, "")) for s in tools)
        parts.append(f"{_pct(t.by_kind[IMPORTED] / total)} was {how}")
    return "Of this energy, " + ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] + "."


def _pct(share: float) -> str:
    return share_text(share)
