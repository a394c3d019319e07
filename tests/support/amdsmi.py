"""Build the fake libamd_smi.so (fake_amd_smi.c) and write the GPU state file it reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.support.fakelib import compile_fake, replace_state

SOURCES = (Path(__file__).with_name("fake_amd_smi.c"), Path(__file__).with_name("fake_amd_smi_stubs.c"))
LIBRARY_NAME = "libamd_smi.so"
"""The name the bindings ask the dynamic linker for (amdsmi_wrapper.find_smi_library)."""

# amdsmi_status_t values, for FakeAmdGpu's forced status codes.
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_NO_PERM = 10
AMDSMI_STATUS_NOT_FOUND = 31
AMDSMI_STATUS_UNKNOWN_ERROR = 4294967295


def build_fake_amdsmi(outdir: Path) -> Path:
    """Compile the fake into `outdir/libamd_smi.so` and return `outdir`, the LD_LIBRARY_PATH entry."""
    return compile_fake(SOURCES, outdir, LIBRARY_NAME)


@dataclass(frozen=True)
class FakeAmdProcess:
    """A process on a fake GPU's handle: VRAM in bytes, cumulative gfx engine time in nanoseconds."""

    pid: int
    vram: int = 0
    gfx_ns: int = 0

    def line(self, handle: int) -> str:
        return f"proc gpu={handle} pid={self.pid} vram={self.vram} gfx_ns={self.gfx_ns}"


@dataclass(frozen=True)
class FakeAmdGpu:
    """One processor handle of the fake library: a whole GPU or one partition of one (fake_amd_smi.c
    says what each field does). Power in watts, energy in ticks of `resolution` microjoules."""

    bdf: str
    uuid: str = ""
    name: str = "AMD Instinct MI300X"
    partition: int = 0
    mode: str = "SPX"
    cus: int = 304
    power_w: int = 0
    power_field: str = "current"
    counter: bool = True
    ticks: int = 0
    resolution: float = 15.3
    wrap_bits: int = 64
    live: bool = False
    t0: float = 0.0
    lost: bool = False
    lost_rc: int = AMDSMI_STATUS_NOT_FOUND
    energy_rc: int = 0
    power_rc: int = 0
    processes_rc: int = 0
    partition_rc: int = 0
    cap_uw: int = 750_000_000
    cap_rc: int = 0
    processes: tuple[FakeAmdProcess, ...] = ()

    def uuid_or_default(self) -> str:
        return self.uuid or f"fake-{self.bdf.replace(':', '').replace('.', '')}-0000-0000-000000000000"

    def ticks_at(self, t: float) -> int:
        """The accumulator at time `t`, before its wrap (fake_amd_smi.c's arithmetic)."""
        if not self.live or t <= self.t0:
            return self.ticks
        return self.ticks + int(self.power_w * 1e6 * (t - self.t0) / self.resolution)

    def line(self) -> str:
        return (
            f'gpu uuid={self.uuid_or_default()} name="{self.name}" bdf={self.bdf} partition={self.partition}'
            f" mode={self.mode} cus={self.cus} power_w={self.power_w} power_field={self.power_field}"
            f" counter={int(self.counter)} ticks={self.ticks} resolution={self.resolution!r}"
            f" wrap_bits={self.wrap_bits} live={int(self.live)} t0={self.t0!r} lost={int(self.lost)}"
            f" lost_rc={self.lost_rc} energy_rc={self.energy_rc} power_rc={self.power_rc}"
            f" processes_rc={self.processes_rc} partition_rc={self.partition_rc} cap_uw={self.cap_uw}"
            f" cap_rc={self.cap_rc}"
        )


def write_amd_state(path: Path, gpus: Iterable[FakeAmdGpu], t: float = 0.0, loaded: bool = True) -> None:
    """Atomically replace the state file (handles in order; `t` the time live counters count to)."""
    gpus = list(gpus)
    lines = [f"library loaded={int(loaded)} t={t!r}", *(gpu.line() for gpu in gpus)]
    lines += [process.line(handle) for handle, gpu in enumerate(gpus) for process in gpu.processes]
    replace_state(path, lines)
