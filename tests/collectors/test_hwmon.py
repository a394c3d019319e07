"""HwmonCollector against generated hwmon trees, through the real Sampler and a fake clock."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from agent.live.sampler import Sampler
from collectors.base import CollectorError, Device, Status
from collectors.drm import DrmUsage
from collectors.hwmon import COUNTER, POWER, HwmonCollector
from collectors.workloads import GpuUsage
from tests.support.clock import FakeClock
from tests.support.hwmon import (
    FakeHwmon,
    acpi_node_meter,
    amdgpu,
    drm_fd,
    drm_fdinfo,
    grace_socket,
    intel_gpu,
    other_fd,
    skipped_sensors,
)
from tests.support.privileges import unprivileged

XE_PCI = "0000:03:00.0"
I915_PCI = "0000:83:00.0"
AMD_PCI = "0000:c1:00.0"


@pytest.fixture
def hwmon(sysfs: Path) -> FakeHwmon:
    return FakeHwmon(sysfs)


def collector(hwmon: FakeHwmon, clock: FakeClock | None = None, **options: bool) -> HwmonCollector:
    return HwmonCollector(hwmon.root, hwmon.root / "no-procfs", clock or FakeClock(0.0), **options)


def labels(devices: Iterable[Device]) -> dict[tuple[str, str], Device]:
    return {(d.component, d.device): d for d in devices}


def test_known_drivers_are_found_by_driver_and_label_and_the_rest_explained(hwmon: FakeHwmon) -> None:
    i915 = intel_gpu(hwmon, I915_PCI, driver="i915", labels=False)  # lower hwmon index, higher PCI address
    xe = intel_gpu(hwmon, XE_PCI, energy_uj=10)
    amd = amdgpu(hwmon, AMD_PCI)
    meter = acpi_node_meter(hwmon)
    nvme, coretemp, amd_energy, mystery = skipped_sensors(hwmon)

    probe = collector(hwmon).probe()

    assert probe.status is Status.OK
    devices = labels(probe.devices)
    gpus = {("gpu", "intelgpu0"), ("gpu", "intelgpu1"), ("gpu", "amdgpu0")}
    assert set(devices) == {*gpus, ("node", "power_meter0")}
    first, second = devices["gpu", "intelgpu0"], devices["gpu", "intelgpu1"]
    assert (first.details["pci"], first.details["hwmon"], first.details["label"]) == (XE_PCI, xe, "card")
    assert first.details["file"].endswith("energy1_input") and first.method == COUNTER
    assert second.details["pci"] == I915_PCI and second.details["hwmon"] == i915
    assert first.details["max_power_w"] == "225"
    amd_device = devices["gpu", "amdgpu0"]
    assert amd_device.method == POWER and amd_device.details["max_power_w"] == "300"
    assert amd_device.details["hwmon"] == amd
    assert devices["node", "power_meter0"].details["hwmon"] == meter
    assert all(d.source == "hwmon" for d in probe.devices)

    notes = "\n".join(probe.notes)
    assert f"{xe} (xe 'pkg'): inside the card" in notes
    assert f"{nvme} (nvme)" in notes and f"{coretemp} (coretemp)" in notes
    assert f"{amd_energy} (amd_energy)" in notes and "rapl collector" in notes
    assert f"{mystery} (mystery_psu): power/energy sensors of a driver not known" in notes


def test_amdgpu_is_left_to_amd_smi_when_asked(hwmon: FakeHwmon) -> None:
    amd = amdgpu(hwmon, AMD_PCI, power_uw=1)
    probe = collector(hwmon, amdgpu=False).probe()
    assert probe.status is Status.NOT_FOUND
    assert "\n" not in probe.reason and "amdgpu" in probe.reason
    assert any(note.startswith(f"{amd} (amdgpu {AMD_PCI}): read through AMD SMI") for note in probe.notes)


def test_energy_counters_are_returned_exactly_even_when_they_look_reset(hwmon: FakeHwmon) -> None:
    big = 2**40 + 5  # past 32 bits: no wrap is applied to a 64-bit counter
    xe = intel_gpu(hwmon, XE_PCI, energy_uj=big)
    clock = FakeClock(0.0)
    hwmon_collector = collector(hwmon, clock)
    assert hwmon_collector.probe().status is Status.OK
    sampler = Sampler([hwmon_collector], clock)
    snapshot = sampler.tick()
    assert hwmon_collector.read().counters[0].energy_uj == big

    clock.advance(1.0)
    hwmon.set(xe, "energy1_input", big + 100_000_000)  # 100 J in 1 s
    sampler.tick()
    clock.advance(1.0)
    hwmon.set(xe, "energy1_input", 1_000)  # lower: the collector says so, the sampler judges it
    assert hwmon_collector.read().counters[0].energy_uj == 1_000
    sampler.tick()
    clock.advance(1.0)
    hwmon.set(xe, "energy1_input", 1_000 + 50_000_000)
    snapshot = sampler.tick()

    assert snapshot.energy_j("gpu", "intelgpu0", "hwmon") == 150.0
    assert dict(snapshot.errors) == {("hwmon", "counter_reset"): 1}
    hwmon_collector.close()


def profile_w(t: float) -> float:
    """A node's power over time: a ramp with a wobble, not periodic over the minute."""
    return 200.0 + 5.0 * t + 50.0 * math.sin(t / 7.0)


