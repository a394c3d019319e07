"""The processes on each GPU read through DRM fdinfo, with their engine busy share in percent.

The kernel's DRM client usage stats (Documentation/gpu/drm-usage-stats.rst) put, in
`<procfs>/<pid>/fdinfo/<fd>` of an open DRM device, `drm-driver`, `drm-pdev` (the PCI address),
`drm-client-id`, and per engine class either `drm-engine-<class>: <ns> ns` (cumulative busy time:
i915, amdgpu) or `drm-cycles-<class>` with `drm-total-cycles-<class>` (busy cycles and the GPU's
own cycle clock: xe), with `drm-engine-capacity-<class>` engines of that class (1 when absent).
Memory is `drm-resident-<region>` (else `drm-total-<region>`; amdgpu's older `drm-memory-<region>`
is resident memory), with an optional KiB/MiB/GiB unit.

Several fds, of one process or of several (a forked child keeps its parent's fds), can hold the same
client: each client is counted once, under the lowest pid that holds it. Only fds whose
`<procfs>/<pid>/fd/<n>` link points into `/dev/dri/` are read. Finding them costs one readlink per
fd of every process on the node (about 50 us a process), so that full scan runs every
`rescan_seconds`; the calls in between read only the DRM fds it found. A process that opens a GPU is
therefore seen within `rescan_seconds`.

A process's share is the sum over engine classes of the busy part of each class over the interval
(busy time / capacity / wall time, or busy cycles / capacity / total cycles), in percent: only the
ratios between processes matter to attribution, and one process that keeps two classes busy counts
for both. A client that a full scan finds for the first time was opened since the previous full
scan (its counters start at zero when it is opened): its count is spread over the time since that
scan, and its share is that rate. At the very first scan nothing is known (None).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from collectors.base import Clock
from collectors.workloads import GpuProcess, GpuUsage

_DRI = "/dev/dri/"
_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}

ClientKey = tuple[str, int]
"""(PCI address, drm-client-id): client ids are unique per device, if not system-wide."""


@dataclass
class _Client:
    """One DRM client as one scan saw it."""

    pdev: str
    pids: list[int]
    busy: dict[str, int] = field(default_factory=dict)
    """Engine class -> busy nanoseconds (`drm-engine-*`) or busy cycles (`drm-cycles-*`)."""
    total_cycles: dict[str, int] = field(default_factory=dict)
    """Engine class -> the GPU's cycle clock (`drm-total-cycles-*`); empty for a nanosecond driver."""
    capacity: dict[str, int] = field(default_factory=dict)
    memory_bytes: int | None = None


@dataclass(frozen=True)
class _Baseline:
    """A client's counters at the previous scan, and when it was taken (clock seconds)."""

    time_s: float
    busy: Mapping[str, int]
    total_cycles: Mapping[str, int]


