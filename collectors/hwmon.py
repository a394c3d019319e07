"""Power and energy sensors of Linux hwmon drivers we know, in cumulative microjoules.

Each `<sysfs>/class/hwmon/hwmon*` is matched by its driver (`name`) and label, never by its index,
which changes between boots; what we do not know is left out and explained in the probe's notes.

- `xe`, `i915` (Intel discrete GPUs): `energyN_input`, microjoules the driver extends to 64 bits
  (Documentation/ABI/testing/sysfs-driver-intel-{xe,i915}-hwmon, drivers/gpu/drm/xe/xe_hwmon.c): no
  wrap. xe labels channel 1 "card" (the board) and 2 "pkg" (the GPU package, inside the card): the
  card is counted, else an unlabelled `energy1_input` (i915's device), else the package. `gpu`
  `intelgpuN`; `i915_gt*` devices are parts of an i915 card.
- `amdgpu` (unless AMD SMI reads it): `power1_average`, else `power1_input` (microwatts). `gpu` `amdgpuN`.
- `power_meter` (drivers/hwmon/acpi_power_meter.c, Documentation/hwmon/acpi_power_meter.rst):
  `power1_average`, microwatts averaged over `power1_average_interval` ms; kernels that register it
  the old way put every file, `name` too, in `device/` (the ACPI device), so both are looked at. A
  meter is the node (`node` `power_meterN`), except on NVIDIA Grace, whose firmware names each meter
  in `power1_oem_info` (NVIDIA's edk2-nvidia TH500 SSDTs; the Grace performance tuning guide, "power
  telemetry"; Alumet's grace-hopper plugin): "Module Power Socket N" (the GH200/GB200 module: Grace,
  GPU, memory) -> `module` `socketN`; "Grace Power Socket N" -> `grace` `socketN`, "CPU Power Socket
  N" -> `grace` `socketN.cpu` and "SysIO Power Socket N" -> `grace` `socketN.sysio`, detail inside
  the module. When NVML measures the module (`module_elsewhere`) its meters are not counted, which
  would count it twice; when no module is measured at all (a Grace CPU superchip), the Grace socket
  is the best measure of the CPU: `cpu` `socketN`.

Devices are numbered in PCI address order, which stays put across boots; the address is in the
details and is what `gpu_usage()` (collectors.drm) matches. Energy is returned as read; power is
integrated (trapezoid) between the `read()`s on the injected clock, never across a failed read.
Value files are opened by probe() and re-read with pread().
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from collectors.base import Clock, CollectorError, Counter, Device, PowerIntegral, Probe, Reading, Status
from collectors.drm import DrmUsage
from collectors.workloads import GpuUsage

SOURCE = "hwmon"
COUNTER = "energy counter"
POWER = "power integrated"
_READ_BYTES = 32
_PCI = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_GRACE = re.compile(r"^(Module|Grace|CPU|SysIO) Power Socket (\d+)$")
_GRACE_LABELS = {
    "Module": ("module", ""),
    "Grace": ("grace", ""),
    "CPU": ("grace", ".cpu"),
    "SysIO": ("grace", ".sysio"),
}
"""oem_info kind -> (component, device suffix)."""
_ENERGY = re.compile(r"^energy(\d+)_input$")
_INTEL = ("xe", "i915")
_SKIPPED = {
    "nvme": "an NVMe drive's temperatures",
    "drivetemp": "a drive's temperatures",
    "coretemp": "CPU temperatures",
    "k10temp": "CPU temperatures",
    "amd_energy": "CPU energy: the rapl collector counts CPU packages",
    "zenpower": "CPU power and energy: the rapl collector counts CPU packages",
}
PERMISSION_FIX = "run the agent as root, or grant read access to the files named (a udev rule or `chmod o+r`)"


@dataclass(frozen=True)
class _Dir:
    """One hwmon directory: its class entry, driver name and PCI address where it has one."""

    entry: str
    path: Path
    driver: str
    pci: str | None

    def find(self, name: str) -> Path | None:
        """An attribute file in the hwmon directory, else in its device's (older drivers)."""
        for path in (self.path / name, self.path / "device" / name):
            if path.is_file():
                return path
        return None

    def text(self, name: str) -> str | None:
        path = self.find(name)
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None


@dataclass(frozen=True)
class _Plan:
    """A sensor chosen to be counted, before its file is opened."""

    component: str
    device: str
    path: Path
    method: str
    hwmon: _Dir
    label: str
    max_power_w: float | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class _Sensor:
    """An open value file and, for power, its integral."""

    plan: _Plan
    fd: int
    power: PowerIntegral = field(default_factory=PowerIntegral)


