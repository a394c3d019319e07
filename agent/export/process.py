"""The agent's own process_* families, as prometheus_client's ProcessCollector names them, read lean.

Rendered once per sample, so they cost what a sample costs: one read of /proc/self/stat through a
descriptor kept open, the open-files limit from getrlimit (no /proc/self/limits to parse) and one
listing of /proc/self/fd. Values are those ProcessCollector gives (CPU in clock ticks, memory in
pages times the page size), so dashboards built on either agree.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

from agent.export.exposition import Family, counter, gauge


class ProcessFamilies:
    """process_virtual_memory_bytes, _resident_memory_bytes, _start_time_seconds, _cpu_seconds_total,
    _open_fds and _max_fds of this process; none where /proc cannot be read."""

    def __init__(self, procfs: Path = Path("/proc")) -> None:
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._page = resource.getpagesize()
        self._fds = procfs / "self" / "fd"
        self._stat_fd: int | None = None
        self._start = 0.0
        try:
            boot = next(
                float(line.split()[1])
                for line in (procfs / "stat").read_text().splitlines()
                if line.startswith("btime ")
            )
            self._stat_fd = os.open(procfs / "self" / "stat", os.O_RDONLY | os.O_CLOEXEC)
            self._start = boot + float(self._fields()[19]) / self._ticks
        except (OSError, StopIteration, ValueError, IndexError):
            self.close()

    def _fields(self) -> list[bytes]:
        """The fields of /proc/self/stat after the command's name (the 3rd field is index 0)."""
        assert self._stat_fd is not None
        return os.pread(self._stat_fd, 4096, 0).rpartition(b")")[2].split()

    def families(self) -> list[Family]:
        if self._stat_fd is None:
            return []
        try:
            fields = self._fields()
            open_fds = len(os.listdir(self._fds))
        except OSError:
            return []
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return [
            gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", value=float(fields[20])),
            gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                value=float(fields[21]) * self._page,
            ),
            gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                value=self._start,
            ),
            counter(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                value=(float(fields[11]) + float(fields[12])) / self._ticks,
            ),
            gauge("process_open_fds", "Number of open file descriptors.", value=float(open_fds)),
            gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                value=float("inf") if soft == resource.RLIM_INFINITY else float(soft),
            ),
        ]

    def close(self) -> None:
        if self._stat_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._stat_fd)
            self._stat_fd = None