class DrmUsage:
    """Per-process engine share and memory on the GPUs in `devices`, from DRM fdinfo."""

    def __init__(
        self,
        procfs: Path,
        devices: Mapping[str, str],
        clock: Clock = time.monotonic,
        rescan_seconds: float = 10.0,
    ) -> None:
        """`devices` maps a PCI address (`0000:03:00.0`) to the device label of its energy counter;
        every process's fds are searched for DRM clients every `rescan_seconds` of `clock`."""
        self._procfs = str(procfs)
        self._devices = {pci.lower(): label for pci, label in devices.items()}
        self._clock = clock
        self._rescan_seconds = rescan_seconds
        self._previous: dict[ClientKey, _Baseline] = {}
        self._last_scan_s: float | None = None
        """When the last full scan ran: clients it did not see were opened after it."""
        self._last_totals: dict[tuple[str, str], int] = {}
        """(PCI address, engine class) -> the cycle clock seen at the last full scan, for new clients."""
        self._drm_fds: dict[str, list[str]] = {}
        """pid -> its DRM fds, as the last full scan found them."""
        self.usage_errors: tuple[str, ...] = ()
        """A reason per kind of failure in the last gpu_usage(), like Reading.errors."""

    @property
    def devices(self) -> Mapping[str, str]:
        return self._devices

    def gpu_usage(self) -> tuple[GpuUsage, ...]:
        """The processes on each device, with engine share in percent and memory in bytes; never raises."""
        if not self._devices:
            self.usage_errors = ()
            return ()
        errors: set[str] = set()
        now = self._clock()
        full = self._last_scan_s is None or now - self._last_scan_s >= self._rescan_seconds
        clients = self._scan(errors) if full else self._rescan_known(errors)
        per_device: dict[str, dict[int, tuple[float | None, int | None]]] = {
            label: {} for label in self._devices.values()
        }
        totals: dict[tuple[str, str], int] = {}
        previous, self._previous = self._previous, {}
        for key, client in clients.items():
            util = self._share(key, client, previous.get(key), now)
            self._previous[key] = _Baseline(now, dict(client.busy), dict(client.total_cycles))
            for engine, total in client.total_cycles.items():
                totals[(client.pdev, engine)] = max(total, totals.get((client.pdev, engine), 0))
            processes = per_device[self._devices[client.pdev]]
            pid = min(client.pids)
            known_util, known_memory = processes.get(pid, (0.0, None))
            processes[pid] = (
                None if util is None or known_util is None else known_util + util,
                _add(known_memory, client.memory_bytes),
            )
        if full:
            self._last_scan_s, self._last_totals = now, totals
        self.usage_errors = tuple(sorted(errors))
        return tuple(
            GpuUsage(
                label,
                processes=tuple(
                    GpuProcess(pid, sm_util=util, memory_bytes=memory)
                    for pid, (util, memory) in sorted(processes.items())
                ),
            )
            for label, processes in sorted(per_device.items())
        )

    def _share(self, key: ClientKey, client: _Client, before: _Baseline | None, now: float) -> float | None:
        """The client's engine share of the interval in percent; None when it has no baseline."""
        if before is None:
            if self._last_scan_s is None:
                return None  # the agent's first scan: clients may be hours old
            # A client not seen at the last scan was opened since: its counters started at zero.
            before = _Baseline(self._last_scan_s, {}, {})
            new = True
        else:
            new = False
        wall_ns = (now - before.time_s) * 1e9
        share = 0.0
        for engine, busy in client.busy.items():
            moved = max(0, busy - before.busy.get(engine, 0))
            capacity = max(1, client.capacity.get(engine, 1))
            span: float
            if engine in client.total_cycles:
                start = self._last_totals.get((key[0], engine)) if new else before.total_cycles.get(engine)
                if start is None:
                    return None  # a new client on an engine nobody used: no start for its clock
                span = client.total_cycles[engine] - start
            else:
                span = wall_ns
            if span > 0:
                share += min(1.0, moved / capacity / span)
        return 100.0 * share

    def _rescan_known(self, errors: set[str]) -> dict[ClientKey, _Client]:
        """The DRM clients behind the fds the last full scan found, those still open."""
        clients: dict[ClientKey, _Client] = {}
        for entry, fds in list(self._drm_fds.items()):
            kept = [fd for fd in fds if self._read_fdinfo(entry, fd, clients, errors)]
            if kept:
                self._drm_fds[entry] = kept
            else:
                del self._drm_fds[entry]
        return clients

    def _read_fdinfo(self, entry: str, fd: str, clients: dict[ClientKey, _Client], errors: set[str]) -> bool:
        """Add what `<procfs>/<entry>/fdinfo/<fd>` says; False when it is gone or unreadable."""
        try:
            with open(f"{self._procfs}/{entry}/fdinfo/{fd}", encoding="utf-8", errors="replace") as f:
                text = f.read()
        except PermissionError:
            errors.add("fdinfo_permission_denied")
            return False
        except OSError:
            return False  # closed or exited meanwhile
        self._add_fdinfo(int(entry), text, clients)
        return True

    def _scan(self, errors: set[str]) -> dict[ClientKey, _Client]:
        """Every DRM client on our devices, by (PCI address, client id), from every process's fds."""
        clients: dict[ClientKey, _Client] = {}
        self._drm_fds = {}
        try:
            entries = os.listdir(self._procfs)
        except OSError:
            errors.add("procfs_unreadable")
            return clients
        for entry in entries:
            if not entry.isdigit():
                continue
            fd_dir = f"{self._procfs}/{entry}/fd"
            try:
                fds = os.listdir(fd_dir)
            except PermissionError:
                errors.add("fdinfo_permission_denied")  # another user's process, for a non-root agent
                continue
            except OSError:
                continue  # the process exited meanwhile
            for fd in fds:
                try:
                    if not os.readlink(f"{fd_dir}/{fd}").startswith(_DRI):
                        continue
                except OSError:
                    continue  # closed or exited meanwhile
                if self._read_fdinfo(entry, fd, clients, errors):
                    self._drm_fds.setdefault(entry, []).append(fd)
        return clients

    def _add_fdinfo(self, pid: int, text: str, clients: dict[ClientKey, _Client]) -> None:
        values = _parse(text)
        pdev = values.get("drm-pdev", "").lower()
        client_id = values.get("drm-client-id", "")
        if pdev not in self._devices or not client_id.isdigit():
            return  # another vendor's GPU, or a driver that does not say which device
        key = (pdev, int(client_id))
        known = clients.get(key)
        if known is not None:  # the same client through another fd: counted once
            if pid not in known.pids:
                known.pids.append(pid)
            return
        clients[key] = _client(pdev, pid, values)


def _client(pdev: str, pid: int, values: Mapping[str, str]) -> _Client:
    client = _Client(pdev, [pid])
    resident: int | None = None
    total: int | None = None
    for name, value in values.items():
        if name.startswith("drm-engine-capacity-"):
            client.capacity[name[len("drm-engine-capacity-") :]] = _number(value) or 1
        elif name.startswith("drm-engine-"):
            client.busy[name[len("drm-engine-") :]] = _number(value) or 0
        elif name.startswith("drm-total-cycles-"):
            client.total_cycles[name[len("drm-total-cycles-") :]] = _number(value) or 0
        elif name.startswith("drm-cycles-"):
            client.busy[name[len("drm-cycles-") :]] = _number(value) or 0
        elif name.startswith(("drm-resident-", "drm-memory-")):
            resident = _add(resident, _number(value))
        elif name.startswith("drm-total-"):
            total = _add(total, _number(value))
    # Busy cycles without their clock cannot be turned into a share: leave that class out.
    for engine in [e for e in client.busy if e not in client.total_cycles]:
        if f"drm-cycles-{engine}" in values:
            del client.busy[engine]
    client.memory_bytes = resident if resident is not None else total
    return client


def _parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.startswith("drm-"):
            values[name.strip()] = value.strip()
    return values


def _number(value: str) -> int | None:
    """A `<uint> [unit]` value in its base unit (bytes for memory, ns or cycles otherwise)."""
    number, _, unit = value.partition(" ")
    multiplier = _UNITS.get(unit.strip(), 1 if unit.strip() == "ns" else None)
    if not number.isdigit() or multiplier is None:
        return None
    return int(number) * multiplier


def _add(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b