class HwmonCollector:
    """Cumulative energy in microjoules of the hwmon sensors we know (GPUs, power meters, Grace)."""

    name = "hwmon"

    def __init__(
        self,
        sysfs: Path,
        procfs: Path,
        clock: Clock,
        *,
        amdgpu: bool = True,
        module_elsewhere: bool = False,
    ) -> None:
        """`amdgpu`: count amdgpu sensors (False while AMD SMI reads them); `module_elsewhere`: a
        superchip module is already measured (by NVML), so its hwmon meters are not counted."""
        self._root = sysfs / "class" / "hwmon"
        self._procfs = procfs
        self._clock = clock
        self._amdgpu = amdgpu
        self._module_elsewhere = module_elsewhere
        self._sensors: list[_Sensor] = []
        self._usage = DrmUsage(procfs, {}, clock)
        self.usage_errors: tuple[str, ...] = ()
        """A reason per kind of failure in the last gpu_usage(), like Reading.errors."""

    def gpu_usage(self) -> tuple[GpuUsage, ...]:
        """Processes on each hwmon GPU with their engine share in percent (collectors.drm); never raises."""
        usages = self._usage.gpu_usage()
        self.usage_errors = self._usage.usage_errors
        return usages

    def probe(self) -> Probe:
        """Find the sensors we know, open each one's value file and say what is counted and why not."""
        self.close()
        notes: list[str] = []
        dirs = self._discover(notes)
        plans = self._plan(dirs, notes)
        if not plans:
            found = ", ".join(sorted({d.driver for d in dirs})) or "none"
            return Probe(
                Status.NOT_FOUND,
                f"no known power or energy sensor under {self._root} (hwmon drivers: {found})",
                "nothing to do on a node without Intel GPUs, ACPI power meters or Grace sensors",
                notes=tuple(notes),
            )
        denied, failed = self._open(plans)
        notes += [f"{path}: unreadable ({why}); not counted" for path, why in failed]
        notes += [f"{path}: permission denied; not counted" for path in denied]
        if not self._sensors:
            if denied:
                more = f" and {len(denied) - 1} more" if len(denied) > 1 else ""
                return Probe(
                    Status.PERMISSION_DENIED,
                    f"cannot read {denied[0]}{more}: permission denied",
                    PERMISSION_FIX,
                    notes=tuple(notes),
                )
            return Probe(
                Status.ERROR,
                f"no hwmon power or energy file could be read ({failed[0][0]}: {failed[0][1]})",
                "check `dmesg` for the driver's errors",
                notes=tuple(notes),
            )
        self._grace_as_cpu(notes)
        gpus = {s.plan.hwmon.pci: s.plan.device for s in self._sensors if s.plan.component == "gpu"}
        self._usage = DrmUsage(self._procfs, {pci: d for pci, d in gpus.items() if pci}, self._clock)
        devices = tuple(self._device(s.plan) for s in self._sensors)
        summary = ", ".join(f"{d.component}/{d.device}" for d in devices)
        return Probe(
            Status.OK,
            f"{len(devices)} hwmon sensor(s): {summary}",
            devices=devices,
            notes=tuple(notes),
        )

    def read(self) -> Reading:
        """Every open sensor's cumulative energy; one that fails is left out, "read_failed" in errors."""
        now = self._clock()
        counters: list[Counter] = []
        errors: list[str] = []
        down: list[tuple[str, str]] = []
        for sensor in self._sensors:
            plan = sensor.plan
            try:
                value = int(os.pread(sensor.fd, _READ_BYTES, 0))
            except (OSError, ValueError):
                sensor.power.forget()  # the power in the gap is unknown: never integrate across it
                errors.append("read_failed")
                down.append((plan.component, plan.device))
                continue
            energy_uj = value if plan.method == COUNTER else sensor.power.add(now, value)
            counters.append(Counter(plan.component, plan.device, SOURCE, energy_uj, None, plan.max_power_w))
        if not counters:
            if not self._sensors:
                raise CollectorError("not_probed", "hwmon: no open sensor (probe first)")
            raise CollectorError("read_failed", f"hwmon: all {len(self._sensors)} sensor reads failed")
        return Reading(tuple(counters), tuple(errors), tuple(down))

    def close(self) -> None:
        """Close the value files opened by probe()."""
        sensors, self._sensors = self._sensors, []
        for sensor in sensors:
            with contextlib.suppress(OSError):
                os.close(sensor.fd)

    # ---- probe, step by step ---------------------------------------------------------------

    def _discover(self, notes: list[str]) -> list[_Dir]:
        """Every hwmon directory with a readable driver name, in index order."""
        try:
            entries = [e for e in os.listdir(self._root) if e.startswith("hwmon")]
        except OSError:
            notes.append(f"{self._root}: not found (no hwmon drivers loaded)")
            return []
        dirs = []
        for entry in sorted(entries, key=lambda e: (len(e), e)):
            path = self._root / entry
            found = _Dir(entry, path, "", None)
            driver = found.text("name")
            if not driver:
                notes.append(f"{entry}: no readable name; skipped")
                continue
            dirs.append(replace(found, driver=driver, pci=_pci_address(path)))
        return dirs

    def _plan(self, dirs: list[_Dir], notes: list[str]) -> list[_Plan]:
        """The sensors to count, labelled; every other directory explained in `notes`."""
        plans: list[_Plan] = []
        intel = _in_pci_order([d for d in dirs if d.driver in _INTEL])
        for n, d in enumerate(intel):
            plans += _intel_plan(d, f"intelgpu{n}", notes)
        amd = _in_pci_order([d for d in dirs if d.driver == "amdgpu"])
        for n, d in enumerate(amd):
            if not self._amdgpu:
                notes.append(f"{d.entry} (amdgpu {d.pci}): read through AMD SMI instead; not counted")
                continue
            plans += _power_plan(d, "gpu", f"amdgpu{n}", ("power1_average", "power1_input"), notes)
        plans += self._meter_plans([d for d in dirs if d.driver == "power_meter"], notes)
        for d in dirs:
            if d.driver in (*_INTEL, "amdgpu", "power_meter"):
                continue
            if d.driver.startswith("i915_gt"):
                notes.append(f"{d.entry} ({d.driver}): one GT inside an i915 card, which is counted whole")
            elif d.driver in _SKIPPED:
                notes.append(f"{d.entry} ({d.driver}): {_SKIPPED[d.driver]}; not counted")
            elif _has_power_or_energy(d.path):
                notes.append(
                    f"{d.entry} ({d.driver}): power/energy sensors of a driver not known to greenai "
                    "(what they measure is not known, so they could overlap others); not counted"
                )
            else:
                notes.append(f"{d.entry} ({d.driver}): no power or energy sensor")
        return plans

    def _meter_plans(self, meters: list[_Dir], notes: list[str]) -> list[_Plan]:
        """ACPI power meters: Grace's named sensors, else each meter as the node's."""
        grace: list[tuple[_Dir, str, int]] = []
        plain: list[_Dir] = []
        for d in meters:
            oem = d.text("power1_oem_info")
            if oem is None and d.find("power1_oem_info") is not None:
                notes.append(
                    f"{d.entry} (power_meter): power1_oem_info unreadable, so what it measures is not known"
                )
                continue
            match = _GRACE.match(oem or "")
            if match:
                grace.append((d, match[1], int(match[2])))
            else:
                plain.append(d)
        plans: list[_Plan] = []
        if grace:
            for d in plain:
                oem = d.text("power1_oem_info") or ""
                notes.append(f"{d.entry} (power_meter {oem!r}): unknown meter on a Grace system; not counted")
            for d, kind, socket in sorted(grace, key=lambda g: (g[2], list(_GRACE_LABELS).index(g[1]))):
                oem = f"{kind} Power Socket {socket}"
                if kind == "Module" and self._module_elsewhere:
                    notes.append(
                        f"{d.entry} ({oem!r}): not counted: NVML's GPU energy counter already covers "
                        "the whole module (Grace CPU, GPU and memory); counting both would count it twice"
                    )
                    continue
                component, suffix = _GRACE_LABELS[kind]
                plans += _power_plan(d, component, f"socket{socket}{suffix}", ("power1_average",), notes, oem)
            return plans
        for n, d in enumerate(sorted(plain, key=_acpi_order)):
            oem = d.text("power1_oem_info")
            plans += _power_plan(d, "node", f"power_meter{n}", ("power1_average",), notes, oem)
        if len(plans) > 1:
            notes.append(f"{len(plans)} ACPI power meters, each shown as node detail, never summed")
        return plans

    def _open(self, plans: list[_Plan]) -> tuple[list[Path], list[tuple[Path, str]]]:
        """Open and read each plan's value file once; return the denied and the failed ones."""
        denied: list[Path] = []
        failed: list[tuple[Path, str]] = []
        for plan in plans:
            try:
                fd = os.open(plan.path, os.O_RDONLY | os.O_CLOEXEC)
            except PermissionError:
                denied.append(plan.path)
                continue
            except OSError as e:
                failed.append((plan.path, e.strerror or "error"))
                continue
            try:
                int(os.pread(fd, _READ_BYTES, 0))
            except (OSError, ValueError) as e:
                os.close(fd)
                failed.append(
                    (plan.path, (e.strerror or "error") if isinstance(e, OSError) else "not a number")
                )
                continue
            self._sensors.append(_Sensor(plan, fd))
        return denied, failed

    def _grace_as_cpu(self, notes: list[str]) -> None:
        """With no module measured anywhere, count each Grace socket as the CPU it is."""
        if self._module_elsewhere or any(s.plan.component == "module" for s in self._sensors):
            return
        for sensor in self._sensors:
            plan = sensor.plan
            if plan.component == "grace" and "." not in plan.device:
                sensor.plan = replace(plan, component="cpu")
                notes.append(
                    f"{plan.hwmon.entry} ({plan.label!r}): no module is measured, so the Grace socket "
                    f"is counted as cpu/{plan.device}; its CPU and SysIO rails stay grace detail"
                )

    def _device(self, plan: _Plan) -> Device:
        details = {"driver": plan.hwmon.driver, "hwmon": plan.hwmon.entry, "file": str(plan.path)}
        if plan.label:
            details["label"] = plan.label
        if plan.hwmon.pci:
            details["pci"] = plan.hwmon.pci
        if plan.max_power_w is not None:
            details["max_power_w"] = f"{plan.max_power_w:g}"
        details.update(plan.details)
        return Device(plan.component, plan.device, SOURCE, plan.method, details)


