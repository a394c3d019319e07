"""A generated Linux hwmon tree, and DRM clients in a generated procfs, with values the test sets.

The layout is the kernel's: each hwmon directory lives under its device,
`<root>/devices/<device>/hwmon/hwmonN`, with a `device` link back to it, and
`<root>/class/hwmon/hwmonN` is a relative symlink to it. Pass `root` as the collector's sysfs root.
Values are rewritten in place (same inode), so a reader that keeps its files open sees each update.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tests.support.trees import open_up

ACPI_METER = "ACPI000D"


class FakeHwmon:
    """hwmon devices under `root`; `add` makes one, `set` changes one of its files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.class_dir = root / "class" / "hwmon"
        self.class_dir.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def add(
        self,
        name: str,
        files: Mapping[str, str],
        device_files: Mapping[str, str] | None = None,
        device_link: str | None = None,
        *,
        name_in_device: bool = False,
    ) -> str:
        """A hwmon directory for driver `name`; returns its entry (`hwmon3`).

        `device_link` is the device it hangs under (a PCI address, `ACPI000D:00`), None for a virtual
        one without a `device` link. `name_in_device` puts `name` in the device instead, as the ACPI
        power meter does in kernels that register it the old way.
        """
        entry = f"hwmon{self._count}"
        self._count += 1
        device = self.root / "devices" / (device_link or "virtual")
        path = device / "hwmon" / entry
        path.mkdir(parents=True)
        if device_link is not None:
            (path / "device").symlink_to(os.path.relpath(device, path))
        for file, text in {**({} if name_in_device else {"name": name}), **files}.items():
            (path / file).write_text(f"{text}\n")
        extra = {**(device_files or {}), **({"name": name} if name_in_device else {})}
        if extra and device_link is None:
            raise ValueError("device_files need a device_link")
        for file, text in extra.items():
            (device / file).write_text(f"{text}\n")
        (self.class_dir / entry).symlink_to(os.path.relpath(path, self.class_dir))
        open_up(self.root)
        return entry

    def path(self, entry: str, file: str) -> Path:
        """`file` of hwmon `entry` as a reader finds it through class/hwmon: in the hwmon directory,
        else in its device."""
        own = self.class_dir / entry / file
        return own if own.exists() else self.class_dir / entry / "device" / file

    def set(self, entry: str, file: str, value: int | str) -> None:
        """Rewrite `file` of hwmon `entry` in place."""
        data = f"{value}\n".encode()
        fd = os.open(self.path(entry, file), os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)


def intel_gpu(hwmon: FakeHwmon, pci: str, energy_uj: int = 0, driver: str = "xe", labels: bool = True) -> str:
    """An Intel Arc card: xe's card and package energy channels (labelled), or i915's one."""
    files = {"energy1_input": str(energy_uj), "power1_max": "0", "power1_rated_max": "225000000"}
    if labels:
        files |= {
            "energy1_label": "card",
            "energy2_input": str(energy_uj // 2),
            "energy2_label": "pkg",
            "power1_label": "card",
        }
    return hwmon.add(driver, files, device_link=pci)


def amdgpu(hwmon: FakeHwmon, pci: str, power_uw: int = 0, cap_uw: int = 300_000_000) -> str:
    """An AMD GPU without ROCm: power1_average in microwatts and its cap."""
    files = {"power1_average": str(power_uw), "power1_cap": str(cap_uw), "power1_cap_max": str(cap_uw)}
    return hwmon.add("amdgpu", files, device_link=pci)


def acpi_node_meter(hwmon: FakeHwmon, power_uw: int = 0, index: int = 0) -> str:
    """An ACPI power meter of the whole node, laid out by a recent kernel (files in the hwmon dir)."""
    files = {"power1_average": str(power_uw), "power1_average_interval": "1000", "power1_oem_info": ""}
    return hwmon.add("power_meter", files, device_link=f"{ACPI_METER}:{index:02x}")


def grace_socket(hwmon: FakeHwmon, socket: int, module: bool = True, power_uw: int = 0) -> dict[str, str]:
    """The ACPI meters of one GH200 socket (GB200 alike; a Grace superchip has no module meter), laid
    out as NVIDIA's kernels have them: every file, `name` included, in the ACPI device; by kind."""
    kinds = ["Module", "Grace", "CPU", "SysIO"] if module else ["Grace", "CPU", "SysIO"]
    entries = {}
    for kind in kinds:
        index = len(list(hwmon.class_dir.iterdir()))
        device_files = {
            "power1_average": str(power_uw),
            "power1_average_interval": "50",
            "power1_oem_info": f"{kind} Power Socket {socket}",
            "power1_model_number": "",
        }
        entries[kind] = hwmon.add(
            "power_meter", {}, device_files, f"{ACPI_METER}:{index:02x}", name_in_device=True
        )
    return entries


def skipped_sensors(hwmon: FakeHwmon) -> list[str]:
    """Drivers the collector must leave out: an NVMe drive, CPU temperatures, a CPU energy driver,
    and an unknown driver with a power sensor."""
    return [
        hwmon.add("nvme", {"temp1_input": "38850", "temp1_label": "Composite"}, device_link="nvme0"),
        hwmon.add("coretemp", {"temp1_input": "45000", "temp1_label": "Package id 0"}, device_link="cpu0"),
        hwmon.add("amd_energy", {"energy1_input": "123456", "energy1_label": "Esocket0"}),
        hwmon.add("mystery_psu", {"power1_input": "90000000"}),
    ]


def drm_fd(
    procfs: Path, pid: int, fd: int, pdev: str, client_id: int, lines: Mapping[str, str], driver: str = "i915"
) -> Path:
    """An open DRM fd of process `pid` in a generated procfs: `fd/<fd>` -> /dev/dri/renderD128 (which
    need not exist) and its fdinfo; returns the fdinfo, which `drm_fdinfo` rewrites."""
    (procfs / str(pid) / "fd").mkdir(parents=True, exist_ok=True)
    (procfs / str(pid) / "fdinfo").mkdir(parents=True, exist_ok=True)
    (procfs / str(pid) / "fd" / str(fd)).symlink_to("/dev/dri/renderD128")
    path = procfs / str(pid) / "fdinfo" / str(fd)
    drm_fdinfo(path, pdev, client_id, lines, driver)
    return path


def drm_fdinfo(path: Path, pdev: str, client_id: int, lines: Mapping[str, str], driver: str = "i915") -> None:
    """Write an fdinfo as the kernel shows a DRM client's: header, driver, device, client, `lines`."""
    head = f"pos:\t0\nflags:\t02100002\nmnt_id:\t26\nino:\t1049\ndrm-driver:\t{driver}\n"
    head += f"drm-pdev:\t{pdev}\ndrm-client-id:\t{client_id}\n"
    path.write_text(head + "".join(f"{key}:\t{value}\n" for key, value in lines.items()))


def other_fd(procfs: Path, pid: int, fd: int, target: str, fdinfo: str) -> None:
    """A non-DRM fd (a file, a socket) whose fdinfo must never be read."""
    (procfs / str(pid) / "fd").mkdir(parents=True, exist_ok=True)
    (procfs / str(pid) / "fdinfo").mkdir(parents=True, exist_ok=True)
    (procfs / str(pid) / "fd" / str(fd)).symlink_to(target)
    (procfs / str(pid) / "fdinfo" / str(fd)).write_text(fdinfo)
