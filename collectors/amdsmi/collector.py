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

`gpu_usage()` lists the processes on each GPU for attribution (`collectors.amdsmi.usage`). The read
loop and failure handling it shares with the nvml collector live in `collectors.gpu`.
"""

from __future__ import annotations

import contextlib
import io
import logging
from types import ModuleType
from typing import Any

from collectors.amdsmi.errors import LIBRARY_REASONS, NEVER_READABLE, AmdSmiError, translate
from collectors.amdsmi.gpus import WRAP_TICKS_32, Gpu, Partition
from collectors.amdsmi.usage import AmdSmiUsage
from collectors.base import Clock, Probe, Status, VendorError, vendor_call
from collectors.gpu import COUNTER, GpuCollector

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


class AmdSmiCollector(GpuCollector[Gpu]):
    """Cumulative GPU energy in microjoules per physical AMD GPU, from amdsmi."""

    name = "amdsmi"
    library_reasons = LIBRARY_REASONS
    never_readable = NEVER_READABLE
    counter_lost = NEVER_READABLE
    energy_function = "amdsmi_get_energy_count"

    def __init__(
        self,
        clock: Clock,
        reprobe_seconds: float = 30.0,
        library: ModuleType | None = None,
        index_offset: int = 0,
    ) -> None:
        """`library` is the amdsmi module (imported on probe when None); `reprobe_seconds` of `clock`;
        `index_offset` the first label's number (the GPUs another collector labels before these)."""
        super().__init__(clock, reprobe_seconds, library)
        self._index_offset = index_offset
        self._usage = AmdSmiUsage(self._call, clock)

    def _call(self, function: str, *args: Any) -> Any:
        """Call one amdsmi function, translating its errors into AmdSmiError."""
        return vendor_call(self._library, function, args, self._library.AmdSmiException, translate, _missing)

    # ---- probe -------------------------------------------------------------------------------

    def probe(self) -> Probe:
        """Initialise amdsmi for GPUs and find each GPU's method: the energy counter, else power."""
        if self._library is None:
            try:
                self._library = _import_amdsmi()
            except Exception as e:  # the bindings raise KeyError (or OSError) without libamd_smi.so
                log.debug("amdsmi: import failed: %r", e)
                return Probe(Status.NOT_FOUND, NOT_FOUND_REASON, fix=NOT_FOUND_FIX)
        try:
            self._call("amdsmi_init", self._library.AmdSmiInitFlags.INIT_AMD_GPUS)
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
                skipped.append(e.reason)
                if self._kept_down(gpu, where, e, notes):  # its identity is learnt when it answers
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
        fix = "run the agent as root or add its user to the render and video groups"
        return self._unreadable("amdsmi", len(gpus), skipped, fix, notes)

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

    def _no_counter(self, error: VendorError) -> bool:
        return error.reason in NEVER_READABLE

    def _power_uw(self, handle: Any) -> float:
        return self._power_w(handle) * 1e6

    def _power_w(self, handle: Any) -> float:
        """The GPU's socket power in watts."""
        info = self._call("amdsmi_get_power_info", handle)
        for key in _POWER_FIELDS:
            value = info.get(key)
            if isinstance(value, int) and value not in _NOT_AVAILABLE:
                return float(value)
        raise AmdSmiError("not_supported", "amdsmi reports no socket power")

    # ---- read --------------------------------------------------------------------------------

    def _handle(self, gpu: Gpu) -> Any:
        return gpu.primary.handle

    def _energy(self, gpu: Gpu) -> tuple[int, int | None]:
        answer = self._call(self.energy_function, gpu.primary.handle)
        ticks = int(answer["energy_accumulator"])
        resolution_uj = float(answer["counter_resolution"])
        gpu.wide = gpu.wide or ticks >= WRAP_TICKS_32
        wrap_uj = None if gpu.wide else int(WRAP_TICKS_32 * resolution_uj)
        return int(ticks * resolution_uj), wrap_uj

    def _reopen(self, gpu: Gpu) -> None:
        """Ask a down GPU again through this init's handles, and check it is the same one."""
        self._open(gpu)
        gpu.up = True

    def _forget(self, gpu: Gpu) -> None:
        gpu.up = False
        for partition in gpu.partitions:
            partition.usage_at = None  # its processes' engine use over the gap is unknown too
            partition.gfx_ns = {}

    # ---- close -------------------------------------------------------------------------------

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
