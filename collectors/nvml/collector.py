"""NVIDIA GPUs through NVML: the hardware energy counter (Volta and newer), else integrated power samples.

Failures are per device and per call: a GPU that is lost or refuses a read is left out of the
reading (its reason goes into `Reading.errors`) and is re-opened, by index and checked by UUID, no
more often than every `reprobe_seconds`. The other GPUs keep counting. `read()` raises
CollectorError only when the library itself fails (driver unloaded, NVML/driver mismatch) or before
a successful probe; every device failing still returns a Reading, so the collector stays up, and
names the failing devices in `Reading.down`, so that each shows on `greenai_device_up`.

Each GPU's maximum power (which bounds a plausible step of its counter) is the top of its power
limit range (nvmlDeviceGetPowerManagementLimitConstraints), else its enforced limit.

`gpu_usage()` lists the processes on each GPU for attribution, with the same per device, per call
failure handling; it never raises, and leaves bringing a lost GPU back to `read()`. That part
lives in `collectors.nvml.usage`, the per-GPU state both share in `collectors.nvml.gpus`, and
NVML's error translation in `collectors.nvml.errors`; the read loop and failure handling it shares
with the amdsmi collector in `collectors.gpu`.
"""

from __future__ import annotations

import ctypes
import logging
from types import ModuleType
from typing import Any

from collectors.base import Clock, Probe, Status, VendorError, vendor_call
from collectors.gpu import COUNTER, GpuCollector
from collectors.nvml.errors import LIBRARY_REASONS, NEVER_READABLE, NvmlError, text, translate
from collectors.nvml.gpus import Gpu
from collectors.nvml.usage import NvmlUsage

log = logging.getLogger("greenai.nvml")

NOT_FOUND_REASON = "libnvidia-ml.so.1 not found (no NVIDIA driver on this host)"
NOT_FOUND_FIX = (
    "install the NVIDIA driver, or add the directory holding libnvidia-ml.so.1 to LD_LIBRARY_PATH;"
    " on a node without NVIDIA GPUs, disable the nvml collector"
)


