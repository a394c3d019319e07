"""AmdSmiCollector through the real amdsmi bindings over the fake libamd_smi.so, in a subprocess on a
fake clock, with the agent's real Sampler."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.amdsmi.collector import NOT_FOUND_REASON
from tests.collectors.test_nvml import REPO, Drive
from tests.support.amdsmi import (
    AMDSMI_STATUS_NOT_SUPPORTED,
    FakeAmdGpu,
    FakeAmdProcess,
    write_amd_state,
)

REPROBE_S = 10.0
START_S = 1000.0  # the drive's fake clock starts here


class AmdDrive(Drive):
    """A `python -m tests.support.drive_amd` subprocess over the fake library, and only it: the same
    commands and answers as the NVML drive."""

    def __init__(self, lib_dir: Path, state: Path, index_offset: int = 0) -> None:
        # Not Drive.__init__, which starts the NVML drive.
        env = {k: v for k, v in os.environ.items() if k not in ("ROCM_PATH", "ROCM_HOME")}
        env |= {"LD_LIBRARY_PATH": str(lib_dir), "FAKE_AMDSMI_STATE": str(state)}
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.support.drive_amd"),
                *("--reprobe-seconds", str(REPROBE_S), "--index-offset", str(index_offset)),
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


class Gpus:
    """The fake handles of one test and the simulated time; every change rewrites the state file."""

    def __init__(self, path: Path, *gpus: FakeAmdGpu) -> None:
        self.path = path
        self.gpus = list(gpus)
        self.t = START_S
        self.loaded = True
        self.write()

    def write(self) -> None:
        write_amd_state(self.path, self.gpus, t=self.t, loaded=self.loaded)

    def set(self, index: int, **changes: Any) -> None:
        self.gpus[index] = dataclasses.replace(self.gpus[index], **changes)
        self.write()

    def set_power(self, index: int, watts: int) -> None:
        """Change a live GPU's power from now on: its accumulator carries on from where it is."""
        gpu = self.gpus[index]
        self.set(index, ticks=gpu.ticks_at(self.t), t0=self.t, power_w=watts)

    def step(self, drive: Drive, seconds: float) -> dict[str, Any]:
        """Move the simulated time and the drive's clock together, and take one sample."""
        self.t += seconds
        self.write()
        return drive.advance(seconds)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "amdsmi-state"


@pytest.fixture
def run(fake_amdsmi_lib: Path, state: Path) -> Iterator[Callable[..., AmdDrive]]:
    """Starts the drive subprocess over the fake library (after the test has written its state)."""
    drives: list[AmdDrive] = []

    def start(index_offset: int = 0) -> AmdDrive:
        drives.append(AmdDrive(fake_amdsmi_lib, state, index_offset))
        return drives[-1]

    yield start
    for drive in drives:
        drive.close()


def energy(snapshot: dict[str, Any], device: str) -> float:
    value: float = snapshot["energy"][device]["energy_j"]
    return value


def mi300x(bdf: str, **fields: Any) -> FakeAmdGpu:
    return FakeAmdGpu(bdf, live=True, t0=START_S, **fields)


def test_probe_lists_each_gpu_with_its_method(run: Callable[..., AmdDrive], state: Path) -> None:
    gpus = Gpus(
        state,
        mi300x("0000:0c:00.0", power_w=500),
        FakeAmdGpu(
            "0000:1c:00.0",
            name="AMD Instinct MI210",
            counter=False,
            power_field="average",
            cap_uw=300_000_000,
        ),
    )
    probe = run(index_offset=2).probe()  # two NVIDIA GPUs come first
    assert probe["status"] == "OK"
    assert probe["reason"] == "2 GPU(s): 1 by energy counter, 1 by power"
    assert [(d["component"], d["device"], d["source"], d["method"]) for d in probe["devices"]] == [
        ("gpu", "gpu2", "amdsmi", "counter"),
        ("gpu", "gpu3", "amdsmi", "power"),
    ]
    assert probe["devices"][0]["details"] == {
        "uuid": gpus.gpus[0].uuid_or_default(),
        "bdf": "0000:0c:00.0",
        "name": "AMD Instinct MI300X",
        "index": "2",
        "max_power_w": "750",
        "partition_mode": "SPX",
    }
    assert probe["devices"][1]["details"]["max_power_w"] == "300"
    assert any("gpu3 (0000:1c:00.0) AMD Instinct MI210" in note for note in probe["notes"])


