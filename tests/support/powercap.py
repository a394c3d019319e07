"""A generated Linux powercap tree whose RAPL energy counters advance on a time you set.

The layout is the kernel's: zones live under `<root>/devices/virtual/powercap/intel-rapl/`,
nested inside their parent zone, and `<root>/class/powercap/` holds relative symlinks to each zone
and control type. An `intel-rapl-mmio:0` duplicate of package 0 is added, as on recent Intel client
CPUs. Pass `root` as the collector's sysfs root.

Counters are rewritten in place (same inode, fixed width, zero padded) through descriptors opened
at creation, so a reader that keeps its files open sees every update, never an empty or half
written file, and a zone made root-only keeps advancing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.trees import open_up

DEFAULT_RANGE_UJ = 262_143_328_850
"""The max_energy_range_uj of most Intel package zones (about 262 kJ)."""


@dataclass(frozen=True)
class Zone:
    """One RAPL zone: its index path ((0,) is intel-rapl:0, (0, 2) is intel-rapl:0:2), name and power."""

    index: tuple[int, ...]
    name: str
    power_w: float
    max_energy_range_uj: int = DEFAULT_RANGE_UJ
    energy_uj: int = 0
    """The counter's value at time 0."""
    max_power_w: float | None = None
    """What its constraint_0_max_power_uw says (a TDP); None: twice `power_w`; 0: no constraint files."""

    @property
    def entry(self) -> str:
        """The zone's name in class/powercap, with hexadecimal indexes like the kernel's."""
        return "intel-rapl" + "".join(f":{i:x}" for i in self.index)


def server_zones(sockets: int = 2, package_w: float = 120.0, dram_w: float = 15.0) -> list[Zone]:
    """A typical server: per socket a package zone with core, uncore and dram sub-zones."""
    zones = []
    for s in range(sockets):
        zones += [
            Zone((s,), f"package-{s}", package_w, energy_uj=1_000_000 * s),
            Zone((s, 0), "core", package_w * 0.6),
            Zone((s, 1), "uncore", package_w * 0.1),
            Zone((s, 2), "dram", dram_w, max_energy_range_uj=65_712_999_613),
        ]
    return zones


