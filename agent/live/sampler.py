"""The sampling step: read every collector, turn counters into wrap-safe deltas, keep node totals.

Each `tick()` publishes a new immutable Snapshot; readers (the /metrics families, the HTTP API) only ever
see a whole snapshot, never one being built, and never touch hardware.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import MappingProxyType

from agent.live.snapshot import EnergyRow, Key, Snapshot
from collectors.base import Clock, Collector, CollectorError, Counter, Device, counter_delta

log = logging.getLogger("greenai.sampler")


class Sampler:
    """Reads the collectors on each tick and accumulates node energy per component and device."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        clock: Clock,
        devices: Iterable[Device] = (),
    ) -> None:
        self._collectors = tuple(collectors)
        self._clock = clock
        self._devices = tuple(devices)
        self._last: dict[tuple[str, Key], tuple[int, float]] = {}
        self._total_uj: dict[Key, int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._last_tick: float | None = None
        self._snapshot = Snapshot(time=clock(), samples=0, devices=self._devices)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def tick(self) -> Snapshot:
        """Take one sample of every collector and publish the new snapshot."""
        now = self._clock()
        power: dict[Key, float] = {}
        added: dict[Key, float] = {}
        up: dict[str, bool] = {}
        for collector in self._collectors:
            up[collector.name] = self._read_one(collector, now, power, added)
        interval = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        rows = tuple(
            EnergyRow(key[0], key[1], key[2], total / 1e6, power.get(key))
            for key, total in sorted(self._total_uj.items())
        )
        self._snapshot = Snapshot(
            time=now,
            samples=self._snapshot.samples + 1,
            energy=rows,
            collectors_up=MappingProxyType(up),
            errors=MappingProxyType(dict(self._errors)),
            devices=self._devices,
            sample_duration_s=self._clock() - now,
            interval_s=interval,
            interval_j=MappingProxyType(added),
        )
        return self._snapshot

    def _read_one(
        self, collector: Collector, now: float, power: dict[Key, float], added: dict[Key, float]
    ) -> bool:
        try:
            reading = collector.read()
        except CollectorError as e:
            self._count_error(collector.name, e.reason)
            log.debug("collector %s: %s", collector.name, e)
            return False
        except Exception:  # a bug in one collector must not stop the others or the agent
            self._count_error(collector.name, "internal_error")
            log.exception("collector %s failed", collector.name)
            return False
        for reason in reading.errors:
            self._count_error(collector.name, reason)
        for counter in reading.counters:
            self._accumulate(collector.name, counter, now, power, added)
        return True

    def _accumulate(
        self, name: str, counter: Counter, now: float, power: dict[Key, float], added: dict[Key, float]
    ) -> None:
        key: Key = (counter.component, counter.device, counter.source)
        self._total_uj.setdefault(key, 0)
        last = self._last.get((name, key))
        self._last[(name, key)] = (counter.energy_uj, now)
        if last is None:
            return  # first sight of this counter: its value is the baseline
        delta_uj = counter_delta(last[0], counter.energy_uj, counter.wrap_uj)
        self._total_uj[key] += delta_uj
        added[key] = added.get(key, 0.0) + delta_uj / 1e6
        elapsed = now - last[1]
        if elapsed > 0:
            power[key] = delta_uj / 1e6 / elapsed

    def _count_error(self, collector: str, reason: str) -> None:
        self._errors[(collector, reason)] = self._errors.get((collector, reason), 0) + 1

    def close(self) -> None:
        for collector in self._collectors:
            try:
                collector.close()
            except Exception:  # closing must not stop the others from closing
                log.exception("closing collector %s", collector.name)
