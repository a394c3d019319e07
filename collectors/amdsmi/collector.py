"""AMD GPUs through amdsmi: the energy accumulator (amdsmi_get_energy_count), else integrated socket power.

Energy is the accumulator's ticks times its resolution (microjoules per tick, about 15.3 on Instinct
GPUs). The driver hands it over as 64 bits, but older firmware keeps a 32-bit accumulator that wraps
every 2^32 ticks (about 65.7 kJ, two minutes at 500 W). A GPU's counter is taken to wrap there until
it is seen above 32 bits; from then on it is a 64-bit counter, which never wraps in practice.

A compute-partitioned GPU (MI300X in DPX, QPX, CPX) shows one processor handle per partition, but
energy and power are the physical GPU's: the handles are grouped by PCI domain, bus and device (the
partitions differ in function number or partition id), and only the first partition (the primary,
which carries the power data) is read, once per physical GPU. Labels are gpu<index_offset + n>, n
counting physical GPUs in amdsmi's order. The partition layout is read at probe: changing it needs a
driver reload, hence an agent restart.

Failures are per device and per call: a GPU that is lost or refuses a read is left out of the reading
(its reason in `Reading.errors`, its label in `Reading.down`) and asked again, through the handles of
this init and checked by UUID, no more often than every `reprobe_seconds`. `read()` raises
CollectorError only when the library itself fails or before a successful probe.

`gpu_usage()` lists the processes on each GPU for attribution (`collectors.amdsmi.usage`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from types import ModuleType
from typing import Any

from collectors.amdsmi.errors import LIBRARY_REASONS, NEVER_READABLE, AmdSmiError, translate
from collectors.amdsmi.gpus import COUNTER, POWER, WRAP_TICKS_32, Gpu, Partition
from collectors.amdsmi.usage import AmdSmiUsage
from collectors.base import Clock, CollectorError, Counter, Device, Probe, Reading, Status, vendor_call
from collectors.workloads import GpuUsage

log = logging.getLogger("greenai.amdsmi")

NOT_FOUND_REASON = "libamd_smi.so not found (no ROCm on this host)"
NOT_FOUND_FIX = (
    "install ROCm's amd-smi library (package amd-smi-lib), or add the directory holding libamd_smi.so"
    " (/opt/rocm/lib) to LD_LIBRARY_PATH; on a node without AMD GPUs, disable collectors.amdsmi"
)
_DRIVER_FIX = "check the amdgpu driver with amd-smi"
_POWER_FIELDS = ("current_socket_power", "average_socket_power", "socket_power")
"""amdsmi_get_power_info's fields in watts, best first: MI300 and newer fill the current socket power,
MI200 and older the average; an unsupported one reads N/A (0xFFFF in the bindings, UINT32_MAX in C)."""
_NOT_AVAILABLE = (0xFFFF, 0xFFFFFFFF)


class AmdSmiCollector:
    """Cumulative GPU energy in microjoules per physical AMD GPU, from amdsmi."""

    name = "amdsmi"

    def __init__(
        self,
        clock: Clock,
        reprobe_seconds: float = 30.0,
        library: ModuleType | None = None,
        index_offset: int = 0,
    ) -> None:
        """`library` is the amdsmi module (imported on probe when None); `reprobe_seconds` of `clock`;
        `index_offset` the first label's number (the GPUs another collector labels before these)."""
        self._clock = clock
        self._reprobe_seconds = reprobe_seconds
        self._amdsmi: Any = library
        self._index_offset = index_offset
        self._initialised = False
        self._gpus: list[Gpu] = []
        self._usage = AmdSmiUsage(self._call, clock)
        self.usage_errors: tuple[str, ...] = ()
        """A reason per failed call of the last gpu_usage(), like Reading.errors: the agent counts them."""

    @property
    def devices(self) -> tuple[Device, ...]:
        """The GPUs being measured, with their current method (a counter GPU may fall back to power)."""
        return tuple(gpu.as_device() for gpu in self._gpus if gpu.uuid)

    def _call(self, function: str, *args: Any) -> Any:
        """Call one amdsmi function, translating its errors into AmdSmiError."""
        return vendor_call(self._amdsmi, function, args, self._amdsmi.AmdSmiException, translate, _missing)

    # ---- probe -------------------------------------------------------------------------------

    def probe(self) -> Probe:
        """Initialise amdsmi for GPUs and find each GPU's method: the energy counter, else power."""
        if self._amdsmi is None:
            try:
                self._amdsmi = _import_amdsmi()
            except Exception as e:  # the bindings raise KeyError (or OSError) without libamd_smi.so
                log.debug("amdsmi: import failed: %r", e)
                return Probe(Status.NOT_FOUND, NOT_FOUND_REASON, fix=NOT_FOUND_FIX)
        try:
            self._call("amdsmi_init", self._amdsmi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except AmdSmiError as e:
            return Probe(Status.ERROR, f"amdsmi init failed: {e}", fix=_DRIVER_FIX)
        self._initialised = True
        try:
            probe = self._probe_gpus()
        except AmdSmiError as e:
            probe = Probe(Status.ERROR, f"amdsmi failed while listing GPUs: {e}", fix=_DRIVER_FIX)
        if not probe.status.usable:
            self.close()
        return probe

    def _probe_gpus(self) -> Probe:
        notes: list[str] = []
        gpus = self._physical_gpus(self._call("amdsmi_get_processor_handles"), notes)
        skipped: list[str] = []
        self._gpus = []
        for gpu in gpus:
            where = f"{gpu.device} ({gpu.primary.bdf})"
            try:
                self._open(gpu)
            except AmdSmiError as e:
                if e.reason in LIBRARY_REASONS:
                    raise
                skipped.append(e.reason)
                if e.reason in NEVER_READABLE:
                    notes.append(f"{where}: skipped: {e}")
                    continue
                notes.append(f"{where}: not readable now: {e}; retried every {self._reprobe_seconds:g}s")
                self._mark_down(gpu, e, self._clock())  # its identity is learnt when it answers
                self._gpus.append(gpu)
                continue
            self._gpus.append(gpu)
            how = "energy counter" if gpu.method == COUNTER else "socket power integrated (no energy counter)"
            split = f", {gpu.mode} with {len(gpu.partitions)} partitions" if gpu.partitioned else ""
            notes.append(f"{where} {gpu.name} ({gpu.uuid}): {how}{split}")
        devices = self.devices
        if devices:
            counters = sum(device.method == COUNTER for device in devices)
            reason = (
                f"{len(devices)} GPU(s): {counters} by energy counter, {len(devices) - counters} by power"
            )
            return Probe(Status.OK, reason, devices=devices, notes=tuple(notes))
        if not gpus:
            return Probe(
                Status.NOT_FOUND, "amdsmi loaded but it sees no AMD GPU", fix=_DRIVER_FIX, notes=tuple(notes)
            )
        if all(reason == "no_permission" for reason in skipped):
            return Probe(
                Status.PERMISSION_DENIED,
                f"amdsmi refuses to read energy and power of all {len(gpus)} GPU(s)",
                fix="run the agent as root or add its user to the render and video groups",
                notes=tuple(notes),
            )
        reason = f"none of {len(gpus)} GPU(s) reports energy or power: {', '.join(sorted(set(skipped)))}"
        return Probe(Status.NOT_FOUND, reason, fix="see the notes for each GPU", notes=tuple(notes))

    def _physical_gpus(self, handles: list[Any], notes: list[str]) -> list[Gpu]:
        """The processor handles grouped into physical GPUs, in amdsmi's order, partitions by id; a
        handle without a PCI address is left out, with a note."""
        groups: dict[str, list[Partition]] = {}
        for n, handle in enumerate(handles):
            try:
                bdf = str(self._call("amdsmi_get_gpu_device_bdf", handle))
            except AmdSmiError as e:
                if e.reason in LIBRARY_REASONS:
                    raise
                notes.append(f"processor handle {n}: skipped: no PCI address: {e}")
                continue
            groups.setdefault(bdf.rsplit(".", 1)[0], []).append(
                Partition(handle, self._partition_id(handle, bdf), bdf)
            )
        return [
            Gpu(self._index_offset + n, tuple(sorted(parts, key=lambda p: p.partition_id)))
            for n, parts in enumerate(groups.values())
        ]

    def _partition_id(self, handle: Any, bdf: str) -> int:
        """The handle's partition id from its KFD node, else its PCI function number."""
        try:
            partition_id = self._call("amdsmi_get_gpu_kfd_info", handle)["current_partition_id"]
        except AmdSmiError as e:
            if e.reason in LIBRARY_REASONS:
                raise
            partition_id = None
        return partition_id if isinstance(partition_id, int) else int(bdf.rsplit(".", 1)[-1], 16)

    def _open(self, gpu: Gpu) -> None:
        """Learn (or check) the GPU's identity and choose its method; raises AmdSmiError when it can be
        read neither way, or when another GPU answers at its address."""
        handle = gpu.primary.handle
        uuid = str(self._call("amdsmi_get_gpu_device_uuid", handle))
        if gpu.uuid and uuid != gpu.uuid:
            raise AmdSmiError("gpu_changed", f"{gpu.primary.bdf} is now {uuid}, was {gpu.uuid}")
        name = str(self._call("amdsmi_get_gpu_asic_info", handle)["market_name"])
        method = self._method(handle, gpu.method if gpu.uuid else None)
        gpu.uuid, gpu.name, gpu.method = uuid, name, method
        gpu.max_power_w = self._max_power_w(handle)
        gpu.mode = self._mode(handle)
        if gpu.partitioned:
            for partition in gpu.partitions:
                partition.compute_units = self._compute_units(partition.handle)

    def _max_power_w(self, handle: Any) -> float | None:
        """The most the GPU may draw, in watts (the top of its power cap range, else its cap); None
        when amdsmi knows no cap."""
        try:
            caps = self._call("amdsmi_get_power_cap_info", handle)
        except AmdSmiError as e:
            if e.reason in LIBRARY_REASONS:
                raise
            return None
        for key in ("max_power_cap", "power_cap"):
            value = caps.get(key)
            if isinstance(value, int) and value > 0:
                return value / 1e6  # microwatts on bare metal
        return None

    def _mode(self, handle: Any) -> str:
        try:
            return str(self._call("amdsmi_get_gpu_compute_partition", handle))
        except AmdSmiError as e:
            if e.reason in LIBRARY_REASONS:
                raise
            return ""  # not a partitionable GPU

    def _compute_units(self, handle: Any) -> int | None:
        try:
            units = self._call("amdsmi_get_gpu_asic_info", handle)["num_compute_units"]
        except AmdSmiError as e:
            if e.reason in LIBRARY_REASONS:
                raise
            return None
        return units if isinstance(units, int) and units > 0 else None

    def _method(self, handle: Any, current: str | None) -> str:
        """COUNTER when the energy counter answers, else POWER when power does; never POWER -> COUNTER.

        A power GPU's integrated energy and the hardware counter have different origins: switching to
        the counter would make the cumulative value jump.
        """
        energy_error: AmdSmiError | None = None
        if current != POWER:
            try:
                self._call("amdsmi_get_energy_count", handle)
                return COUNTER
            except AmdSmiError as e:
                if e.reason not in NEVER_READABLE:
                    raise
                energy_error = e
        try:
            self._power_w(handle)
        except AmdSmiError as e:
            if energy_error is None:
                raise
            message = f"no energy counter ({energy_error.reason}) and no power reading ({e.reason})"
            raise AmdSmiError(e.reason, message, e.code) from e
        return POWER

    def _power_w(self, handle: Any) -> float:
        """The GPU's socket power in watts."""
        info = self._call("amdsmi_get_power_info", handle)
        for key in _POWER_FIELDS:
            value = info.get(key)
            if isinstance(value, int) and value not in _NOT_AVAILABLE:
                return float(value)
        raise AmdSmiError("not_supported", "amdsmi reports no socket power")

    # ---- read --------------------------------------------------------------------------------

    def read(self) -> Reading:
        """Cumulative energy in microjoules of every GPU that answers, and a reason for each that did not."""
        if not self._initialised:
            raise CollectorError("not_initialised", "amdsmi: read() before a successful probe()")
        now = self._clock()
        counters: list[Counter] = []
        errors: list[str] = []
        down: list[tuple[str, str]] = []
        for gpu in self._gpus:
            try:
                if not gpu.up:
                    if now < gpu.retry_at:
                        errors.append(gpu.reason)
                        down.append(("gpu", gpu.device))
                        continue
                    self._open(gpu)
                    gpu.up = True
                    log.warning("amdsmi: %s %s is back (%s)", gpu.device, gpu.uuid, gpu.method)
                counters.append(self._read_gpu(gpu, now, errors))
            except AmdSmiError as e:
                if e.reason in LIBRARY_REASONS:
                    raise CollectorError(e.reason, f"amdsmi: {e}") from e
                self._mark_down(gpu, e, now)
                errors.append(e.reason)
                down.append(("gpu", gpu.device))
        return Reading(tuple(counters), tuple(errors), tuple(down))

    def _read_gpu(self, gpu: Gpu, now: float, errors: list[str]) -> Counter:
        handle = gpu.primary.handle
        if gpu.method == COUNTER:
            try:
                answer = self._call("amdsmi_get_energy_count", handle)
            except AmdSmiError as e:
                if e.reason not in NEVER_READABLE:
                    raise
                log.warning(
                    "amdsmi: %s lost its energy counter (%s); integrating power from now on", gpu.device, e
                )
                errors.append(e.reason)
                gpu.method = POWER  # the integral continues from the last counter value
            else:
                ticks = int(answer["energy_accumulator"])
                resolution_uj = float(answer["counter_resolution"])
                gpu.wide = gpu.wide or ticks >= WRAP_TICKS_32
                energy_uj = int(ticks * resolution_uj)
                gpu.power.energy_uj = energy_uj
                wrap_uj = None if gpu.wide else int(WRAP_TICKS_32 * resolution_uj)
                return Counter("gpu", gpu.device, "amdsmi", energy_uj, wrap_uj, gpu.max_power_w)
        energy_uj = gpu.power.add(now, self._power_w(handle) * 1e6)
        return Counter("gpu", gpu.device, "amdsmi", energy_uj, None, gpu.max_power_w)

    def _mark_down(self, gpu: Gpu, error: AmdSmiError, now: float) -> None:
        # Warn when a GPU goes down; a failed retry of a GPU already down is routine.
        level = logging.WARNING if gpu.up else logging.DEBUG
        log.log(
            level, "amdsmi: %s %s: %s; retrying in %gs", gpu.device, gpu.uuid, error, self._reprobe_seconds
        )
        gpu.up = False
        gpu.reason = error.reason
        gpu.retry_at = now + self._reprobe_seconds
        gpu.power.forget()  # its power during the gap is unknown: never integrate across it
        for partition in gpu.partitions:
            partition.usage_at = None  # nor its processes' engine use
            partition.gfx_ns = {}

    # ---- usage -------------------------------------------------------------------------------

    def gpu_usage(self) -> tuple[GpuUsage, ...]:
        """The processes on each GPU that is up, with gfx engine use in percent of the interval and
        VRAM in bytes; per partition (`instances`) on a partitioned GPU.

        Never raises: a GPU whose processes cannot be listed has no usage this time, and each failed
        call leaves its reason in `usage_errors`. Skipped without a reason: GPUs that read() found
        down (read() reports them) and GPUs that cannot list processes at all (reported once).
        """
        usages, self.usage_errors = self._usage.gpu_usage(self._gpus if self._initialised else ())
        return usages

    def close(self) -> None:
        """Shut amdsmi down if probe initialised it."""
        if not self._initialised:
            return
        self._initialised = False
        try:
            self._call("amdsmi_shut_down")
        except AmdSmiError as e:
            log.debug("amdsmi: shutdown: %s", e)


def _import_amdsmi() -> ModuleType:
    """Import the bindings, which print to stdout when libamd_smi.so is missing: kept out of ours."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            import amdsmi
        finally:
            if printed.getvalue():
                log.debug("amdsmi: %s", " ".join(printed.getvalue().split()))
    module: ModuleType = amdsmi
    return module


def _missing(function: str) -> AmdSmiError:
    return AmdSmiError("function_not_found", f"amdsmi has no {function}")