def test_no_library_is_not_found_in_one_line(tmp_path: Path, state: Path) -> None:
    if Path("/opt/rocm/lib/libamd_smi.so").exists():
        pytest.skip("a real libamd_smi.so is installed: the bindings would find it")
    empty = tmp_path / "no-rocm"
    empty.mkdir()
    Gpus(state, mi300x("0000:0c:00.0"))
    drive = AmdDrive(empty, state)
    try:
        probe = drive.probe()  # the bindings' own complaint on stdout must not get in the way
        assert probe["status"] == "NOT_FOUND"
        assert probe["reason"] == NOT_FOUND_REASON
        assert "\n" not in probe["fix"]
        assert "amd-smi-lib" in probe["fix"] and "LD_LIBRARY_PATH" in probe["fix"]
        assert "collectors.amdsmi" in probe["fix"]
        assert drive.advance(1)["collectors_up"] == {"amdsmi": False}
    finally:
        drive.close()


def test_energy_counter_is_exact_over_a_minute_through_a_32_bit_wrap(
    run: Callable[..., AmdDrive], state: Path
) -> None:
    resolution = 15.3
    near_wrap = (1 << 32) - int(20_000 * 1e6 / resolution)  # 20 kJ below the top: wraps within a minute
    gpus = Gpus(
        state,
        mi300x("0000:0c:00.0", ticks=near_wrap, wrap_bits=32, resolution=resolution, power_w=400),
        mi300x("0000:1c:00.0", ticks=5 << 32, power_w=250),  # a 64-bit counter, long past 32 bits
    )
    drive = run()
    drive.advance(0)  # the baseline, at t = 1000
    truth = [0.0, 0.0]
    for second in range(60):
        watts = [round(400 + 300 * math.sin(second / 7)), 250 + 5 * second]
        for i, w in enumerate(watts):
            gpus.set_power(i, w)
            truth[i] += w * 1.0
        snapshot = gpus.step(drive, 1)
    assert gpus.gpus[0].ticks_at(gpus.t) > 1 << 32  # the fake's 32-bit counter did wrap
    assert energy(snapshot, "gpu0") == pytest.approx(truth[0], rel=0.005)
    assert energy(snapshot, "gpu1") == pytest.approx(truth[1], rel=0.005)
    assert snapshot["errors"] == {}
    # The sampler books it under its source, for attribution.
    assert snapshot["energy"]["gpu0"]["source"] == "amdsmi"
    assert set(snapshot["interval"]) == {"gpu0/amdsmi", "gpu1/amdsmi"}
    assert snapshot["interval"]["gpu1/amdsmi"] == pytest.approx(250 + 5 * 59, rel=0.005)
    assert snapshot["collectors_up"] == {"amdsmi": True}


def test_power_only_gpu_integrates_power_within_half_a_percent(
    run: Callable[..., AmdDrive], state: Path
) -> None:
    def watts(t: float) -> float:
        return 400 + 150 * math.sin(2 * math.pi * (t - START_S) / 20)

    gpus = Gpus(state, FakeAmdGpu("0000:0c:00.0", counter=False, power_w=round(watts(START_S))))
    drive = run()
    assert [d["method"] for d in drive.probe()["devices"]] == ["power"]
    drive.advance(0)
    for _ in range(60):
        gpus.t += 1
        gpus.set(0, power_w=round(watts(gpus.t)))  # what the GPU draws when it is sampled
        snapshot = drive.advance(1)
    truth = 400 * 60 + 150 * 20 / (2 * math.pi) * (1 - math.cos(2 * math.pi * 60 / 20))
    assert energy(snapshot, "gpu0") == pytest.approx(truth, rel=0.005)
    assert snapshot["errors"] == {}


