"""The sampling step: read every collector, judge each counter's step, keep node totals.

Each `tick()` publishes a new immutable Snapshot; readers (the /metrics families, the HTTP API) only ever
see a whole snapshot, never one being built, and never touch hardware.

Every counter is differenced by `collectors.base.counter_step`: a failed read, a reset or an
implausible jump books nothing and is counted under `greenai_collector_errors`. When a counter comes
back after missing samples (a lost GPU, a failed read), what it counted meanwhile is split in
proportion to time: the part that falls in this interval is booked as usual, the rest under the
source `<source>_outage`, which attribution leaves unattributed (docs/collectors.md).

When a collector measures the node at the wall (component `node`), each interval also gets the
derived component `other`: the wall energy no counted component explains (agent.live.wall).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import MappingProxyType

from agent.live.snapshot import EnergyRow, Key, Snapshot
from agent.live.wall import NODE, Remainder, meter_source
from collectors.base import (
    Clock,
    Collector,
    CollectorError,
    Counter,
    Device,
    Outcome,
    ceiling,
    counter_step,
    max_delta,
    outage_source,
)

log = logging.getLogger("greenai.sampler")

DeviceKey = tuple[str, str]
"""(component, device)"""


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
        """The baseline of each counter: its last accepted value, and when it was read."""
        self._total_uj: dict[Key, int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._last_tick: float | None = None
        self._owned: dict[str, set[DeviceKey]] = {}
        for device in self._devices:
            self._owned.setdefault(device.source, set()).add((device.component, device.device))
        self._up: dict[DeviceKey, bool] = {}
        meter = meter_source({d.source for d in self._devices if d.component == NODE})
        self._remainder = Remainder(meter) if meter is not None else None
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
            # Each collector's own read time: a slow one must not stretch or squeeze the next one's
            # interval, against which its deltas are judged.
            up[collector.name] = self._read_one(collector, self._clock(), power, added)
        interval = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        if self._remainder is not None:
            self._book_other(self._remainder, interval, power, added)
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
            devices_up=MappingProxyType(dict(sorted(self._up.items()))),
        )
        return self._snapshot

    def _read_one(
        self, collector: Collector, now: float, power: dict[Key, float], added: dict[Key, float]
    ) -> bool:
        owned = self._owned.setdefault(collector.name, set())
        try:
            reading = collector.read()
        except CollectorError as e:
            self._count_error(collector.name, e.reason)
            log.debug("collector %s: %s", collector.name, e)
            self._up.update(dict.fromkeys(owned, False))
            return False
        except Exception:  # a bug in one collector must not stop the others or the agent
            self._count_error(collector.name, "internal_error")
            log.exception("collector %s failed", collector.name)
            self._up.update(dict.fromkeys(owned, False))
            return False
        for reason in reading.errors:
            self._count_error(collector.name, reason)
        for device in reading.down:
            owned.add(device)
            self._up[device] = False
        for counter in reading.counters:
            owned.add((counter.component, counter.device))
            self._up[(counter.component, counter.device)] = self._accumulate(
                collector.name, counter, now, power, added
            )
        return True

    def _accumulate(
        self, name: str, counter: Counter, now: float, power: dict[Key, float], added: dict[Key, float]
    ) -> bool:
        """Book what `counter` moved since its baseline; False when its reading was not usable."""
        key: Key = (counter.component, counter.device, counter.source)
        bound_w = counter.bound_w
        top = ceiling(bound_w) if counter.wrap_uj is None else None
        last = self._last.get((name, key))
        if last is None:  # first sight: its value is the baseline, if it is one
            first = counter_step(counter.energy_uj, counter.energy_uj, counter.wrap_uj, None, top)
            if first.outcome is Outcome.OUT_OF_RANGE:
                self._count_error(name, Outcome.OUT_OF_RANGE.value)
                return False
            self._total_uj.setdefault(key, 0)
            self._last[(name, key)] = (counter.energy_uj, now)
            return True
        then = last[1]
        elapsed = now - then
        step = counter_step(last[0], counter.energy_uj, counter.wrap_uj, max_delta(bound_w, elapsed), top)
        if step.reason is not None:
            self._count_error(name, step.reason)
            log.debug(
                "%s %s/%s: %s (%d -> %d uJ in %.3f s)",
                name, counter.component, counter.device, step.reason, last[0], counter.energy_uj, elapsed,
            )  # fmt: skip
        if not step.rebaseline:
            return False
        self._last[(name, key)] = (counter.energy_uj, now)
        self._total_uj.setdefault(key, 0)
        if elapsed > 0:
            power[key] = step.delta / 1e6 / elapsed
        self._book(key, step.delta, then, now, added)
        return step.outcome is not Outcome.IMPLAUSIBLE

    def _book(self, key: Key, delta_uj: int, then: float, now: float, added: dict[Key, float]) -> None:
        """Add `delta_uj`, counted from `then` to `now`, to the totals and this interval.

        A counter whose baseline is older than the last tick missed samples: only the share of this
        interval (by time) is booked under its own key, the rest under its outage source.
        """
        outage_uj = 0
        gap_source = outage_source(key[2])
        tick = self._last_tick
        if gap_source is not None and tick is not None and then < tick < now and delta_uj > 0:
            outage_uj = delta_uj - round(delta_uj * (now - tick) / (now - then))
        booked = {key: delta_uj - outage_uj}
        if outage_uj > 0 and gap_source is not None:
            booked[(key[0], key[1], gap_source)] = outage_uj
        for k, uj in booked.items():
            self._total_uj[k] = self._total_uj.get(k, 0) + uj
            added[k] = added.get(k, 0.0) + uj / 1e6

    def _book_other(
        self, remainder: Remainder, interval: float, power: dict[Key, float], added: dict[Key, float]
    ) -> None:
        """Add the interval's `other` energy: the wall meter's energy less the counted components'."""
        other_j = remainder.other_j(added)
        if other_j is None:
            return
        uj = round(other_j * 1e6)
        key = remainder.key
        self._total_uj[key] = self._total_uj.get(key, 0) + uj
        added[key] = added.get(key, 0.0) + uj / 1e6
        if interval > 0:
            power[key] = other_j / interval

    def _count_error(self, collector: str, reason: str) -> None:
        self._errors[(collector, reason)] = self._errors.get((collector, reason), 0) + 1

    def close(self) -> None:
        for collector in self._collectors:
            try:
                collector.close()
            except Exception:  # closing must not stop the others from closing
                log.exception("closing collector %s", collector.name)