def _intel_plan(d: _Dir, device: str, notes: list[str]) -> list[_Plan]:
    """The one energy channel of an Intel card to count: card, else unlabelled, else package."""
    channels: dict[str, tuple[int, Path]] = {}
    try:
        names = sorted(os.listdir(d.path))
    except OSError as e:
        notes.append(f"{d.entry} ({d.driver}): cannot be listed ({e.strerror}); not counted")
        return []
    for name in names:
        match = _ENERGY.match(name)
        if match:
            channel = int(match[1])
            channels[d.text(f"energy{channel}_label") or ""] = (channel, d.path / name)
    for label in ("card", "", "pkg"):
        if label in channels:
            channel, path = channels[label]
            for other in sorted(set(channels) - {label}):
                notes.append(f"{d.entry} ({d.driver} {other!r}): inside the {label or 'device'}; not counted")
            if label == "pkg":
                notes.append(f"{d.entry} ({d.driver}): no card energy; counting the GPU package only")
            return [_Plan("gpu", device, path, COUNTER, d, label, _max_power_w(d, channel))]
    notes.append(f"{d.entry} ({d.driver} {d.pci}): no energy counter (an integrated GPU?); not counted")
    return []


def _power_plan(
    d: _Dir, component: str, device: str, names: tuple[str, ...], notes: list[str], label: str | None = None
) -> list[_Plan]:
    """A plan integrating the first of `names` (microwatts) that exists; none, and a note, without."""
    for name in names:
        path = d.find(name)
        if path is not None:
            details = {}
            interval = d.text("power1_average_interval")
            if name == "power1_average" and interval:
                details["average_interval_ms"] = interval
            return [_Plan(component, device, path, POWER, d, label or "", _max_power_w(d, 1), details)]
    notes.append(f"{d.entry} ({d.driver} {label or d.pci or ''}): no {' or '.join(names)}; not counted")
    return []


def _max_power_w(d: _Dir, channel: int) -> float | None:
    """The highest power limit of the channel in watts (cap, max, rated max, crit); None if none."""
    most = 0
    for suffix in ("cap", "cap_max", "max", "rated_max", "crit"):
        text = d.text(f"power{channel}_{suffix}")
        if text and text.isdigit():
            most = max(most, int(text))
    return most / 1e6 if most > 0 else None


def _pci_address(path: Path) -> str | None:
    """The PCI address of the device behind a hwmon directory, None for a non-PCI one."""
    target = os.path.basename(os.path.realpath(path / "device"))
    return target.lower() if _PCI.match(target.lower()) else None


def _in_pci_order(dirs: list[_Dir]) -> list[_Dir]:
    return sorted(dirs, key=lambda d: (d.pci is None, d.pci or "", len(d.entry), d.entry))


def _acpi_order(d: _Dir) -> tuple[str, int, str]:
    """ACPI device name order (ACPI000D:00, :01 ...): stable across boots, unlike hwmon indexes."""
    return (os.path.basename(os.path.realpath(d.path / "device")), len(d.entry), d.entry)


def _has_power_or_energy(path: Path) -> bool:
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(re.match(r"^(power|energy)\d+_", name) for name in names)
