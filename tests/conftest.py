"""Shared fixtures: the fake libnvidia-ml.so.1, compiled once per test session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.nvml import build_fake_nvml


@pytest.fixture(scope="session")
def fake_nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding the fake libnvidia-ml.so.1, for LD_LIBRARY_PATH."""
    return build_fake_nvml(tmp_path_factory.mktemp("nvml"))


@pytest.fixture(scope="session")
def fake_nvml_lib_no_energy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding a fake libnvidia-ml.so.1 without nvmlDeviceGetTotalEnergyConsumption."""
    return build_fake_nvml(tmp_path_factory.mktemp("nvml-no-energy"), energy_fn=False)


@pytest.fixture
def sysfs() -> Iterator[Path]:
    """A temporary sysfs root that `nobody` can traverse (pytest's tmp_path parent is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="greenai-sysfs-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