def profile_j(t: float) -> float:
    """The exact integral of profile_w from 0 to t."""
    return 200.0 * t + 2.5 * t * t + 350.0 * (1.0 - math.cos(t / 7.0))


def test_power_is_integrated_within_half_a_percent_of_the_truth(hwmon: FakeHwmon) -> None:
    amd = amdgpu(hwmon, AMD_PCI, power_uw=round(profile_w(0) / 2 * 1e6))
    meter = acpi_node_meter(hwmon, power_uw=round(profile_w(0) * 1e6))
    clock = FakeClock(0.0)
    hwmon_collector = collector(hwmon, clock)
    hwmon_collector.probe()
    sampler = Sampler([hwmon_collector], clock)
    sampler.tick()
    for second in range(1, 61):
        clock.now = float(second)
        hwmon.set(amd, "power1_average", round(profile_w(second) / 2 * 1e6))
        hwmon.set(meter, "power1_average", round(profile_w(second) * 1e6))
        snapshot = sampler.tick()
    hwmon_collector.close()

    truth = profile_j(60.0)
    assert snapshot.energy_j("node", "power_meter0", "hwmon") == pytest.approx(truth, rel=0.005)
    assert snapshot.energy_j("gpu", "amdgpu0", "hwmon") == pytest.approx(truth / 2, rel=0.005)
    assert dict(snapshot.errors) == {}


def test_a_failed_power_read_is_never_integrated_across(hwmon: FakeHwmon) -> None:
    amd = amdgpu(hwmon, AMD_PCI, power_uw=100_000_000)
    meter = acpi_node_meter(hwmon, power_uw=400_000_000)
    clock = FakeClock(0.0)
    hwmon_collector = collector(hwmon, clock)
    hwmon_collector.probe()
    hwmon_collector.read()  # t = 0
    clock.now = 1.0
    hwmon.set(amd, "power1_average", "garbage")
    reading = hwmon_collector.read()
    assert reading.errors == ("read_failed",) and reading.down == (("gpu", "amdgpu0"),)
    assert [(c.component, c.energy_uj) for c in reading.counters] == [("node", 400_000_000)]
    for t in (5.0, 6.0):  # back after a 4 s gap, then one more second at 100 W
        clock.now = t
        hwmon.set(amd, "power1_average", 100_000_000)
        reading = hwmon_collector.read()
    energy = {c.device: c.energy_uj for c in reading.counters}
    assert energy == {"amdgpu0": 100_000_000, "power_meter0": 6 * 400_000_000}

    hwmon.set(amd, "power1_average", "x")
    hwmon.set(meter, "power1_average", "x")
    with pytest.raises(CollectorError) as raised:
        hwmon_collector.read()
    assert raised.value.reason == "read_failed"
    hwmon_collector.close()
    with pytest.raises(CollectorError) as raised:
        hwmon_collector.read()
    assert raised.value.reason == "not_probed"


