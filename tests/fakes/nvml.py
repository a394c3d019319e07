"""Build the fake libnvidia-ml.so.1 (fake_nvml.c) and write the GPU state file it reads on every call."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("fake_nvml.c")
LIBRARY_NAME = "libnvidia-ml.so.1"

# NVML return codes, for FakeGpu.energy_rc / power_rc.
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_UNKNOWN = 999


def build_fake_nvml(outdir: Path, *, energy_fn: bool = True) -> Path:
    """Compile the fake into `outdir/libnvidia-ml.so.1` and return `outdir`, the LD_LIBRARY_PATH entry.

    energy_fn=False leaves out nvmlDeviceGetTotalEnergyConsumption, like a driver too old to have it.
    """
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH: needed to build the fake libnvidia-ml.so.1")
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        cc,
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-O2",
        "-fvisibility=hidden",
        "-shared",
        "-fPIC",
        "-pthread",
        f"-Wl,-soname,{LIBRARY_NAME}",
        "-o",
        str(outdir / LIBRARY_NAME),
        str(SOURCE),
    ]
    if not energy_fn:
        cmd.insert(1, "-DFAKE_NVML_NO_ENERGY_FN")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return outdir


@dataclass(frozen=True)
class FakeGpu:
    """One fake GPU: power in milliwatts, energy counter in millijoules (see fake_nvml.c for each field)."""

    index: int
    uuid: str = ""
    name: str = "NVIDIA H100 80GB HBM3"
    power_mw: int = 0
    counter: bool = True
    energy_mj: int = 0
    live: bool = False
    t0: float = 0.0
    lost: bool = False
    perm: bool = True
    energy_rc: int = 0
    power_rc: int = 0

    def line(self) -> str:
        """This GPU as one line of the state file."""
        uuid = self.uuid or f"GPU-{self.index:08d}-fake-0000-0000-000000000000"
        return (
            f'gpu index={self.index} uuid={uuid} name="{self.name}" power_mw={self.power_mw}'
            f" counter={int(self.counter)} energy_mj={self.energy_mj} live={int(self.live)}"
            f" t0={self.t0!r} lost={int(self.lost)} perm={int(self.perm)}"
            f" energy_rc={self.energy_rc} power_rc={self.power_rc}"
        )


def write_state(path: Path, gpus: Iterable[FakeGpu], driver: str = "550.54.15", loaded: bool = True) -> None:
    """Atomically replace the state file, so the fake never reads half of it."""
    lines = [f"driver version={driver} loaded={int(loaded)}", *(gpu.line() for gpu in gpus)]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