def test_lost_gpu_goes_down_and_comes_back_after_reprobe_while_the_other_counts(
    run: Callable[..., AmdDrive], state: Path
) -> None:
    gpus = Gpus(state, mi300x("0000:0c:00.0", power_w=300), mi300x("0000:1c:00.0", power_w=200))
    drive = run()
    drive.advance(0)
    snapshot = gpus.step(drive, 1)  # t = 1001
    assert snapshot["devices_up"] == {"gpu0": True, "gpu1": True}

    gpus.set(1, lost=True)
    for second in range(1, 10):  # t = 1002 .. 1010: lost at 1002, retried from 1012
        snapshot = gpus.step(drive, 1)
        assert snapshot["devices_up"] == {"gpu0": True, "gpu1": False}
        assert snapshot["collectors_up"] == {"amdsmi": True}
        assert snapshot["errors"] == {"amdsmi/not_found": second}
        assert energy(snapshot, "gpu0") == pytest.approx(300 * (1 + second), rel=1e-6)
        assert energy(snapshot, "gpu1") == pytest.approx(200, rel=1e-6)

    gpus.set(1, lost=False)
    snapshot = gpus.step(drive, 1)  # t = 1011: it answers, but is not asked before 1012
    assert snapshot["devices_up"]["gpu1"] is False
    snapshot = gpus.step(drive, 1)  # t = 1012: re-opened, checked by UUID, read
    assert snapshot["devices_up"] == {"gpu0": True, "gpu1": True}
    assert snapshot["errors"] == {"amdsmi/not_found": 10}
    # Its counter kept counting: this second is booked, the ten it was lost set apart as outage.
    assert energy(snapshot, "gpu1") == pytest.approx(400, rel=1e-6)
    assert snapshot["outage"]["gpu1"] == pytest.approx(2000, rel=1e-6)
    assert energy(snapshot, "gpu0") == pytest.approx(300 * 12, rel=1e-6)


def test_gpu_lost_at_start_is_retried_and_counted_once_back(
    run: Callable[..., AmdDrive], state: Path
) -> None:
    gpus = Gpus(state, mi300x("0000:0c:00.0", power_w=100), mi300x("0000:1c:00.0", power_w=200, lost=True))
    drive = run()
    probe = drive.probe()
    assert [d["device"] for d in probe["devices"]] == ["gpu0"]
    assert any(note.startswith("gpu1 (0000:1c:00.0): not readable now") for note in probe["notes"])
    drive.advance(0)  # t = 1000; gpu1 is asked again from t = 1010
    gpus.set(1, lost=False)
    snapshot = gpus.step(drive, 5)
    assert "gpu1" not in snapshot["energy"] and snapshot["errors"] == {"amdsmi/not_found": 2}
    snapshot = gpus.step(drive, 5)  # t = 1010: it answers; its counter's value is the baseline
    assert energy(snapshot, "gpu1") == 0.0
    assert snapshot["methods"] == {"gpu0": "counter", "gpu1": "counter"}
    snapshot = gpus.step(drive, 1)
    assert energy(snapshot, "gpu1") == pytest.approx(200, rel=1e-6)
    assert energy(snapshot, "gpu0") == pytest.approx(1100, rel=1e-6)


def test_gpu_usage_splits_by_engine_use(run: Callable[..., AmdDrive], state: Path) -> None:
    gpus = Gpus(
        state,
        FakeAmdGpu(
            "0000:0c:00.0",
            processes=(
                FakeAmdProcess(100, vram=1 << 30, gfx_ns=0),
                FakeAmdProcess(200, vram=3 << 30, gfx_ns=10**9),
            ),
        ),
        FakeAmdGpu("0000:1c:00.0", processes_rc=AMDSMI_STATUS_NOT_SUPPORTED),
    )
    drive = run()
    usage = drive.usage()
    # No interval yet: engine use is unknown, and attribution falls back to memory.
    assert usage["usage"] == {
        "gpu0": {
            "processes": [
                {"pid": 100, "sm_util": None, "memory_bytes": 1 << 30},
                {"pid": 200, "sm_util": None, "memory_bytes": 3 << 30},
            ],
            "instances": {},
        }
    }
    assert usage["errors"] == ["not_supported"]

    drive.advance(10)
    gpus.set(
        0,
        processes=(
            FakeAmdProcess(100, vram=1 << 30, gfx_ns=3 * 10**9),  # 3 s of 10
            FakeAmdProcess(200, vram=3 << 30, gfx_ns=8 * 10**9),  # 7 s of 10
            FakeAmdProcess(300, vram=0, gfx_ns=5 * 10**8),  # started since: all of its 0.5 s is new
        ),
    )
    usage = drive.usage()
    shares = {p["pid"]: p["sm_util"] for p in usage["usage"]["gpu0"]["processes"]}
    assert shares == pytest.approx({100: 30.0, 200: 70.0, 300: 5.0})
    assert usage["errors"] == []  # the GPU that cannot list processes is reported once


