"""NvmlCollector through the real pynvml over the fake libnvidia-ml.so.1, in a subprocess on a fake clock."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.nvml.collector import NOT_FOUND_REASON
from tests.support.nvml import (
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    FakeGpu,
    FakeMig,
    FakeProcess,
    build_fake_nvml,
    write_state,
)

REPO = Path(__file__).resolve().parents[2]
REPROBE_S = 10.0


def nvml_env(lib_dir: Path, state: Path) -> dict[str, str]:
    """The environment of a process that loads the fake library, and only it, as libnvidia-ml.so.1."""
    return {**os.environ, "LD_LIBRARY_PATH": str(lib_dir), "FAKE_NVML_STATE": str(state)}


class Drive:
    """A `python -m tests.support.drive` subprocess: one JSON command in, one JSON line out."""

    def __init__(self, lib_dir: Path, state: Path, reprobe_seconds: float = REPROBE_S) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.drive", "--reprobe-seconds", str(reprobe_seconds)],
            cwd=REPO,
            env=nvml_env(lib_dir, state),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def send(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"drive gave no answer to {command}: {err}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def probe(self) -> dict[str, Any]:
        return self.send({"probe": True})

    def advance(self, seconds: float) -> dict[str, Any]:
        return self.send({"advance": seconds})

    def usage(self) -> dict[str, Any]:
        return self.send({"usage": True})

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Gpus:
    """The fake GPUs of one test: change one field, then the whole state file is rewritten atomically."""

    def __init__(self, path: Path, *gpus: FakeGpu) -> None:
        self.path = path
        self.gpus = list(gpus)
        self.loaded = True
        self.write()

    def write(self) -> None:
        write_state(self.path, self.gpus, loaded=self.loaded)

    def set(self, index: int, **changes: Any) -> None:
        self.gpus[index] = dataclasses.replace(self.gpus[index], **changes)
        self.write()

    def add_energy(self, index: int, joules: float) -> None:
        self.set(index, energy_mj=self.gpus[index].energy_mj + round(joules * 1000))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "nvml-state"


@pytest.fixture
def run(fake_nvml_lib: Path, state: Path) -> Iterator[Callable[[], Drive]]:
    """Starts the drive subprocess over the fake library (after the test has written its state)."""
    drive: Drive | None = None

    def start() -> Drive:
        nonlocal drive
        drive = Drive(fake_nvml_lib, state)
        return drive

    yield start
    if drive is not None:
        drive.close()


def energy(snapshot: dict[str, Any], device: str) -> float:
    value: float = snapshot["energy"][device]["energy_j"]
    return value


def power(snapshot: dict[str, Any], device: str) -> float | None:
    value: float | None = snapshot["energy"][device]["power_w"]
    return value


def three_gpus(state: Path) -> Gpus:
    """Two Volta+ GPUs with energy counters and one older GPU that reports power only."""
    return Gpus(
        state,
        FakeGpu(0, power_mw=300_000, energy_mj=1_000_000),
        FakeGpu(1, name="NVIDIA A100-SXM4-80GB", power_mw=200_000, energy_mj=5_000),
        FakeGpu(2, name="Tesla K80", power_mw=150_000, counter=False),
    )


def test_three_gpus_count_exact_joules(run: Callable[[], Drive], state: Path) -> None:
    gpus = three_gpus(state)
    drive = run()
    probe = drive.probe()
    assert probe["status"] == "OK"
    assert [(d["device"], d["method"]) for d in probe["devices"]] == [
        ("gpu0", "counter"),
        ("gpu1", "counter"),
        ("gpu2", "power"),
    ]
    assert probe["devices"][2]["details"] == {
        "uuid": gpus.gpus[2].line().split("uuid=")[1].split()[0],
        "name": "Tesla K80",
        "index": "2",
        "max_power_w": "700",
    }
    assert "NVIDIA driver 550.54.15" in probe["notes"]
    assert probe["driver_version"] == "550.54.15"

    first = drive.advance(1)  # the baseline
    assert [energy(first, f"gpu{i}") for i in range(3)] == [0.0, 0.0, 0.0]

    gpus.add_energy(0, 600)
    gpus.add_energy(1, 350.5)
    gpus.set(2, power_mw=200_000)
    second = drive.advance(2)
    assert energy(second, "gpu0") == 600.0
    assert energy(second, "gpu1") == 350.5
    assert energy(second, "gpu2") == 350.0  # (150 W + 200 W) / 2 * 2 s
    assert power(second, "gpu0") == 300.0
    assert power(second, "gpu2") == 175.0

    gpus.add_energy(0, 900)
    third = drive.advance(3)
    assert energy(third, "gpu0") == 1500.0
    assert energy(third, "gpu1") == 350.5  # its counter did not move
    assert energy(third, "gpu2") == 950.0  # + 200 W * 3 s
    assert third["collectors_up"] == {"nvml": True}
    assert third["errors"] == {}


def test_power_only_gpu_integrates_power_over_the_clock(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(state, FakeGpu(0, name="Tesla P100", power_mw=100_000, counter=False))
    drive = run()
    assert [d["method"] for d in drive.probe()["devices"]] == ["power"]
    drive.advance(1)
    for _ in range(4):
        snapshot = drive.advance(0.5)
    assert energy(snapshot, "gpu0") == 200.0  # 100 W * 2 s
    gpus.set(0, power_mw=300_000)
    snapshot = drive.advance(1)
    assert energy(snapshot, "gpu0") == 400.0  # + (100 W + 300 W) / 2 * 1 s
    gpus.set(0, power_mw=0)
    snapshot = drive.advance(4)
    assert energy(snapshot, "gpu0") == 1000.0  # + (300 W + 0 W) / 2 * 4 s
    snapshot = drive.advance(5)
    assert energy(snapshot, "gpu0") == 1000.0
    assert power(snapshot, "gpu0") == 0.0


def test_counter_reset_rebaselines_without_a_negative_or_a_spike(
    run: Callable[[], Drive], state: Path
) -> None:
    gpus = Gpus(state, FakeGpu(0, energy_mj=10_000_000), FakeGpu(1, energy_mj=0))
    drive = run()
    drive.advance(1)
    gpus.add_energy(0, 100)
    gpus.add_energy(1, 100)
    assert energy(drive.advance(1), "gpu0") == 100.0

    gpus.set(0, energy_mj=2_000)  # the driver reloaded: the counter starts again from a small value
    gpus.add_energy(1, 100)
    snapshot = drive.advance(1)
    assert energy(snapshot, "gpu0") == 100.0
    assert power(snapshot, "gpu0") == 0.0
    assert energy(snapshot, "gpu1") == 200.0

    gpus.add_energy(0, 50)
    snapshot = drive.advance(1)
    assert energy(snapshot, "gpu0") == 150.0  # counting again, from the new baseline
    assert power(snapshot, "gpu0") == 50.0
    assert snapshot["errors"] == {"nvml/counter_reset": 1}


def test_lost_gpu_others_keep_counting_and_it_returns_after_reprobe(
    run: Callable[[], Drive], state: Path
) -> None:
    gpus = three_gpus(state)
    drive = run()
    drive.advance(1)  # t = 1001: baseline
    for i in (0, 1):
        gpus.add_energy(i, 100)
    snapshot = drive.advance(1)  # t = 1002
    assert [energy(snapshot, f"gpu{i}") for i in range(3)] == [100.0, 100.0, 150.0]

    gpus.set(1, lost=True)
    gpus.set(2, lost=True)
    for second in range(1, 4):  # t = 1003 .. 1005
        gpus.add_energy(0, 100)
        snapshot = drive.advance(1)
        assert snapshot["collectors_up"] == {"nvml": True}
        assert snapshot["errors"] == {"nvml/gpu_lost": 2 * second}
        assert energy(snapshot, "gpu0") == 100.0 + 100 * second
        assert energy(snapshot, "gpu1") == 100.0
        assert energy(snapshot, "gpu2") == 150.0

    # Both are back, gpu1 after a reset (its counter restarted), but not yet re-probed.
    gpus.set(1, lost=False, energy_mj=700)
    gpus.set(2, lost=False)
    snapshot = drive.advance(1)  # t = 1006
    assert snapshot["errors"] == {"nvml/gpu_lost": 8}
    assert energy(snapshot, "gpu1") == 100.0

    snapshot = drive.advance(7)  # t = 1013: 10 s after they were lost, they are re-probed
    assert snapshot["errors"] == {"nvml/gpu_lost": 8, "nvml/counter_reset": 1}
    assert energy(snapshot, "gpu1") == 100.0  # the reset counter is the new baseline: no spike
    assert energy(snapshot, "gpu2") == 150.0  # its power during the gap is unknown: not integrated
    assert energy(snapshot, "gpu0") == 400.0

    gpus.add_energy(1, 70)
    snapshot = drive.advance(2)  # t = 1015
    assert energy(snapshot, "gpu1") == 170.0
    assert power(snapshot, "gpu1") == 35.0
    assert energy(snapshot, "gpu2") == 450.0  # + 150 W * 2 s
    assert power(snapshot, "gpu2") == 150.0


def test_lost_gpu_is_retried_no_more_often_than_reprobe_seconds(
    run: Callable[[], Drive], state: Path
) -> None:
    gpus = Gpus(state, FakeGpu(0, energy_mj=1_000))
    drive = run()
    drive.advance(1)
    gpus.set(0, lost=True)
    drive.advance(1)  # t = 1002: lost, retry at 1012
    drive.advance(10)  # t = 1012: retried, still lost: next retry at 1022
    gpus.set(0, lost=False, energy_mj=1_000 + 5_000)
    snapshot = drive.advance(9)  # t = 1021: too early
    assert "gpu0" in snapshot["energy"] and energy(snapshot, "gpu0") == 0.0
    assert snapshot["errors"] == {"nvml/gpu_lost": 3}
    snapshot = drive.advance(1)  # t = 1022: back; its counter kept counting while it could not be read
    assert snapshot["errors"] == {"nvml/gpu_lost": 3}
    # 5 J over 21 s: this interval's second is booked as usual, the other 20 s as outage energy
    assert energy(snapshot, "gpu0") == pytest.approx(5.0 / 21, abs=1e-6)
    assert snapshot["outage"]["gpu0"] == pytest.approx(5.0 * 20 / 21, abs=1e-6)
    assert power(snapshot, "gpu0") == 5.0 / 21  # spread over the whole gap, not a spike


def test_gpu_lost_at_start_is_retried_and_counted_once_back(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(state, FakeGpu(0, energy_mj=1_000), FakeGpu(1, energy_mj=9_000_000, lost=True))
    drive = run()
    probe = drive.probe()
    assert probe["status"] == "OK"
    assert [d["device"] for d in probe["devices"]] == ["gpu0"]
    assert any(note.startswith("gpu1: not readable now") for note in probe["notes"])
    drive.advance(1)  # t = 1001; gpu1 is retried from t = 1010
    gpus.set(1, lost=False)
    snapshot = drive.advance(1)
    assert "gpu1" not in snapshot["energy"] and snapshot["errors"] == {"nvml/gpu_lost": 2}
    snapshot = drive.advance(8)  # t = 1010: it answers; its counter value is the baseline
    assert energy(snapshot, "gpu1") == 0.0 and snapshot["errors"] == {"nvml/gpu_lost": 2}
    gpus.add_energy(1, 250)
    snapshot = drive.advance(1)
    assert energy(snapshot, "gpu1") == 250.0
    assert power(snapshot, "gpu1") == 250.0


def test_gpu_without_energy_or_power_is_skipped_not_retried(run: Callable[[], Drive], state: Path) -> None:
    Gpus(state, FakeGpu(0, energy_mj=1_000), FakeGpu(1, counter=False, power_rc=3))
    drive = run()
    probe = drive.probe()
    assert [d["device"] for d in probe["devices"]] == ["gpu0"]
    assert any(note.startswith("gpu1: skipped") for note in probe["notes"])
    drive.advance(1)
    snapshot = drive.advance(20)
    assert snapshot["errors"] == {}


def test_missing_energy_function_falls_back_to_power(fake_nvml_lib_no_energy: Path, state: Path) -> None:
    Gpus(state, FakeGpu(0, power_mw=400_000, energy_mj=9_999), FakeGpu(1, power_mw=100_000))
    drive = Drive(fake_nvml_lib_no_energy, state)
    try:
        probe = drive.probe()
        assert probe["status"] == "OK"
        assert [d["method"] for d in probe["devices"]] == ["power", "power"]
        drive.advance(1)
        snapshot = drive.advance(2)
        assert energy(snapshot, "gpu0") == 800.0
        assert energy(snapshot, "gpu1") == 200.0
        assert snapshot["errors"] == {}
    finally:
        drive.close()


def test_energy_function_failing_mid_run_falls_back_to_power(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(state, FakeGpu(0, power_mw=100_000, energy_mj=50_000))
    drive = run()
    drive.advance(1)
    gpus.add_energy(0, 30)
    assert energy(drive.advance(1), "gpu0") == 30.0

    gpus.set(0, energy_rc=NVML_ERROR_FUNCTION_NOT_FOUND)
    snapshot = drive.advance(1)
    assert snapshot["errors"] == {"nvml/function_not_found": 1}
    assert snapshot["methods"] == {"gpu0": "power"}
    assert energy(snapshot, "gpu0") == 30.0  # integration starts from the last counter value: no jump
    snapshot = drive.advance(2)
    assert energy(snapshot, "gpu0") == 230.0  # + 100 W * 2 s
    assert snapshot["errors"] == {"nvml/function_not_found": 1}


def test_no_permission_is_a_per_device_error(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(state, FakeGpu(0, energy_mj=0), FakeGpu(1, energy_mj=0))
    drive = run()
    drive.advance(1)
    gpus.set(0, perm=False)
    gpus.add_energy(1, 10)
    snapshot = drive.advance(1)
    assert snapshot["errors"] == {"nvml/no_permission": 1}
    assert snapshot["collectors_up"] == {"nvml": True}
    assert energy(snapshot, "gpu1") == 10.0


def test_no_permission_on_every_gpu_is_permission_denied(run: Callable[[], Drive], state: Path) -> None:
    Gpus(state, FakeGpu(0, perm=False), FakeGpu(1, perm=False))
    probe = run().probe()
    assert probe["status"] == "PERMISSION_DENIED"
    assert probe["devices"] == []
    assert probe["fix"]


def test_unknown_nvml_error_is_nvml_error(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(state, FakeGpu(0, counter=False, power_mw=1_000))
    drive = run()
    drive.advance(1)
    gpus.set(0, power_rc=NVML_ERROR_UNKNOWN)
    assert drive.advance(1)["errors"] == {"nvml/nvml_error": 1}


def test_no_library_is_not_found_in_one_line(tmp_path: Path, state: Path) -> None:
    empty = tmp_path / "no-nvml"
    empty.mkdir()
    Gpus(state, FakeGpu(0))
    drive = Drive(empty, state)
    try:
        probe = drive.probe()
        assert probe["status"] == "NOT_FOUND"
        assert probe["reason"] == NOT_FOUND_REASON
        assert "\n" not in probe["reason"] and "\n" not in probe["fix"]
        assert "NVIDIA driver" in probe["fix"]
        snapshot = drive.advance(1)
        assert snapshot["collectors_up"] == {"nvml": False}
    finally:
        drive.close()


def test_driver_not_loaded(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(state, FakeGpu(0))
    gpus.loaded = False
    gpus.write()
    probe = run().probe()
    assert probe["status"] == "ERROR"
    assert probe["reason"] == "NVML init failed: Driver Not Loaded"


def test_driver_unloaded_mid_run_takes_the_collector_down(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(state, FakeGpu(0))
    drive = run()
    drive.advance(1)
    gpus.loaded = False
    gpus.write()
    snapshot = drive.advance(1)
    assert snapshot["collectors_up"] == {"nvml": False}
    assert snapshot["errors"] == {"nvml/driver_not_loaded": 1}


def test_no_gpu_is_not_found(run: Callable[[], Drive], state: Path) -> None:
    Gpus(state)
    probe = run().probe()
    assert probe["status"] == "NOT_FOUND"
    assert "sees no GPU" in probe["reason"]


def test_gpu_validate_against_live_fake_gpus(fake_nvml_lib: Path, state: Path) -> None:
    now = time.time()
    Gpus(
        state,
        FakeGpu(0, power_mw=350_000, energy_mj=1_000_000, live=True, t0=now),
        FakeGpu(1, power_mw=120_000, energy_mj=0, live=True, t0=now),
    )
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu-validate"), "--no-load", "--seconds", "1"],
        cwd="/",  # the script must find the project from its own path
        env=nvml_env(fake_nvml_lib, state),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["driver_version"] == "550.54.15"
    assert report["load_processes"] == 0
    assert report["seconds"] >= 1.0
    assert set(report["collector_cost_ms_per_sample"]) == {"cpu", "wall"}
    assert [gpu["index"] for gpu in report["gpus"]] == [0, 1]
    for gpu, watts in zip(report["gpus"], (350.0, 120.0), strict=True):
        assert gpu["method"] == "counter"
        assert gpu["uuid"].startswith("GPU-")
        assert gpu["name"] == "NVIDIA H100 80GB HBM3"
        assert gpu["mean_power_w"] == watts
        assert abs(gpu["difference_pct"]) < 5
        assert gpu["energy_counter_j"] == pytest.approx(watts * report["seconds"], rel=0.05)
        assert gpu["integrated_power_j"] == pytest.approx(watts * report["seconds"], rel=0.05)


def test_a_different_gpu_at_a_lost_index_is_not_taken_for_it(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(state, FakeGpu(0, energy_mj=1_000), FakeGpu(1, energy_mj=0))
    drive = run()
    drive.advance(1)
    gpus.set(0, lost=True)
    drive.advance(1)
    gpus.set(0, lost=False, uuid="GPU-someone-else", energy_mj=900_000)
    snapshot = drive.advance(10)  # re-probed: index 0 answers, with another UUID
    assert snapshot["errors"] == {"nvml/gpu_lost": 1, "nvml/gpu_changed": 1}
    assert energy(snapshot, "gpu0") == 0.0


# ---- gpu_usage(): the processes on each GPU, for attribution ------------------------------------

MIB = 1024 * 1024


def proc(pid: int, sm_util: float | None, memory_mib: int | None) -> dict[str, Any]:
    """A process as the drive prints it."""
    memory = None if memory_mib is None else memory_mib * MIB
    return {"pid": pid, "sm_util": sm_util, "memory_bytes": memory}


def processes(usage: dict[str, Any], device: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = usage["usage"][device]["processes"]
    return listed


@pytest.fixture(scope="module")
def fake_nvml_lib_no_mig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_nvml(tmp_path_factory.mktemp("nvml-no-mig"), mig_fn=False)


@pytest.fixture(scope="module")
def fake_nvml_lib_processes_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_nvml(tmp_path_factory.mktemp("nvml-processes-v2"), processes_v3=False)


def busy_gpus(state: Path) -> Gpus:
    """Two processes sharing gpu0, one on gpu1 (a graphics one too), none on gpu2."""
    return Gpus(
        state,
        FakeGpu(0, processes=(FakeProcess(4242, 2000, sm=75), FakeProcess(1234, 6000, sm=25))),
        FakeGpu(1, processes=(FakeProcess(777, 40_000, sm=100), FakeProcess(99, 12, graphics=True))),
        FakeGpu(2),
    )


def test_usage_lists_processes_with_sm_util_and_memory(run: Callable[[], Drive], state: Path) -> None:
    busy_gpus(state)
    drive = run()
    drive.advance(1)
    usage = drive.usage()
    assert usage["errors"] == []
    assert set(usage["usage"]) == {"gpu0", "gpu1", "gpu2"}
    assert processes(usage, "gpu0") == [proc(1234, 25.0, 6000), proc(4242, 75.0, 2000)]
    # The graphics process has no utilisation sample while the GPU has some: it was idle.
    assert processes(usage, "gpu1") == [proc(99, 0.0, 12), proc(777, 100.0, 40_000)]
    assert processes(usage, "gpu2") == []
    assert all(gpu["instances"] == {} for gpu in usage["usage"].values())
    assert drive.usage() == usage  # a steady load reads the same every interval


def test_usage_averages_the_samples_since_the_last_call(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(
        state,
        FakeGpu(
            0, processes=(FakeProcess(10, 100, samples=((1_000, 70), (2_000, 80))), FakeProcess(20, 100))
        ),
    )
    drive = run()
    assert processes(drive.usage(), "gpu0") == [proc(10, 75.0, 100), proc(20, 0.0, 100)]
    # No sample since the last one seen: NVML says NOT_FOUND, and utilisation is unknown.
    usage = drive.usage()
    assert processes(usage, "gpu0") == [proc(10, None, 100), proc(20, None, 100)]
    assert usage["errors"] == []
    gpus.set(0, processes=(FakeProcess(10, 100, samples=((1_000, 70), (2_000, 80), (3_000, 30))),))
    assert processes(drive.usage(), "gpu0") == [proc(10, 30.0, 100)]  # only the new sample


def test_usage_without_util_or_memory_is_none(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(
        state,
        FakeGpu(0, processes=(FakeProcess(1, None), FakeProcess(2, 300))),  # no samples: NOT_FOUND
        FakeGpu(1, processes=(FakeProcess(3, 500, sm=50),), util_rc=NVML_ERROR_NOT_SUPPORTED),
    )
    drive = run()
    usage = drive.usage()
    assert processes(usage, "gpu0") == [proc(1, None, None), proc(2, None, 300)]
    assert processes(usage, "gpu1") == [proc(3, None, 500)]
    assert usage["errors"] == ["not_supported"]
    gpus.set(1, util_rc=0)
    usage = drive.usage()
    assert processes(usage, "gpu1") == [proc(3, None, 500)]  # not supported is not asked again
    assert usage["errors"] == []


def test_usage_leaves_out_a_lost_gpu_and_keeps_the_others(run: Callable[[], Drive], state: Path) -> None:
    gpus = busy_gpus(state)
    drive = run()
    drive.advance(1)
    gpus.set(1, lost=True)  # lost between read() and gpu_usage()
    usage = drive.usage()
    assert set(usage["usage"]) == {"gpu0", "gpu2"}
    assert usage["errors"] == ["gpu_lost"]
    assert processes(usage, "gpu0") == [proc(1234, 25.0, 6000), proc(4242, 75.0, 2000)]

    snapshot = drive.advance(1)  # read() finds it lost and reports it; usage skips it quietly
    assert snapshot["errors"] == {"nvml/gpu_lost": 1}
    usage = drive.usage()
    assert set(usage["usage"]) == {"gpu0", "gpu2"} and usage["errors"] == []

    gpus.set(1, lost=False)
    drive.advance(REPROBE_S)  # re-opened by read()
    assert processes(drive.usage(), "gpu1") == [proc(99, 0.0, 12), proc(777, 100.0, 40_000)]


def test_usage_of_a_gpu_failing_to_list_processes_is_left_out(run: Callable[[], Drive], state: Path) -> None:
    gpus = busy_gpus(state)
    gpus.set(0, processes_rc=NVML_ERROR_UNKNOWN)
    gpus.set(2, processes_rc=NVML_ERROR_NOT_SUPPORTED)
    drive = run()
    usage = drive.usage()
    assert set(usage["usage"]) == {"gpu1"}
    assert usage["errors"] == ["nvml_error", "not_supported"]
    usage = drive.usage()
    assert usage["errors"] == ["nvml_error"]  # gpu2 cannot list processes: reported once


def test_usage_with_the_driver_unloaded_is_empty_not_a_crash(run: Callable[[], Drive], state: Path) -> None:
    gpus = busy_gpus(state)
    drive = run()
    drive.advance(1)
    gpus.loaded = False
    gpus.write()
    assert drive.usage() == {"usage": {}, "errors": ["driver_not_loaded"]}


def mig_gpus(state: Path) -> Gpus:
    """An A100 in MIG mode split 3g (42 SMs) + 4g (56 SMs), and a whole GPU beside it."""
    return Gpus(
        state,
        FakeGpu(
            0,
            mig=True,
            migs=(
                FakeMig(0, sms=42, gi=2, processes=(FakeProcess(100, 1000), FakeProcess(101, 2000))),
                FakeMig(3, sms=56, gi=1, uuid="MIG-4g", processes=(FakeProcess(200, 3000, sm=90),)),
            ),
        ),
        FakeGpu(1, processes=(FakeProcess(300, 500, sm=10),)),
    )


def test_usage_of_a_mig_gpu_is_per_instance_with_its_share_of_the_sms(
    run: Callable[[], Drive], state: Path
) -> None:
    gpus = mig_gpus(state)
    drive = run()
    usage = drive.usage()
    assert usage["errors"] == []
    mig = usage["usage"]["gpu0"]
    assert mig["processes"] == []  # they are in the instances
    three_g = gpus.gpus[0].migs[0].uuid_of(0)
    # NVML has no per-process utilisation under MIG: an instance is weighed by its SMs.
    assert mig["instances"] == {
        three_g: {"sm_share": 3 / 7, "processes": [proc(100, None, 1000), proc(101, None, 2000)]},
        "MIG-4g": {"sm_share": 4 / 7, "processes": [proc(200, None, 3000)]},
    }
    assert usage["usage"]["gpu1"] == {"processes": [proc(300, 10.0, 500)], "instances": {}}


def test_usage_of_a_mig_gpu_after_an_instance_is_destroyed(run: Callable[[], Drive], state: Path) -> None:
    gpus = mig_gpus(state)
    drive = run()
    drive.usage()
    gpus.set(0, migs=gpus.gpus[0].migs[1:])
    usage = drive.usage()  # the cached instance fails: no usage for the GPU this time
    assert "gpu0" not in usage["usage"] and usage["errors"] == ["nvml_error"]
    usage = drive.usage()  # looked up again
    assert usage["usage"]["gpu0"]["instances"] == {
        "MIG-4g": {"sm_share": 1.0, "processes": [proc(200, None, 3000)]}
    }


def test_usage_without_mig_functions_has_no_instances(fake_nvml_lib_no_mig: Path, state: Path) -> None:
    mig_gpus(state)
    drive = Drive(fake_nvml_lib_no_mig, state)
    try:
        usage = drive.usage()
        # The GPU is taken whole: its processes are listed on it (under MIG, without utilisation).
        assert usage["usage"]["gpu0"] == {
            "processes": [proc(100, None, 1000), proc(101, None, 2000), proc(200, None, 3000)],
            "instances": {},
        }
        assert usage["errors"] == ["not_supported"]
    finally:
        drive.close()


def test_usage_of_a_gpu_without_mig_support_has_no_instances(run: Callable[[], Drive], state: Path) -> None:
    Gpus(state, FakeGpu(0, mig_rc=NVML_ERROR_NOT_SUPPORTED, processes=(FakeProcess(5, 64, sm=40),)))
    usage = run().usage()
    assert usage == {"usage": {"gpu0": {"processes": [proc(5, 40.0, 64)], "instances": {}}}, "errors": []}


def test_usage_with_a_driver_before_the_v3_process_functions(
    fake_nvml_lib_processes_v2: Path, state: Path
) -> None:
    busy_gpus(state)
    drive = Drive(fake_nvml_lib_processes_v2, state)
    try:
        for _ in range(2):
            usage = drive.usage()
            assert usage["errors"] == []
            assert processes(usage, "gpu0") == [proc(1234, 25.0, 6000), proc(4242, 75.0, 2000)]
            assert processes(usage, "gpu1") == [proc(99, 0.0, 12), proc(777, 100.0, 40_000)]
    finally:
        drive.close()


def test_a_lost_gpu_is_down_while_the_collector_stays_up_and_its_outage_is_set_apart(
    run: Callable[[], Drive], state: Path
) -> None:
    gpus = Gpus(state, FakeGpu(0, energy_mj=1_000), FakeGpu(1, energy_mj=9_000))
    drive = run()
    drive.advance(1)  # t = 1001: baseline
    gpus.add_energy(0, 100)
    gpus.add_energy(1, 100)
    snapshot = drive.advance(1)  # t = 1002
    assert snapshot["devices_up"] == {"gpu0": True, "gpu1": True}

    gpus.set(1, lost=True)
    for _ in range(10):  # t = 1003 .. 1012: lost (retried at 1013); its counter keeps counting
        gpus.add_energy(0, 100)
        gpus.add_energy(1, 100)
        snapshot = drive.advance(1)
        assert snapshot["devices_up"] == {"gpu0": True, "gpu1": False}
        assert snapshot["collectors_up"] == {"nvml": True}
        assert "gpu1/nvml" not in snapshot["interval"]
    assert energy(snapshot, "gpu1") == 100.0

    gpus.set(1, lost=False)
    gpus.add_energy(0, 100)
    gpus.add_energy(1, 100)
    snapshot = drive.advance(1)  # t = 1013: back, 1,100 J since its last reading 11 s ago
    assert snapshot["devices_up"] == {"gpu0": True, "gpu1": True}
    # This interval gets its second's share, charged to whoever uses the GPU now; the ten seconds it
    # was lost are booked under nvml_outage, which no job is charged for; nothing is dropped.
    assert snapshot["interval"]["gpu1/nvml"] == pytest.approx(100.0)
    assert snapshot["interval"]["gpu1/nvml_outage"] == pytest.approx(1000.0)
    assert snapshot["interval"]["gpu0/nvml"] == pytest.approx(100.0)
    assert energy(snapshot, "gpu1") + snapshot["outage"]["gpu1"] == pytest.approx(1200.0)
    assert snapshot["errors"] == {"nvml/gpu_lost": 10}


def test_power_limit_bounds_the_counter(run: Callable[[], Drive], state: Path) -> None:
    gpus = Gpus(
        state, FakeGpu(0, energy_mj=0, limit_mw=300_000), FakeGpu(1, limit_rc=NVML_ERROR_NOT_SUPPORTED)
    )
    drive = run()
    details = [d["details"] for d in drive.probe()["devices"]]
    assert details[0]["max_power_w"] == "300"
    assert "max_power_w" not in details[1]  # no power limit: the GPU fallback (2 kW) bounds it
    drive.advance(1)
    gpus.add_energy(0, 601)  # one joule more than twice 300 W for 1 s
    gpus.add_energy(1, 3_999)
    snapshot = drive.advance(1)
    assert snapshot["errors"] == {"nvml/counter_implausible": 1}
    assert snapshot["devices_up"] == {"gpu0": False, "gpu1": True}
    assert energy(snapshot, "gpu0") == 0.0
    assert energy(snapshot, "gpu1") == 3_999.0
    gpus.add_energy(0, 250)
    snapshot = drive.advance(1)
    assert energy(snapshot, "gpu0") == 250.0  # counted again from the refused value


def test_a_superchip_counter_is_its_module_not_its_gpu(run: Callable[[], Drive], state: Path) -> None:
    """GH200/GB200: NVML's counter covers GPU, Grace CPU and memory; it is booked as `module`."""
    gpus = Gpus(
        state,
        FakeGpu(0, name="NVIDIA GH200 480GB", power_mw=600_000, energy_mj=10_000),
        FakeGpu(1, name="NVIDIA H100 80GB HBM3", power_mw=300_000, energy_mj=10_000),
    )
    drive = run()
    probe = drive.probe()
    assert [(d["component"], d["device"]) for d in probe["devices"]] == [("module", "gpu0"), ("gpu", "gpu1")]
    assert probe["devices"][0]["details"]["contains"] == "GPU, Grace CPU and their memory"
    drive.advance(1)
    gpus.add_energy(0, 650)
    gpus.add_energy(1, 310)
    snapshot = drive.advance(1)
    assert snapshot["energy"]["gpu0"] == {"energy_j": 650.0, "power_w": 650.0, "component": "module"}
    assert snapshot["energy"]["gpu1"]["component"] == "gpu"
    assert snapshot["devices_up"] == {"gpu0": True, "gpu1": True}