class NvmlCollector(GpuCollector[Gpu]):
    """Cumulative GPU energy in microjoules per GPU, from NVML."""

    name = "nvml"
    library_reasons = LIBRARY_REASONS
    never_readable = NEVER_READABLE
    counter_lost = frozenset({"function_not_found"})
    energy_function = "nvmlDeviceGetTotalEnergyConsumption"

    def __init__(
        self, clock: Clock, reprobe_seconds: float = 30.0, library: ModuleType | None = None
    ) -> None:
        """`library` is the pynvml module (imported on probe when None); `reprobe_seconds` of `clock`."""
        super().__init__(clock, reprobe_seconds, library)
        self._driver_version: str | None = None
        self._usage = NvmlUsage(self._call, clock, reprobe_seconds)

    @property
    def driver_version(self) -> str | None:
        """The NVIDIA driver version found by probe, for logs; None before a successful init."""
        return self._driver_version

    def _call(self, function: str, *args: Any) -> Any:
        """Call one pynvml function, translating its errors into NvmlError."""
        return vendor_call(self._library, function, args, self._library.NVMLError, translate, _missing)

    # ---- probe -------------------------------------------------------------------------------

    def probe(self) -> Probe:
        """Initialise NVML and find each GPU's method: the energy counter, else power integration."""
        if self._library is None:
            if not _driver_library_loads():  # no driver: not even pynvml's 2 MB are loaded
                return Probe(Status.NOT_FOUND, NOT_FOUND_REASON, fix=NOT_FOUND_FIX)
            try:
                import pynvml
            except ImportError:
                return Probe(
                    Status.NOT_FOUND, "the pynvml module is not installed", fix="pip install nvidia-ml-py"
                )
            self._library = pynvml
        try:
            self._call("nvmlInit")
        except NvmlError as e:
            if e.reason == "library_not_found":
                return Probe(Status.NOT_FOUND, NOT_FOUND_REASON, fix=NOT_FOUND_FIX)
            return Probe(Status.ERROR, f"NVML init failed: {e}", fix="check the driver with nvidia-smi")
        self._initialised = True
        try:
            probe = self._probe_gpus()
        except NvmlError as e:
            probe = Probe(
                Status.ERROR, f"NVML failed while listing GPUs: {e}", fix="check the driver with nvidia-smi"
            )
        if not probe.status.usable:
            self.close()
        return probe

    def _probe_gpus(self) -> Probe:
        self._driver_version = text(self._call("nvmlSystemGetDriverVersion"))
        count = int(self._call("nvmlDeviceGetCount"))
        notes = [f"NVIDIA driver {self._driver_version}"]
        skipped: list[str] = []
        self._gpus = []
        down: list[Gpu] = []
        for index in range(count):
            try:
                gpu = self._open(index)
            except NvmlError as e:
                skipped.append(e.reason)
                # Identity unknown until it answers; read() re-opens it like a GPU lost later on.
                unknown = Gpu(index, uuid="", name="", method=COUNTER, reason=e.reason)
                if self._kept_down(unknown, f"gpu{index}", e, notes):
                    down.append(unknown)
                continue
            self._gpus.append(gpu)
            how = (
                "energy counter" if gpu.method == COUNTER else "power samples integrated (no energy counter)"
            )
            notes.append(f"{gpu.device} {gpu.name} ({gpu.uuid}): {how}")
        devices = self.devices
        if self._gpus:
            self._gpus += down
            counters = sum(gpu.method == COUNTER for gpu in self._gpus)
            powers = len(self._gpus) - counters
            reason = f"{len(self._gpus)} GPU(s): {counters} by energy counter, {powers} by power"
            return Probe(Status.OK, reason, devices=devices, notes=tuple(notes))
        if count == 0:
            reason = f"NVIDIA driver {self._driver_version} loaded but it sees no GPU"
            return Probe(Status.NOT_FOUND, reason, fix="check the GPUs with nvidia-smi", notes=tuple(notes))
        fix = "run the agent as root or check the NVIDIA driver's device permissions"
        return self._unreadable("NVML", count, skipped, fix, notes)

    def _open(self, index: int) -> Gpu:
        """Open GPU `index` and choose its method; raises NvmlError when it can be read neither way."""
        handle = self._call("nvmlDeviceGetHandleByIndex", index)
        uuid = text(self._call("nvmlDeviceGetUUID", handle))
        name = text(self._call("nvmlDeviceGetName", handle))
        method = self._method(handle, None)
        gpu = Gpu(index=index, uuid=uuid, name=name, method=method, handle=handle)
        gpu.max_power_w = self._max_power_w(handle)
        return gpu

    def _max_power_w(self, handle: Any) -> float | None:
        """The most the GPU may draw, in watts; None when NVML knows no power limit for it."""
        for function in ("nvmlDeviceGetPowerManagementLimitConstraints", "nvmlDeviceGetEnforcedPowerLimit"):
            try:
                answer = self._call(function, handle)
            except NvmlError as e:
                if e.reason == "gpu_lost" or e.reason in LIBRARY_REASONS:
                    raise
                continue
            limit_mw = int(answer[1] if isinstance(answer, (list, tuple)) else answer)
            if limit_mw > 0:
                return limit_mw / 1000
        return None

    def _no_counter(self, error: VendorError) -> bool:
        return error.reason != "gpu_lost" and error.reason not in LIBRARY_REASONS

    def _power_uw(self, handle: Any) -> float:
        return int(self._call("nvmlDeviceGetPowerUsage", handle)) * 1000  # NVML: milliwatts

    # ---- read --------------------------------------------------------------------------------

    def _handle(self, gpu: Gpu) -> Any:
        return gpu.handle

    def _energy(self, gpu: Gpu) -> tuple[int, int | None]:
        return int(self._call(self.energy_function, gpu.handle)) * 1000, None  # NVML: millijoules

    def _forget(self, gpu: Gpu) -> None:
        gpu.handle = None
        gpu.mig = None  # MIG device handles die with the GPU's handle

    def _reopen(self, gpu: Gpu) -> None:
        """Get a fresh handle for a down GPU, check it is the same one, and re-check its method."""
        handle = self._call("nvmlDeviceGetHandleByIndex", gpu.index)
        uuid = text(self._call("nvmlDeviceGetUUID", handle))
        if not gpu.uuid:  # down since probe: this is its first answer
            gpu.uuid, gpu.name = uuid, text(self._call("nvmlDeviceGetName", handle))
        elif uuid != gpu.uuid:
            raise NvmlError("gpu_changed", f"index {gpu.index} is now {uuid}, was {gpu.uuid}")
        method = self._method(handle, gpu.method)
        gpu.max_power_w = self._max_power_w(handle)
        if method != gpu.method:
            log.warning("nvml: %s has no energy counter any more; integrating power from now on", gpu.device)
        gpu.method = method
        gpu.handle = handle

    # ---- close -------------------------------------------------------------------------------

    def close(self) -> None:
        """Shut NVML down if probe initialised it."""
        if not self._initialised:
            return
        self._initialised = False
        for gpu in self._gpus:
            gpu.handle = None
        try:
            self._call("nvmlShutdown")
        except NvmlError as e:
            log.debug("nvml: shutdown: %s", e)


def _missing(function: str) -> NvmlError:
    return NvmlError("function_not_found", f"pynvml has no {function}")


def _driver_library_loads() -> bool:
    """Whether the driver's libnvidia-ml.so.1 loads, as pynvml's nvmlInit would load it."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True