def gh200(hwmon: FakeHwmon, sockets: int = 2, module: bool = True) -> list[dict[str, str]]:
    return [grace_socket(hwmon, socket, module=module, power_uw=0) for socket in range(sockets)]


def test_grace_sensors_map_to_module_and_grace_detail(hwmon: FakeHwmon) -> None:
    entries = gh200(hwmon)
    power_w = {"Module": 650.0, "Grace": 180.0, "CPU": 120.0, "SysIO": 40.0}
    for socket in entries:
        for kind, entry in socket.items():
            hwmon.set(entry, "power1_average", round(power_w[kind] * 1e6))
    clock = FakeClock(0.0)
    hwmon_collector = collector(hwmon, clock)
    probe = hwmon_collector.probe()
    assert probe.status is Status.OK
    devices = labels(probe.devices)
    assert set(devices) == {
        *(("module", f"socket{s}") for s in (0, 1)),
        *(("grace", f"socket{s}{part}") for s in (0, 1) for part in ("", ".cpu", ".sysio")),
    }
    assert devices["module", "socket1"].details["label"] == "Module Power Socket 1"
    assert devices["grace", "socket0.sysio"].details["average_interval_ms"] == "50"

    sampler = Sampler([hwmon_collector], clock)
    sampler.tick()
    for second in range(1, 11):
        clock.now = float(second)
        snapshot = sampler.tick()
    assert snapshot.energy_j("module", "socket0", "hwmon") == pytest.approx(6500.0)
    assert snapshot.energy_j("grace", "socket1.cpu", "hwmon") == pytest.approx(1200.0)
    assert snapshot.energy_j("cpu") == 0.0


def test_a_module_measured_by_nvml_is_not_counted_again(hwmon: FakeHwmon) -> None:
    entries = gh200(hwmon)
    probe = collector(hwmon, module_elsewhere=True).probe()
    devices = labels(probe.devices)
    assert not [key for key in devices if key[0] == "module"]
    assert ("grace", "socket0") in devices and ("cpu", "socket0") not in devices  # still detail
    module_notes = [n for n in probe.notes if n.startswith(entries[0]["Module"])]
    assert len(module_notes) == 1 and "NVML" in module_notes[0] and "twice" in module_notes[0]


def test_without_any_module_the_grace_socket_is_the_cpu(hwmon: FakeHwmon) -> None:
    entries = gh200(hwmon, module=False)
    probe = collector(hwmon).probe()
    assert set(labels(probe.devices)) == {
        *(("cpu", f"socket{s}") for s in (0, 1)),
        *(("grace", f"socket{s}{part}") for s in (0, 1) for part in (".cpu", ".sysio")),
    }
    assert any(n.startswith(entries[1]["Grace"]) and "counted as cpu/socket1" in n for n in probe.notes)


def test_unreadable_files_are_permission_denied(hwmon: FakeHwmon) -> None:
    xe = intel_gpu(hwmon, XE_PCI)
    amd = amdgpu(hwmon, AMD_PCI)
    for entry, file in ((xe, "energy1_input"), (amd, "power1_average")):
        os.chmod(hwmon.path(entry, file), 0o000)
    hwmon_collector = collector(hwmon)
    with unprivileged():
        probe = hwmon_collector.probe()
    assert probe.status is Status.PERMISSION_DENIED
    assert str(hwmon.path(xe, "energy1_input")) in probe.reason and "1 more" in probe.reason
    assert "\n" not in probe.reason and "root" in probe.fix and "read access" in probe.fix
    with pytest.raises(CollectorError):
        hwmon_collector.read()

    os.chmod(hwmon.path(amd, "power1_average"), 0o644)  # one readable: counted, the other explained
    with unprivileged():
        probe = hwmon_collector.probe()
    assert probe.status is Status.OK and set(labels(probe.devices)) == {("gpu", "amdgpu0")}
    assert f"{hwmon.path(xe, 'energy1_input')}: permission denied; not counted" in probe.notes
    hwmon_collector.close()


