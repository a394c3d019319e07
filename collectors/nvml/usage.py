"""The processes on each NVIDIA GPU, for attribution: SM utilisation per process, or per MIG instance.

Read through the nvml collector's calls and per-GPU state, with the same per device, per call failure
handling; it never raises, and leaves bringing a lost GPU back to the collector's `read()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from collectors.base import Clock
from collectors.nvml.errors import LIBRARY_REASONS, NEVER_READABLE, NvmlError, text
from collectors.nvml.gpus import Gpu, MigDevice
from collectors.workloads import GpuProcess, GpuUsage

_MIG_ENABLED = 1
"""NVML_DEVICE_MIG_ENABLE, as nvmlDeviceGetMigMode reports the current mode."""
_PROCESS_LISTS = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses")


class NvmlUsage:
    """The GPU usage half of NvmlCollector, which owns it: NVML calls go through the collector's `_call`."""

    def __init__(self, call: Callable[..., Any], clock: Clock, reprobe_seconds: float) -> None:
        """`call` is the collector's NVML call, translating errors; `reprobe_seconds` of `clock`."""
        self._call = call
        self._clock = clock
        self._reprobe_seconds = reprobe_seconds
        self._process_version = "_v3"
        """Suffix of the running-process functions: _v3, else _v2 for drivers before the _v3 symbols."""

    def gpu_usage(self, gpus: Iterable[Gpu]) -> tuple[tuple[GpuUsage, ...], tuple[str, ...]]:
        """The usage of each of `gpus` that is up, and a reason per failed call (see NvmlCollector)."""
        errors: list[str] = []
        usages: list[GpuUsage] = []
        for gpu in gpus:
            if gpu.handle is None or _PROCESS_LISTS[0] in gpu.unsupported:
                continue
            try:
                usages.append(self._gpu_usage(gpu, errors))
            except NvmlError as e:
                errors.append(e.reason)
                if e.reason in LIBRARY_REASONS:
                    break  # every other GPU would fail the same way
        return tuple(usages), tuple(errors)

    def _gpu_usage(self, gpu: Gpu, errors: list[str]) -> GpuUsage:
        migs = self._mig_devices(gpu)
        if not migs:
            sm_util = self._sm_util(gpu, errors)
            return GpuUsage(gpu.device, processes=self._processes(gpu, gpu.handle, sm_util, errors))
        # NVML has no per-process utilisation under MIG; an instance's share is its part of the SMs.
        # The parent's SM count is not available (nvmlDeviceGetAttributes answers for MIG devices
        # only), so shares are of the SMs of all instances: that is the whole GPU when it is fully
        # partitioned, and otherwise splits the GPU among the instances that exist.
        total = sum(mig.sms for mig in migs)
        try:
            instances = {
                mig.uuid: (
                    mig.sms / total if total else 1 / len(migs),
                    self._processes(gpu, mig.handle, None, errors),
                )
                for mig in migs
            }
        except NvmlError:
            gpu.mig = None  # an instance may be gone: look the layout up again next time
            raise
        return GpuUsage(gpu.device, instances=instances)

    def _processes(
        self, gpu: Gpu, handle: Any, sm_util: Mapping[int, float] | None, errors: list[str]
    ) -> tuple[GpuProcess, ...]:
        """Compute and graphics processes on `handle` (a GPU or a MIG device), one per pid, by pid."""
        memory: dict[int, int | None] = {}
        for function in _PROCESS_LISTS:
            if function in gpu.unsupported:
                continue
            try:
                infos = self._process_list(function, handle)
            except NvmlError as e:
                if e.reason not in NEVER_READABLE:
                    raise
                gpu.unsupported.add(function)
                if function == _PROCESS_LISTS[0]:
                    raise
                errors.append(e.reason)  # no graphics list: the compute list is enough
                continue
            for info in infos:
                used = None if info.usedGpuMemory is None else int(info.usedGpuMemory)
                known = memory.get(info.pid)
                # A process in both lists shows its whole memory in each.
                memory[info.pid] = used if known is None else max(known, used or 0)
        return tuple(
            GpuProcess(
                pid,
                sm_util=None if sm_util is None else sm_util.get(pid, 0.0),
                memory_bytes=memory[pid],
            )
            for pid in sorted(memory)
        )

    def _process_list(self, function: str, handle: Any) -> list[Any]:
        try:
            infos: list[Any] = self._call(function + self._process_version, handle)
            return infos
        except NvmlError as e:
            if e.reason != "function_not_found" or self._process_version == "_v2":
                raise
        self._process_version = "_v2"  # a driver before the _v3 symbols (R510)
        infos = self._call(function + self._process_version, handle)
        return infos

    def _sm_util(self, gpu: Gpu, errors: list[str]) -> dict[int, float] | None:
        """Mean SM utilisation in percent per pid over the samples since the last call; None if unknown.

        NVML returns a sample only for processes that used the SMs, so a listed process without one
        was idle (0.0); NOT_FOUND (no sample at all since then) leaves every process unknown.
        """
        function = "nvmlDeviceGetProcessUtilization"
        if function in gpu.unsupported:
            return None
        try:
            samples = self._call(function, gpu.handle, gpu.util_seen_us)
        except NvmlError as e:
            if e.reason == "gpu_lost" or e.reason in LIBRARY_REASONS:
                raise
            if e.reason in NEVER_READABLE:
                gpu.unsupported.add(function)
            if e.reason != "not_found":
                errors.append(e.reason)
            return None
        totals: dict[int, tuple[float, int]] = {}
        for sample in samples:
            total, count = totals.get(sample.pid, (0.0, 0))
            totals[sample.pid] = (total + sample.smUtil, count + 1)
            gpu.util_seen_us = max(gpu.util_seen_us, int(sample.timeStamp))
        return {pid: total / count for pid, (total, count) in totals.items()}

    def _mig_devices(self, gpu: Gpu) -> tuple[MigDevice, ...]:
        """The GPU's MIG devices, () when MIG is off or unsupported; looked up every reprobe_seconds."""
        now = self._clock()
        if gpu.mig is not None and now < gpu.mig_until:
            return gpu.mig
        try:
            gpu.mig = self._find_mig_devices(gpu.handle) if "mig" not in gpu.unsupported else ()
        except NvmlError as e:
            if e.reason not in NEVER_READABLE:
                raise
            gpu.unsupported.add("mig")  # not a MIG GPU, or a driver without MIG: a whole GPU
            gpu.mig = ()
        gpu.mig_until = now + self._reprobe_seconds
        return gpu.mig

    def _find_mig_devices(self, handle: Any) -> tuple[MigDevice, ...]:
        current, _pending = self._call("nvmlDeviceGetMigMode", handle)
        if current != _MIG_ENABLED:
            return ()
        found: list[MigDevice] = []
        for index in range(int(self._call("nvmlDeviceGetMaxMigDeviceCount", handle))):
            try:
                mig = self._call("nvmlDeviceGetMigDeviceHandleByIndex", handle, index)
            except NvmlError as e:
                if e.reason == "not_found":  # no MIG device at this index
                    continue
                raise
            uuid = text(self._call("nvmlDeviceGetUUID", mig))
            sms = int(self._call("nvmlDeviceGetAttributes", mig).multiprocessorCount)
            found.append(MigDevice(uuid, mig, sms))
        return tuple(found)
