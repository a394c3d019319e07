"""Shared fixtures: the fake libnvidia-ml.so.1 and libamd_smi.so, compiled once per test session, and
real cgroups made and removed per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.amdsmi import build_fake_amdsmi
from tests.support.cgroups import RealCgroups
from tests.support.nvml import build_fake_nvml
from tests.support.slurm_cluster import SlurmCluster, SlurmHost, missing_binaries


@pytest.fixture(scope="session")
def fake_nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding the fake libnvidia-ml.so.1, for LD_LIBRARY_PATH."""
    return build_fake_nvml(tmp_path_factory.mktemp("nvml"))


@pytest.fixture(scope="session")
def fake_nvml_lib_no_energy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding a fake libnvidia-ml.so.1 without nvmlDeviceGetTotalEnergyConsumption."""
    return build_fake_nvml(tmp_path_factory.mktemp("nvml-no-energy"), energy_fn=False)


@pytest.fixture(scope="session")
def fake_amdsmi_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding the fake libamd_smi.so, for LD_LIBRARY_PATH."""
    return build_fake_amdsmi(tmp_path_factory.mktemp("amdsmi"))


@pytest.fixture
def sysfs() -> Iterator[Path]:
    """A temporary sysfs root that `nobody` can traverse (pytest's tmp_path parent is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="greenai-sysfs-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


# ---- a real single-node Slurm (tests/support/slurm_cluster.py); one configuration runs at a time ----


@pytest.fixture(scope="session")
def slurm_host() -> Iterator[SlurmHost]:
    """munged and a temporary directory; skips when slurm-wlm or munge is not installed."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm not installed (no {', '.join(missing)}): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("a real Slurm needs root (SlurmUser=root, job cgroups)")
    host = SlurmHost()
    try:
        host.start_munge()
        yield host
    finally:
        host.stop()


@pytest.fixture
def slurm_cluster(slurm_host: SlurmHost) -> SlurmCluster:
    """Slurm with proctrack/cgroup, task/cgroup, jobacct_gather/cgroup: each job has v1 cgroups."""
    return slurm_host.start("cgroup")


@pytest.fixture
def slurm_cluster_linuxproc(slurm_host: SlurmHost) -> SlurmCluster:
    """Slurm with proctrack/linuxproc: no job cgroups, jobs are known by SLURM_JOB_ID in environ."""
    return slurm_host.start("linuxproc")


@pytest.fixture
def cgroups() -> Iterator[RealCgroups]:
    """Real job cgroups under the host's /sys/fs/cgroup, removed (their processes killed) afterwards."""
    with RealCgroups(Path("/sys/fs/cgroup")) as made:
        yield made