def test_nothing_known_is_not_found(hwmon: FakeHwmon, sysfs: Path) -> None:
    skipped_sensors(hwmon)
    probe = collector(hwmon).probe()
    assert probe.status is Status.NOT_FOUND
    assert "\n" not in probe.reason and "coretemp" in probe.reason
    assert len(probe.notes) == 4

    bare = HwmonCollector(sysfs / "elsewhere", sysfs, FakeClock())
    assert bare.probe().status is Status.NOT_FOUND
    with pytest.raises(CollectorError):
        bare.read()


# ---- per-process GPU usage from DRM fdinfo ----------------------------------------------------


def processes(usages: tuple[GpuUsage, ...], device: str) -> dict[int, tuple[float | None, int | None]]:
    (usage,) = [u for u in usages if u.device == device]
    return {p.pid: (p.sm_util, p.memory_bytes) for p in usage.processes}


def test_two_processes_on_an_intel_gpu_share_it_by_engine_busy_time(hwmon: FakeHwmon, tmp_path: Path) -> None:
    intel_gpu(hwmon, XE_PCI, driver="i915", labels=False)
    procfs = tmp_path / "proc"
    memory = {"drm-resident-local0": "2048 KiB", "drm-total-local0": "4 MiB", "drm-resident-system": "0"}
    first = drm_fd(procfs, 100, 5, XE_PCI, 1, {"drm-engine-render": "1000000000 ns", **memory})
    second = drm_fd(procfs, 200, 9, XE_PCI, 2, {"drm-engine-render": "0 ns", "drm-engine-video": "0 ns"})
    clock = FakeClock(0.0)
    hwmon_collector = HwmonCollector(hwmon.root, procfs, clock)
    hwmon_collector.probe()

    # The first scan has no baseline: shares unknown, memory known.
    assert processes(hwmon_collector.gpu_usage(), "intelgpu0") == {100: (None, 2 * 2**20), 200: (None, None)}
    clock.advance(2.0)
    drm_fdinfo(first, XE_PCI, 1, {"drm-engine-render": "1600000000 ns", **memory})
    video = {"drm-engine-video": "400000000 ns", "drm-engine-capacity-video": "2"}
    drm_fdinfo(second, XE_PCI, 2, {"drm-engine-render": "200000000 ns", **video})
    drm_fd(procfs, 300, 3, XE_PCI, 3, {"drm-engine-render": "100000000 ns"})  # opened since the last scan
    usage = processes(hwmon_collector.gpu_usage(), "intelgpu0")

    # 0.6 s of 2 s; 0.2 s render + 0.4 s over 2 video engines of 2 s. Between full scans (every 10 s)
    # only the DRM fds found are read: the new client is not seen yet.
    assert usage[100] == (pytest.approx(30.0), 2 * 2**20)
    assert usage[200][0] == pytest.approx(10.0 + 10.0)
    assert 300 not in usage

    clock.advance(8.0)  # 10 s since the first full scan: the next one finds it
    drm_fdinfo(first, XE_PCI, 1, {"drm-engine-render": "2400000000 ns", **memory})
    usage = processes(hwmon_collector.gpu_usage(), "intelgpu0")
    assert usage[100][0] == pytest.approx(10.0)  # 0.8 s of 8 s
    assert usage[200][0] == pytest.approx(0.0)
    assert usage[300][0] == pytest.approx(1.0)  # opened since the first scan: 0.1 s spread over its 10 s
    assert hwmon_collector.usage_errors == ()
    hwmon_collector.close()