def test_partitioned_mi300x_gives_instances_and_counts_its_energy_once(
    run: Callable[..., AmdDrive], state: Path
) -> None:
    # A QPX MI300X: four handles, each answering the physical GPU's counter (as some firmware does).
    partitions = [
        mi300x(
            f"0000:0c:00.{p}",
            uuid=f"mi300x-a-{p}",
            partition=p,
            mode="QPX",
            cus=76,
            power_w=600,
            processes=(FakeAmdProcess(1000 + p, vram=(p + 1) << 20, gfx_ns=p * 10**9),),
        )
        for p in (2, 0, 3, 1)  # amdsmi's order need not be the partitions'
    ]
    gpus = Gpus(state, *partitions, mi300x("0000:1c:00.0", uuid="whole", power_w=100))
    drive = run()
    probe = drive.probe()
    assert [d["device"] for d in probe["devices"]] == ["gpu0", "gpu1"]
    details = probe["devices"][0]["details"]
    assert details["uuid"] == "mi300x-a-0"  # the primary partition speaks for the GPU
    assert (details["partition_mode"], details["partitions"]) == ("QPX", "4")

    drive.advance(0)
    snapshot = gpus.step(drive, 10)
    assert energy(snapshot, "gpu0") == pytest.approx(6000, rel=1e-6)  # 600 W * 10 s, once
    assert energy(snapshot, "gpu1") == pytest.approx(1000, rel=1e-6)

    usage = drive.usage()
    assert usage["errors"] == []
    assert usage["usage"]["gpu1"]["instances"] == {}
    instances = usage["usage"]["gpu0"]["instances"]
    assert usage["usage"]["gpu0"]["processes"] == []
    assert list(instances) == ["partition0", "partition1", "partition2", "partition3"]
    for p in range(4):
        assert instances[f"partition{p}"] == {
            "sm_share": 0.25,
            "processes": [{"pid": 1000 + p, "sm_util": None, "memory_bytes": (p + 1) << 20}],
        }


def test_partitions_without_compute_units_share_equally(run: Callable[..., AmdDrive], state: Path) -> None:
    Gpus(state, *(mi300x(f"0000:0c:00.{p}", partition=p, mode="DPX", cus=0) for p in range(2)))
    usage = run().usage()
    assert {name: i["sm_share"] for name, i in usage["usage"]["gpu0"]["instances"].items()} == {
        "partition0": 0.5,
        "partition1": 0.5,
    }


def test_driver_unloaded_takes_the_collector_down(run: Callable[..., AmdDrive], state: Path) -> None:
    gpus = Gpus(state, mi300x("0000:0c:00.0", power_w=300))
    drive = run()
    drive.advance(0)
    gpus.loaded = False
    snapshot = gpus.step(drive, 1)
    assert snapshot["collectors_up"] == {"amdsmi": False}
    assert snapshot["errors"] == {"amdsmi/driver_not_loaded": 1}
    assert drive.usage() == {"usage": {}, "errors": ["driver_not_loaded"]}


def test_driver_not_loaded_at_start_is_an_error_in_one_line(
    run: Callable[..., AmdDrive], state: Path
) -> None:
    gpus = Gpus(state, mi300x("0000:0c:00.0"))
    gpus.loaded = False
    gpus.write()
    probe = run().probe()
    assert probe["status"] == "ERROR"
    assert probe["reason"] == (
        "amdsmi init failed: AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded (status 34)"
    )
