"""What the vendor GPU collectors (nvml, amdsmi) share: per-device failure handling and the choice
between a GPU's energy counter and its integrated power.

A GPU that is down is left out of each reading with its reason until its `retry_at`, then re-opened;
a per-device vendor error marks it down (a warning when it goes down, a retry time); an error of the
library itself fails the whole read. A GPU whose energy counter goes away integrates its power from
the counter's last value. Vendor specifics (how a GPU is opened, read and labelled) are the hooks.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from collectors.base import (
    Clock,
    CollectorError,
    Counter,
    Device,
    PowerIntegral,
    Probe,
    Reading,
    Status,
    VendorError,
)
from collectors.workloads import GpuUsage

COUNTER = "counter"
POWER = "power"


class GpuState(Protocol):
    """What a vendor collector keeps per GPU, as far as the shared read loop needs it."""

    uuid: str
    method: str
    reason: str
    retry_at: float
    power: PowerIntegral
    max_power_w: float | None

    @property
    def up(self) -> bool:
        """False while the GPU is down (lost or failing), until it is re-opened."""
        ...

    @property
    def device(self) -> str: ...

    @property
    def component(self) -> str: ...

    def as_device(self) -> Device: ...


G = TypeVar("G", bound=GpuState)
G_contra = TypeVar("G_contra", bound=GpuState, contravariant=True)


class UsageReader(Protocol[G_contra]):
    """A collector's usage half: the usage of each GPU that is up, and a reason per failed call."""

    def gpu_usage(self, gpus: Iterable[G_contra]) -> tuple[tuple[GpuUsage, ...], tuple[str, ...]]: ...