def test_xe_cycles_are_shares_of_the_gpu_cycle_clock(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    pdev = "0000:4D:00.0"  # upper case as some tools write it; drm-pdev is lower case
    fdinfo = drm_fd(procfs, 42, 7, pdev.lower(), 11, {}, driver="xe")
    clock = FakeClock(0.0)
    usage = DrmUsage(procfs, {pdev: "intelgpu3"}, clock)

    def cycles(rcs: int, ccs: int, total: int) -> None:
        lines = {
            "drm-cycles-rcs": str(rcs),
            "drm-total-cycles-rcs": str(total),
            "drm-cycles-ccs": str(ccs),
            "drm-total-cycles-ccs": str(total),
            "drm-engine-capacity-ccs": "4",
            "drm-cycles-bcs": "999",  # no clock to divide by: left out
            "drm-resident-vram0": "1 GiB",
        }
        drm_fdinfo(fdinfo, pdev.lower(), 11, lines, driver="xe")

    cycles(rcs=1_000, ccs=0, total=10_000)
    usage.gpu_usage()
    clock.advance(1.0)  # the cycle clock, not the agent's, is the denominator
    cycles(rcs=1_000 + 2_500, ccs=4_000, total=10_000 + 5_000)
    assert processes(usage.gpu_usage(), "intelgpu3") == {42: (pytest.approx(50.0 + 20.0), 2**30)}


def test_a_client_shared_by_several_fds_is_counted_once(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    nvidia = "0000:17:00.0"
    busy = {"drm-engine-render": "0 ns", "drm-resident-local0": "1 MiB"}
    shared = [drm_fd(procfs, 500, fd, XE_PCI, 8, busy) for fd in (4, 5)]
    shared.append(drm_fd(procfs, 501, 4, XE_PCI, 8, busy))  # a child that kept its parent's fd
    drm_fd(procfs, 502, 3, nvidia, 1, {"drm-engine-render": "0 ns"})  # a GPU that is not ours
    other_fd(procfs, 503, 1, "/tmp/log", f"pos:\t0\ndrm-pdev:\t{XE_PCI}\ndrm-client-id:\t9\n")
    os.makedirs(procfs / "self")
    clock = FakeClock(0.0)
    usage = DrmUsage(procfs, {XE_PCI: "intelgpu0"}, clock)
    usage.gpu_usage()
    clock.advance(1.0)
    for path in shared:
        drm_fdinfo(path, XE_PCI, 8, {**busy, "drm-engine-render": "250000000 ns"})

    assert processes(usage.gpu_usage(), "intelgpu0") == {500: (pytest.approx(25.0), 2**20)}


def test_no_hwmon_gpu_means_no_process_scan(hwmon: FakeHwmon, sysfs: Path) -> None:
    acpi_node_meter(hwmon, power_uw=1)
    missing = sysfs / "no-such-procfs"
    hwmon_collector = HwmonCollector(hwmon.root, missing, FakeClock())
    assert hwmon_collector.gpu_usage() == ()  # before probe
    hwmon_collector.probe()
    assert hwmon_collector.gpu_usage() == () and hwmon_collector.usage_errors == ()
    scanning = DrmUsage(missing, {XE_PCI: "intelgpu0"})  # a scan would have said so
    assert scanning.gpu_usage() == (GpuUsage("intelgpu0"),)
    assert scanning.usage_errors == ("procfs_unreadable",)
    hwmon_collector.close()


def test_between_full_scans_only_the_drm_fds_found_are_read_and_closed_ones_drop_out(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    kept = drm_fd(procfs, 100, 5, XE_PCI, 1, {"drm-engine-render": "0 ns"})
    closed = drm_fd(procfs, 200, 6, XE_PCI, 2, {"drm-engine-render": "0 ns"})
    clock = FakeClock(0.0)
    usage = DrmUsage(procfs, {XE_PCI: "intelgpu0"}, clock, rescan_seconds=10.0)
    assert set(processes(usage.gpu_usage(), "intelgpu0")) == {100, 200}
    # Process 100's fd table is unreadable from now on: a full scan would skip it, the fds found are read.
    (procfs / "100" / "fd" / "5").unlink()
    closed.unlink()  # process 200 closed its GPU
    clock.advance(1.0)
    drm_fdinfo(kept, XE_PCI, 1, {"drm-engine-render": "500000000 ns"})
    assert processes(usage.gpu_usage(), "intelgpu0") == {100: (pytest.approx(50.0), None)}
    clock.advance(9.0)  # a full scan again: the fd link is gone, so is the client
    assert processes(usage.gpu_usage(), "intelgpu0") == {}