class PowercapTree:
    """A fake powercap tree under `root`; `set_time` and `advance` move every counter, thread-safe."""

    def __init__(self, root: Path, zones: Iterable[Zone], mmio: bool = True) -> None:
        self.root = root
        self.zones: dict[tuple[int, ...], Zone] = {}
        self._time_s = 0.0
        self._lock = threading.Lock()
        self._fds: dict[tuple[int, ...], int] = {}
        self._mmio_fd: int | None = None
        devices = root / "devices" / "virtual" / "powercap"
        self.class_dir = root / "class" / "powercap"
        self.class_dir.mkdir(parents=True, exist_ok=True)
        control = devices / "intel-rapl"
        _make_control_type(control, self.class_dir)
        for zone in sorted(zones, key=lambda z: z.index):
            self.zones[zone.index] = zone
            path = control.joinpath(*(z.entry for z in _ancestry(zone)))
            self._fds[zone.index] = _make_zone(path, zone, self.class_dir / zone.entry)
        if mmio and (0,) in self.zones:
            package = self.zones[(0,)]
            mmio_control = devices / "intel-rapl-mmio"
            _make_control_type(mmio_control, self.class_dir)
            twin = Zone((0,), package.name, package.power_w, package.max_energy_range_uj, package.energy_uj)
            path = mmio_control / "intel-rapl-mmio:0"
            self._mmio_fd = _make_zone(path, twin, self.class_dir / "intel-rapl-mmio:0")
        open_up(root)
        self.set_time(0.0)

    @property
    def time_s(self) -> float:
        """The tree's current time in seconds."""
        return self._time_s

    def set_time(self, t: float) -> None:
        """Rewrite every energy_uj as (initial + power * t) mod range, t in seconds."""
        with self._lock:
            self._write(t)

    def advance(self, seconds: float) -> None:
        """Move the time forward by `seconds`."""
        with self._lock:
            self._write(self._time_s + seconds)

    def _write(self, t: float) -> None:
        self._time_s = t
        for index, fd in self._fds.items():
            _write_counter(fd, self.zones[index], t)
        if self._mmio_fd is not None:
            _write_counter(self._mmio_fd, self.zones[(0,)], t)

    @contextlib.contextmanager
    def following_real_time(self, period_s: float = 0.01) -> Iterator[PowercapTree]:
        """Within the block, a thread moves the counters with the monotonic clock every `period_s`,
        so that an agent in another process sees the zones draw their power on real time."""
        start = time.monotonic()
        stop = threading.Event()

        def drive() -> None:
            while not stop.wait(period_s):
                self.set_time(time.monotonic() - start)

        thread = threading.Thread(target=drive, name="powercap-clock", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(5)

    def shift(self, zone: Zone, joules: float) -> None:
        """Move the zone's counter by `joules` (negative: back, as a driver reload or reset does)."""
        with self._lock:
            current = self.zones[zone.index]
            self.zones[zone.index] = dataclasses.replace(
                current, energy_uj=current.energy_uj + round(joules * 1e6)
            )
            self._write(self._time_s)

    def write_raw(self, zone: Zone, text: str) -> None:
        """Make the zone's energy_uj read `text` until the next set_time or advance."""
        with self._lock:
            _write_text(self._fds[zone.index], text + "\n")

    def true_joules(self, zone: Zone) -> float:
        """Energy the zone has used from time 0 to now, in joules, ignoring wraps."""
        return self.zones[zone.index].power_w * self._time_s

    def energy_path(self, zone: Zone) -> Path:
        """The zone's energy_uj as the collector sees it, through class/powercap."""
        return self.class_dir / zone.entry / "energy_uj"

    def make_root_only(self, zone: Zone) -> Path:
        """Make the zone's energy_uj unreadable without root privileges (CVE-2020-8694 style).

        Mode 0400 when the tree is owned by root, as on a patched kernel; 0000 otherwise, because a
        non-root owner could still read a 0400 file (only CAP_DAC_OVERRIDE bypasses 0000).
        """
        path = self.energy_path(zone)
        os.chmod(path, 0o400 if os.geteuid() == 0 else 0o000)
        return path

    def close(self) -> None:
        """Close the counters' write descriptors."""
        fds = [*self._fds.values(), *([self._mmio_fd] if self._mmio_fd is not None else [])]
        self._fds, self._mmio_fd = {}, None
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> PowercapTree:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _ancestry(zone: Zone) -> list[Zone]:
    """The zone's parents from the top-level one down to the zone itself (names do not matter)."""
    return [Zone(zone.index[: n + 1], "", 0.0) for n in range(len(zone.index))]


def _make_control_type(path: Path, class_dir: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "enabled").write_text("1\n")
    _link(class_dir / path.name, path)


def _make_zone(path: Path, zone: Zone, link: Path) -> int:
    """Create the zone directory and its class symlink; return a write descriptor on energy_uj."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(f"{zone.name}\n")
    (path / "max_energy_range_uj").write_text(f"{zone.max_energy_range_uj}\n")
    (path / "enabled").write_text("1\n")
    max_power_w = 2 * zone.power_w if zone.max_power_w is None else zone.max_power_w
    if max_power_w > 0:  # the long-term constraint, as the kernel lays it out
        (path / "constraint_0_name").write_text("long_term\n")
        (path / "constraint_0_max_power_uw").write_text(f"{round(max_power_w * 1e6)}\n")
        (path / "constraint_0_power_limit_uw").write_text(f"{round(max_power_w * 1e6)}\n")
    energy = path / "energy_uj"
    energy.touch()
    _link(link, path)
    return os.open(energy, os.O_WRONLY | os.O_CLOEXEC)


def _link(link: Path, target: Path) -> None:
    """A relative symlink, as in the kernel's class/powercap."""
    link.symlink_to(os.path.relpath(target, link.parent))


def _write_counter(fd: int, zone: Zone, t: float) -> None:
    value = (zone.energy_uj + round(zone.power_w * t * 1e6)) % zone.max_energy_range_uj
    width = len(str(zone.max_energy_range_uj))
    _write_text(fd, f"{value:0{width}d}\n")


def _write_text(fd: int, text: str) -> None:
    """Replace the file's content in place; the truncation only matters after a longer write_raw."""
    data = text.encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