class GpuCollector(ABC, Generic[G]):
    """Cumulative GPU energy in microjoules per GPU, from a vendor library; subclasses say how."""

    name: str
    library_reasons: frozenset[str]
    """Error reasons that mean the library, not one device, is broken: the whole read fails."""
    never_readable: frozenset[str]
    """Error reasons a GPU found at probe will not outgrow: it is not retried."""
    counter_lost: frozenset[str]
    """Error reasons of an energy read that mean the counter is gone (power from then on), not the GPU."""
    energy_function: str
    """The vendor function that reads a GPU's energy counter, given its handle."""
    _usage: UsageReader[G]
    """The collector's usage half, made by the subclass with its `_call`."""

    def __init__(self, clock: Clock, reprobe_seconds: float, library: Any) -> None:
        self._clock = clock
        self._reprobe_seconds = reprobe_seconds
        self._library: Any = library
        self._initialised = False
        self._gpus: list[G] = []
        self._log = logging.getLogger(f"greenai.{self.name}")
        self.usage_errors: tuple[str, ...] = ()
        """A reason per failed call of the last gpu_usage(), like Reading.errors: the agent counts them."""

    @property
    def devices(self) -> tuple[Device, ...]:
        """The GPUs being measured, with their current method (a counter GPU may fall back to power)."""
        return tuple(gpu.as_device() for gpu in self._gpus if gpu.uuid)

    # ---- hooks -------------------------------------------------------------------------------

    @abstractmethod
    def _call(self, function: str, *args: Any) -> Any:
        """Call one function of the vendor library, translating its errors into a VendorError."""

    @abstractmethod
    def _reopen(self, gpu: G) -> None:
        """Open a down GPU again, check it is the same one, and re-check its method."""

    @abstractmethod
    def _energy(self, gpu: G) -> tuple[int, int | None]:
        """The GPU's energy counter in microjoules, and where it wraps (None: never)."""

    @abstractmethod
    def _power_uw(self, handle: Any) -> float:
        """The power the GPU at `handle` draws now, in microwatts."""

    @abstractmethod
    def _handle(self, gpu: G) -> Any:
        """The handle asked for the GPU's energy and power."""

    @abstractmethod
    def _no_counter(self, error: VendorError) -> bool:
        """Whether an energy call's `error` at open means the GPU has no counter (its power is tried)."""

    @abstractmethod
    def _forget(self, gpu: G) -> None:
        """Mark the GPU down, and drop what its vendor state cannot keep across the outage."""

    # ---- probe -------------------------------------------------------------------------------

    def _method(self, handle: Any, current: str | None) -> str:
        """COUNTER when the energy counter answers, else POWER when power does; never POWER -> COUNTER.

        A power GPU's integrated energy and the hardware counter have different origins: switching to
        the counter would make the cumulative value jump.
        """
        energy_error: VendorError | None = None
        if current != POWER:
            try:
                self._call(self.energy_function, handle)
                return COUNTER
            except VendorError as e:
                if not self._no_counter(e):
                    raise
                energy_error = e
        try:
            self._power_uw(handle)
        except VendorError as e:
            if energy_error is None:
                raise
            message = f"no energy counter ({energy_error.reason}) and no power reading ({e.reason})"
            raise type(e)(e.reason, message, e.code) from e
        return POWER

    def _kept_down(self, gpu: G, where: str, error: VendorError, notes: list[str]) -> bool:
        """Note why `gpu` did not open at probe; True when it is kept, down, to be retried by read()."""
        if error.reason in self.library_reasons:
            raise error
        if error.reason in self.never_readable:
            notes.append(f"{where}: skipped: {error}")
            return False
        notes.append(f"{where}: not readable now: {error}; retried every {self._reprobe_seconds:g}s")
        self._mark_down(gpu, error, self._clock())
        return True

    def _unreadable(self, label: str, count: int, skipped: list[str], fix: str, notes: list[str]) -> Probe:
        """The probe of `count` GPUs of which none opened, for the `skipped` reasons."""
        if all(reason == "no_permission" for reason in skipped):
            return Probe(
                Status.PERMISSION_DENIED,
                f"{label} refuses to read energy and power of all {count} GPU(s)",
                fix=fix,
                notes=tuple(notes),
            )
        reason = f"none of {count} GPU(s) reports energy or power: {', '.join(sorted(set(skipped)))}"
        return Probe(Status.NOT_FOUND, reason, fix="see the notes for each GPU", notes=tuple(notes))

    # ---- read --------------------------------------------------------------------------------

    def read(self) -> Reading:
        """Cumulative energy in microjoules of every GPU that answers, and a reason for each that did not."""
        if not self._initialised:
            raise CollectorError("not_initialised", f"{self.name}: read() before a successful probe()")
        now = self._clock()
        counters: list[Counter] = []
        errors: list[str] = []
        down: list[tuple[str, str]] = []
        for gpu in self._gpus:
            try:
                if not gpu.up:
                    if now < gpu.retry_at:
                        errors.append(gpu.reason)
                        down.append((gpu.component, gpu.device))
                        continue
                    self._reopen(gpu)
                    self._log.warning("%s: %s %s is back (%s)", self.name, gpu.device, gpu.uuid, gpu.method)
                counters.append(self._read_gpu(gpu, now, errors))
            except VendorError as e:
                if e.reason in self.library_reasons:
                    raise CollectorError(e.reason, f"{self.name}: {e}") from e
                self._mark_down(gpu, e, now)
                errors.append(e.reason)
                down.append((gpu.component, gpu.device))
        return Reading(tuple(counters), tuple(errors), tuple(down))

    def _read_gpu(self, gpu: G, now: float, errors: list[str]) -> Counter:
        if gpu.method == COUNTER:
            try:
                energy_uj, wrap_uj = self._energy(gpu)
            except VendorError as e:
                if e.reason not in self.counter_lost:
                    raise
                self._log.warning(
                    "%s: %s lost its energy counter (%s); integrating power from now on",
                    self.name,
                    gpu.device,
                    e,
                )
                errors.append(e.reason)
                gpu.method = POWER  # the integral continues from the last counter value
            else:
                gpu.power.energy_uj = energy_uj
                return Counter(gpu.component, gpu.device, self.name, energy_uj, wrap_uj, gpu.max_power_w)
        energy_uj = gpu.power.add(now, self._power_uw(self._handle(gpu)))
        return Counter(gpu.component, gpu.device, self.name, energy_uj, None, gpu.max_power_w)

    def _mark_down(self, gpu: G, error: VendorError, now: float) -> None:
        # Warn when a GPU goes down; a failed retry of a GPU already down is routine.
        level = logging.WARNING if gpu.up else logging.DEBUG
        self._log.log(
            level,
            "%s: %s %s: %s; retrying in %gs",
            self.name,
            gpu.device,
            gpu.uuid,
            error,
            self._reprobe_seconds,
        )
        self._forget(gpu)
        gpu.reason = error.reason
        gpu.retry_at = now + self._reprobe_seconds
        gpu.power.forget()  # its power during the gap is unknown: never integrate across it

    # ---- usage -------------------------------------------------------------------------------

    def gpu_usage(self) -> tuple[GpuUsage, ...]:
        """The processes on each GPU that is up, with their share of its compute in percent and their
        memory in bytes; per instance on a partitioned GPU.

        Never raises: a GPU whose processes cannot be listed has no usage this time, and each failed
        call leaves its reason in `usage_errors`. Skipped without a reason: GPUs that read() found
        down (read() reports them) and GPUs that cannot list processes at all (reported once).
        """
        usages, self.usage_errors = self._usage.gpu_usage(self._gpus if self._initialised else ())
        return usages
