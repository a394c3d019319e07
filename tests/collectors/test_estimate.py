"""The estimate collector over a generated procfs and codecarbon's real CPU table, on a fake clock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.live.sampler import Sampler
from collectors.base import Status
from collectors.estimate import EstimateCollector
from collectors.tdp import codecarbon_table, load_table, match
from tests.support.clock import FakeClock
from tests.support.procfs import FakeProcfs


def _sampled(procfs: FakeProcfs, **options: object) -> tuple[EstimateCollector, Sampler, FakeClock]:
    clock = FakeClock()
    collector = EstimateCollector(procfs.root, clock, **options)  # type: ignore[arg-type]
    probe = collector.probe()
    assert probe.status is Status.ESTIMATE, probe.reason
    sampler = Sampler([collector], clock, devices=probe.devices)
    sampler.tick()
    return collector, sampler, clock


def _run(procfs: FakeProcfs, sampler: Sampler, clock: FakeClock, seconds: float, utilisation: float) -> None:
    for _ in range(int(seconds)):
        procfs.run(1.0, utilisation)
        clock.advance(1.0)
        sampler.tick()


def test_cpu_follows_idle_to_tdp_curve_and_memory_is_constant(tmp_path: Path) -> None:
    # Xeon Gold 6148 is 150 W in codecarbon's table; 2 sockets -> 300 W max, 30% idle -> 90 W.
    procfs = FakeProcfs(tmp_path, sockets=2, memory_kib=64 * 1024 * 1024)
    collector, sampler, clock = _sampled(procfs)
    assert collector.model is not None
    assert collector.model.cpu_max_w == pytest.approx(300.0)
    assert collector.model.cpu_idle_w == pytest.approx(90.0)

    _run(procfs, sampler, clock, 10, 0.5)
    _run(procfs, sampler, clock, 5, 1.0)
    _run(procfs, sampler, clock, 5, 0.0)
    snap = sampler.snapshot

    expected_cpu = 10 * (90 + 210 * 0.5) + 5 * 300 + 5 * 90
    assert snap.energy_j("cpu", "node", "estimate") == pytest.approx(expected_cpu, rel=1e-6)
    assert snap.energy_j("dram", "node", "estimate") == pytest.approx(20 * 64 * 0.375, rel=1e-6)
    powers = {(r.component, r.source): r.power_w for r in snap.energy}
    assert powers[("cpu", "estimate")] == pytest.approx(90.0)
    assert {r.source for r in snap.energy} == {"estimate"}


def test_overrides_replace_tdp_and_idle(tmp_path: Path) -> None:
    procfs = FakeProcfs(tmp_path)
    collector, sampler, clock = _sampled(
        procfs, tdp_watts=100.0, idle_watts=20.0, memory_watts_per_gb=0.0, components=frozenset({"cpu"})
    )
    _run(procfs, sampler, clock, 4, 0.25)
    assert sampler.snapshot.energy_j("cpu") == pytest.approx(4 * (20 + 80 * 0.25), rel=1e-6)
    assert sampler.snapshot.energy_j("dram") == 0  # only the components asked for
    assert [d.component for d in collector.probe().devices] == ["cpu"]


def test_unknown_cpu_model_falls_back_to_watts_per_thread(tmp_path: Path) -> None:
    procfs = FakeProcfs(tmp_path, model="AMD EPYC", threads=2, virtual=True)
    probe = EstimateCollector(procfs.root, FakeClock()).probe()
    assert probe.status is Status.ESTIMATE
    assert "4 W x 2 thread(s)" in probe.reason and "'AMD EPYC' not in table" in probe.reason
    assert probe.notes == ()  # the per-thread figure already scales with the VM's size


def test_virtual_machine_with_a_known_model_is_told_to_set_its_share(tmp_path: Path) -> None:
    procfs = FakeProcfs(tmp_path, virtual=True)
    probe = EstimateCollector(procfs.root, FakeClock()).probe()
    assert any("virtual machine" in note and "cpu_tdp_watts" in note for note in probe.notes)


@pytest.mark.parametrize(
    ("model", "name", "tdp"),
    [
        ("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", "Intel Xeon Gold 6148", 150.0),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "Intel Core i7-8700K", 95.0),
        ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763", 280.0),
    ],
)
def test_cpu_models_match_codecarbon_table(model: str, name: str, tdp: float) -> None:
    table_path = codecarbon_table()
    assert table_path is not None, "codecarbon's cpu_power.csv should ship with the dependency"
    assert match(model, load_table(table_path)) == (name, tdp)


def test_brand_alone_matches_nothing() -> None:
    table_path = codecarbon_table()
    assert table_path is not None
    assert match("AMD EPYC", load_table(table_path)) is None


def test_unreadable_procfs_is_an_error_with_a_fix(tmp_path: Path) -> None:
    probe = EstimateCollector(tmp_path / "missing", FakeClock()).probe()
    assert probe.status is Status.ERROR
    assert "host.procfs" in probe.fix
    assert "\n" not in probe.reason


def test_codecarbon_is_never_imported(tmp_path: Path) -> None:
    procfs = FakeProcfs(tmp_path)
    code = (
        "import sys, pathlib, time\n"
        "from collectors.estimate import EstimateCollector\n"
        f"c = EstimateCollector(pathlib.Path({str(procfs.root)!r}), time.monotonic)\n"
        "assert c.probe().status.usable\n"
        "c.read()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('codecarbon', 'pandas')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
