"""The processes on each AMD GPU, for attribution: gfx engine use per process, or per compute partition.

amdsmi reports each process's gfx engine time as a cumulative count of nanoseconds; its share of an
interval (the counterpart of NVML's SM utilisation, in percent of the interval) is the difference
between two listings over the time between them. A process first seen in a listing started after the
one before, so all its engine time falls in the interval. The first listing of a GPU has no interval:
its processes' use is unknown (None), and attribution falls back to their memory.

Read through the amdsmi collector's calls and per-GPU state, with the same per device, per call failure
handling; it never raises, and leaves bringing a lost GPU back to the collector's `read()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from collectors.amdsmi.errors import LIBRARY_REASONS, NEVER_READABLE, AmdSmiError
from collectors.amdsmi.gpus import Gpu, Partition
from collectors.base import Clock
from collectors.workloads import GpuProcess, GpuUsage

_PROCESS_LIST = "amdsmi_get_gpu_process_list"


class AmdSmiUsage:
    """The GPU usage half of AmdSmiCollector, which owns it: amdsmi calls go through its `_call`."""

    def __init__(self, call: Callable[..., Any], clock: Clock) -> None:
        self._call = call
        self._clock = clock

    def gpu_usage(self, gpus: Iterable[Gpu]) -> tuple[tuple[GpuUsage, ...], tuple[str, ...]]:
        """The usage of each of `gpus` that is up, and a reason per failed call (see AmdSmiCollector)."""
        errors: list[str] = []
        usages: list[GpuUsage] = []
        for gpu in gpus:
            if not gpu.up or not gpu.uuid or _PROCESS_LIST in gpu.unsupported:
                continue
            try:
                usages.append(self._gpu_usage(gpu))
            except AmdSmiError as e:
                errors.append(e.reason)
                if e.reason in NEVER_READABLE:
                    gpu.unsupported.add(_PROCESS_LIST)  # reported once
                if e.reason in LIBRARY_REASONS:
                    break  # every other GPU would fail the same way
        return tuple(usages), tuple(errors)

    def _gpu_usage(self, gpu: Gpu) -> GpuUsage:
        now = self._clock()
        if not gpu.partitioned:
            return GpuUsage(gpu.device, processes=self._processes(gpu.primary, now))
        # Like a MIG instance, a compute partition's share of the GPU is its part of the compute
        # units; equal parts when a partition does not say how many it has.
        listed = [(partition, self._processes(partition, now)) for partition in gpu.partitions]
        units = [partition.compute_units for partition in gpu.partitions]
        total = sum(unit or 0 for unit in units)
        known = all(units) and total > 0
        instances = {
            partition.name: ((partition.compute_units or 0) / total if known else 1 / len(listed), processes)
            for partition, processes in listed
        }
        return GpuUsage(gpu.device, instances=instances)

    def _processes(self, partition: Partition, now: float) -> tuple[GpuProcess, ...]:
        """The processes on one processor handle, by pid, with their gfx engine use since the last call."""
        infos: list[dict[str, Any]] = self._call(_PROCESS_LIST, partition.handle)
        seconds = None if partition.usage_at is None else now - partition.usage_at
        seen: dict[int, int] = {}
        processes: dict[int, GpuProcess] = {}
        for info in infos:
            pid = int(info["pid"])
            gfx_ns = _number(info.get("engine_usage", {}).get("gfx"))
            memory = _number(info.get("memory_usage", {}).get("vram_mem"))
            share = None
            if gfx_ns is not None:
                seen[pid] = gfx_ns
                before = partition.gfx_ns.get(pid, 0)
                if gfx_ns < before:  # the pid was reused by a new process
                    before = 0
                if seconds is not None and seconds > 0:
                    share = (gfx_ns - before) / (seconds * 1e9) * 100
            processes[pid] = GpuProcess(pid, sm_util=share, memory_bytes=memory)
        partition.gfx_ns = seen
        partition.usage_at = now
        return tuple(processes[pid] for pid in sorted(processes))


def _number(value: object) -> int | None:
    """An amdsmi figure as an int; None for its "N/A"."""
    return int(value) if isinstance(value, int) else None
