"""CPU package, DRAM and platform (psys) energy from Linux powercap RAPL counters, in microjoules.

Zones are found under `<sysfs>/class/powercap` by the name the kernel gives them, not by their
index: `intel-rapl:0` is not always package 0, indexes are hexadecimal (`intel-rapl:a`), and AMD
CPUs use the same `intel-rapl` control type. Only zones that do not overlap are counted:

- `package-N` and `package-N-die-M` -> component "cpu"; their `core` and `uncore` sub-zones are
  already inside them and are never counted;
- `dram` (a sub-zone of a package, but not part of its energy) -> component "dram", labelled with
  the package it belongs to;
- `psys` (the whole SoC/platform, which includes package and dram) -> component "platform", never
  added to the cpu.

`intel-rapl-mmio:*` zones are the same package counters again through another interface and are
ignored. The `energy_uj` files are opened once in probe() and re-read with pread() on each read().

Each zone's maximum power, which bounds a plausible delta of its counter, is the highest of its
`constraint_*_max_power_uw` and `constraint_*_power_limit_uw` (the package's TDP and its PL1/PL2 limits,
whichever the firmware fills in); a zone with none of them is bounded by its component's fallback.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from collectors.base import CollectorError, Counter, Device, Probe, Reading, Status

SOURCE = "rapl"
CONTROL_TYPE = "intel-rapl"
"""The powercap control type of the MSR RAPL driver, on Intel and AMD CPUs alike."""

_ZONE_ENTRY = re.compile(r"^(?P<control>[a-z0-9_-]+)(?P<index>(?::[0-9a-f]+)+)$")
_PACKAGE = re.compile(r"^package-\d+(?:-die-\d+)?$")
_SUB_ZONES = ("core", "uncore")
_READ_BYTES = 32  # an energy_uj value is at most 20 digits and a newline

PERMISSION_FIX = (
    "run the agent as root, or grant read access, e.g. a udev rule or `chmod o+r` on "
    "{root}/intel-rapl:*/energy_uj (again after each boot), or CAP_DAC_READ_SEARCH"
)


@dataclass(frozen=True)
class _Zone:
    """One powercap zone found under class/powercap."""

    entry: str
    index: tuple[int, ...]
    path: Path
    name: str


@dataclass(frozen=True)
class _Handle:
    """An open energy_uj and what goes with each of its readings."""

    fd: int
    component: str
    device: str
    wrap_uj: int | None
    max_power_w: float | None


@dataclass(frozen=True)
class _Counted:
    """A zone whose energy is exported, with the labels of its counter."""

    zone: _Zone
    component: str
    device: str


class RaplCollector:
    """Cumulative RAPL energy of every package, dram and psys zone under `<sysfs>/class/powercap`."""

    name = "rapl"

    def __init__(self, sysfs: Path) -> None:
        self._root = sysfs / "class" / "powercap"
        self._handles: list[_Handle] = []

    def probe(self) -> Probe:
        """Find the RAPL zones, check each counted energy_uj can be read, and keep it open."""
        self.close()
        notes: list[str] = []
        zones = self._discover(notes)
        counted = _classify(zones, notes)
        if not counted:
            return Probe(
                Status.NOT_FOUND,
                f"no RAPL zones under {self._root} (virtual machine, or a CPU/kernel without powercap RAPL)",
                "on bare metal, load the RAPL driver (`modprobe intel_rapl_msr`); "
                "in a virtual machine use the estimate collector",
                notes=tuple(notes),
            )
        return self._open(counted, notes)

    def read(self) -> Reading:
        """Read every open energy_uj counter; a zone that fails is left out, "read_failed" in errors."""
        counters: list[Counter] = []
        errors: list[str] = []
        down: list[tuple[str, str]] = []
        for h in self._handles:
            try:
                energy_uj = int(os.pread(h.fd, _READ_BYTES, 0))
            except (OSError, ValueError):
                errors.append("read_failed")
                down.append((h.component, h.device))
                continue
            counters.append(Counter(h.component, h.device, SOURCE, energy_uj, h.wrap_uj, h.max_power_w))
        if not counters:
            if not self._handles:
                raise CollectorError("not_probed", "rapl: no open RAPL zone (probe first)")
            raise CollectorError("read_failed", f"rapl: all {len(self._handles)} energy_uj reads failed")
        return Reading(tuple(counters), tuple(errors), tuple(down))

    def close(self) -> None:
        """Close the energy_uj files opened by probe()."""
        zones, self._handles = self._handles, []
        for h in zones:
            with contextlib.suppress(OSError):  # already gone; nothing else holds it
                os.close(h.fd)

    def _discover(self, notes: list[str]) -> list[_Zone]:
        """Zones of one RAPL control type, sorted by index; other types are noted and skipped."""
        try:
            entries = sorted(os.listdir(self._root))
        except OSError:
            return []
        by_control: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        for entry in entries:
            match = _ZONE_ENTRY.match(entry)
            if match is None or "rapl" not in match["control"]:
                continue
            index = tuple(int(part, 16) for part in match["index"][1:].split(":"))
            by_control.setdefault(match["control"], []).append((entry, index))
        control = _pick_control_type(by_control)
        if control is None:
            return []
        for other in sorted(by_control.keys() - {control}):
            notes.append(f"{other}:* zones ignored: the same counters as {control}:*, counted once")
        zones = []
        for entry, index in sorted(by_control[control], key=lambda e: e[1]):
            path = self._root / entry
            try:
                name = (path / "name").read_text(encoding="utf-8", errors="replace").strip()
            except OSError as e:
                notes.append(f"{entry}: name unreadable ({e.strerror}); zone skipped")
                continue
            zones.append(_Zone(entry, index, path, name))
        return zones

    def _open(self, counted: list[_Counted], notes: list[str]) -> Probe:
        """Open each counted zone's energy_uj and build the probe outcome."""
        denied: list[Path] = []
        failed: list[str] = []
        devices: list[Device] = []
        for item in counted:
            energy_path = item.zone.path / "energy_uj"
            try:
                fd = os.open(energy_path, os.O_RDONLY | os.O_CLOEXEC)
            except PermissionError:
                denied.append(energy_path)
                continue
            except OSError as e:
                failed.append(f"{energy_path}: {e.strerror}")
                continue
            try:
                int(os.pread(fd, _READ_BYTES, 0))
            except (OSError, ValueError) as e:
                os.close(fd)
                failed.append(f"{energy_path}: {e.strerror if isinstance(e, OSError) else 'not a number'}")
                continue
            wrap_uj = _read_max_range(item.zone, notes)
            max_power_w = read_max_power_w(item.zone.path)
            self._handles.append(_Handle(fd, item.component, item.device, wrap_uj, max_power_w))
            details = {"zone": str(item.zone.path), "name": item.zone.name}
            if wrap_uj is not None:
                details["max_energy_range_uj"] = str(wrap_uj)
            if max_power_w is not None:
                details["max_power_w"] = f"{max_power_w:g}"
            devices.append(Device(item.component, item.device, SOURCE, "counter", details))
        notes.extend(f"{failure}: unreadable, zone skipped" for failure in failed)
        if denied:
            self.close()
            more = f" and {len(denied) - 1} more" if len(denied) > 1 else ""
            return Probe(
                Status.PERMISSION_DENIED,
                f"cannot read {denied[0]}{more}: permission denied "
                "(energy_uj is root-only since the CVE-2020-8694 fix)",
                PERMISSION_FIX.format(root=self._root),
                notes=tuple(notes),
            )
        if not devices:
            return Probe(
                Status.ERROR,
                f"no RAPL energy_uj under {self._root} could be read ({failed[0]})",
                "check `dmesg` for intel_rapl errors; use the estimate collector meanwhile",
                notes=tuple(notes),
            )
        summary = ", ".join(f"{d.component}/{d.device}" for d in devices)
        return Probe(
            Status.OK,
            f"{len(devices)} RAPL counters under {self._root}: {summary}",
            devices=tuple(devices),
            notes=tuple(notes),
        )


