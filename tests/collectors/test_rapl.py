"""RaplCollector against generated powercap trees, through the real Sampler and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.live.sampler import Sampler
from collectors.base import Collector, CollectorError, Status
from collectors.rapl import RaplCollector
from tests.support.clock import FakeClock
from tests.support.powercap import PowercapTree, Zone
from tests.support.privileges import unprivileged

INTERVAL_S = 0.1
TICKS = 60

# Four sockets; the fourth has the hexadecimal index intel-rapl:a and psys sits between them, so
# zone names and indexes disagree. Sub-zone order differs per socket, as it does between CPUs.
PACKAGES = {
    "package-0": Zone((0,), "package-0", 95.0, energy_uj=262_000_000_000),  # wraps once, early
    "package-1": Zone((1,), "package-1", 80.0, max_energy_range_uj=10_000_000),  # wraps every 125 ms
    "package-2": Zone((3,), "package-2", 110.0),
    "package-3": Zone((10,), "package-3", 60.5, energy_uj=123_456_789),
}
DRAMS = {
    "package-0": Zone((0, 2), "dram", 12.0),
    "package-1": Zone((1, 0), "dram", 9.5),
    "package-2": Zone((3, 1), "dram", 14.0),
    "package-3": Zone((10, 1), "dram", 20.0, max_energy_range_uj=3_000_000),  # wraps every 150 ms
}
SUB_ZONES = [
    Zone((0, 0), "core", 60.0),
    Zone((0, 1), "uncore", 10.0),
    Zone((1, 1), "core", 50.0),
    Zone((1, 2), "uncore", 8.0),
    Zone((3, 0), "core", 70.0),
    Zone((3, 2), "uncore", 12.0),
    Zone((10, 0), "core", 40.0),
    Zone((10, 2), "uncore", 5.0),
]
PSYS = Zone((2,), "psys", 450.0)
ALL_ZONES = [*PACKAGES.values(), *DRAMS.values(), *SUB_ZONES, PSYS]


@pytest.fixture
def tree(sysfs: Path) -> Iterator[PowercapTree]:
    with PowercapTree(sysfs, ALL_ZONES) as t:
        yield t


def test_sampler_matches_ground_truth_per_component_and_device(tree: PowercapTree) -> None:
    collector = RaplCollector(tree.root)
    assert collector.probe().status is Status.OK
    clock = FakeClock(0.0)
    sampler = Sampler([collector], clock)
    sampler.tick()  # baseline at t = 0
    for i in range(1, TICKS + 1):
        clock.now = i * INTERVAL_S
        tree.set_time(clock.now)
        snapshot = sampler.tick()
    collector.close()

    assert snapshot.collectors_up == {"rapl": True}
    assert dict(snapshot.errors) == {}
    for device, zone in PACKAGES.items():
        assert snapshot.energy_j("cpu", device, "rapl") == pytest.approx(tree.true_joules(zone), rel=1e-6)
    for device, zone in DRAMS.items():
        assert snapshot.energy_j("dram", device, "rapl") == pytest.approx(tree.true_joules(zone), rel=1e-6)
    assert snapshot.energy_j("platform", "psys", "rapl") == pytest.approx(tree.true_joules(PSYS), rel=1e-6)

    # cpu is the packages only: no core/uncore (inside them), no psys (around them), no mmio twin
    packages_j = sum(tree.true_joules(zone) for zone in PACKAGES.values())
    assert snapshot.energy_j("cpu") == pytest.approx(packages_j, rel=1e-6)
    assert snapshot.energy_j("dram") == pytest.approx(sum(map(tree.true_joules, DRAMS.values())), rel=1e-6)
    keys = {(row.component, row.device, row.source) for row in snapshot.energy}
    assert keys == {
        *(("cpu", device, "rapl") for device in PACKAGES),
        *(("dram", device, "rapl") for device in DRAMS),
        ("platform", "psys", "rapl"),
    }


def test_wrapping_counters_are_exact(tree: PowercapTree) -> None:
    fast = [PACKAGES["package-1"], DRAMS["package-3"], PACKAGES["package-0"]]
    for zone in fast[:2]:  # each wraps several times, and more slowly than the sample interval
        wrap_s = zone.max_energy_range_uj / 1e6 / zone.power_w
        assert INTERVAL_S < wrap_s < TICKS * INTERVAL_S / 5
    collector = RaplCollector(tree.root)
    collector.probe()
    clock = FakeClock(0.0)
    sampler = Sampler([collector], clock)
    sampler.tick()
    for i in range(1, TICKS + 1):
        clock.now = i * INTERVAL_S
        tree.set_time(clock.now)
        snapshot = sampler.tick()
    collector.close()
    # integer microjoules per sample: at most 1 uJ of rounding per interval
    assert abs(snapshot.energy_j("cpu", "package-1") - tree.true_joules(fast[0])) <= TICKS * 1e-6
    assert abs(snapshot.energy_j("dram", "package-3") - tree.true_joules(fast[1])) <= TICKS * 1e-6
    assert abs(snapshot.energy_j("cpu", "package-0") - tree.true_joules(fast[2])) <= TICKS * 1e-6


def test_power_matches_the_set_power(tree: PowercapTree) -> None:
    collector = RaplCollector(tree.root)
    collector.probe()
    clock = FakeClock(0.0)
    sampler = Sampler([collector], clock)
    sampler.tick()
    for i in range(1, 4):
        clock.now = i * INTERVAL_S
        tree.set_time(clock.now)
        snapshot = sampler.tick()
    collector.close()
    power = {(row.component, row.device): row.power_w for row in snapshot.energy}
    for device, zone in PACKAGES.items():
        assert power["cpu", device] == pytest.approx(zone.power_w, abs=1e-4)
    for device, zone in DRAMS.items():
        assert power["dram", device] == pytest.approx(zone.power_w, abs=1e-4)
    assert power["platform", "psys"] == pytest.approx(PSYS.power_w, abs=1e-4)


def test_probe_lists_devices_and_explains_what_is_not_counted(tree: PowercapTree) -> None:
    collector: Collector = RaplCollector(tree.root)
    probe = collector.probe()
    collector.close()
    assert probe.status is Status.OK
    assert "\n" not in probe.reason
    devices = {(d.component, d.device): d for d in probe.devices}
    assert set(devices) == {
        *(("cpu", name) for name in PACKAGES),
        *(("dram", name) for name in DRAMS),
        ("platform", "psys"),
    }
    assert all(d.source == "rapl" and d.method == "counter" for d in probe.devices)
    hex_package = devices["cpu", "package-3"].details
    assert hex_package["zone"] == str(tree.class_dir / "intel-rapl:a")
    dram_range = devices["dram", "package-1"].details["max_energy_range_uj"]
    assert dram_range == str(DRAMS["package-1"].max_energy_range_uj)
    notes = "\n".join(probe.notes)
    assert "intel-rapl:a:0 (core)" in notes and "intel-rapl:a:2 (uncore)" in notes
    assert notes.count("not counted") == len(SUB_ZONES)
    assert "intel-rapl-mmio" in notes


def test_dies_several_psys_and_unknown_zones(sysfs: Path) -> None:
    zones = [
        Zone((0,), "package-0-die-0", 50.0),
        Zone((0, 0), "dram", 5.0),
        Zone((1,), "package-0-die-1", 45.0),
        Zone((1, 0), "dram", 6.0),
        Zone((1, 1), "core", 30.0),
        Zone((2,), "psys", 150.0),
        Zone((3,), "psys", 160.0),
        Zone((4,), "gpu-thing", 1.0),
    ]
    with PowercapTree(sysfs, zones, mmio=False):
        collector = RaplCollector(sysfs)
        probe = collector.probe()
        reading = collector.read()
        collector.close()
    labels = sorted((c.component, c.device) for c in reading.counters)
    assert labels == [
        ("cpu", "package-0-die-0"),
        ("cpu", "package-0-die-1"),
        ("dram", "package-0-die-0"),
        ("dram", "package-0-die-1"),
        ("platform", "psys-0"),
        ("platform", "psys-1"),
    ]
    assert any("gpu-thing" in note for note in probe.notes)


def test_no_powercap_is_not_found(sysfs: Path) -> None:
    probe = RaplCollector(sysfs).probe()
    assert probe.status is Status.NOT_FOUND
    assert probe.reason.startswith("no RAPL zones under ")
    assert "virtual machine" in probe.reason and "\n" not in probe.reason
    assert probe.fix


def test_powercap_without_rapl_is_not_found(sysfs: Path) -> None:
    (sysfs / "class" / "powercap" / "dtpm").mkdir(parents=True)
    collector = RaplCollector(sysfs)
    assert collector.probe().status is Status.NOT_FOUND
    with pytest.raises(CollectorError) as raised:
        collector.read()
    assert raised.value.reason == "not_probed"


def test_root_only_energy_uj_is_permission_denied(tree: PowercapTree) -> None:
    """Since the CVE-2020-8694 fix energy_uj is mode 0400 root; a non-root agent must say so."""
    locked = tree.make_root_only(DRAMS["package-2"])
    collector = RaplCollector(tree.root)
    with unprivileged():
        probe = collector.probe()
    assert probe.status is Status.PERMISSION_DENIED
    assert str(locked) in probe.reason
    assert "\n" not in probe.reason
    assert "root" in probe.fix and "read access" in probe.fix
    with pytest.raises(CollectorError):
        collector.read()  # nothing left open


def test_a_zone_that_fails_is_left_out_and_counted(tree: PowercapTree) -> None:
    collector = RaplCollector(tree.root)
    collector.probe()
    broken = tree.energy_path(DRAMS["package-0"])
    with open(broken, "r+b") as f:  # in place: the collector's open descriptor sees it
        f.write(b"not a number\n")
    reading = collector.read()
    assert reading.errors == ("read_failed",)
    assert ("dram", "package-0") not in {(c.component, c.device) for c in reading.counters}
    assert len(reading.counters) == len(PACKAGES) + len(DRAMS) + 1 - 1

    for zone in [*PACKAGES.values(), *DRAMS.values(), PSYS]:
        with open(tree.energy_path(zone), "r+b") as f:
            f.write(b"x")
    with pytest.raises(CollectorError) as raised:
        collector.read()
    assert raised.value.reason == "read_failed"
    collector.close()


def test_close_releases_the_files(tree: PowercapTree) -> None:
    collector = RaplCollector(tree.root)
    collector.probe()
    collector.close()
    collector.close()
    with pytest.raises(CollectorError):
        collector.read()
