"""The attribution function: its splits, and the invariant that nothing is created or lost."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.live.attribution import (
    Attribution,
    GpuInterval,
    GpuParty,
    Interval,
    JobInterval,
    NodeInterval,
    attribute,
)
from collectors.workloads import JobKey

A, B, C = JobKey("slurm", "1"), JobKey("slurm", "2"), JobKey("kubernetes", "pod-3")
CPU = ("cpu", "package-0", "rapl")
DRAM = ("dram", "package-0", "rapl")
GPU0 = ("gpu", "gpu0", "nvml")
PSYS = ("platform", "psys", "rapl")
NODE = NodeInterval(seconds=1.0, cpu_busy_s=2.0, cpus=4, memory_used_bytes=10_000)
KEYS = [
    CPU,
    ("cpu", "package-1", "rapl"),
    DRAM,
    GPU0,
    ("gpu", "gpu1", "nvml"),
    PSYS,
    ("cpu", "node", "estimate"),
    ("module", "gpu2", "nvml"),
    ("grace", "socket0", "hwmon"),
    ("grace", "socket0.cpu", "hwmon"),
    ("node", "chassis1", "redfish"),
    ("other", "node", "redfish"),
]


def assert_conserved(interval: Interval, result: Attribution) -> None:
    """Per component: jobs + unattributed == node, to a relative 1e-9; and nothing negative."""
    for component in {k[0] for k in interval.energy_j}:
        node = sum(v for k, v in interval.energy_j.items() if k[0] == component)
        jobs = sum(v for shares in result.jobs.values() for k, v in shares.items() if k[0] == component)
        left = sum(v for k, v in result.unattributed.items() if k[0] == component)
        assert jobs + left == pytest.approx(node, rel=1e-9, abs=1e-12)
        assert all(v >= 0 for shares in result.jobs.values() for v in shares.values())
        assert all(v >= 0 for v in result.unattributed.values())


def test_cpu_active_by_cpu_time_idle_by_allocation() -> None:
    interval = Interval(
        energy_j={CPU: 100.0},
        idle_w={CPU: 40.0},
        node=NODE,
        jobs={
            A: JobInterval(cpu_s=1.5, memory_bytes=0, cpus_allocated=2),
            B: JobInterval(cpu_s=0.0, memory_bytes=0, cpus_allocated=1),
        },
    )
    result = attribute(interval)
    # active 60 J: A has 1.5 of the node's 2.0 busy CPU-seconds; idle 40 J: A 2/4, B 1/4 of the CPUs.
    assert result.jobs[A][CPU] == pytest.approx(60 * 0.75 + 40 * 0.5)
    assert result.jobs[B][CPU] == pytest.approx(40 * 0.25)
    assert result.unattributed[CPU] == pytest.approx(60 * 0.25 + 40 * 0.25)
    assert_conserved(interval, result)


def test_idle_by_usage_when_allocations_are_unknown_and_node_policy_keeps_it() -> None:
    jobs = {A: JobInterval(cpu_s=1.0, memory_bytes=0), B: JobInterval(cpu_s=0.5, memory_bytes=0)}
    interval = Interval(energy_j={CPU: 50.0}, idle_w={CPU: 20.0}, node=NODE, jobs=jobs)
    shared = attribute(interval, "share")
    assert shared.jobs[A][CPU] == pytest.approx(30 * 0.5 + 20 * 0.25)  # busy 1 of 4 CPUs on average
    assert shared.jobs[B][CPU] == pytest.approx(30 * 0.25 + 20 * 0.125)
    kept = attribute(interval, "node")
    assert kept.jobs[A][CPU] == pytest.approx(30 * 0.5)
    assert kept.unattributed[CPU] == pytest.approx(50 - 30 * 0.75)
    assert_conserved(interval, shared)
    assert_conserved(interval, kept)


def test_job_cpu_above_node_busy_is_scaled_not_overdrawn() -> None:
    jobs = {A: JobInterval(cpu_s=3.0, memory_bytes=0), B: JobInterval(cpu_s=1.0, memory_bytes=0)}
    interval = Interval(energy_j={CPU: 80.0}, node=NODE, jobs=jobs)  # counters skewed: 4 s > 2 s busy
    result = attribute(interval, "node")
    assert result.jobs[A][CPU] == pytest.approx(60.0)
    assert result.jobs[B][CPU] == pytest.approx(20.0)
    assert result.unattributed[CPU] == 0.0


def test_dram_by_memory_and_platform_never_attributed() -> None:
    jobs = {A: JobInterval(cpu_s=0, memory_bytes=6_000), B: JobInterval(cpu_s=0, memory_bytes=1_000)}
    interval = Interval(energy_j={DRAM: 10.0, PSYS: 300.0}, node=NODE, jobs=jobs)
    result = attribute(interval)
    assert result.jobs[A][DRAM] == pytest.approx(6.0)
    assert result.jobs[B][DRAM] == pytest.approx(1.0)
    assert result.unattributed[DRAM] == pytest.approx(3.0)
    assert result.unattributed[PSYS] == 300.0
    assert_conserved(interval, result)


def test_shared_gpu_split_by_sm_utilisation() -> None:
    gpus = {"gpu0": GpuInterval(parties=(GpuParty(A, 75.0, 1 << 30), GpuParty(B, 25.0, 3 << 30)))}
    interval = Interval(energy_j={GPU0: 400.0}, node=NODE, jobs={}, gpus=gpus)
    result = attribute(interval)
    assert result.jobs[A][GPU0] == pytest.approx(300.0)
    assert result.jobs[B][GPU0] == pytest.approx(100.0)
    assert result.unattributed[GPU0] == pytest.approx(0.0)


def test_gpu_of_one_job_gets_it_all_even_without_utilisation() -> None:
    gpus = {"gpu0": GpuInterval(parties=(GpuParty(A), GpuParty(A, None, 5)))}
    result = attribute(Interval(energy_j={GPU0: 250.0}, node=NODE, jobs={}, gpus=gpus))
    assert result.jobs[A][GPU0] == 250.0
    assert result.unattributed[GPU0] == 0.0


def test_gpu_falls_back_to_memory_then_equal_shares() -> None:
    by_memory = {"gpu0": GpuInterval(parties=(GpuParty(A, None, 3), GpuParty(B, 50.0, 1)))}
    result = attribute(Interval(energy_j={GPU0: 100.0}, node=NODE, jobs={}, gpus=by_memory))
    assert result.jobs[A][GPU0] == pytest.approx(75.0)
    equal = {"gpu0": GpuInterval(parties=(GpuParty(A), GpuParty(B, 10.0), GpuParty(C, None, 7)))}
    result = attribute(Interval(energy_j={GPU0: 90.0}, node=NODE, jobs={}, gpus=equal))
    assert [result.jobs[j][GPU0] for j in (A, B, C)] == pytest.approx([30.0, 30.0, 30.0])


def test_gpu_processes_of_no_job_and_idle_gpus_stay_unattributed() -> None:
    gpus = {"gpu0": GpuInterval(parties=(GpuParty(A, 60.0), GpuParty(None, 40.0)))}
    energy = {GPU0: 100.0, ("gpu", "gpu1", "nvml"): 70.0}
    result = attribute(Interval(energy_j=energy, node=NODE, jobs={}, gpus=gpus))
    assert result.jobs[A][GPU0] == pytest.approx(60.0)
    assert result.unattributed[GPU0] == pytest.approx(40.0)
    assert result.unattributed[("gpu", "gpu1", "nvml")] == 70.0


def test_mig_instances_by_sm_share_marked_estimated() -> None:
    gpus = {
        "gpu0": GpuInterval(
            instances={
                "MIG-a": (3 / 7, (GpuParty(A, 90.0),)),
                "MIG-b": (4 / 7, (GpuParty(B, 10.0), GpuParty(C, 30.0))),
            }
        )
    }
    interval = Interval(energy_j={GPU0: 700.0}, node=NODE, jobs={}, gpus=gpus)
    result = attribute(interval)
    estimated = ("gpu", "gpu0", "estimate")
    assert result.jobs[A] == {estimated: pytest.approx(300.0)}
    assert result.jobs[B][estimated] == pytest.approx(100.0)
    assert result.jobs[C][estimated] == pytest.approx(300.0)
    assert result.unattributed[GPU0] == pytest.approx(0.0, abs=1e-9)
    assert_conserved(interval, result)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="idle_policy"):
        attribute(Interval(energy_j={}, node=NODE, jobs={}), "kepler")


@pytest.mark.parametrize("seed", range(200))
def test_energy_is_conserved_on_random_intervals(seed: int) -> None:
    rng = random.Random(seed)
    keys = KEYS
    job_keys = [JobKey("slurm", str(i)) for i in range(rng.randint(0, 30))]
    jobs = {
        k: JobInterval(
            cpu_s=rng.choice([0.0, rng.random() * 4]),
            memory_bytes=rng.randint(0, 1 << 34),
            cpus_allocated=rng.choice([None, float(rng.randint(1, 64))]),
        )
        for k in job_keys
    }
    parties = tuple(
        GpuParty(rng.choice([*job_keys, None]), rng.choice([None, rng.random() * 100]), rng.choice([None, 7]))
        for _ in range(rng.randint(0, 6))
    )
    interval = Interval(
        energy_j={k: rng.choice([0.0, rng.random() * 10 ** rng.randint(-3, 6)]) for k in keys},
        idle_w={k: rng.random() * 200 for k in keys},
        node=NodeInterval(
            seconds=rng.choice([0.5, 1.0, 7.3]),
            cpu_busy_s=rng.random() * 8,
            cpus=rng.randint(1, 128),
            memory_used_bytes=rng.randint(0, 1 << 36),
        ),
        jobs=jobs,
        gpus={"gpu0": GpuInterval(parties=parties), "gpu1": GpuInterval(instances={"x": (0.5, parties)})},
    )
    for policy in ("share", "node"):
        assert_conserved(interval, attribute(interval, policy))


def test_idle_energy_and_cpu_share_scale_with_the_interval_length() -> None:
    node = NodeInterval(seconds=2.5, cpu_busy_s=10.0, cpus=8, memory_used_bytes=0)
    jobs = {A: JobInterval(cpu_s=5.0, memory_bytes=0), B: JobInterval(cpu_s=2.5, memory_bytes=0)}
    interval = Interval(energy_j={CPU: 200.0}, idle_w={CPU: 30.0}, node=node, jobs=jobs)
    result = attribute(interval, "share")
    # idle: 30 W x 2.5 s = 75 J; active 125 J by CPU time: A 5/10, B 2.5/10. Idle by the CPUs each
    # kept busy on average: A 5 s / 2.5 s = 2 of 8 CPUs, B 1 of 8.
    assert result.jobs[A][CPU] == pytest.approx(125 * 0.5 + 75 * 2 / 8, rel=1e-12)
    assert result.jobs[B][CPU] == pytest.approx(125 * 0.25 + 75 * 1 / 8, rel=1e-12)
    assert result.unattributed[CPU] == pytest.approx(125 * 0.25 + 75 * 5 / 8, rel=1e-12)
    kept = attribute(interval, "node")
    assert kept.unattributed[CPU] == pytest.approx(75 + 125 * 0.25, rel=1e-12)


def test_a_gpu_where_every_party_shows_zero_sm_is_split_by_memory() -> None:
    gpus = {"gpu0": GpuInterval(parties=(GpuParty(A, 0.0, 3 << 30), GpuParty(B, 0.0, 1 << 30)))}
    result = attribute(Interval(energy_j={GPU0: 100.0}, node=NODE, jobs={}, gpus=gpus))
    assert result.jobs[A][GPU0] == pytest.approx(75.0, rel=1e-12)
    assert result.jobs[B][GPU0] == pytest.approx(25.0, rel=1e-12)
    assert result.unattributed[GPU0] == pytest.approx(0.0, abs=1e-12)


def test_energy_counted_during_an_outage_is_charged_to_no_job() -> None:
    outage = ("gpu", "gpu0", "nvml_outage")
    gpus = {"gpu0": GpuInterval(parties=(GpuParty(A, 90.0, 1),))}
    interval = Interval(energy_j={GPU0: 10.0, outage: 90.0}, node=NODE, jobs={}, gpus=gpus)
    result = attribute(interval)
    assert result.jobs[A] == {GPU0: 10.0}
    assert result.unattributed[outage] == 90.0
    assert_conserved(interval, result)


def test_mig_instances_that_claim_more_than_the_gpu_are_scaled_down() -> None:
    gpus = {
        "gpu0": GpuInterval(
            instances={"MIG-a": (0.75, (GpuParty(A, 1.0),)), "MIG-b": (0.75, (GpuParty(B, 1.0),))}
        )
    }
    interval = Interval(energy_j={GPU0: 100.0}, node=NODE, jobs={}, gpus=gpus)
    result = attribute(interval)
    estimated = ("gpu", "gpu0", "estimate")
    assert result.jobs[A][estimated] == pytest.approx(50.0) and result.jobs[B][estimated] == pytest.approx(
        50.0
    )
    assert_conserved(interval, result)


# ---- properties --------------------------------------------------------------------------------

PATIENT = settings(deadline=None)
"""No time limit per example: a busy 2-core machine must not fail a property."""
JOBS = [JobKey("slurm", str(i)) for i in range(6)]
JOULES = st.floats(0.0, 1e7, allow_nan=False) | st.just(0.0)


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    """Any interval: energy per key, idle power, node and job usage, GPU parties whole and under MIG."""
    job_keys = draw(st.lists(st.sampled_from(JOBS), unique=True, max_size=len(JOBS)))
    jobs = {
        key: JobInterval(
            cpu_s=draw(st.floats(0.0, 1e4)),
            memory_bytes=draw(st.integers(0, 1 << 40)),
            cpus_allocated=draw(st.none() | st.floats(0.0, 512.0)),
        )
        for key in job_keys
    }
    party = st.builds(
        GpuParty,
        st.sampled_from([*job_keys, None]),
        st.none() | st.floats(0.0, 100.0),
        st.none() | st.integers(0, 1 << 36),
    )
    parties = tuple(draw(st.lists(party, max_size=6)))
    shares = draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3))
    return Interval(
        energy_j={key: draw(JOULES) for key in draw(st.lists(st.sampled_from(KEYS), unique=True))},
        idle_w={key: draw(st.floats(0.0, 1000.0)) for key in KEYS},
        node=NodeInterval(
            seconds=draw(st.floats(0.0, 3600.0)),
            cpu_busy_s=draw(st.floats(0.0, 1e4)),
            cpus=draw(st.integers(1, 512)),
            memory_used_bytes=draw(st.integers(0, 1 << 40)),
        ),
        jobs=jobs,
        gpus={
            "gpu0": GpuInterval(parties=parties),
            "gpu1": GpuInterval(instances={f"MIG-{i}": (share, parties) for i, share in enumerate(shares)}),
            "gpu2": GpuInterval(parties=parties),
        },
    )


@PATIENT
@given(intervals(), st.sampled_from(("share", "node")), st.sampled_from(("share", "node")))
def test_attribution_conserves_energy_and_is_never_negative(
    interval: Interval, policy: str, other_policy: str
) -> None:
    result = attribute(interval, policy, other_policy)
    assert_conserved(interval, result)
    for key, joules in interval.energy_j.items():  # per key too, not only per component
        given_out = sum(v for shares in result.jobs.values() for k, v in shares.items() if k[:2] == key[:2])
        assert given_out <= joules * (1 + 1e-9) + 1e-9


@PATIENT
@given(intervals(), st.randoms(use_true_random=False), st.sampled_from(("share", "node")))
def test_attribution_does_not_depend_on_the_order_of_jobs_or_parties(
    interval: Interval, rng: random.Random, policy: str
) -> None:
    jobs = list(interval.jobs.items())
    rng.shuffle(jobs)
    gpus = {
        device: GpuInterval(
            parties=tuple(rng.sample(gpu.parties, len(gpu.parties))),
            instances={
                name: (share, tuple(rng.sample(parties, len(parties))))
                for name, (share, parties) in reversed(list(gpu.instances.items()))
            },
        )
        for device, gpu in interval.gpus.items()
    }
    energy = list(interval.energy_j.items())
    rng.shuffle(energy)
    shuffled = Interval(dict(energy), interval.node, dict(jobs), interval.idle_w, gpus)
    one, other = attribute(interval, policy), attribute(shuffled, policy)
    assert set(one.jobs) == set(other.jobs)
    for job, shares in one.jobs.items():
        assert set(shares) == set(other.jobs[job])
        for key, joules in shares.items():
            assert other.jobs[job][key] == pytest.approx(joules, rel=1e-9, abs=1e-9)
    assert set(one.unattributed) == set(other.unattributed)
    for key, joules in one.unattributed.items():
        assert other.unattributed[key] == pytest.approx(joules, rel=1e-9, abs=1e-6)


# ---- the thresholds themselves: small figures are still shared ----


def test_a_node_busy_less_than_a_cpu_second_still_shares_its_active_energy() -> None:
    node = NodeInterval(seconds=1.0, cpu_busy_s=0.8, cpus=4, memory_used_bytes=0)
    interval = Interval(energy_j={CPU: 10.0}, node=node, jobs={A: JobInterval(cpu_s=0.4, memory_bytes=0)})
    assert attribute(interval).jobs[A][CPU] == pytest.approx(5.0, rel=1e-12)


def test_idle_energy_under_a_joule_is_still_shared() -> None:
    jobs = {A: JobInterval(cpu_s=0.0, memory_bytes=0, cpus_allocated=2)}
    interval = Interval(energy_j={CPU: 0.5}, idle_w={CPU: 0.5}, node=NODE, jobs=jobs)
    assert attribute(interval, "share").jobs[A][CPU] == pytest.approx(0.25, rel=1e-12)  # 2 of 4 CPUs


def test_a_gpu_at_under_one_percent_sm_is_split_by_sm_not_memory() -> None:
    parties = (GpuParty(A, 0.5, 1 << 30), GpuParty(B, 0.25, 1 << 30))
    result = attribute(
        Interval(energy_j={GPU0: 30.0}, node=NODE, jobs={}, gpus={"gpu0": GpuInterval(parties)})
    )
    assert result.jobs[A][GPU0] == pytest.approx(20.0, rel=1e-12)
    assert result.jobs[B][GPU0] == pytest.approx(10.0, rel=1e-12)


def test_a_zero_length_interval_attributes_without_dividing_by_zero() -> None:
    node = NodeInterval(seconds=0.0, cpu_busy_s=0.0, cpus=4, memory_used_bytes=0)
    interval = Interval(
        energy_j={CPU: 1.0}, idle_w={CPU: 10.0}, node=node, jobs={A: JobInterval(cpu_s=0.0, memory_bytes=0)}
    )
    result = attribute(interval, "share")
    assert_conserved(interval, result)
    assert result.unattributed[CPU] == pytest.approx(1.0)


def test_mig_instance_shares_are_clamped_to_the_whole_gpu() -> None:
    gpu = GpuInterval(
        instances={"gi1": (1.5, (GpuParty(A, 50.0, 1),)), "gi2": (0.5, (GpuParty(B, 50.0, 1),))}
    )
    result = attribute(Interval(energy_j={GPU0: 90.0}, node=NODE, jobs={}, gpus={"gpu0": gpu}))
    estimated = ("gpu", "gpu0", "estimate")
    # 1.5 claims more than the GPU: taken as 1, then both scaled to the 1.5 claimed: 2/3 and 1/3.
    assert result.jobs[A][estimated] == pytest.approx(60.0, rel=1e-12)
    assert result.jobs[B][estimated] == pytest.approx(30.0, rel=1e-12)


MODULE = ("module", "gpu0", "nvml")
GRACE = ("grace", "socket0", "hwmon")
GRACE_CPU = ("grace", "socket0.cpu", "hwmon")
WALL = ("node", "chassis1", "redfish")
OTHER = ("other", "node", "redfish")


def test_a_module_splits_its_grace_part_by_cpu_and_the_rest_by_gpu_and_grace_detail_stays() -> None:
    # Module 1000 J, of which Grace (the socket sensor) 200 J: 200 J by CPU time, 800 J by the GPU.
    interval = Interval(
        energy_j={MODULE: 1000.0, GRACE: 200.0, GRACE_CPU: 150.0},
        node=NodeInterval(seconds=1.0, cpu_busy_s=1.0, cpus=72, memory_used_bytes=0),
        jobs={A: JobInterval(cpu_s=0.75, memory_bytes=0), B: JobInterval(cpu_s=0.25, memory_bytes=0)},
        gpus={"gpu0": GpuInterval(parties=(GpuParty(B, sm_util=90.0),))},
    )
    result = attribute(interval)
    assert result.jobs[A][MODULE] == pytest.approx(150.0)
    assert result.jobs[B][MODULE] == pytest.approx(50.0 + 800.0)
    assert result.unattributed[GRACE] == 200.0 and result.unattributed[GRACE_CPU] == 150.0
    assert all(GRACE not in shares and GRACE_CPU not in shares for shares in result.jobs.values())
    assert_conserved(interval, result)


def test_a_module_without_grace_sensors_goes_by_its_gpu_alone() -> None:
    interval = Interval(
        energy_j={MODULE: 600.0},
        node=NodeInterval(seconds=1.0, cpu_busy_s=1.0, cpus=72, memory_used_bytes=0),
        jobs={A: JobInterval(cpu_s=1.0, memory_bytes=0)},
        gpus={"gpu0": GpuInterval(parties=(GpuParty(B, sm_util=50.0),))},
    )
    result = attribute(interval)
    assert result.jobs[B][MODULE] == pytest.approx(600.0)
    assert A not in result.jobs


def test_other_follows_each_jobs_share_of_the_counted_energy_and_the_wall_is_never_charged() -> None:
    # Counted: CPU 300 J (A 200, B 100 by CPU time), GPU 500 J (A alone). A has 700 of 800 counted.
    interval = Interval(
        energy_j={CPU: 300.0, GPU0: 500.0, WALL: 1000.0, OTHER: 200.0},
        node=NodeInterval(seconds=1.0, cpu_busy_s=3.0, cpus=4, memory_used_bytes=0),
        jobs={A: JobInterval(cpu_s=2.0, memory_bytes=0), B: JobInterval(cpu_s=1.0, memory_bytes=0)},
        gpus={"gpu0": GpuInterval(parties=(GpuParty(A, sm_util=10.0),))},
    )
    result = attribute(interval, idle_policy="node")
    assert result.jobs[A][OTHER] == pytest.approx(200.0 * 700 / 800)
    assert result.jobs[B][OTHER] == pytest.approx(200.0 * 100 / 800)
    assert result.unattributed[WALL] == 1000.0
    assert all(WALL not in shares for shares in result.jobs.values())
    assert_conserved(interval, result)
    kept = attribute(interval, idle_policy="node", other_policy="node")
    assert all(OTHER not in shares for shares in kept.jobs.values())
    assert kept.unattributed[OTHER] == 200.0


def test_other_of_work_outside_jobs_stays_on_the_node() -> None:
    # Half the CPU time is outside jobs: half the counted energy, so half of `other`, stays.
    interval = Interval(
        energy_j={CPU: 400.0, OTHER: 100.0},
        node=NodeInterval(seconds=1.0, cpu_busy_s=2.0, cpus=4, memory_used_bytes=0),
        jobs={A: JobInterval(cpu_s=1.0, memory_bytes=0)},
    )
    result = attribute(interval, idle_policy="node")
    assert result.jobs[A][OTHER] == pytest.approx(50.0)
    assert result.unattributed[OTHER] == pytest.approx(50.0)


def test_an_unknown_other_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="other_policy"):
        attribute(Interval({}, NODE, {}), other_policy="split")
