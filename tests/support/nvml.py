"""Build the fake libnvidia-ml.so.1 (fake_nvml.c) and write the GPU state file it reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.support.fakelib import compile_fake, replace_state

SOURCE = Path(__file__).with_name("fake_nvml.c")
LIBRARY_NAME = "libnvidia-ml.so.1"

# NVML return codes, for FakeGpu.energy_rc / power_rc / processes_rc / util_rc / mig_rc.
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_UNKNOWN = 999


def build_fake_nvml(
    outdir: Path, *, energy_fn: bool = True, mig_fn: bool = True, processes_v3: bool = True
) -> Path:
    """Compile the fake into `outdir/libnvidia-ml.so.1` and return `outdir`, the LD_LIBRARY_PATH entry.

    energy_fn=False leaves out nvmlDeviceGetTotalEnergyConsumption, like a driver too old to have it;
    mig_fn=False the MIG functions; processes_v3=False the _v3 running-process functions (_v2 only).
    """
    wanted = {
        "FAKE_NVML_NO_ENERGY_FN": energy_fn,
        "FAKE_NVML_NO_MIG_FN": mig_fn,
        "FAKE_NVML_NO_PROCESSES_V3": processes_v3,
    }
    defines = [define for define, keep in wanted.items() if not keep]
    return compile_fake([SOURCE], outdir, LIBRARY_NAME, defines)


@dataclass(frozen=True)
class FakeProcess:
    """A process on a fake GPU: memory in MiB (None: NVML_VALUE_NOT_AVAILABLE), SM utilisation in percent.

    `sm` is a steady load: one sample stamped with the time of each call. `samples` are
    (timestamp in microseconds, SM %) pairs at fixed times. Neither: no utilisation samples at all.
    """

    pid: int
    memory_mib: int | None = 0
    sm: int | None = None
    samples: tuple[tuple[int, int], ...] = ()
    graphics: bool = False

    def line(self, gpu: int, mig: int | None = None) -> str:
        memory = "na" if self.memory_mib is None else str(self.memory_mib)
        words = [f"proc gpu={gpu} pid={self.pid} mem_mib={memory} graphics={int(self.graphics)}"]
        if mig is not None:
            words.append(f"mig={mig}")
        if self.sm is not None:
            words.append(f"sm={self.sm}")
        if self.samples:
            words.append("samples=" + ",".join(f"{ts}:{sm}" for ts, sm in self.samples))
        return " ".join(words)


@dataclass(frozen=True)
class FakeMig:
    """A MIG device of a fake GPU, at MIG device `index`, with `sms` multiprocessors."""

    index: int
    sms: int
    gi: int = 0
    ci: int = 0
    uuid: str = ""
    processes: tuple[FakeProcess, ...] = ()

    def uuid_of(self, gpu: int) -> str:
        return self.uuid or f"MIG-{gpu:08d}-fake-{self.index:04d}-0000-000000000000"

    def lines(self, gpu: int) -> list[str]:
        head = (
            f"mig gpu={gpu} index={self.index} uuid={self.uuid_of(gpu)}"
            f" sms={self.sms} gi={self.gi} ci={self.ci}"
        )
        return [head, *(process.line(gpu, self.index) for process in self.processes)]


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
    processes: tuple[FakeProcess, ...] = ()
    processes_rc: int = 0
    util_rc: int = 0
    mig: bool = False
    """MIG mode enabled; `migs` are its MIG devices."""
    migs: tuple[FakeMig, ...] = ()
    mig_rc: int = 0
    limit_mw: int = 700_000
    """The power limit in milliwatts (enforced, and the most that may be set)."""
    limit_rc: int = 0

    def line(self) -> str:
        """This GPU as one line of the state file."""
        uuid = self.uuid or f"GPU-{self.index:08d}-fake-0000-0000-000000000000"
        return (
            f'gpu index={self.index} uuid={uuid} name="{self.name}" power_mw={self.power_mw}'
            f" counter={int(self.counter)} energy_mj={self.energy_mj} live={int(self.live)}"
            f" t0={self.t0!r} lost={int(self.lost)} perm={int(self.perm)}"
            f" energy_rc={self.energy_rc} power_rc={self.power_rc} processes_rc={self.processes_rc}"
            f" util_rc={self.util_rc} mig={int(self.mig)} mig_rc={self.mig_rc}"
            f" limit_mw={self.limit_mw} limit_rc={self.limit_rc}"
        )

    def lines(self) -> list[str]:
        """This GPU, its MIG devices and its processes as lines of the state file."""
        return [
            self.line(),
            *(line for mig in self.migs for line in mig.lines(self.index)),
            *(process.line(self.index) for process in self.processes),
        ]


def write_state(path: Path, gpus: Iterable[FakeGpu], driver: str = "550.54.15", loaded: bool = True) -> None:
    """Atomically replace the state file, so the fake never reads half of it."""
    lines = [f"driver version={driver} loaded={int(loaded)}", *(line for gpu in gpus for line in gpu.lines())]
    replace_state(path, lines)
