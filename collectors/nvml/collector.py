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
NVML's error translation in `collectors.nvml.errors`.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from collectors.base import Clock, CollectorError, Counter, Device, Probe, Reading, Status, vendor_call
from collectors.nvml.errors import LIBRARY_REASONS, NEVER_READABLE, NvmlError, text, translate
from collectors.nvml.gpus import COUNTER, POWER, Gpu
from collectors.nvml.usage import NvmlUsage
from collectors.workloads import GpuUsage

log = logging.getLogger("greenai.nvml")

NOT_FOUND_REASON = "libnvidia-ml.so.1 not found (no NVIDIA driver on this host)"
NOT_FOUND_FIX = (
    "install the NVIDIA driver, or add the directory holding libnvidia-ml.so.1 to LD_LIBRARY_PATH;"
    " on a node without NVIDIA GPUs, disable the nvml collector"
)


class NvmlCollector:
    """Cumulative GPU energy in microjoules per GPU, from NVML."""

    name = "nvml"

    def __init__(
        self, clock: Clock, reprobe_seconds: float = 30.0, library: ModuleType | None = None
    ) -> None:
        """`library` is the pynvml module (imported on probe when None); `reprobe_seconds` of `clock`."""
        self._clock = clock
        self._reprobe_seconds = reprobe_seconds
        self._nvml: Any = library
        self._initialised = False
        self._gpus: list[Gpu] = []
        self._driver_version: str | None = None
        self._usage = NvmlUsage(self._call, clock, reprobe_seconds)
        self.usage_errors: tuple[str, ...] = ()
        """A reason per failed call of the last gpu_usage(), like Reading.errors: the agent counts them."""

    @property
    def driver_version(self) -> str | None:
        """The NVIDIA driver version found by probe, for logs; None before a successful init."""
        return self._driver_version

    @property
    def devices(self) -> tuple[Device, ...]:
        """The GPUs being measured, with their current method (a counter GPU may fall back to power)."""
        return tuple(gpu.as_device() for gpu in self._gpus if gpu.uuid)

    def _call(self, function: str, *args: Any) -> Any:
        """Call one pynvml function, translating its errors into NvmlError."""
        return vendor_call(self._nvml, function, args, self._nvml.NVMLError, translate, _missing)

    # ---- probe -------------------------------------------------------------------------------

    def probe(self) -> Probe:
        """Initialise NVML and find each GPU's method: the energy counter, else power integration."""
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                return Probe(
                    Status.NOT_FOUND, "the pynvml module is not installed", fix="pip install nvidia-ml-py"
                )
            self._nvml = pynvml
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
                if e.reason in LIBRARY_REASONS:
                    raise
                skipped.append(e.reason)
                if e.reason in NEVER_READABLE:
                    notes.append(f"gpu{index}: skipped: {e}")
                    continue
                notes.append(f"gpu{index}: not readable now: {e}; retried every {self._reprobe_seconds:g}s")
                # Identity unknown until it answers; read() re-opens it like a GPU lost later on.
                down.append(Gpu(index, uuid="", name="", method=COUNTER, reason=e.reason))
                self._mark_down(down[-1], e, self._clock())
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
        if all(reason == "no_permission" for reason in skipped):
            return Probe(
                Status.PERMISSION_DENIED,
                f"NVML refuses to read energy and power of all {count} GPU(s)",
                fix="run the agent as root or check the NVIDIA driver's device permissions",
                notes=tuple(notes),
            )
        reason = f"none of {count} GPU(s) reports energy or power: {', '.join(sorted(set(skipped)))}"
        return Probe(Status.NOT_FOUND, reason, fix="see the notes for each GPU", notes=tuple(notes))

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

    def _method(self, handle: Any, current: str | None) -> str:
        """COUNTER when the energy counter answers, else POWER when power does; never POWER -> COUNTER.

        A power GPU's integrated energy and the hardware counter have different origins: switching to
        the counter would make the cumulative value jump.
        """
        energy_error: NvmlError | None = None
        if current != POWER:
            try:
                self._call("nvmlDeviceGetTotalEnergyConsumption", handle)
                return COUNTER
            except NvmlError as e:
                if e.reason == "gpu_lost" or e.reason in LIBRARY_REASONS:
                    raise
                energy_error = e
        try:
            self._call("nvmlDeviceGetPowerUsage", handle)
        except NvmlError as e:
            if energy_error is None:
                raise
            message = f"no energy counter ({energy_error.reason}) and no power reading ({e.reason})"
            raise NvmlError(e.reason, message, e.code) from e
        return POWER

    # ---- read --------------------------------------------------------------------------------

    def read(self) -> Reading:
        """Cumulative energy in microjoules of every GPU that answers, and a reason for each that did not."""
        if not self._initialised:
            raise CollectorError("not_initialised", "nvml: read() before a successful probe()")
        now = self._clock()
        counters: list[Counter] = []
        errors: list[str] = []
        down: list[tuple[str, str]] = []
        for gpu in self._gpus:
            try:
                if gpu.handle is None:
                    if now < gpu.retry_at:
                        errors.append(gpu.reason)
                        down.append((gpu.component, gpu.device))
                        continue
                    self._reopen(gpu)
                counters.append(self._read_gpu(gpu, now, errors))
            except NvmlError as e:
                if e.reason in LIBRARY_REASONS:
                    raise CollectorError(e.reason, f"nvml: {e}") from e
                self._mark_down(gpu, e, now)
                errors.append(e.reason)
                down.append((gpu.component, gpu.device))
        return Reading(tuple(counters), tuple(errors), tuple(down))

    def _read_gpu(self, gpu: Gpu, now: float, errors: list[str]) -> Counter:
        if gpu.method == COUNTER:
            try:
                energy_mj = int(self._call("nvmlDeviceGetTotalEnergyConsumption", gpu.handle))
            except NvmlError as e:
                if e.reason != "function_not_found":
                    raise
                log.warning(
                    "nvml: %s lost its energy counter (%s); integrating power from now on", gpu.device, e
                )
                errors.append(e.reason)
                gpu.method = POWER  # the integral continues from the last counter value
            else:
                gpu.power.energy_uj = energy_mj * 1000
                return Counter(gpu.component, gpu.device, "nvml", energy_mj * 1000, None, gpu.max_power_w)
        power_mw = int(self._call("nvmlDeviceGetPowerUsage", gpu.handle))
        energy_uj = gpu.power.add(now, power_mw * 1000)
        return Counter(gpu.component, gpu.device, "nvml", energy_uj, None, gpu.max_power_w)

    def _mark_down(self, gpu: Gpu, error: NvmlError, now: float) -> None:
        # Warn when a GPU goes down; a failed retry of a GPU already down is routine.
        level = logging.WARNING if gpu.handle is not None else logging.DEBUG
        log.log(level, "nvml: %s %s: %s; retrying in %gs", gpu.device, gpu.uuid, error, self._reprobe_seconds)
        gpu.handle = None
        gpu.reason = error.reason
        gpu.retry_at = now + self._reprobe_seconds
        gpu.power.forget()  # its power during the gap is unknown: never integrate across it
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
        log.warning("nvml: %s %s is back (%s)", gpu.device, gpu.uuid, method)

    # ---- usage -------------------------------------------------------------------------------

    def gpu_usage(self) -> tuple[GpuUsage, ...]:
        """The processes on each GPU that is up, with SM utilisation in percent and memory in bytes.

        Never raises: a GPU whose processes cannot be listed has no usage this time, and each failed
        call leaves its reason in `usage_errors`. Skipped without a reason: GPUs that read() found
        down (read() reports them) and GPUs that cannot list processes at all (reported once).
        """
        usages, self.usage_errors = self._usage.gpu_usage(self._gpus if self._initialised else ())
        return usages

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
