"""Energy windows: named spans of one job's energy, begun and ended by the job itself.

The accountant already splits every interval's node energy among the jobs; a window only follows its
job's attributed energy from when it begins to when it ends. Its figure is therefore the agent's own
per-job accounting for that span, measured and conserved: never a whole-machine reading, never
another job's energy.

Resolution is the sampling interval. Within an interval the job's energy is taken at that interval's
steady power: a window that begins inside an interval gets the interval's energy in proportion to the
time it was open, and one that ends after the last sample has the job's power over the last interval
extrapolated to its end. The result says for how many seconds it did so (`interpolated_s`).

`WindowBook` is called by the HTTP workers (begin, end) while the sampling thread closes intervals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from agent.live.snapshot import Key
from collectors.base import NOT_IN_TOTAL, is_outage
from collectors.jobs.trees import PROCESS
from collectors.workloads import JobKey

MAX_OPEN_PER_OWNER = 64
"""Windows one job may hold open at once; more are refused (HTTP 429)."""
GPU_COMPONENTS = ("gpu", "module")

K = TypeVar("K")


class WindowError(Exception):
    """A window request that cannot be served; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Totals:
    """A job's running totals since it was first followed, as of wall time `t`."""

    t: float
    energy: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """Joules by (component, source)."""
    gpu_j: Mapping[str, float] = field(default_factory=dict)
    """Joules of each GPU device the job got."""
    node_gpu_j: Mapping[str, float] = field(default_factory=dict)
    """Joules each of those GPU devices used, whoever used them."""
    node_it_j: float = 0.0
    node_unattributed_j: float = 0.0


def _mix(a: Mapping[K, float], b: Mapping[K, float], f: float) -> dict[K, float]:
    """a + (b - a) x f per key; f > 1 extrapolates."""
    return {k: a.get(k, 0.0) + (b.get(k, 0.0) - a.get(k, 0.0)) * f for k in {*a, *b}}


def _between(a: _Totals, b: _Totals, t: float) -> _Totals:
    """The totals at `t`, at the steady power of the interval from `a` to `b`."""
    f = (t - a.t) / (b.t - a.t)
    return _Totals(
        t,
        _mix(a.energy, b.energy, f),
        _mix(a.gpu_j, b.gpu_j, f),
        _mix(a.node_gpu_j, b.node_gpu_j, f),
        a.node_it_j + (b.node_it_j - a.node_it_j) * f,
        a.node_unattributed_j + (b.node_unattributed_j - a.node_unattributed_j) * f,
    )


@dataclass
class _Follow:
    """A job with open windows: its totals at the last two interval ends."""

    last: _Totals
    before: _Totals | None = None

    def at(self, t: float) -> _Totals:
        """The totals at `t`: within the last interval or past it, at that interval's power."""
        if self.before is None or self.last.t <= self.before.t:
            return self.last  # no interval of the job closed yet: no power known
        return _between(self.before, self.last, t)


@dataclass
class _Window:
    name: str
    begin: float
    start: _Totals | None = None
    """The job's totals at `begin`, once the interval holding `begin` has closed."""
    first_sample: float | None = None
    """When the first interval after `begin` closed."""