def _pick_control_type(by_control: dict[str, list[tuple[str, tuple[int, ...]]]]) -> str | None:
    """The MSR control type when present, else another RAPL one, MMIO last (it repeats package-N)."""
    if CONTROL_TYPE in by_control:
        return CONTROL_TYPE
    ranked = sorted(by_control, key=lambda control: ("mmio" in control, control))
    return ranked[0] if ranked else None


def _classify(zones: list[_Zone], notes: list[str]) -> list[_Counted]:
    """The zones to count with their (component, device) labels; the others are explained in notes."""
    by_index = {zone.index: zone for zone in zones}
    counted: list[_Counted] = []
    for zone in zones:
        parent = by_index.get(zone.index[:-1]) if len(zone.index) > 1 else None
        if _PACKAGE.match(zone.name):
            counted.append(_Counted(zone, "cpu", zone.name))
        elif zone.name == "dram":
            in_package = parent is not None and _PACKAGE.match(parent.name) is not None
            counted.append(_Counted(zone, "dram", parent.name if parent and in_package else "dram"))
        elif zone.name == "psys":
            counted.append(_Counted(zone, "platform", "psys"))
        elif zone.name in _SUB_ZONES:
            inside = parent.name if parent is not None else "its package"
            notes.append(f"{zone.entry} ({zone.name}) is a sub-zone inside {inside}: not counted")
        else:
            notes.append(f"{zone.entry} ({zone.name}): unknown RAPL zone, not counted")
    return _unique_devices(counted)


def _unique_devices(counted: list[_Counted]) -> list[_Counted]:
    """Suffix -0, -1 ... to device labels that repeat within a component (several psys zones)."""
    seen: dict[tuple[str, str], int] = {}
    for item in counted:
        seen[(item.component, item.device)] = seen.get((item.component, item.device), 0) + 1
    result: list[_Counted] = []
    position: dict[tuple[str, str], int] = {}
    for item in counted:
        key = (item.component, item.device)
        if seen[key] == 1:
            result.append(item)
            continue
        n = position.get(key, 0)
        position[key] = n + 1
        result.append(_Counted(item.zone, item.component, f"{item.device}-{n}"))
    return result


def _read_max_range(zone: _Zone, notes: list[str]) -> int | None:
    """The zone's counter range in microjoules, or None (a wrap then reads as a reset) if unreadable."""
    try:
        return int((zone.path / "max_energy_range_uj").read_bytes())
    except (OSError, ValueError):
        notes.append(f"{zone.entry}: max_energy_range_uj unreadable; a counter wrap will count as 0 J")
        return None


def read_max_power_w(zone: Path) -> float | None:
    """The highest `constraint_*_max_power_uw` or `constraint_*_power_limit_uw` of a zone, in watts;
    None when it has none above zero (many DRAM zones, virtual machines)."""
    most = 0
    for name in glob.glob(os.path.join(glob.escape(str(zone)), "constraint_*_*_uw")):
        if not name.endswith(("_max_power_uw", "_power_limit_uw")):
            continue
        try:
            most = max(most, int(Path(name).read_bytes()))
        except (OSError, ValueError):
            continue  # a constraint the firmware does not fill in
    return most / 1e6 if most > 0 else None