@dataclass(frozen=True)
class WindowResult:
    """What a window measured over [begin, end]."""

    name: str
    job: JobKey
    begin: float
    end: float
    energy: Mapping[tuple[str, str], float]
    """Joules by (component, source)."""
    gpu_j: Mapping[str, float]
    node_gpu_j: Mapping[str, float]
    node_it_j: float
    node_unattributed_j: float
    interpolated_s: float
    """Seconds of the window not between two samples: taken at an interval's steady power."""

    @property
    def by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (component, _), joules in self.energy.items():
            out[component] = out.get(component, 0.0) + joules
        return out

    @property
    def total_j(self) -> float:
        return sum(j for (c, _), j in self.energy.items() if c not in NOT_IN_TOTAL)

    @property
    def by_source(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (component, source), joules in self.energy.items():
            if component not in NOT_IN_TOTAL:
                out[source] = out.get(source, 0.0) + joules
        return out

    @property
    def gpu_shares(self) -> dict[str, float]:
        """The job's share of each GPU it used over the window (0 to 1)."""
        return {
            device: min(1.0, joules / self.node_gpu_j[device])
            for device, joules in sorted(self.gpu_j.items())
            if joules > 0 and self.node_gpu_j.get(device, 0.0) > 0
        }


def _minus(b: Mapping[K, float], a: Mapping[K, float]) -> dict[K, float]:
    """b - a per key, the positive differences only."""
    return {k: v - a.get(k, 0.0) for k, v in b.items() if v - a.get(k, 0.0) > 0}


@dataclass
class WindowBook:
    """Open windows per job, and the running totals of the jobs that hold any."""

    wall_clock: Callable[[], float]
    max_open: int = MAX_OPEN_PER_OWNER
    _windows: dict[JobKey, dict[str, _Window]] = field(default_factory=dict)
    _follow: dict[JobKey, _Follow] = field(default_factory=dict)
    _last_close: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, job: JobKey, name: str) -> float:
        """Open window `name` of `job` now; returns its begin time (wall clock). WindowError 409 when
        one of that name is open, 429 beyond `max_open`."""
        now = self.wall_clock()
        with self._lock:
            windows = self._windows.setdefault(job, {})
            if name in windows:
                raise WindowError(409, f"window {name!r} is already open; end it first")
            if len(windows) >= self.max_open:
                raise WindowError(429, f"{len(windows)} windows are open for this job, the most allowed")
            if job not in self._follow:  # followed from the last interval's end: this one is coming
                self._follow[job] = _Follow(_Totals(min(now, self._last_close or now)))
            windows[name] = _Window(name, now)
            return now

    def end(self, job: JobKey, name: str) -> WindowResult:
        """Close window `name` of `job` now and measure it; WindowError 404 when no such one is open."""
        now = self.wall_clock()
        with self._lock:
            window = self._windows.get(job, {}).pop(name, None)
            if window is None:
                raise WindowError(404, f"no open window {name!r}")
            follow = self._follow[job]
            if not self._windows[job]:
                del self._windows[job]
                del self._follow[job]
        start = window.start if window.start is not None else follow.at(window.begin)
        stop = follow.at(now)
        if window.first_sample is None:
            guessed = now - window.begin
        else:
            guessed = (window.first_sample - window.begin) + max(0.0, now - follow.last.t)
        return WindowResult(
            window.name,
            job,
            window.begin,
            now,
            _minus(stop.energy, start.energy),
            _minus(stop.gpu_j, start.gpu_j),
            _minus(stop.node_gpu_j, start.node_gpu_j),
            max(0.0, stop.node_it_j - start.node_it_j),
            max(0.0, stop.node_unattributed_j - start.node_unattributed_j),
            max(0.0, guessed),
        )

    def process_roots(self) -> frozenset[int]:
        """The root pids of the process trees (callers in no job) that hold windows."""
        with self._lock:
            return frozenset(int(job.job_id) for job in self._windows if job.scheduler == PROCESS)

    def open_windows(self, job: JobKey) -> list[tuple[str, float]]:
        """(name, begin) of the job's open windows."""
        with self._lock:
            return sorted((w.name, w.begin) for w in self._windows.get(job, {}).values())

    def close_interval(
        self,
        t: float,
        shares: Mapping[JobKey, Mapping[Key, float]],
        node_j: Mapping[Key, float],
        unattributed_j: Mapping[Key, float],
        running: Callable[[JobKey], bool],
    ) -> None:
        """Add the interval that closed at wall time `t`: each job's attributed joules (`shares`), the
        node's (`node_j`) and what no job got (`unattributed_j`). The windows of jobs that no longer
        run are forgotten."""
        with self._lock:
            self._last_close = t
            if not self._windows:
                return
            node_gpu: dict[str, float] = {}
            for (component, device, source), joules in node_j.items():
                if component in GPU_COMPONENTS and not is_outage(source):
                    node_gpu[device] = node_gpu.get(device, 0.0) + joules
            node_it = sum(j for (c, _, _), j in node_j.items() if c not in NOT_IN_TOTAL)
            left = sum(j for (c, _, _), j in unattributed_j.items() if c not in NOT_IN_TOTAL)
            for job in list(self._windows):
                if not running(job):
                    del self._windows[job]
                    del self._follow[job]
                    continue
                self._add(job, t, shares.get(job, {}), node_gpu, node_it, left)

    def _add(
        self,
        job: JobKey,
        t: float,
        got: Mapping[Key, float],
        node_gpu: Mapping[str, float],
        node_it: float,
        left: float,
    ) -> None:
        follow = self._follow[job]
        last = follow.last
        energy = dict(last.energy)
        gpu = dict(last.gpu_j)
        for (component, device, source), joules in got.items():
            energy[(component, source)] = energy.get((component, source), 0.0) + joules
            if component in GPU_COMPONENTS:
                gpu[device] = gpu.get(device, 0.0) + joules
        node = {d: last.node_gpu_j.get(d, 0.0) + node_gpu.get(d, 0.0) for d in gpu}
        now = _Totals(t, energy, gpu, node, last.node_it_j + node_it, last.node_unattributed_j + left)
        follow.before, follow.last = last, now
        for window in self._windows[job].values():
            if window.start is None and window.begin <= t:  # the interval holding its begin closed
                window.start = follow.at(window.begin) if window.begin > last.t else last
                window.first_sample = t
